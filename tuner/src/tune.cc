#include "tunefarm/tuner/tune.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <chrono>
#include <numeric>
#include <unordered_set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "tunefarm/kernels/template.h"
#include "tunefarm/tuner/strategy.h"

namespace tunefarm::tuner {
namespace v1 = tunefarm::v1;

v1::MeasureOptions DefaultMeasureOptions() {
  v1::MeasureOptions o;
  o.set_number(1);
  o.set_repeat(3);
  o.set_min_repeat_ms(20);
  o.set_build_timeout_s(30);
  o.set_run_timeout_s(10);
  o.set_seed(1);
  return o;
}

namespace {

double Mean(const google::protobuf::RepeatedField<double>& c) {
  return c.empty() ? 0 : std::accumulate(c.begin(), c.end(), 0.0) / c.size();
}

const char* DeviceKindName(v1::DeviceKind k) {
  switch (k) {
    case v1::DEVICE_KIND_CPU: return "cpu";
    case v1::DEVICE_KIND_CUDA: return "cuda";
    case v1::DEVICE_KIND_OPENCL: return "opencl";
    case v1::DEVICE_KIND_REMOTE: return "remote";
    case v1::DEVICE_KIND_FPGA: return "fpga";
    case v1::DEVICE_KIND_REPLAY: return "replay";
    default: return "unknown";
  }
}

v1::Workload ToProto(const kernels::Workload& w) {
  v1::Workload p;
  p.set_key(w.Key());
  p.set_op(w.op);
  p.set_dtype(w.dtype);
  for (const auto& [k, v] : w.params) (*p.mutable_params())[k] = v;
  return p;
}

void SetKnobs(const kernels::ConfigSpace& space, uint64_t index, v1::Config* c) {
  kernels::Config cfg = space.FromIndex(index);
  c->set_index(index);
  for (size_t i = 0; i < space.knobs().size(); ++i) {
    v1::KnobValue* k = c->add_knobs();
    k->set_name(space.knobs()[i].name);
    const kernels::KnobValue& v = space.knobs()[i].values[cfg.choices[i]];
    if (const int64_t* x = std::get_if<int64_t>(&v)) {
      k->set_int_value(*x);
    } else {
      k->set_str_value(std::get<std::string>(v));
    }
  }
}

}  // namespace

absl::StatusOr<TuneReport> TuneTask(const kernels::Workload& workload, device_agents::DeviceBackend& backend,
                                    database::Database& db, const TuneOptions& options,
                                    const ProgressCallback& progress) {
  if (options.trials < 0) return absl::InvalidArgumentError("trials must be >= 0");
  if (options.batch_size < 1) return absl::InvalidArgumentError("batch size must be >= 1");
  const kernels::Template* tmpl = kernels::TemplateRegistry::Global().Find(workload.op);
  if (tmpl == nullptr) return absl::NotFoundError(absl::StrCat("no template for operator ", workload.op));
  absl::StatusOr<kernels::ConfigSpace> space = tmpl->Space(workload);
  if (!space.ok()) return space.status();
  absl::StatusOr<std::string> version = kernels::TemplateVersion(*tmpl, workload);
  if (!version.ok()) return version.status();
  absl::StatusOr<std::unique_ptr<SearchStrategy>> strategy = NewStrategy(options.strategy, *space, options.seed);
  if (!strategy.ok()) return strategy.status();

  const v1::Target& target = backend.target();
  std::string target_json;
  (void)google::protobuf::util::MessageToJsonString(target, &target_json);
  if (absl::Status s = db.UpsertDevice({target.device_key(), DeviceKindName(target.kind()), target.arch(),
                                        target.model(), target_json, 0});
      !s.ok()) {
    return s;
  }

  TuneReport report;
  report.workload_key = workload.Key();
  report.device_key = target.device_key();
  report.template_version = *version;
  report.space_size = space->size();
  report.flops = tmpl->Flops(workload);

  absl::StatusOr<std::vector<uint64_t>> measured =
      db.MeasuredConfigs(report.workload_key, report.device_key, report.template_version);
  if (!measured.ok()) return measured.status();
  std::unordered_set<uint64_t> visited(measured->begin(), measured->end());

  double best_seconds = 0;
  if (auto best = db.BestRecords(report.workload_key, report.device_key, 1, report.template_version);
      best.ok() && !best->empty()) {
    best_seconds = best->front().mean_cost;
  }
  TuneProgress prog;
  prog.trials_total = options.trials;
  prog.best_gflops = best_seconds > 0 ? report.flops / best_seconds / 1e9 : 0;
  if (progress) progress(prog);

  const uint64_t default_index = tmpl->DefaultConfig(workload, *space).index;
  v1::MeasureOptions measure = options.measure;
  if (measure.repeat() == 0) measure = DefaultMeasureOptions();
  const v1::Workload workload_proto = ToProto(workload);

  int since_improvement = 0;
  auto started = std::chrono::steady_clock::now();
  while (report.trials_run < options.trials) {
    if (options.stop != nullptr && options.stop->load()) {
      report.interrupted = true;
      break;
    }
    int n = std::min(options.batch_size, options.trials - report.trials_run);
    std::vector<uint64_t> batch;
    if (!visited.count(default_index)) batch.push_back(default_index);
    std::unordered_set<uint64_t> seen = visited;
    seen.insert(batch.begin(), batch.end());
    for (uint64_t i : (*strategy)->Propose(n - static_cast<int>(batch.size()), seen)) batch.push_back(i);
    if (batch.empty()) {
      report.exhausted = true;
      break;
    }
    std::vector<v1::MeasureRequest> requests(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      v1::MeasureRequest& r = requests[i];
      *r.mutable_workload() = workload_proto;
      r.set_template_name(std::string(tmpl->op()));
      r.set_template_version(report.template_version);
      SetKnobs(*space, batch[i], r.mutable_config());
      *r.mutable_options() = measure;
    }
    auto on_result = [&](size_t, const v1::MeasureResult& res) {
      ++prog.trials_done;
      if (res.status() != v1::MEASURE_STATUS_OK) {
        ++prog.errors;
      } else if (double s = Mean(res.costs()); s > 0 && (best_seconds == 0 || s < best_seconds)) {
        best_seconds = s;
        prog.best_gflops = report.flops / s / 1e9;
      }
      if (progress) progress(prog);
    };
    const double best_before = best_seconds;
    absl::StatusOr<std::vector<v1::MeasureResult>> results = backend.Measure(requests, on_result);
    if (!results.ok()) return results.status();

    std::vector<database::RecordRow> rows;
    std::vector<std::pair<uint64_t, double>> scores;
    for (size_t i = 0; i < batch.size(); ++i) {
      const v1::MeasureResult& res = (*results)[i];
      database::RecordRow row;
      row.workload_key = report.workload_key;
      row.device_key = report.device_key;
      row.target_json = target_json;
      row.toolchain = target.toolchain();
      row.template_name = std::string(tmpl->op());
      row.template_version = report.template_version;
      row.config_index = batch[i];
      row.config_json = space->ToJson(space->FromIndex(batch[i]));
      row.costs.assign(res.costs().begin(), res.costs().end());
      row.status = res.status();
      row.error = res.error();
      row.compile_time_s = res.compile_time_s();
      row.agent_id = res.agent_id();
      row.timestamp_ms = res.timestamp_ms();
      row.job_id = options.job_id;
      rows.push_back(std::move(row));
      double s = res.status() == v1::MEASURE_STATUS_OK ? Mean(res.costs()) : 0;
      scores.emplace_back(batch[i], s > 0 ? report.flops / s : 0);
      if (batch[i] == default_index) {
        if (res.status() == v1::MEASURE_STATUS_OK) {
          report.default_seconds = s;
        } else {
          report.default_error = res.error();
        }
      }
      if (res.status() != v1::MEASURE_STATUS_OK) {
        ++report.errors;
        spdlog::debug("config {} failed ({}): {}", batch[i], v1::MeasureStatus_Name(res.status()), res.error());
      }
      visited.insert(batch[i]);
    }
    if (absl::StatusOr<int> added = db.AddRecords(rows); !added.ok()) return added.status();
    (*strategy)->Update(scores);
    report.trials_run += static_cast<int>(batch.size());

    since_improvement = best_seconds < best_before || best_before == 0 ? 0 : since_improvement + static_cast<int>(batch.size());
    if (options.early_stopping > 0 && since_improvement >= options.early_stopping) {
      report.early_stopped = true;
      break;
    }
  }
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  spdlog::info("{}: {} trials ({} failed) in {:.1f} s on {}", report.workload_key, report.trials_run, report.errors,
               elapsed, report.device_key);

  absl::StatusOr<std::vector<database::Record>> best =
      db.BestRecords(report.workload_key, report.device_key, 1, report.template_version);
  if (!best.ok()) return best.status();
  if (!best->empty()) {
    report.best = best->front();
    report.best_config = space->ToString(space->FromIndex(report.best->config_index));
  }
  if (!report.default_seconds && !report.default_error) {
    absl::StatusOr<std::optional<database::Record>> d =
        db.FindRecord(report.workload_key, report.device_key, report.template_version, default_index);
    if (d.ok() && d->has_value()) {
      if ((*d)->status == 0) {
        report.default_seconds = (*d)->mean_cost;
      } else {
        report.default_error = (*d)->error;
      }
    }
  }
  return report;
}

}  // namespace tunefarm::tuner
