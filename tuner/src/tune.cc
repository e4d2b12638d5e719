#include "tunefarm/tuner/tune.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <future>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <unordered_set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "record_row.h"
#include "spdlog/spdlog.h"
#include "tunefarm/cost_model/features.h"
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

// A result's fastest run: what a config costs, as records rank it (see
// database::Record).
double Fastest(const google::protobuf::RepeatedField<double>& c) {
  return c.empty() ? 0 : *std::min_element(c.begin(), c.end());
}

v1::Workload ToProto(const kernels::Workload& w) {
  v1::Workload p;
  p.set_key(w.Key());
  p.set_op(w.op);
  p.set_dtype(w.dtype);
  for (const auto& [k, v] : w.params) (*p.mutable_params())[k] = v;
  for (const auto& [k, v] : w.text_params) (*p.mutable_text_params())[k] = v;
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

// At most this many records of other workloads warm-start the model.
constexpr int kMaxTransferRecords = 5000;
// Times each of the best configs is measured again in one pass, and the
// most passes (TuneOptions::confirm).
constexpr int kConfirmRounds = 3;
constexpr int kConfirmPasses = 3;

// Records of the same template on the same device key for other workloads,
// keeping only those whose template version still matches the current code
// (an index of an older space would mean a different config).
absl::StatusOr<std::vector<TransferRecord>> LoadTransferRecords(database::Database& db, const kernels::Template& t,
                                                               const kernels::Workload& w,
                                                               const std::string& device_key) {
  absl::StatusOr<std::vector<database::Record>> rows =
      db.TemplateRecords(std::string(t.op()), device_key, w.Key(), kMaxTransferRecords);
  if (!rows.ok()) return rows.status();
  std::map<std::string, std::optional<std::pair<std::string, double>>> current;  // key -> (version, flops)
  std::vector<TransferRecord> out;
  for (const database::Record& r : *rows) {
    auto it = current.find(r.workload_key);
    if (it == current.end()) {
      std::optional<std::pair<std::string, double>> info;
      if (absl::StatusOr<kernels::Workload> other = kernels::ParseWorkload(r.workload_key); other.ok()) {
        if (absl::StatusOr<std::string> v = kernels::TemplateVersion(t, *other); v.ok()) {
          info.emplace(*v, t.Flops(*other));
        }
      }
      it = current.emplace(r.workload_key, info).first;
    }
    if (!it->second || it->second->first != r.template_version) continue;
    double throughput = r.status == v1::MEASURE_STATUS_OK ? it->second->second / r.min_cost : 0.0;
    out.push_back({r.workload_key, r.config_index, throughput});
  }
  return out;
}

}  // namespace

absl::StatusOr<TuneReport> TuneTask(const kernels::Workload& workload, device_agents::DeviceBackend& backend,
                                    database::Database& db, const TuneOptions& options,
                                    const ProgressCallback& progress) {
  if (options.trials < 0) return absl::InvalidArgumentError("trials must be >= 0");
  if (options.batch_size < 1) return absl::InvalidArgumentError("batch size must be >= 1");
  if (!(options.timing_cutoff_factor == 0 || options.timing_cutoff_factor >= 1)) {
    return absl::InvalidArgumentError("the timing cutoff factor must be 0 (off) or >= 1");
  }
  const v1::Target& target = backend.target();
  const kernels::DeviceClass device_class =
      target.kind() == v1::DEVICE_KIND_CUDA ? kernels::DeviceClass::kCuda : kernels::DeviceClass::kCpu;
  const kernels::Template* tmpl = kernels::TemplateRegistry::Global().Find(workload.op, device_class);
  if (tmpl == nullptr) {
    return absl::NotFoundError(absl::StrCat("no ", std::string(kernels::DeviceClassName(device_class)), " template for operator ",
                                            workload.op));
  }
  absl::StatusOr<kernels::ConfigSpace> full = tmpl->Space(workload);
  if (!full.ok()) return full.status();
  // The strategy walks `search`: the space with options.pins applied, a
  // knob named "threads" limited to the device's cores, and "mma" to the
  // tensor cores the device has (warpgroup ones, mma=2, and the deeper
  // "stages" that path alone takes, where its features say wgmma).
  // Requests and records always carry indices of the full space.
  std::vector<std::pair<std::string, std::vector<kernels::KnobValue>>> allowed;
  for (const auto& [name, value] : options.pins) allowed.push_back({name, {value}});
  // Keeps the integer values of knob `name` that `fits` accepts, unless the
  // knob is pinned.
  auto limit = [&](const std::string& name, const std::function<bool(int64_t)>& fits) {
    const kernels::Knob* knob = full->FindKnob(name);
    if (knob == nullptr ||
        std::any_of(options.pins.begin(), options.pins.end(), [&](const auto& p) { return p.first == name; })) {
      return;
    }
    std::vector<kernels::KnobValue> fit;
    for (const kernels::KnobValue& v : knob->values) {
      if (const int64_t* n = std::get_if<int64_t>(&v); n && fits(*n)) fit.push_back(v);
    }
    if (!fit.empty() && fit.size() < knob->values.size()) allowed.push_back({name, fit});
  };
  if (const auto cores = target.limits().find("cores"); cores != target.limits().end()) {
    limit("threads", [&](int64_t n) { return n <= std::max<int64_t>(1, cores->second); });
  }
  if (std::find(target.features().begin(), target.features().end(), "wgmma") == target.features().end()) {
    limit("mma", [](int64_t n) { return n < 2; });
    limit("stages", [](int64_t n) { return n <= 2; });  // more are the warpgroup path's cp.async buffers
  }
  absl::StatusOr<kernels::ConfigSpace> pinned = allowed.empty() ? full : full->Restrict(allowed);
  if (!pinned.ok()) return pinned.status();
  const kernels::ConfigSpace& search = *pinned;
  absl::StatusOr<std::string> version = kernels::TemplateVersion(*tmpl, workload);
  if (!version.ok()) return version.status();

  const std::string target_json = TargetJson(target);
  if (absl::Status s = db.UpsertDevice({target.device_key(), DeviceKindName(target.kind()), target.arch(),
                                        target.model(), target_json, 0});
      !s.ok()) {
    return s;
  }

  TuneReport report;
  report.workload_key = workload.Key();
  report.device_key = target.device_key();
  report.template_version = *version;
  report.space_size = search.size();
  report.flops = tmpl->Flops(workload);

  absl::StatusOr<std::vector<uint64_t>> measured =
      db.MeasuredConfigs(report.workload_key, report.device_key, report.template_version);
  if (!measured.ok()) return measured.status();
  std::unordered_set<uint64_t> visited;  // search-space indices
  for (uint64_t i : *measured) {
    if (std::optional<uint64_t> j = search.FromParentIndex(i)) visited.insert(*j);
  }
  absl::StatusOr<std::vector<database::Record>> prior_ok =
      db.BestRecords(report.workload_key, report.device_key, std::numeric_limits<int>::max(), report.template_version);
  if (!prior_ok.ok()) return prior_ok.status();
  // Progress, the timing cutoff and the report count only configs of the
  // search space: with pins, the best of other pinned values (say, another
  // thread count) is not this run's best.
  double best_seconds = 0;
  for (const database::Record& r : *prior_ok) {
    if (search.FromParentIndex(r.config_index)) {
      best_seconds = r.min_cost;
      break;
    }
  }
  // A config of the full space moved into the search space: each pinned or
  // limited knob set to its first allowed value where the config's value is
  // not allowed.
  auto move_in = [&](const kernels::Config& c) -> std::optional<uint64_t> {
    std::vector<std::pair<std::string, kernels::KnobValue>> values;
    for (size_t k = 0; k < full->knobs().size(); ++k) {
      const kernels::Knob& knob = full->knobs()[k];
      kernels::KnobValue v = knob.values[c.choices[k]];
      for (const auto& [name, ok_values] : allowed) {
        if (name == knob.name && std::find(ok_values.begin(), ok_values.end(), v) == ok_values.end()) v = ok_values[0];
      }
      values.emplace_back(knob.name, v);
    }
    absl::StatusOr<kernels::Config> moved = full->FromValues(values);
    return moved.ok() ? search.FromParentIndex(moved->index) : std::nullopt;
  };
  std::vector<uint64_t> seeds;
  auto add_seed = [&](std::optional<uint64_t> j) {
    if (j && !visited.count(*j) && std::find(seeds.begin(), seeds.end(), *j) == seeds.end()) seeds.push_back(*j);
  };
  // The fastest configs measured outside the search space, moved into it:
  // with the threads knob pinned to 2, the best one-thread configs with two
  // threads. They are measured first, so a pinned run starts from what the
  // log knows instead of cold.
  constexpr size_t kMaxSeeds = 4;
  for (const database::Record& r : *prior_ok) {
    if (seeds.size() >= kMaxSeeds) break;
    if (!search.FromParentIndex(r.config_index)) add_seed(move_in(full->FromIndex(r.config_index)));
  }
  // Then the template's configs for this shape, chosen by rule.
  for (const kernels::Config& c : tmpl->SeedConfigs(workload, *full)) add_seed(move_in(c));

  StrategyContext context;
  context.tmpl = tmpl;
  context.workload = &workload;
  context.space = &search;
  context.seed = options.seed;
  if (options.objective != "rank" && options.objective != "reg") {
    return absl::InvalidArgumentError("objective must be rank or reg, got '" + options.objective + "'");
  }
  context.regression = options.objective == "reg";
  const bool learns = StrategyLearnsFromHistory(options.strategy);
  if (options.transfer && learns) {
    absl::StatusOr<std::vector<TransferRecord>> transfer = LoadTransferRecords(db, *tmpl, workload, report.device_key);
    if (!transfer.ok()) return transfer.status();
    context.transfer = std::move(*transfer);
  }
  if (absl::StatusOr<std::optional<database::ModelRow>> saved =
          learns ? db.LatestModel(std::string(tmpl->op()), report.device_key, cost_model::kFeatureVersion)
                 : std::optional<database::ModelRow>();
      saved.ok() && saved->has_value()) {
    context.saved_model = (*saved)->model;
  }
  absl::StatusOr<std::unique_ptr<SearchStrategy>> strategy = NewStrategy(options.strategy, context);
  if (!strategy.ok()) return strategy.status();
  // A resumed task starts from what the log already knows.
  if (!visited.empty()) {
    std::vector<std::pair<uint64_t, double>> prior;
    std::unordered_set<uint64_t> ok;
    for (const database::Record& r : *prior_ok) {
      if (std::optional<uint64_t> j = search.FromParentIndex(r.config_index)) {
        prior.emplace_back(*j, report.flops / r.min_cost);
        ok.insert(*j);
      }
    }
    for (uint64_t i : visited) {
      if (!ok.count(i)) prior.emplace_back(i, 0.0);
    }
    (*strategy)->Update(prior);
  }
  TuneProgress prog;
  prog.trials_total = options.trials;
  prog.best_gflops = best_seconds > 0 ? report.flops / best_seconds / 1e9 : 0;
  if (progress) progress(prog);

  // The default config is measured first when it lies in the search space.
  const uint64_t default_full = tmpl->DefaultConfig(workload, *full).index;
  const std::optional<uint64_t> default_index = search.FromParentIndex(default_full);
  v1::MeasureOptions measure = options.measure;
  if (measure.repeat() == 0) measure = DefaultMeasureOptions();
  const v1::Workload workload_proto = ToProto(workload);

  // The default config goes first; the strategy fills the rest of a batch.
  auto propose = [&](const std::unordered_set<uint64_t>& seen_before, int n) {
    std::vector<uint64_t> batch;
    if (default_index && !seen_before.count(*default_index)) batch.push_back(*default_index);
    for (uint64_t j : seeds) {
      if (static_cast<int>(batch.size()) < n && !seen_before.count(j) &&
          std::find(batch.begin(), batch.end(), j) == batch.end()) {
        batch.push_back(j);
      }
    }
    std::unordered_set<uint64_t> seen = seen_before;
    seen.insert(batch.begin(), batch.end());
    for (uint64_t i : (*strategy)->Propose(n - static_cast<int>(batch.size()), seen)) batch.push_back(i);
    return batch;
  };
  auto make_requests = [&](const std::vector<uint64_t>& batch) {
    std::vector<v1::MeasureRequest> requests(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      v1::MeasureRequest& r = requests[i];
      *r.mutable_workload() = workload_proto;
      r.set_template_name(std::string(tmpl->op()));
      r.set_template_version(report.template_version);
      SetKnobs(*full, search.ToParentIndex(batch[i]), r.mutable_config());
      *r.mutable_options() = measure;
    }
    return requests;
  };
  // Runs on the thread that delivers results: the backend's caller, or a
  // dispatcher thread for farm agents. Touches only `prog` and
  // `best_seconds`, which the loop reads after the batch completed.
  auto on_result = [&](size_t, const v1::MeasureResult& res) {
    ++prog.trials_done;
    if (res.status() != v1::MEASURE_STATUS_OK) {
      ++prog.errors;
    } else if (double s = Fastest(res.costs()); s > 0 && (best_seconds == 0 || s < best_seconds)) {
      best_seconds = s;
      prog.best_gflops = report.flops / s / 1e9;
    }
    if (progress) progress(prog);
  };
  auto room = [&](int planned) { return std::min(options.batch_size, options.trials - report.trials_run - planned); };
  auto stopped = [&] { return options.stop != nullptr && options.stop->load(); };

  // The best few configs of the searched space measured again (see
  // TuneOptions::confirm), once the search is over. Their fastest runs only
  // get faster, so the leader afterwards is one of them unless they all
  // failed their checks again; then the best few are measured again, up to
  // kConfirmPasses times, until the leader is one that was just measured
  // again.
  auto confirm_best = [&]() -> absl::Status {
    if (options.confirm < 2 || options.backend_commits || report.trials_run == 0 || report.interrupted) {
      return absl::OkStatus();
    }
    measure.set_timing_cutoff_s(0);
    std::set<uint64_t> confirmed, last;
    for (int pass = 0; pass < kConfirmPasses; ++pass) {
      absl::StatusOr<std::vector<database::Record>> top = db.BestRecords(
          report.workload_key, report.device_key, std::numeric_limits<int>::max(), report.template_version);
      if (!top.ok()) return top.status();
      std::vector<uint64_t> again;
      for (const database::Record& r : *top) {
        if (static_cast<int>(again.size()) == options.confirm) break;
        if (std::optional<uint64_t> j = search.FromParentIndex(r.config_index)) again.push_back(*j);
      }
      if (again.size() < 2 || last.count(again.front())) break;
      spdlog::info("{}: measuring the best {} configs again, {} rounds", report.workload_key, again.size(),
                   kConfirmRounds);
      // Round after round (A B C, A B C, ...) in one batch, which builds
      // each kernel once: a slow or fast spell of the machine, often
      // seconds long, falls on every config of a round alike.
      std::vector<uint64_t> rounds;
      for (int r = 0; r < kConfirmRounds; ++r) rounds.insert(rounds.end(), again.begin(), again.end());
      const std::vector<v1::MeasureRequest> requests = make_requests(rounds);
      absl::StatusOr<std::vector<v1::MeasureResult>> results = backend.Measure(requests, {});
      if (!results.ok()) {
        // The search's records are in the log; only the second opinion is lost.
        spdlog::warn("{}: could not measure the best configs again: {}", report.workload_key,
                     std::string(results.status().message()));
        break;
      }
      std::vector<database::RecordRow> rows;
      for (size_t i = 0; i < requests.size(); ++i) {
        rows.push_back(MakeRecordRow(requests[i], (*results)[i], target, target_json, options.job_id));
        if ((*results)[i].status() != v1::MEASURE_STATUS_OK) {
          spdlog::warn("{}: config {} failed when measured again ({}): {}", report.workload_key,
                       requests[i].config().index(), v1::MeasureStatus_Name((*results)[i].status()),
                       (*results)[i].error());
        }
      }
      if (absl::StatusOr<int> merged = db.MergeRecords(rows); !merged.ok()) return merged.status();
      last = std::set<uint64_t>(again.begin(), again.end());
      confirmed.insert(again.begin(), again.end());
    }
    report.confirmed = static_cast<int>(confirmed.size());
    return absl::OkStatus();
  };

  int since_improvement = 0;
  auto started = std::chrono::steady_clock::now();
  std::vector<uint64_t> batch;
  if (room(0) > 0 && !stopped()) batch = propose(visited, room(0));
  if (stopped()) report.interrupted = true;
  if (batch.empty() && room(0) > 0 && !report.interrupted) report.exhausted = true;
  std::vector<std::pair<uint64_t, double>> pending_scores;  // measured, not yet given to the strategy
  while (!batch.empty()) {
    measure.set_timing_cutoff_s(options.timing_cutoff_factor > 0 && best_seconds > 0
                                    ? options.timing_cutoff_factor * best_seconds
                                    : 0);
    const std::vector<v1::MeasureRequest> requests = make_requests(batch);
    const double best_before = best_seconds;
    std::vector<uint64_t> next;
    bool next_ready = false;
    absl::StatusOr<std::vector<v1::MeasureResult>> results;
    if (options.pipeline) {
      // While the batch is measured, the strategy learns from the previous
      // one and prepares the next, so remote agents never wait on the model.
      std::future<absl::StatusOr<std::vector<v1::MeasureResult>>> inflight =
          std::async(std::launch::async, [&] { return backend.Measure(requests, on_result); });
      if (!pending_scores.empty()) (*strategy)->Update(pending_scores);
      pending_scores.clear();
      const int n = room(static_cast<int>(batch.size()));
      if (n > 0 && !stopped()) {
        std::unordered_set<uint64_t> seen = visited;
        seen.insert(batch.begin(), batch.end());
        next = propose(seen, n);
        next_ready = true;
      }
      results = inflight.get();
    } else {
      results = backend.Measure(requests, on_result);
    }
    if (!results.ok()) return results.status();

    std::vector<database::RecordRow> rows;
    std::vector<std::pair<uint64_t, double>> scores;
    for (size_t i = 0; i < batch.size(); ++i) {
      const v1::MeasureResult& res = (*results)[i];
      const uint64_t index = requests[i].config().index();
      if (!options.backend_commits) rows.push_back(MakeRecordRow(requests[i], res, target, target_json, options.job_id));
      double s = res.status() == v1::MEASURE_STATUS_OK ? Fastest(res.costs()) : 0;
      scores.emplace_back(batch[i], s > 0 ? report.flops / s : 0);
      if (index == default_full) {
        if (res.status() == v1::MEASURE_STATUS_OK) {
          report.default_seconds = s;
        } else {
          report.default_error = res.error();
        }
      }
      if (res.status() != v1::MEASURE_STATUS_OK) {
        ++report.errors;
        spdlog::debug("config {} failed ({}): {}", index, v1::MeasureStatus_Name(res.status()), res.error());
      }
      visited.insert(batch[i]);
    }
    if (!options.backend_commits) {
      if (absl::StatusOr<int> added = db.AddRecords(rows); !added.ok()) return added.status();
    }
    if (options.pipeline) {
      pending_scores = std::move(scores);
    } else {
      (*strategy)->Update(scores);
    }
    report.trials_run += static_cast<int>(batch.size());

    since_improvement = best_seconds < best_before || best_before == 0 ? 0 : since_improvement + static_cast<int>(batch.size());
    if (options.early_stopping > 0 && since_improvement >= options.early_stopping) {
      report.early_stopped = true;
      break;
    }
    if (stopped()) {
      report.interrupted = room(0) > 0;
      break;
    }
    if (!next_ready && room(0) > 0) next = propose(visited, room(0));
    if (next.empty() && room(0) > 0) report.exhausted = true;
    batch = std::move(next);
  }
  if (!pending_scores.empty()) (*strategy)->Update(pending_scores);
  if (std::string model = (*strategy)->SavedModel(); !model.empty()) {
    database::ModelRow row{std::string(tmpl->op()), report.device_key, report.workload_key,
                           cost_model::kFeatureVersion, static_cast<int64_t>(visited.size()), 0, std::move(model)};
    if (absl::Status s = db.SaveModel(row); !s.ok()) spdlog::warn("could not store the cost model: {}", std::string(s.message()));
  }
  if (absl::Status s = confirm_best(); !s.ok()) return s;
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  spdlog::info("{}: {} trials ({} failed) in {:.1f} s on {}", report.workload_key, report.trials_run, report.errors,
               elapsed, report.device_key);

  absl::StatusOr<std::vector<database::Record>> best =
      db.BestRecords(report.workload_key, report.device_key, std::numeric_limits<int>::max(), report.template_version);
  if (!best.ok()) return best.status();
  for (const database::Record& r : *best) {
    if (search.FromParentIndex(r.config_index)) {
      report.best = r;
      report.best_config = full->ToString(full->FromIndex(r.config_index));
      break;
    }
  }
  if (!report.default_seconds && !report.default_error) {
    absl::StatusOr<std::optional<database::Record>> d =
        db.FindRecord(report.workload_key, report.device_key, report.template_version, default_full);
    if (d.ok() && d->has_value()) {
      if ((*d)->status == 0) {
        report.default_seconds = (*d)->min_cost;
      } else {
        report.default_error = (*d)->error;
      }
    }
  }
  return report;
}

}  // namespace tunefarm::tuner
