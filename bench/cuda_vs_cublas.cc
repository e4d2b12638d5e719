// Tunes matmul on an NVIDIA GPU with the CUDA backend, then times the tuned
// kernel and cuBLAS (loaded with dlopen) in this process on the same
// buffers, alternating, and prints TFLOP/s and the ratio: FP32 workloads
// against cuBLAS's pedantic FP32 SGEMM, tf32=1 workloads (tensor cores
// allowed) against cuBLAS's TF32 tensor-core SGEMM. Without a GPU it says
// why and exits 1.
#include <dlfcn.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench_util.h"
#include "spdlog/spdlog.h"
#include "tunefarm/database/database.h"
#include "tunefarm/device_agents/backend.h"
#include "tunefarm/device_agents/cuda_driver.h"
#include "tunefarm/device_agents/nvrtc.h"
#include "tunefarm/kernels/codegen_cuda.h"
#include "tunefarm/kernels/template.h"
#include "tunefarm/tuner/tune.h"

namespace {

namespace tb = tunefarm::bench;
using tunefarm::device_agents::CudaDriver;

// The slice of cublas_api.h used here.
struct Cublas {
  using Handle = void*;
  int (*Create)(Handle*) = nullptr;
  int (*Destroy)(Handle) = nullptr;
  int (*SetMathMode)(Handle, int) = nullptr;
  int (*Sgemm)(Handle, int, int, int, int, int, const float*, const float*, int, const float*, int, const float*,
               float*, int) = nullptr;
  static constexpr int kOpN = 0, kOpT = 1;
  static constexpr int kPedanticMath = 2, kTf32TensorOpMath = 3;
  Handle handle = nullptr;
  std::string path;
};

std::unique_ptr<Cublas> LoadCublas(const std::string& hint) {
  std::vector<std::string> tried;
  if (!hint.empty()) tried.push_back(hint);
  for (const char* n : {"libcublas.so", "libcublas.so.13", "libcublas.so.12"}) tried.emplace_back(n);
  for (const char* d : {"/usr/local/cuda/lib64"}) {
    for (const char* n : {"libcublas.so.13", "libcublas.so.12"}) tried.push_back(absl::StrCat(d, "/", n));
  }
  for (const std::string& p : tried) {
    void* lib = dlopen(p.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (lib == nullptr) continue;
    auto c = std::make_unique<Cublas>();
    c->path = p;
    c->Create = reinterpret_cast<decltype(c->Create)>(dlsym(lib, "cublasCreate_v2"));
    c->Destroy = reinterpret_cast<decltype(c->Destroy)>(dlsym(lib, "cublasDestroy_v2"));
    c->SetMathMode = reinterpret_cast<decltype(c->SetMathMode)>(dlsym(lib, "cublasSetMathMode"));
    c->Sgemm = reinterpret_cast<decltype(c->Sgemm)>(dlsym(lib, "cublasSgemm_v2"));
    if (c->Create && c->Destroy && c->SetMathMode && c->Sgemm && c->Create(&c->handle) == 0) return c;
  }
  std::fprintf(stderr, "cuBLAS not found (tried %zu paths; give one with --cublas)\n", tried.size());
  return nullptr;
}

// A workload and the cuBLAS mode it is compared with: pedantic FP32 for
// FP32 workloads, TF32 tensor cores for tf32=1 ones (whose space has the
// tensor-core path).
struct Case {
  const char* text;
  bool tf32;
  double target;  // the ratio to reach on an H100
};
constexpr Case kCases[] = {
    {"matmul(M=4096,N=4096,K=4096)", false, 0.8},
    {"matmul(M=1024,N=1024,K=1024)", false, 0},
    {"matmul(M=128,N=3072,K=768)", false, 1.0},
    {"matmul(M=4096,N=4096,K=4096,tf32=1)", true, 0.6},
    {"matmul(M=1024,N=1024,K=1024,tf32=1)", true, 0},
    {"matmul(M=128,N=3072,K=768,tf32=1)", true, 0},
};

struct Row {
  Case c;
  std::string config;
  double tuned = 0, cublas = 0;  // TFLOP/s
  double rel_err = 0, tune_s = 0, s_per_trial = 0;
  int trials = 0;
};

}  // namespace

int main(int argc, char** argv) {
  int trials = 200, batch = 32, rounds = 11;
  std::string only, db_dir, cublas_path;
  uint64_t seed = 1;
  CLI::App app{"tunefarm tuned CUDA matmul vs cuBLAS"};
  app.add_option("--trials", trials, "tuning budget per workload")->default_val(trials);
  app.add_option("--batch-size", batch, "candidates compiled in parallel per batch")->default_val(batch);
  app.add_option("--seed", seed, "strategy seed")->default_val(seed);
  app.add_option("--rounds", rounds, "alternating timing rounds")->default_val(rounds);
  app.add_option("--only", only, "run only workloads whose text contains this");
  app.add_option("--db-dir", db_dir, "keep the tuning log here (log.db; default: temporary)");
  app.add_option("--cublas", cublas_path, "path of libcublas.so (default: the loader's search path)");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);
  if (db_dir.empty()) db_dir = (std::filesystem::temp_directory_path() / ("tunefarm-cublas-" + std::to_string(getpid()))).string();
  std::filesystem::create_directories(db_dir);

  auto backend = tunefarm::device_agents::NewBackend("cuda");
  if (!backend.ok()) return std::fprintf(stderr, "no CUDA device: %s\n", std::string(backend.status().message()).c_str()), 1;
  const auto& target = (*backend)->target();
  auto driver = CudaDriver::Open(0);
  auto nvrtc = tunefarm::device_agents::Nvrtc::Load();
  if (!driver.ok() || !nvrtc.ok()) return std::fprintf(stderr, "CUDA driver or NVRTC missing\n"), 1;
  std::unique_ptr<Cublas> cublas = LoadCublas(cublas_path);
  if (!cublas) return 1;
  auto db = tunefarm::database::Database::Open(absl::StrCat(db_dir, "/log.db"));
  if (!db.ok()) return std::fprintf(stderr, "%s\n", std::string(db.status().message()).c_str()), 1;

  std::vector<Row> rows;
  for (const Case& cs : kCases) {
    const char* text = cs.text;
    if (!only.empty() && std::string(text).find(only) == std::string::npos) continue;
    auto w = tunefarm::kernels::ParseWorkload(text);
    const auto& t = *tunefarm::kernels::TemplateRegistry::Global().Find(w->op, tunefarm::kernels::DeviceClass::kCuda);
    std::fprintf(stderr, "tuning %s (%d trials)\n", text, trials);
    tunefarm::tuner::TuneOptions opt;
    opt.trials = trials;
    opt.batch_size = batch;
    opt.seed = seed;
    std::vector<std::pair<int, tb::Clock::time_point>> marks = {{0, tb::Clock::now()}};
    auto progress = [&](const tunefarm::tuner::TuneProgress& p) {
      marks.emplace_back(p.trials_done, tb::Clock::now());
      std::fprintf(stderr, "  %d/%d trials, best %.0f GFLOP/s\n", p.trials_done, p.trials_total, p.best_gflops);
    };
    auto report = tunefarm::tuner::TuneTask(*w, **backend, **db, opt, progress);
    if (!report.ok() || !report->best) {
      std::fprintf(stderr, "  tuning failed: %s\n",
                   report.ok() ? "no candidate passed its check" : std::string(report.status().message()).c_str());
      return 1;
    }
    Row row;
    row.c = cs;
    row.config = report->best_config;
    row.tune_s = tb::Seconds(marks.front().second, marks.back().second);
    std::vector<double> per_trial;
    for (size_t i = 1; i < marks.size(); ++i) {
      const int n = marks[i].first - marks[i - 1].first;
      if (n > 0) per_trial.push_back(tb::Seconds(marks[i - 1].second, marks[i].second) / n);
    }
    row.s_per_trial = per_trial.empty() ? 0 : tb::Median(per_trial);
    row.trials = marks.back().first;

    // The best config, built again here.
    auto space = t.Space(*w);
    auto kernel = t.Instantiate(*w, *space, space->FromIndex(report->best->config_index));
    auto src = tunefarm::kernels::GenerateCuda(kernel->func);
    auto cubin = (*nvrtc)->CompileToCubin(src->source, "best.cu", src->CompileArch(target.arch()));
    if (!cubin.ok()) return std::fprintf(stderr, "%s\n", std::string(cubin.status().message()).c_str()), 1;
    auto module = (*driver)->LoadModule(*cubin, src->entry);
    if (!module.ok()) return std::fprintf(stderr, "%s\n", std::string(module.status().message()).c_str()), 1;
    if (src->dynamic_shared_bytes > 0) {
      if (absl::Status s = (*driver)->AllowDynamicShared(**module, src->dynamic_shared_bytes); !s.ok()) {
        return std::fprintf(stderr, "%s\n", std::string(s.message()).c_str()), 1;
      }
    }

    const int64_t M = w->param("M"), N = w->param("N"), K = w->param("K");
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<float> a(M * K), b(K * N);
    for (float& x : a) x = u(rng);
    for (float& x : b) x = u(rng);
    auto A = (*driver)->Alloc(a.size() * 4), B = (*driver)->Alloc(b.size() * 4), C = (*driver)->Alloc(M * N * 4),
         R = (*driver)->Alloc(M * N * 4);
    if (!A.ok() || !B.ok() || !C.ok() || !R.ok()) return std::fprintf(stderr, "out of GPU memory\n"), 1;
    (void)(*driver)->CopyToDevice(*A, a.data(), a.size() * 4);
    (void)(*driver)->CopyToDevice(*B, b.data(), b.size() * 4);
    auto ours = [&]() {
      return (*driver)->Launch(**module, src->grid, src->block, {*A, *B, *C}, src->dynamic_shared_bytes);
    };
    const float one = 1, zero = 0;
    // Row-major C = A B is column-major C^T = B^T A^T.
    auto theirs = [&](int mode) {
      return [&, mode]() -> absl::Status {
        cublas->SetMathMode(cublas->handle, mode);
        int s = cublas->Sgemm(cublas->handle, Cublas::kOpN, Cublas::kOpN, N, M, K, &one,
                              reinterpret_cast<const float*>(*B), N, reinterpret_cast<const float*>(*A), K, &zero,
                              reinterpret_cast<float*>(*R), N);
        return s == 0 ? absl::OkStatus() : absl::InternalError(absl::StrCat("cublasSgemm: ", s));
      };
    };
    const int mode = cs.tf32 ? Cublas::kTf32TensorOpMath : Cublas::kPedanticMath;
    // Agreement with cuBLAS.
    if (!ours().ok() || !theirs(mode)().ok() || !(*driver)->Synchronize().ok()) {
      return std::fprintf(stderr, "a launch failed\n"), 1;
    }
    std::vector<float> c(M * N), r(M * N);
    (void)(*driver)->CopyFromDevice(c.data(), *C, c.size() * 4);
    (void)(*driver)->CopyFromDevice(r.data(), *R, r.size() * 4);
    double num = 0, den = 0;
    for (size_t i = 0; i < c.size(); ++i) {
      num += (double(c[i]) - r[i]) * (double(c[i]) - r[i]);
      den += double(r[i]) * r[i];
    }
    row.rel_err = std::sqrt(num / std::max(den, 1e-30));
    // Median of alternating rounds, each the mean of enough calls to last
    // >= 20 ms, timed with CUDA events after warm-up calls.
    const double flops = 2.0 * M * N * K;
    auto tflops = [&](const std::function<absl::Status()>& fn) {
      for (int i = 0; i < 3; ++i) (void)fn();
      int n = 1;
      for (;;) {
        auto s = (*driver)->Time(
            [&]() -> absl::Status {
              for (int i = 0; i < n; ++i) {
                if (absl::Status st = fn(); !st.ok()) return st;
              }
              return absl::OkStatus();
            },
            60);
        if (!s.ok()) return 0.0;
        if (*s >= 0.02 || n >= (1 << 20)) return flops * n / *s / 1e12;
        n = std::max(n * 2, static_cast<int>(0.02 / std::max(*s / n, 1e-9)) + 1);
      }
    };
    std::vector<double> t_ours, t_theirs;
    for (int i = 0; i < rounds; ++i) {
      t_ours.push_back(tflops(ours));
      t_theirs.push_back(tflops(theirs(mode)));
    }
    row.tuned = tb::Median(t_ours);
    row.cublas = tb::Median(t_theirs);
    std::fprintf(stderr, "  %.2f vs %.2f TFLOP/s = %.3fx (%s)\n", row.tuned, row.cublas, row.tuned / row.cublas,
                 row.config.c_str());
    for (auto p : {*A, *B, *C, *R}) (*driver)->Free(p);
    rows.push_back(std::move(row));
  }

  std::printf("device   %s (%s, %lld SMs), key %s, %s; cuBLAS %s\n", target.model().c_str(), target.arch().c_str(),
              static_cast<long long>(target.limits().at("sm_count")), target.device_key().c_str(),
              target.toolchain().c_str(), cublas->path.c_str());
  std::printf("tuning   %d trials per workload (xgb), batch %d; timing: median of %d alternating rounds (CUDA events)\n\n",
              trials, batch, rounds);
  std::printf("%-40s %-12s %9s %9s %7s %9s %9s %8s\n", "workload", "cuBLAS mode", "tunefarm", "cuBLAS", "ratio",
              "rel.err", "s/trial", "tune s");
  bool met = true;
  for (const Row& r : rows) {
    const double ratio = r.tuned / r.cublas;
    std::printf("%-40s %-12s %9.2f %9.2f %7.3f %9.1e %9.3f %8.0f", r.c.text, r.c.tf32 ? "TF32" : "FP32 pedantic",
                r.tuned, r.cublas, ratio, r.rel_err, r.s_per_trial, r.tune_s);
    if (r.c.target > 0) {
      std::printf("  target >= %.1f: %s", r.c.target, ratio >= r.c.target ? "met" : "MISSED");
      met = met && ratio >= r.c.target;
    }
    std::printf("\n");
  }
  std::printf("\n(TFLOP/s, medians; rel.err: |tunefarm - cuBLAS| / |cuBLAS| over the output; s/trial: median "
              "seconds per tuning trial)\n");
  for (const Row& r : rows) std::printf("best %s: %s\n", r.c.text, r.config.c_str());
  std::printf("targets: %s\n", met ? "all met" : "not all met");
  return 0;
}
