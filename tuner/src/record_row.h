// One place that turns a measurement into a tuning-log row, for the
// embedded tuning loop and for results arriving from farm agents alike.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "tunefarm/database/database.h"
#include "tunefarm/v1/tuning.pb.h"

namespace tunefarm::tuner {

// "cpu", "cuda", ..., "replay"; "unknown" for anything else.
const char* DeviceKindName(tunefarm::v1::DeviceKind kind);

std::string TargetJson(const tunefarm::v1::Target& target);

// The request must carry its workload key, template and config (index and
// knob values, in the space's knob order).
database::RecordRow MakeRecordRow(const tunefarm::v1::MeasureRequest& request,
                                  const tunefarm::v1::MeasureResult& result, const tunefarm::v1::Target& target,
                                  const std::string& target_json, std::optional<int64_t> job_id);

}  // namespace tunefarm::tuner
