// The tuning loop for one task (workload x device).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "tunefarm/database/database.h"
#include "tunefarm/device_agents/backend.h"
#include "tunefarm/kernels/config_space.h"
#include "tunefarm/kernels/workload.h"
#include "tunefarm/v1/tuning.pb.h"

namespace tunefarm::tuner {

struct TuneOptions {
  std::string strategy = "xgb";
  // New configs to measure in this run. Configs already in the log for this
  // workload, device key and template version are skipped and do not count,
  // so a second run continues where the first stopped.
  int trials = 200;
  // Candidates compiled in parallel and measured per round trip.
  int batch_size = 8;
  // Stop after this many trials without a new best (0: never).
  int early_stopping = 0;
  uint64_t seed = 0;
  // Warm-start model-based strategies from records of the same template on
  // the same device key for other workloads.
  bool transfer = true;
  // xgb: "reg" (regression on throughput normalised per task) or "rank"
  // (pairwise ranking, one group per task; the XGBoost wrapper's default).
  // Regression is the tuner's default: on two recordings of the same matmul
  // spaces it met every search-efficiency target on both, ranking missed the
  // transfer target once (bench_search_efficiency).
  std::string objective = "reg";
  // Prepare batch k+1 (and train on batch k-1) while batch k is measured.
  // For remote devices; off for the local CPU, where the tuner's own work
  // would run beside the measurements and disturb them.
  bool pipeline = false;
  // The backend commits each result to `db` itself before returning it (farm
  // agents, through the dispatcher, with the measuring agent's target), so
  // the loop does not write the records a second time.
  bool backend_commits = false;
  // Knobs fixed to one value: the search covers only the rest of the space.
  // The log's best configs with other values of them are tried first, moved
  // to the pinned values.
  std::vector<std::pair<std::string, kernels::KnobValue>> pins;
  tunefarm::v1::MeasureOptions measure;
  // A candidate whose checked first run is slower than this many times the
  // best so far is timed by that run alone (MeasureOptions.timing_cutoff_s);
  // 0 times every candidate `repeat` times.
  double timing_cutoff_factor = 3;
  // After a run that measured something, the best `confirm` configs of the
  // searched space are measured again, in three interleaved rounds of one
  // batch, and each record keeps all its costs (Database::MergeRecords):
  // records rank by their fastest run, so each of the best few gets as many
  // chances as the others at a quiet spell of a shared machine (a config
  // measured only in a busy spell is no longer behind one measured in a
  // quiet one), and one that fails its check again (a race) is marked
  // failed. When a config that was not among them leads afterwards (all
  // of them failed), the best are measured again (three passes at most).
  // 0 or 1: off. Skipped with backend_commits (the farm's agents write
  // their own records).
  int confirm = 5;
  std::optional<int64_t> job_id;
  // Checked between batches: when it becomes true the loop stops after the
  // batch in flight is recorded (TuneReport::interrupted). May be null.
  const std::atomic<bool>* stop = nullptr;
};

// Default timing options: number 1, repeat 3, min_repeat_ms 20, build
// timeout 30 s, run timeout 10 s, seed 1.
tunefarm::v1::MeasureOptions DefaultMeasureOptions();

struct TuneProgress {
  int trials_done = 0;
  int trials_total = 0;
  int errors = 0;
  double best_gflops = 0;  // best so far, this run and earlier runs
};

struct TuneReport {
  std::string workload_key;
  std::string device_key;
  std::string template_version;
  uint64_t space_size = 0;
  int trials_run = 0;
  int errors = 0;
  bool early_stopped = false;
  bool exhausted = false;  // the strategy found no unmeasured config
  bool interrupted = false;  // TuneOptions::stop was set
  int confirmed = 0;         // configs measured again (TuneOptions::confirm)
  double flops = 0;        // per kernel run
  // Best successful record in the log (any run) among configs of the
  // searched space (the pins applied), if there is one.
  std::optional<database::Record> best;
  std::string best_config;  // human-readable knob values of `best`
  // Mean cost of the template's default config, if it measured fine.
  std::optional<double> default_seconds;
  std::optional<std::string> default_error;  // why the default failed, if it did
};

using ProgressCallback = std::function<void(const TuneProgress&)>;

// Tunes `workload` on `backend`, writing every result to `db` (one
// transaction per batch, so an interrupted run loses at most the batch in
// flight). The template's default config is measured first unless the log
// already has it.
absl::StatusOr<TuneReport> TuneTask(const kernels::Workload& workload, device_agents::DeviceBackend& backend,
                                    database::Database& db, const TuneOptions& options,
                                    const ProgressCallback& progress = {});

}  // namespace tunefarm::tuner
