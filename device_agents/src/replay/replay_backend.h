#pragma once

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "tunefarm/device_agents/backend.h"

namespace tunefarm::device_agents {

// A device that answers each measurement from a tuning log instead of running
// it, so search strategies can be compared cheaply and reproducibly.
//
// `arg` is "PATH" or "PATH#SOURCE_KEY" (split at the last '#'): PATH is a
// tuning-log SQLite file, opened read-only; SOURCE_KEY names the recorded
// device to replay and may be left out when the file holds exactly one
// device that is not itself a replay device. A missing or unreadable file, an
// unknown or ambiguous source and a replay source are FailedPrecondition.
//
// The target is the source's with kind DEVICE_KIND_REPLAY, device key
// "replay-<SOURCE_KEY>" and model "replay of <model>", so whatever is
// recorded from it is labelled replay. A config without a record of the same
// workload key, template version and config index answers
// MEASURE_STATUS_NOT_RECORDED. options.replay_latency_ms delays each answer;
// options.device_key may only repeat the derived key, because recording
// replayed results under a real device's key would pass them off as
// measurements.
absl::StatusOr<std::unique_ptr<DeviceBackend>> NewReplayBackend(const BackendOptions& options, std::string_view arg);

}  // namespace tunefarm::device_agents
