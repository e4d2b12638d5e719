// Measuring search strategies on recorded spaces: how many trials a strategy
// needs to reach a fraction of the best-known throughput when every
// measurement is answered by the replay device.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "tunefarm/database/database.h"
#include "tunefarm/kernels/config_space.h"
#include "tunefarm/kernels/workload.h"

namespace tunefarm::tuner {

// A space recorded into a tuning log (see `tunefarm record`).
struct RecordedSpace {
  std::string db_path;
  std::string device_key;  // the recorded device
  kernels::Workload workload;
  std::vector<std::pair<std::string, kernels::KnobValue>> pins;
  uint64_t size = 0;              // points of the pinned space
  int64_t recorded = 0;           // records of this workload on the device
  double best_throughput = 0;     // FLOP/s of the best record
};

// Reads the recorded device (the only non-replay device in the file) and the
// best record of `workload` on it.
absl::StatusOr<RecordedSpace> LoadRecordedSpace(const std::string& db_path, const kernels::Workload& workload,
                                                std::vector<std::pair<std::string, kernels::KnobValue>> pins);

struct ReplayRun {
  int trials = 0;           // trials measured before stopping
  int trials_to_90 = -1;    // first trial reaching 90% of the best known; -1: never
  int trials_to_95 = -1;
  double best_fraction = 0;  // best found / best known
};

struct ReplayRunOptions {
  std::string strategy = "xgb";
  std::string objective = "reg";  // xgb only: "reg" or "rank"
  uint64_t seed = 0;
  int max_trials = 400;
  int batch_size = 8;
  // Stop once this fraction of the best known is reached (0: run all trials).
  double stop_at = 0.95;
  // Records of other workloads to warm-start from; empty: no transfer.
  std::vector<database::Record> transfer;
};

// Tunes `space.workload` on `replay:<space.db_path>` with a private in-memory
// log. The transfer records are copied into that log under the replay
// device's key, so the strategy sees them as this device's history.
absl::StatusOr<ReplayRun> RunOnRecordedSpace(const RecordedSpace& space, const ReplayRunOptions& options);

}  // namespace tunefarm::tuner
