// How many trials each search strategy needs on recorded spaces (answered by
// the replay device), how much transfer learning saves, how fast the cost
// model trains and scores, and one live xgb-vs-random run on the CPU.
//
// Record the spaces first (bench/record_spaces.sh), then:
//   build/bin/bench_search_efficiency --data build/bench-data
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <numeric>

#include "CLI/CLI.hpp"
#include "spdlog/spdlog.h"
#include "tunefarm/cost_model/features.h"
#include "tunefarm/cost_model/xgboost_model.h"
#include "tunefarm/device_agents/backend.h"
#include "tunefarm/kernels/template.h"
#include "tunefarm/tuner/replay_eval.h"
#include "tunefarm/tuner/tune.h"

namespace {

using namespace tunefarm;  // NOLINT
using Clock = std::chrono::steady_clock;

// Must match bench/record_spaces.sh.
const std::vector<std::pair<std::string, kernels::KnobValue>> kPins = {
    {"compiler", std::string("clang")}, {"cflags", std::string("-O3")}, {"order", std::string("jc,pc,ic")},
    {"inner", std::string("jr,ir")},    {"nc", int64_t{1024}},          {"mc", int64_t{96}},
    {"unroll_k", int64_t{4}},           {"pack_a", int64_t{1}},          {"threads", int64_t{1}},
    {"parallel", std::string("rows")}};
const char* kWorkloads[] = {"matmul(M=128,N=128,K=128)", "matmul(M=192,N=256,K=96)", "matmul(M=77,N=129,K=61)"};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n == 0 ? 0 : (n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2);
}
double Mean(const std::vector<double>& v) { return v.empty() ? 0 : std::accumulate(v.begin(), v.end(), 0.0) / v.size(); }
double Seconds(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

struct Stats {
  std::vector<double> to90, to95;
  int reached95 = 0;
};

// A run that never gets there counts as max_trials + 1 (a lower bound).
Stats Collect(const std::vector<tuner::ReplayRun>& runs, int max_trials) {
  Stats s;
  for (const auto& r : runs) {
    s.to90.push_back(r.trials_to_90 < 0 ? max_trials + 1 : r.trials_to_90);
    s.to95.push_back(r.trials_to_95 < 0 ? max_trials + 1 : r.trials_to_95);
    s.reached95 += r.trials_to_95 >= 0;
  }
  return s;
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string data = "build/bench-data";
  int seeds = 20, max_trials = 400, live_trials = 100, batch = 8;
  std::string objective = "reg";
  CLI::App app{"search efficiency of tunefarm's strategies on recorded spaces"};
  app.add_option("--data", data, "directory with space1.db .. space3.db from bench/record_spaces.sh")
      ->default_val(data);
  app.add_option("--seeds", seeds, "seeds per strategy")->default_val(seeds);
  app.add_option("--batch-size", batch, "candidates per batch")->default_val(batch);
  app.add_option("--objective", objective, "xgb cost model: rank or reg")->default_val(objective);
  app.add_option("--max-trials", max_trials, "trial budget per replayed run")->default_val(max_trials);
  app.add_option("--live-trials", live_trials, "budget of the live 1024^3 run per strategy (0: skip)")
      ->default_val(live_trials);
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);  // thousands of replayed runs would log each

  std::vector<tuner::RecordedSpace> spaces;
  for (int i = 0; i < 3; ++i) {
    auto w = kernels::ParseWorkload(kWorkloads[i]);
    auto s = tuner::LoadRecordedSpace(data + "/space" + std::to_string(i + 1) + ".db", *w, kPins);
    if (!s.ok()) return Fail(s.status());
    std::printf("space %d: %s on %s, %llu points, %lld recorded, best %.2f GFLOP/s\n", i + 1,
                s->workload.Key().c_str(), s->device_key.c_str(), static_cast<unsigned long long>(s->size),
                static_cast<long long>(s->recorded), s->best_throughput / 1e9);
    spaces.push_back(std::move(*s));
  }

  auto runs = [&](const tuner::RecordedSpace& s, const std::string& strategy,
                  const std::vector<database::Record>& transfer) -> absl::StatusOr<Stats> {
    std::vector<tuner::ReplayRun> out;
    for (int seed = 0; seed < seeds; ++seed) {
      tuner::ReplayRunOptions o;
      o.strategy = strategy;
      o.seed = static_cast<uint64_t>(seed);
      o.max_trials = max_trials;
      o.batch_size = batch;
      o.objective = objective;
      o.transfer = transfer;
      auto r = tuner::RunOnRecordedSpace(s, o);
      if (!r.ok()) return r.status();
      out.push_back(*r);
    }
    return Collect(out, max_trials);
  };

  // --- trials to 90% / 95% of the best known, per strategy ---
  std::map<std::string, std::vector<double>> mean95_by_strategy;
  for (const auto& s : spaces) {
    std::printf("\n%s (%d seeds, budget %d; a run that never gets there counts as %d)\n", s.workload.Key().c_str(),
                seeds, max_trials, max_trials + 1);
    std::printf("  %-8s %14s %14s %14s %14s %9s\n", "strategy", "median to 90%", "mean to 90%", "median to 95%",
                "mean to 95%", "reached");
    std::map<std::string, Stats> by;
    for (const char* strategy : {"random", "grid", "ga", "xgb"}) {
      auto t0 = Clock::now();
      auto st = runs(s, strategy, {});
      if (!st.ok()) return Fail(st.status());
      by[strategy] = *st;
      mean95_by_strategy[strategy].push_back(Mean(st->to95));
      std::printf("  %-8s %14.1f %14.1f %14.1f %14.1f %6d/%d   (%.1f s)\n", strategy, Median(st->to90),
                  Mean(st->to90), Median(st->to95), Mean(st->to95), st->reached95, seeds, Seconds(t0));
    }
    std::printf("  xgb/random trials to 95%%: mean %.3f, median %.3f   (target <= 0.333: %s)\n",
                Mean(by["xgb"].to95) / Mean(by["random"].to95), Median(by["xgb"].to95) / Median(by["random"].to95),
                Mean(by["xgb"].to95) / Mean(by["random"].to95) <= 1.0 / 3 ? "met" : "MISSED");
  }

  {
    double x = 0, r = 0;
    for (size_t i = 0; i < spaces.size(); ++i) {
      x += mean95_by_strategy["xgb"][i];
      r += mean95_by_strategy["random"][i];
    }
    std::printf("\nall spaces: xgb/random mean trials to 95%% = %.3f   (target <= 0.333: %s)\n", x / r,
                x / r <= 1.0 / 3 ? "met" : "MISSED");
  }

  // --- transfer: space 1's records warm-start spaces 2 and 3 ---
  std::printf("\ntransfer learning (xgb, records of %s as history)\n", spaces[0].workload.Key().c_str());
  auto src = database::Database::Open(spaces[0].db_path);
  if (!src.ok()) return Fail(src.status());
  for (int i = 1; i < 3; ++i) {
    auto transfer = (*src)->TemplateRecords("matmul", spaces[0].device_key, spaces[i].workload.Key(), 5000);
    if (!transfer.ok()) return Fail(transfer.status());
    auto cold = runs(spaces[i], "xgb", {});
    auto warm = runs(spaces[i], "xgb", *transfer);
    if (!cold.ok() || !warm.ok()) return Fail(cold.ok() ? warm.status() : cold.status());
    double reduction = 1 - Mean(warm->to95) / Mean(cold->to95);
    std::printf("  %-28s mean to 95%%: %.1f without, %.1f with %zu transferred records: %.0f%% fewer"
                "   (target >= 30%%: %s)\n",
                spaces[i].workload.Key().c_str(), Mean(cold->to95), Mean(warm->to95), transfer->size(),
                100 * reduction, reduction >= 0.3 ? "met" : "MISSED");
  }

  // --- the cost model's own speed ---
  {
    const kernels::Template& t = *kernels::TemplateRegistry::Global().Find("matmul");
    std::vector<float> x, labels;
    size_t dim = 0;
    auto t_features = Clock::now();
    for (const auto& s : spaces) {
      auto db = database::Database::Open(s.db_path);
      if (!db.ok()) return Fail(db.status());
      auto records = (*db)->TemplateRecords("matmul", s.device_key, "", 5000);
      if (!records.ok()) return Fail(records.status());
      kernels::ConfigSpace space = *t.Space(s.workload);
      dim = cost_model::FeatureCount(space);
      for (const auto& r : *records) {
        kernels::Config c = space.FromIndex(r.config_index);
        auto k = t.Instantiate(s.workload, space, c);
        auto f = cost_model::ExtractFeatures(k->func, space, c);
        x.insert(x.end(), f.begin(), f.end());
        labels.push_back(r.status == 0 ? static_cast<float>(1.0 / r.min_cost) : 0.0f);
      }
    }
    const size_t rows = std::min<size_t>(5000, labels.size());
    const double extract_rate = static_cast<double>(labels.size()) / Seconds(t_features);
    x.resize(rows * dim);
    labels.resize(rows);
    float top = *std::max_element(labels.begin(), labels.end());
    for (float& l : labels) l /= top;
    cost_model::XgbParams params;
    params.nthread = 1;
    auto t_train = Clock::now();
    auto model = cost_model::XgbModel::Train({x, rows, dim}, labels, {}, params);
    const double train_s = Seconds(t_train);
    if (!model.ok()) return Fail(model.status());
    std::vector<float> big;
    const size_t n = 100000;
    big.reserve(n * dim);
    for (size_t i = 0; i < n; ++i) big.insert(big.end(), x.begin() + (i % rows) * dim, x.begin() + (i % rows + 1) * dim);
    auto t_pred = Clock::now();
    auto pred = model->Predict({big, n, dim});
    const double pred_s = Seconds(t_pred);
    if (!pred.ok()) return Fail(pred.status());
    std::printf("\ncost model (%zu features, one thread)\n", dim);
    std::printf("  training on %zu records: %.2f s   (target < 2 s: %s)\n", rows, train_s,
                train_s < 2 ? "met" : "MISSED");
    std::printf("  scoring: %.0f candidates/s   (target >= 100,000: %s)\n", n / pred_s,
                n / pred_s >= 1e5 ? "met" : "MISSED");
    std::printf("  feature extraction (lowering + features): %.0f candidates/s\n", extract_rate);
  }

  // --- live: xgb vs random on the real CPU, same budget ---
  if (live_trials > 0) {
    auto w = kernels::ParseWorkload("matmul(M=1024,N=1024,K=1024)");
    std::printf("\nlive run on this CPU: %s, %d trials each, one thread, no transfer\n", w->Key().c_str(), live_trials);
    for (const char* strategy : {"random", "xgb"}) {
      auto backend = device_agents::NewBackend("cpu");
      if (!backend.ok()) return Fail(backend.status());
      auto db = database::Database::Open(":memory:");
      tuner::TuneOptions o;
      o.strategy = strategy;
      o.trials = live_trials;
      o.transfer = false;
      o.pins = {{"threads", int64_t{1}}};  // single-threaded, like the recorded spaces
      auto t0 = Clock::now();
      auto r = tuner::TuneTask(*w, **backend, **db, o);
      if (!r.ok()) return Fail(r.status());
      std::printf("  %-7s best %.2f GFLOP/s  (%s)  %.0f s\n", strategy,
                  r->best ? r->flops / r->best->min_cost / 1e9 : 0.0, r->best_config.c_str(), Seconds(t0));
    }
  }
  return 0;
}
