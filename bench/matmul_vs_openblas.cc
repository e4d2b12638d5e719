// Tunes one matmul on the local CPU with a fixed trial budget, then times the
// best kernel and OpenBLAS cblas_sgemm (one thread) alternately in this
// process. Prints GFLOP/s of both, their ratio, and the median wall time per
// trial (generate + compile + check + time, amortised over each batch).
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>

#include "CLI/CLI.hpp"
#include "bench_util.h"
#include "openblas_core.h"
#include "spdlog/spdlog.h"
#include "tunefarm/database/database.h"
#include "tunefarm/device_agents/backend.h"
#include "tunefarm/device_agents/cpu_build.h"
#include "tunefarm/kernels/template.h"
#include "tunefarm/tuner/tune.h"

using tunefarm::bench::Clock;
using tunefarm::bench::Median;
using tunefarm::bench::Seconds;

int main(int argc, char** argv) {
  const std::string blas_core = tunefarm::bench::EnsureOpenBlasCore(argv);
  std::string workload_text = "matmul(M=1024,N=1024,K=1024)";
  std::string db_path, strategy = "random";
  int trials = 500, batch = 16, rounds = 21;
  uint64_t seed = 1;
  CLI::App app{"tunefarm tuned matmul vs OpenBLAS cblas_sgemm, single-threaded"};
  app.add_option("--workload", workload_text, "matmul workload")->default_val(workload_text);
  app.add_option("--trials", trials, "tuning budget")->default_val(trials);
  app.add_option("--batch-size", batch, "candidates per batch")->default_val(batch);
  app.add_option("--strategy", strategy, "search strategy")->default_val(strategy);
  app.add_option("--seed", seed, "strategy seed")->default_val(seed);
  app.add_option("--rounds", rounds, "alternating timing rounds")->default_val(rounds);
  app.add_option("--db", db_path, "tuning log (default: a fresh temporary file)");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);

  auto w = tunefarm::kernels::ParseWorkload(workload_text);
  if (!w.ok() || w->op != "matmul") {
    std::fprintf(stderr, "bad workload: %s\n", w.ok() ? "not a matmul" : std::string(w.status().message()).c_str());
    return 2;
  }
  const int64_t M = w->param("M"), N = w->param("N"), K = w->param("K");
  const double flops = 2.0 * M * N * K;
  std::filesystem::path tmp = std::filesystem::temp_directory_path() / ("tunefarm-bench-" + std::to_string(getpid()));
  std::filesystem::create_directories(tmp);
  if (db_path.empty()) db_path = (tmp / "log.db").string();

  auto backend = tunefarm::device_agents::NewBackend("cpu");
  if (!backend.ok()) return std::fprintf(stderr, "%s\n", std::string(backend.status().message()).c_str()), 1;
  auto db = tunefarm::database::Database::Open(db_path);
  if (!db.ok()) return std::fprintf(stderr, "%s\n", std::string(db.status().message()).c_str()), 1;

  // --- tune ---
  tunefarm::tuner::TuneOptions opt;
  opt.trials = trials;
  opt.batch_size = batch;
  opt.seed = seed;
  opt.strategy = strategy;
  opt.pins = {{"threads", int64_t{1}}};  // against single-threaded OpenBLAS
  std::vector<Clock::time_point> done;  // completion time of each trial
  const Clock::time_point t0 = Clock::now();
  int last_print = -1;
  auto report = tunefarm::tuner::TuneTask(*w, **backend, **db, opt, [&](const tunefarm::tuner::TuneProgress& p) {
    while (static_cast<int>(done.size()) < p.trials_done) done.push_back(Clock::now());
    if (p.trials_done / 50 != last_print) {
      last_print = p.trials_done / 50;
      std::fprintf(stderr, "  %4d/%d trials, best %.1f GFLOP/s, %d errors, %.0f s\n", p.trials_done, p.trials_total,
                   p.best_gflops, p.errors, Seconds(t0, Clock::now()));
    }
  });
  const double tune_seconds = Seconds(t0, Clock::now());
  if (!report.ok()) return std::fprintf(stderr, "%s\n", std::string(report.status().message()).c_str()), 1;
  if (!report->best) return std::fprintf(stderr, "no candidate passed its check\n"), 1;

  // Wall time per trial, amortised over each batch (candidates of a batch
  // compile in parallel, then run one at a time).
  std::vector<double> per_trial;
  Clock::time_point prev = t0;
  for (size_t i = 0; i < done.size(); i += batch) {
    size_t last = std::min(done.size(), i + batch) - 1;
    per_trial.push_back(Seconds(prev, done[last]) / static_cast<double>(last - i + 1));
    prev = done[last];
  }

  // --- build the best config and time it against OpenBLAS ---
  std::string so = (tmp / "best.so").string();
  auto kernel = tunefarm::bench::BuildAndLoad(*w, report->best->config_index, so);
  if (!kernel.ok()) return std::fprintf(stderr, "%s\n", std::string(kernel.status().message()).c_str()), 1;

  openblas_set_num_threads(1);
  tunefarm::bench::AlignedFloats a(M * K), b(K * N), c1(M * N), c2(M * N);
  float *A = a.data(), *B = b.data(), *C1 = c1.data(), *C2 = c2.data();
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1, 1);
  for (int64_t i = 0; i < M * K; ++i) A[i] = dist(rng);
  for (int64_t i = 0; i < K * N; ++i) B[i] = dist(rng);
  void* args[3] = {A, B, C1};
  auto run_tuned = [&] { (*kernel)(args); };
  auto run_blas = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N, 0.0f, C2, N);
  };
  run_tuned();
  run_blas();
  double max_err = 0;
  for (int64_t i = 0; i < M * N; ++i) max_err = std::max(max_err, static_cast<double>(std::fabs(C1[i] - C2[i])));
  std::vector<double> tuned_gf, blas_gf;
  for (int r = 0; r < rounds; ++r) {
    tuned_gf.push_back(flops / tunefarm::bench::TimePerCall(run_tuned) / 1e9);
    blas_gf.push_back(flops / tunefarm::bench::TimePerCall(run_blas) / 1e9);
  }
  const double tuned = Median(tuned_gf), blas = Median(blas_gf), trial = Median(per_trial);
  const double ratio = tuned / blas;

  const auto& t = (*backend)->target();
  std::printf("workload          %s\n", report->workload_key.c_str());
  std::printf("machine           %s (%s), %lld cores, key %s\n", t.model().c_str(), t.arch().c_str(),
              static_cast<long long>(t.limits().at("cores")), t.device_key().c_str());
  std::printf("vendor            %s\n", blas_core.c_str());
  std::printf("tuning            %d trials (%d failed), strategy %s, batch %d, %.1f s\n", report->trials_run,
              report->errors, strategy.c_str(), batch, tune_seconds);
  std::printf("best config       %s\n", report->best_config.c_str());
  std::printf("max |tuned-blas|  %.3g\n", max_err);
  std::printf("tunefarm          %.2f GFLOP/s (median of %d)\n", tuned, rounds);
  std::printf("OpenBLAS 1 thread %.2f GFLOP/s (median of %d)\n", blas, rounds);
  std::printf("ratio             %.3f   (target >= 0.70: %s)\n", ratio, ratio >= 0.7 ? "met" : "MISSED");
  std::printf("trial wall time   median %.3f s, mean %.3f s   (target median <= 0.5 s: %s)\n", trial,
              tune_seconds / report->trials_run, trial <= 0.5 ? "met" : "MISSED");
  std::filesystem::remove_all(tmp);
  return 0;
}
