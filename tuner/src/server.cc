#include "tunefarm/tuner/server.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "tunefarm/database/database.h"
#include "tunefarm/kernels/template.h"
#include "tunefarm/kernels/workload.h"
#include "tunefarm/rpc_runner/agent_service.h"
#include "tunefarm/rpc_runner/checks.h"
#include "tunefarm/rpc_runner/dispatcher.h"
#include "tunefarm/tuner/record_exchange.h"
#include "tunefarm/tuner/strategy.h"
#include "tunefarm/tuner/tune.h"
#include "tunefarm/v1/service.grpc.pb.h"
#include "record_row.h"

namespace tunefarm::tuner {
namespace v1 = tunefarm::v1;
using rpc_runner::CheckDeviceKey;
using rpc_runner::TokenMatches;
using rpc_runner::ToGrpcStatus;

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

absl::Status Range(const std::string& field, double v, double lo, double hi) {
  if (!(v >= lo && v <= hi)) return absl::InvalidArgumentError(absl::StrCat(field, " must be in [", lo, ", ", hi, "], got ", v));
  return absl::OkStatus();
}

#define TF_RETURN_IF_ERROR(expr)            \
  do {                                      \
    if (absl::Status _s = (expr); !_s.ok()) \
      return _s;                            \
  } while (0)

}  // namespace

const char* JobStateName(v1::JobState s) {
  switch (s) {
    case v1::JOB_STATE_QUEUED: return "queued";
    case v1::JOB_STATE_RUNNING: return "running";
    case v1::JOB_STATE_DONE: return "done";
    case v1::JOB_STATE_FAILED: return "failed";
    case v1::JOB_STATE_CANCELLED: return "cancelled";
    default: return "unknown";
  }
}

absl::StatusOr<v1::JobSpec> ValidateJobSpec(v1::JobSpec spec) {
  if (spec.name().size() > 256) return absl::InvalidArgumentError("name must be at most 256 characters");
  TF_RETURN_IF_ERROR(CheckDeviceKey("device_key", spec.device_key()));
  if (spec.workloads().empty() || spec.workloads_size() > 256) {
    return absl::InvalidArgumentError("workloads must list 1..256 workloads");
  }
  std::set<std::string> seen;
  for (int i = 0; i < spec.workloads_size(); ++i) {
    const std::string field = absl::StrCat("workloads[", i, "]");
    if (spec.workloads(i).size() > 1024) return absl::InvalidArgumentError(field + ": longer than 1024 characters");
    // ParseWorkload also finds the template and validates the shape.
    absl::StatusOr<kernels::Workload> w = kernels::ParseWorkload(spec.workloads(i));
    if (!w.ok()) return absl::InvalidArgumentError(absl::StrCat(field, ": ", w.status().message()));
    if (!seen.insert(w->Key()).second) return absl::InvalidArgumentError(absl::StrCat(field, ": listed twice (", w->Key(), ")"));
    spec.set_workloads(i, w->Key());
  }
  if ((spec.trials_per_task() > 0) == (spec.total_trials() > 0) || spec.trials_per_task() < 0 || spec.total_trials() < 0) {
    return absl::InvalidArgumentError("exactly one of trials_per_task and total_trials must be > 0");
  }
  TF_RETURN_IF_ERROR(Range("trials_per_task", spec.trials_per_task(), 0, 1e6));
  TF_RETURN_IF_ERROR(Range("total_trials", spec.total_trials(), 0, 1e7));
  if (spec.strategy().empty()) spec.set_strategy("xgb");
  std::vector<std::string> strategies = StrategyNames();
  if (std::find(strategies.begin(), strategies.end(), spec.strategy()) == strategies.end()) {
    return absl::InvalidArgumentError(absl::StrCat("strategy: unknown strategy '", spec.strategy(), "'"));
  }
  if (spec.batch_size() == 0) spec.set_batch_size(8);
  TF_RETURN_IF_ERROR(Range("batch_size", spec.batch_size(), 1, 1024));
  TF_RETURN_IF_ERROR(Range("priority", spec.priority(), -1000, 1000));
  TF_RETURN_IF_ERROR(Range("early_stopping", spec.early_stopping(), 0, 1e6));
  if (spec.objective().empty()) spec.set_objective("reg");
  if (spec.objective() != "reg" && spec.objective() != "rank") {
    return absl::InvalidArgumentError("objective must be 'reg' or 'rank'");
  }
  v1::MeasureOptions d = DefaultMeasureOptions();
  v1::MeasureOptions* m = spec.mutable_measure();
  TF_RETURN_IF_ERROR(Range("measure.number", m->number(), 0, 1e6));
  TF_RETURN_IF_ERROR(Range("measure.repeat", m->repeat(), 0, 1000));
  TF_RETURN_IF_ERROR(Range("measure.min_repeat_ms", m->min_repeat_ms(), 0, 60000));
  TF_RETURN_IF_ERROR(Range("measure.build_timeout_s", m->build_timeout_s(), 0, 3600));
  TF_RETURN_IF_ERROR(Range("measure.run_timeout_s", m->run_timeout_s(), 0, 3600));
  if (m->number() == 0) m->set_number(d.number());
  if (m->repeat() == 0) m->set_repeat(d.repeat());
  if (m->min_repeat_ms() == 0) m->set_min_repeat_ms(d.min_repeat_ms());
  if (m->build_timeout_s() == 0) m->set_build_timeout_s(d.build_timeout_s());
  if (m->run_timeout_s() == 0) m->set_run_timeout_s(d.run_timeout_s());
  if (m->seed() == 0) m->set_seed(d.seed());
  return spec;
}

namespace {

// A device backend whose measurements go out to farm agents.
class RemoteBackend : public device_agents::DeviceBackend {
 public:
  RemoteBackend(rpc_runner::Dispatcher& d, v1::Target target, rpc_runner::BatchOptions options)
      : dispatcher_(d), target_(std::move(target)), options_(options) {}
  const v1::Target& target() const override { return target_; }
  absl::StatusOr<std::vector<v1::MeasureResult>> Measure(const std::vector<v1::MeasureRequest>& batch,
                                                         const device_agents::MeasureCallback& on_result) override {
    return dispatcher_.Measure(target_.device_key(), batch, options_, on_result);
  }

 private:
  rpc_runner::Dispatcher& dispatcher_;
  v1::Target target_;
  rpc_runner::BatchOptions options_;
};

v1::JobState StateFromName(const std::string& s) {
  if (s == "queued") return v1::JOB_STATE_QUEUED;
  if (s == "running") return v1::JOB_STATE_RUNNING;
  if (s == "done") return v1::JOB_STATE_DONE;
  if (s == "failed") return v1::JOB_STATE_FAILED;
  if (s == "cancelled") return v1::JOB_STATE_CANCELLED;
  return v1::JOB_STATE_UNSPECIFIED;
}

// Trials a job may run in all: per task times tasks, or the shared total.
int JobBudget(const v1::JobSpec& spec) {
  return spec.total_trials() > 0 ? spec.total_trials() : spec.trials_per_task() * spec.workloads_size();
}

bool Finished(v1::JobState s) {
  return s == v1::JOB_STATE_DONE || s == v1::JOB_STATE_FAILED || s == v1::JOB_STATE_CANCELLED;
}

// Trials a scheduler slice gives a task: enough batches for the model to
// learn something between decisions.
constexpr int kSliceBatches = 4;

// One job in memory. `status` is guarded by JobManager::mu_.
struct JobState {
  v1::JobStatus status;
  uint64_t version = 0;  // bumped on every change, for watchers
  std::atomic<bool> stop{false};  // cancel or server shutdown
  bool cancelled = false;
  std::thread thread;
};

// Per-task scheduling state (only the job's own threads touch it, under mu).
struct TaskSched {
  kernels::Workload workload;
  int cap = 0;  // trial cap; INT_MAX with a shared total budget
  bool running = false;
  bool finished = false;
  double best_s = 0;  // best mean cost in the log; 0: none yet
  std::vector<std::pair<int, double>> history;  // (trials done, best_s) after each slice
};

class JobManager {
 public:
  JobManager(database::Database& db, rpc_runner::Dispatcher& d) : db_(db), dispatcher_(d) {}
  ~JobManager() { Shutdown(); }

  absl::StatusOr<v1::JobStatus> Submit(const v1::JobSpec& raw) {
    absl::StatusOr<v1::JobSpec> spec = ValidateJobSpec(raw);
    if (!spec.ok()) return spec.status();
    std::string json;
    (void)google::protobuf::util::MessageToJsonString(*spec, &json);
    absl::StatusOr<int64_t> id = db_.CreateJob(json);
    if (!id.ok()) return id.status();
    if (absl::Status s = db_.UpdateJob(*id, "queued", ""); !s.ok()) return s;
    absl::StatusOr<database::Job> row = db_.GetJob(*id);
    if (!row.ok()) return row.status();
    spdlog::info("job {} submitted: {} workloads on {}", *id, spec->workloads_size(), spec->device_key());
    return Start(*row, *spec);
  }

  // Jobs an earlier server left queued or running continue.
  void ResumeUnfinished() {
    absl::StatusOr<std::vector<database::Job>> jobs = db_.ListJobs(false, 100000);
    if (!jobs.ok()) {
      spdlog::error("cannot list unfinished jobs: {}", std::string(jobs.status().message()));
      return;
    }
    for (auto it = jobs->rbegin(); it != jobs->rend(); ++it) {
      v1::JobSpec spec;
      if (!google::protobuf::util::JsonStringToMessage(it->spec_json, &spec).ok()) {
        (void)db_.UpdateJob(it->id, "failed", "its stored spec cannot be read");
        continue;
      }
      absl::StatusOr<v1::JobSpec> valid = ValidateJobSpec(spec);
      if (!valid.ok()) {
        (void)db_.UpdateJob(it->id, "failed", absl::StrCat("its spec is no longer valid: ", valid.status().message()));
        continue;
      }
      spdlog::info("resuming job {}", it->id);
      (void)Start(*it, *valid);
    }
  }

  absl::StatusOr<v1::JobStatus> Get(int64_t id) {
    {
      std::lock_guard lock(mu_);
      if (auto it = jobs_.find(id); it != jobs_.end()) return it->second->status;
    }
    absl::StatusOr<database::Job> row = db_.GetJob(id);
    if (!row.ok()) return row.status();
    return FromRow(*row);
  }

  absl::StatusOr<std::vector<v1::JobStatus>> List(bool include_finished, int limit) {
    absl::StatusOr<std::vector<database::Job>> rows = db_.ListJobs(include_finished, limit);
    if (!rows.ok()) return rows.status();
    std::vector<v1::JobStatus> out;
    for (const database::Job& r : *rows) {
      absl::StatusOr<v1::JobStatus> s = Get(r.id);
      if (s.ok()) out.push_back(std::move(*s));
    }
    return out;
  }

  absl::StatusOr<v1::JobStatus> Cancel(int64_t id) {
    std::unique_lock lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) {
      lock.unlock();
      absl::StatusOr<v1::JobStatus> s = Get(id);
      if (!s.ok()) return s.status();
      return absl::FailedPreconditionError(absl::StrCat("job ", id, " already ended (", JobStateName(s->state()), ")"));
    }
    JobState& j = *it->second;
    if (Finished(j.status.state())) {
      return absl::FailedPreconditionError(absl::StrCat("job ", id, " already ended (", JobStateName(j.status.state()), ")"));
    }
    j.cancelled = true;
    j.stop = true;
    j.status.set_message("cancelling after the batches in flight");
    Changed(j);
    return j.status;
  }

  // The job's status once its version differs from `*version` (or after
  // `timeout`); updates `*version`.
  absl::StatusOr<v1::JobStatus> WaitForChange(int64_t id, uint64_t* version, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) {
      lock.unlock();
      return Get(id);
    }
    std::shared_ptr<JobState> j = it->second;
    cv_.wait_for(lock, timeout, [&] { return j->version != *version || shutdown_; });
    *version = j->version;
    return j->status;
  }

  void Shutdown() {
    std::vector<std::shared_ptr<JobState>> jobs;
    {
      std::lock_guard lock(mu_);
      shutdown_ = true;
      for (auto& [id, j] : jobs_) {
        j->stop = true;
        jobs.push_back(j);
      }
    }
    cv_.notify_all();
    for (auto& j : jobs) {
      if (j->thread.joinable()) j->thread.join();
    }
  }

 private:
  v1::JobStatus FromRow(const database::Job& row) {
    v1::JobStatus s;
    s.set_id(row.id);
    (void)google::protobuf::util::JsonStringToMessage(row.spec_json, s.mutable_spec());
    s.set_state(StateFromName(row.state));
    s.set_message(row.message);
    s.set_created_ms(row.created_ms);
    s.set_updated_ms(row.updated_ms);
    std::map<std::string, database::JobTaskCount> counts;
    if (auto c = db_.JobRecordCounts(row.id); c.ok()) {
      for (auto& t : *c) counts[t.workload_key] = t;
    }
    int total = 0;
    for (const std::string& w : s.spec().workloads()) {
      v1::TaskStatus* t = s.add_tasks();
      t->set_workload(w);
      t->set_trials_done(static_cast<int32_t>(counts[w].records));
      t->set_errors(static_cast<int32_t>(counts[w].errors));
      t->set_state(Finished(s.state()) ? "done" : "waiting");
      total += t->trials_done();
    }
    s.set_trials_done(total);
    s.set_trials_total(JobBudget(s.spec()));
    return s;
  }

  absl::StatusOr<v1::JobStatus> Start(const database::Job& row, const v1::JobSpec& spec) {
    auto j = std::make_shared<JobState>();
    j->status = FromRow(row);
    *j->status.mutable_spec() = spec;
    std::lock_guard lock(mu_);
    if (shutdown_) return absl::UnavailableError("the server is shutting down");
    // Ended jobs leave memory (their status is in the log); their threads
    // take mu_ no more once the state is final, so joining here is safe.
    for (auto it = jobs_.begin(); it != jobs_.end();) {
      if (Finished(it->second->status.state())) {
        if (it->second->thread.joinable()) it->second->thread.join();
        it = jobs_.erase(it);
      } else {
        ++it;
      }
    }
    jobs_[row.id] = j;
    j->thread = std::thread([this, j] { RunJob(*j); });
    return j->status;
  }

  // Requires mu_.
  void Changed(JobState& j) {
    j.status.set_updated_ms(NowMs());
    ++j.version;
    cv_.notify_all();
  }

  void SetState(JobState& j, v1::JobState state, const std::string& message) {
    {
      std::lock_guard lock(mu_);
      j.status.set_state(state);
      j.status.set_message(message);
      Changed(j);
    }
    if (absl::Status s = db_.UpdateJob(j.status.id(), JobStateName(state), message); !s.ok()) {
      spdlog::error("job {}: cannot store its state: {}", j.status.id(), std::string(s.message()));
    }
  }

  void RunJob(JobState& j) {
    const v1::JobSpec spec = j.status.spec();
    const int64_t id = j.status.id();
    SetState(j, v1::JOB_STATE_RUNNING, absl::StrCat("waiting for an agent with device key ", spec.device_key()));
    absl::StatusOr<v1::Target> target = dispatcher_.WaitForTarget(spec.device_key(), -1, &j.stop);
    if (!target.ok()) return Stopped(j);
    {
      std::lock_guard lock(mu_);
      j.status.set_message("");
      Changed(j);
    }
    rpc_runner::BatchOptions bo;
    bo.priority = spec.priority();
    bo.job_id = id;
    bo.cancel = &j.stop;
    RemoteBackend backend(dispatcher_, *target, bo);

    std::vector<TaskSched> tasks(spec.workloads_size());
    int remaining = JobBudget(spec);
    {
      std::lock_guard lock(mu_);
      for (int i = 0; i < spec.workloads_size(); ++i) {
        tasks[i].workload = *kernels::ParseWorkload(spec.workloads(i));
        tasks[i].cap = spec.trials_per_task() > 0 ? spec.trials_per_task() : std::numeric_limits<int>::max();
        const v1::TaskStatus& t = j.status.tasks(i);
        remaining -= t.trials_done();
        if (t.trials_done() >= tasks[i].cap) tasks[i].finished = true;
        j.status.mutable_tasks(i)->set_state(tasks[i].finished ? "done" : "waiting");
      }
    }
    // As many tasks run at once as there are agents for the key, so every
    // agent has a batch; each task keeps one batch in flight.
    int agents = 1;
    for (const v1::DeviceQueue& q : dispatcher_.Devices()) {
      if (q.device_key() == spec.device_key()) agents = std::max(1, q.total());
    }
    const int workers = std::min<int>(agents, spec.workloads_size());
    std::string failure;
    std::vector<std::thread> pool;
    for (int w = 0; w < workers; ++w) {
      pool.emplace_back([&] {
        for (;;) {
          int task = -1, slice = 0;
          {
            std::lock_guard lock(mu_);
            if (j.stop || !failure.empty() || remaining <= 0) return;
            task = PickTask(tasks, spec.batch_size());
            if (task < 0) return;
            int done = j.status.tasks(task).trials_done();
            slice = std::min({remaining, tasks[task].cap - done, spec.batch_size() * kSliceBatches});
            remaining -= slice;
            tasks[task].running = true;
            j.status.mutable_tasks(task)->set_state("running");
            Changed(j);
          }
          absl::StatusOr<TuneReport> r = RunSlice(j, spec, backend, tasks[task], task, slice);
          std::lock_guard lock(mu_);
          tasks[task].running = false;
          v1::TaskStatus* t = j.status.mutable_tasks(task);
          if (!r.ok()) {
            if (!j.stop) failure = absl::StrCat(spec.workloads(task), ": ", r.status().message());
            remaining += slice;
            t->set_state(j.stop ? "waiting" : "failed");
            t->set_message(std::string(r.status().message()));
            Changed(j);
            continue;
          }
          remaining += slice - r->trials_run;
          if (r->best) tasks[task].best_s = r->best->min_cost;
          tasks[task].history.emplace_back(t->trials_done(), tasks[task].best_s);
          if (r->exhausted || r->early_stopped || t->trials_done() >= tasks[task].cap) {
            tasks[task].finished = true;
            t->set_state(r->exhausted ? "exhausted" : "done");
          } else {
            t->set_state("waiting");
          }
          Changed(j);
        }
      });
    }
    for (auto& t : pool) t.join();
    if (!failure.empty()) return SetState(j, v1::JOB_STATE_FAILED, failure);
    if (j.stop) return Stopped(j);
    {
      std::lock_guard lock(mu_);
      for (v1::TaskStatus& t : *j.status.mutable_tasks()) {
        if (t.state() == "waiting") t.set_state("done");
      }
    }
    SetState(j, v1::JOB_STATE_DONE, "");
    spdlog::info("job {} done: {} trials", id, j.status.trials_done());
  }

  void Stopped(JobState& j) {
    bool cancelled;
    {
      std::lock_guard lock(mu_);
      cancelled = j.cancelled;
    }
    if (cancelled) {
      SetState(j, v1::JOB_STATE_CANCELLED, "cancelled");
      spdlog::info("job {} cancelled", j.status.id());
    }
    // On shutdown the job stays "running" in the log and resumes later.
  }

  // Ansor-style: the task whose best latency fell fastest per trial lately,
  // with a bonus for tasks that have had few trials. Requires mu_.
  int PickTask(const std::vector<TaskSched>& tasks, int batch) {
    int best = -1;
    double best_score = -1;
    for (size_t i = 0; i < tasks.size(); ++i) {
      const TaskSched& t = tasks[i];
      if (t.running || t.finished) continue;
      double score;
      if (t.history.size() < 1 || t.best_s <= 0) {
        score = std::numeric_limits<double>::max() / (1 + t.history.size());  // not started: first
      } else {
        const auto& [n_now, b_now] = t.history.back();
        const auto& [n_then, b_then] = t.history.size() >= 3 ? t.history[t.history.size() - 3] : t.history.front();
        double gradient = n_now > n_then ? (b_then - b_now) / (n_now - n_then) : 0;
        score = gradient + 0.05 * b_now * batch / std::max(1, n_now);
      }
      if (score > best_score) {
        best_score = score;
        best = static_cast<int>(i);
      }
    }
    return best;
  }

  absl::StatusOr<TuneReport> RunSlice(JobState& j, const v1::JobSpec& spec, RemoteBackend& backend, TaskSched& task,
                                      int index, int slice) {
    TuneOptions o;
    o.strategy = spec.strategy();
    o.trials = slice;
    o.batch_size = spec.batch_size();
    o.early_stopping = spec.early_stopping();
    o.seed = spec.seed() + static_cast<uint64_t>(task.history.size()) * 7919;
    o.transfer = !spec.no_transfer();
    o.objective = spec.objective();
    o.measure = spec.measure();
    o.job_id = j.status.id();
    o.stop = &j.stop;
    o.pipeline = true;
    o.backend_commits = true;
    int base, base_errors;
    {
      std::lock_guard lock(mu_);
      base = j.status.tasks(index).trials_done();
      base_errors = j.status.tasks(index).errors();
    }
    return TuneTask(task.workload, backend, db_, o, [&](const TuneProgress& p) {
      std::lock_guard lock(mu_);
      v1::TaskStatus* t = j.status.mutable_tasks(index);
      t->set_trials_done(base + p.trials_done);
      t->set_errors(base_errors + p.errors);
      t->set_best_gflops(p.best_gflops);
      int total = 0;
      for (const v1::TaskStatus& x : j.status.tasks()) total += x.trials_done();
      j.status.set_trials_done(total);
      Changed(j);
    });
  }

  database::Database& db_;
  rpc_runner::Dispatcher& dispatcher_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool shutdown_ = false;
  std::map<int64_t, std::shared_ptr<JobState>> jobs_;
};

class TuningServiceImpl final : public v1::TuningService::Service {
 public:
  TuningServiceImpl(JobManager& jobs, rpc_runner::Dispatcher& d, database::Database& db, std::string token,
                    const std::atomic<bool>& stop)
      : jobs_(jobs), dispatcher_(d), db_(db), token_(std::move(token)), stop_(stop) {}

  grpc::Status SubmitJob(grpc::ServerContext* ctx, const v1::SubmitJobRequest* req, v1::JobStatus* out) override {
    if (grpc::Status a = Auth(ctx); !a.ok()) return a;
    absl::StatusOr<v1::JobStatus> s = jobs_.Submit(req->spec());
    if (!s.ok()) return ToGrpcStatus(s.status());
    *out = *s;
    return grpc::Status::OK;
  }

  grpc::Status GetJob(grpc::ServerContext* ctx, const v1::GetJobRequest* req, v1::JobStatus* out) override {
    if (grpc::Status a = Auth(ctx); !a.ok()) return a;
    absl::StatusOr<v1::JobStatus> s = jobs_.Get(req->id());
    if (!s.ok()) return ToGrpcStatus(s.status());
    *out = *s;
    return grpc::Status::OK;
  }

  grpc::Status ListJobs(grpc::ServerContext* ctx, const v1::ListJobsRequest* req, v1::ListJobsResponse* out) override {
    if (grpc::Status a = Auth(ctx); !a.ok()) return a;
    if (req->limit() < 0 || req->limit() > 10000) return Invalid("limit must be 0..10000");
    absl::StatusOr<std::vector<v1::JobStatus>> s = jobs_.List(req->include_finished(), req->limit() ? req->limit() : 100);
    if (!s.ok()) return ToGrpcStatus(s.status());
    for (auto& j : *s) *out->add_jobs() = std::move(j);
    return grpc::Status::OK;
  }

  grpc::Status CancelJob(grpc::ServerContext* ctx, const v1::CancelJobRequest* req, v1::JobStatus* out) override {
    if (grpc::Status a = Auth(ctx); !a.ok()) return a;
    absl::StatusOr<v1::JobStatus> s = jobs_.Cancel(req->id());
    if (!s.ok()) return ToGrpcStatus(s.status());
    *out = *s;
    return grpc::Status::OK;
  }

  grpc::Status WatchJob(grpc::ServerContext* ctx, const v1::WatchJobRequest* req,
                        grpc::ServerWriter<v1::JobStatus>* writer) override {
    if (grpc::Status a = Auth(ctx); !a.ok()) return a;
    uint64_t version = ~0ull;
    for (;;) {
      absl::StatusOr<v1::JobStatus> s = jobs_.WaitForChange(req->id(), &version, std::chrono::milliseconds(1000));
      if (!s.ok()) return ToGrpcStatus(s.status());
      if (!writer->Write(*s)) return grpc::Status::OK;
      if (Finished(s->state())) return grpc::Status::OK;
      // At most five updates a second: plenty for progress bars, and a busy
      // job does not spend its server's time on watchers.
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      if (ctx->IsCancelled()) return grpc::Status::CANCELLED;
      if (stop_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down");
    }
  }

  grpc::Status ListDevices(grpc::ServerContext* ctx, const v1::ListDevicesRequest*, v1::ListDevicesResponse* out) override {
    if (grpc::Status a = Auth(ctx); !a.ok()) return a;
    for (auto& d : dispatcher_.Devices()) *out->add_devices() = std::move(d);
    return grpc::Status::OK;
  }

  grpc::Status QueryBest(grpc::ServerContext* ctx, const v1::QueryBestRequest* req, v1::QueryBestResponse* out) override {
    if (grpc::Status a = Auth(ctx); !a.ok()) return a;
    if (req->workload().size() > 1024) return Invalid("workload: longer than 1024 characters");
    absl::StatusOr<kernels::Workload> w = kernels::ParseWorkload(req->workload());
    if (!w.ok()) return Invalid(absl::StrCat("workload: ", w.status().message()));
    if (!req->device_key().empty()) {
      if (absl::Status s = CheckDeviceKey("device_key", req->device_key()); !s.ok()) return ToGrpcStatus(s);
    }
    if (req->k() < 0 || req->k() > 1000) return Invalid("k must be 0..1000");
    if (req->template_version().size() > 64) return Invalid("template_version: longer than 64 characters");
    absl::StatusOr<std::vector<database::Record>> best =
        db_.BestRecords(w->Key(), req->device_key(), req->k() ? req->k() : 1, req->template_version());
    if (!best.ok()) return ToGrpcStatus(best.status());
    std::map<std::string, std::string> kinds = DeviceKinds(db_);
    for (const database::Record& r : *best) *out->add_records() = ToTuningRecord(r, kinds[r.device_key]);
    return grpc::Status::OK;
  }

  grpc::Status ExportRecords(grpc::ServerContext* ctx, const v1::ExportRecordsRequest* req,
                             grpc::ServerWriter<v1::TuningRecord>* writer) override {
    if (grpc::Status a = Auth(ctx); !a.ok()) return a;
    if (req->workload().size() > 1024) return Invalid("workload: longer than 1024 characters");
    if (!req->device_key().empty()) {
      if (absl::Status s = CheckDeviceKey("device_key", req->device_key()); !s.ok()) return ToGrpcStatus(s);
    }
    bool broken = false;
    absl::Status s = tuner::ExportRecords(db_, req->workload(), req->device_key(), [&](const v1::TuningRecord& r) {
      broken = !writer->Write(r) || ctx->IsCancelled();
      return !broken;
    });
    if (!s.ok()) return ToGrpcStatus(s);
    return broken ? grpc::Status::CANCELLED : grpc::Status::OK;
  }

  grpc::Status ImportRecords(grpc::ServerContext* ctx, grpc::ServerReader<v1::TuningRecord>* reader,
                             v1::ImportRecordsResponse* out) override {
    if (grpc::Status a = Auth(ctx); !a.ok()) return a;
    // Imported in chunks so a large import neither holds every record in
    // memory nor one long write transaction.
    constexpr size_t kChunk = 1000;
    std::vector<v1::TuningRecord> chunk;
    size_t offset = 0;
    auto flush = [&]() -> grpc::Status {
      absl::StatusOr<ImportCounts> c = tuner::ImportRecords(db_, chunk, /*atomic=*/false);
      if (!c.ok()) return ToGrpcStatus(c.status());
      out->set_received(out->received() + c->received);
      out->set_inserted(out->inserted() + c->inserted);
      out->set_duplicates(out->duplicates() + c->duplicates);
      for (const auto& [i, why] : c->rejected) {
        if (out->errors_size() >= 1000) break;
        v1::ImportError* e = out->add_errors();
        e->set_record(static_cast<int64_t>(offset + i + 1));
        e->set_reason(why);
      }
      offset += chunk.size();
      chunk.clear();
      return grpc::Status::OK;
    };
    v1::TuningRecord r;
    while (reader->Read(&r)) {
      chunk.push_back(std::move(r));
      if (chunk.size() == kChunk) {
        if (grpc::Status s = flush(); !s.ok()) return s;
      }
    }
    return flush();
  }

 private:
  static grpc::Status Invalid(const std::string& m) { return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, m); }

  grpc::Status Auth(grpc::ServerContext* ctx) {
    if (token_.empty()) return grpc::Status::OK;
    auto it = ctx->client_metadata().find("authorization");
    std::string given = it == ctx->client_metadata().end() ? "" : std::string(it->second.data(), it->second.size());
    if (!TokenMatches("Bearer " + token_, given)) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "wrong or missing token");
    }
    return grpc::Status::OK;
  }

  JobManager& jobs_;
  rpc_runner::Dispatcher& dispatcher_;
  database::Database& db_;
  std::string token_;
  const std::atomic<bool>& stop_;
};

}  // namespace

absl::Status RunServer(const ServerOptions& options, const std::atomic<bool>& stop,
                       const std::function<void(int port)>& on_listening) {
  if (options.tls_cert_pem.empty() != options.tls_key_pem.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  const std::string db_path = options.db_path.empty() ? database::DefaultDatabasePath() : options.db_path;
  absl::StatusOr<std::unique_ptr<database::Database>> db = database::Database::Open(db_path);
  if (!db.ok()) return db.status();
  database::Database& log = **db;

  rpc_runner::DispatcherOptions dopts;
  dopts.heartbeat_interval_ms = options.heartbeat_interval_ms;
  dopts.lease_slack_ms = options.lease_slack_ms;
  rpc_runner::Dispatcher dispatcher(dopts, [&log](const std::vector<rpc_runner::Measured>& results) -> absl::Status {
    std::vector<database::RecordRow> rows;
    rows.reserve(results.size());
    std::map<const v1::Target*, std::string> json;
    for (const rpc_runner::Measured& m : results) {
      auto [it, fresh] = json.try_emplace(m.target);
      if (fresh) it->second = TargetJson(*m.target);
      rows.push_back(MakeRecordRow(*m.request, m.result, *m.target, it->second, m.job_id));
    }
    absl::StatusOr<int> added = log.AddRecords(rows);
    return added.ok() ? absl::OkStatus() : added.status();
  });
  JobManager jobs(log, dispatcher);

  rpc_runner::AgentServiceOptions aopts;
  aopts.token = options.token;
  aopts.template_hash = kernels::TemplateCatalogHash(kernels::TemplateRegistry::Global().Catalog());
  std::unique_ptr<grpc::Service> agent_service = rpc_runner::NewAgentService(dispatcher, aopts);
  TuningServiceImpl tuning_service(jobs, dispatcher, log, options.token, stop);

  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!options.tls_cert_pem.empty()) {
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({options.tls_key_pem, options.tls_cert_pem});
    creds = grpc::SslServerCredentials(ssl);
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen, creds, &port);
  builder.RegisterService(agent_service.get());
  builder.RegisterService(&tuning_service);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  spdlog::info("serving on port {} with database {}", port, db_path);
  if (on_listening) on_listening(port);

  jobs.ResumeUnfinished();
  while (!stop) {
    dispatcher.Tick();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  spdlog::info("shutting down");
  jobs.Shutdown();
  dispatcher.Shutdown();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return absl::OkStatus();
}

}  // namespace tunefarm::tuner
