// Seeded inputs and reference outputs for a (template, workload, seed): what
// every backend checks its candidates against.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "measure_data.h"
#include "tunefarm/kernels/template.h"

namespace tunefarm::device_agents {

absl::StatusOr<MeasureData> BuildMeasureData(const kernels::Template& t, const kernels::Workload& w, uint64_t seed);

}  // namespace tunefarm::device_agents
