#include "tunefarm/tuner/replay_eval.h"

#include <atomic>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tunefarm/device_agents/backend.h"
#include "tunefarm/kernels/template.h"
#include "tunefarm/tuner/tune.h"

namespace tunefarm::tuner {

absl::StatusOr<RecordedSpace> LoadRecordedSpace(const std::string& db_path, const kernels::Workload& workload,
                                                std::vector<std::pair<std::string, kernels::KnobValue>> pins) {
  database::OpenOptions ro;
  ro.read_only = true;
  ro.migrate_older = true;
  absl::StatusOr<std::unique_ptr<database::Database>> db = database::Database::Open(db_path, ro);
  if (!db.ok()) return db.status();
  absl::StatusOr<std::vector<database::DeviceRow>> devices = (*db)->ListDevices();
  if (!devices.ok()) return devices.status();
  RecordedSpace s;
  s.db_path = db_path;
  s.workload = workload;
  s.pins = std::move(pins);
  for (const database::DeviceRow& d : *devices) {
    if (d.kind == "replay") continue;
    if (!s.device_key.empty()) return absl::FailedPreconditionError(db_path + " holds more than one device");
    s.device_key = d.device_key;
  }
  if (s.device_key.empty()) return absl::FailedPreconditionError(db_path + " holds no recorded device");
  const kernels::Template* t = kernels::TemplateRegistry::Global().Find(workload.op);
  if (t == nullptr) return absl::NotFoundError("no template for " + workload.op);
  absl::StatusOr<kernels::ConfigSpace> space = t->Space(workload);
  if (!space.ok()) return space.status();
  if (!s.pins.empty()) space = space->Pin(s.pins);
  if (!space.ok()) return space.status();
  s.size = space->size();
  absl::StatusOr<std::string> version = kernels::TemplateVersion(*t, workload);
  if (!version.ok()) return version.status();
  absl::StatusOr<std::vector<database::Record>> best = (*db)->BestRecords(workload.Key(), s.device_key, 1, *version);
  if (!best.ok()) return best.status();
  if (best->empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(db_path, " has no successful record of ", workload.Key(), " for the current template version"));
  }
  s.best_throughput = t->Flops(workload) / best->front().min_cost;
  absl::StatusOr<database::Database::Counts> counts = (*db)->CountRecords(workload.Key(), s.device_key);
  if (!counts.ok()) return counts.status();
  s.recorded = counts->total;
  return s;
}

absl::StatusOr<ReplayRun> RunOnRecordedSpace(const RecordedSpace& space, const ReplayRunOptions& options) {
  absl::StatusOr<std::unique_ptr<device_agents::DeviceBackend>> backend =
      device_agents::NewBackend(absl::StrCat("replay:", space.db_path, "#", space.device_key));
  if (!backend.ok()) return backend.status();
  absl::StatusOr<std::unique_ptr<database::Database>> db = database::Database::Open(":memory:");
  if (!db.ok()) return db.status();
  if (!options.transfer.empty()) {
    std::vector<database::RecordRow> rows;
    for (const database::Record& r : options.transfer) {
      database::RecordRow row = r;
      row.device_key = (*backend)->target().device_key();
      row.job_id.reset();
      rows.push_back(std::move(row));
    }
    if (absl::StatusOr<int> added = (*db)->AddRecords(rows); !added.ok()) return added.status();
  }
  TuneOptions o;
  o.strategy = options.strategy;
  o.objective = options.objective;
  o.seed = options.seed;
  o.trials = options.max_trials;
  o.batch_size = options.batch_size;
  o.pins = space.pins;
  o.transfer = !options.transfer.empty();
  o.confirm = 0;  // replayed costs never change
  std::atomic<bool> stop{false};
  o.stop = &stop;
  ReplayRun run;
  const double gflops90 = 0.90 * space.best_throughput / 1e9, gflops95 = 0.95 * space.best_throughput / 1e9;
  absl::StatusOr<TuneReport> r = TuneTask(space.workload, **backend, **db, o, [&](const TuneProgress& p) {
    if (run.trials_to_90 < 0 && p.best_gflops >= gflops90 * (1 - 1e-9)) run.trials_to_90 = p.trials_done;
    if (run.trials_to_95 < 0 && p.best_gflops >= gflops95 * (1 - 1e-9)) run.trials_to_95 = p.trials_done;
    if (options.stop_at > 0 && p.best_gflops >= options.stop_at * space.best_throughput / 1e9 * (1 - 1e-9)) {
      stop = true;
    }
  });
  if (!r.ok()) return r.status();
  run.trials = r->trials_run;
  if (r->best) run.best_fraction = r->flops / r->best->min_cost / space.best_throughput;
  return run;
}

}  // namespace tunefarm::tuner
