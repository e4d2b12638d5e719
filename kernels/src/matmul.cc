// matmul: C[M,N] = A[M,K] * B[K,N], float32, row-major, for CPUs.
// Optional parameters: trans_b=1 reads B as [N,K] (C = A * B^T), bias=1 adds
// bias[N] to every row, relu=1 clamps at zero; the epilogue is applied to
// each register tile as its last K block is stored. tf32=1 allows the inputs
// to be rounded to TF32 (the GPU space then offers tensor cores).
//
// The CPU schedule is the shared GEMM one (gemm.h); the CUDA one is the GPU
// GEMM (gpu_gemm.h).
#include <algorithm>
#include <cmath>
#include <functional>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tunefarm/kernels/template.h"
#include "gemm.h"
#include "gpu_gemm.h"
#include "matmul_common.h"

namespace tunefarm::kernels {
namespace {

using namespace ir;  // NOLINT: this file builds IR

constexpr int64_t kMaxDim = int64_t{1} << 20;
// A, B and C together: 2^28 floats = 1 GiB.
constexpr int64_t kMaxElements = int64_t{1} << 28;

Expr V(const char* name) { return Var::Make(name); }

// The GEMM form of a (batched) matmul: A and B read straight from their
// buffers, B^T packed along K.
GemmSpec MatmulGemm(const MatmulProblem& p) {
  GemmSpec g;
  g.batch = p.batch;
  g.M = p.M;
  g.N = p.N;
  g.K = p.K;
  const int64_t M = p.M, N = p.N, K = p.K;
  const bool batched = p.batch > 1;
  auto at = [batched](int64_t stride, Expr idx) { return batched ? V("bi") * Expr(stride) + idx : idx; };
  g.a = [=](Expr i, Expr k0, Expr kk) { return Load::Make("A", at(M * K, i * Expr(K) + k0 + kk)); };
  g.a_k_vector = [=](Expr i, Expr k, Type t) { return Load::Make("A", at(M * K, i * Expr(K) + k), t); };
  if (p.trans_b) {
    g.b = [=](Expr k0, Expr kk, Expr j) { return Load::Make("B", at(K * N, j * Expr(K) + k0 + kk)); };
    g.b_pack_k_inner = true;
  } else {
    g.b = [=](Expr k0, Expr kk, Expr j) { return Load::Make("B", at(K * N, (k0 + kk) * Expr(N) + j)); };
    g.b_vector = [=](Expr k0, Expr kk, Expr j, Type t) {
      return Load::Make("B", at(K * N, (k0 + kk) * Expr(N) + j), t);
    };
  }
  g.bias = p.bias ? GemmSpec::Bias::kPerColumn : GemmSpec::Bias::kNone;
  g.relu = p.relu;
  return g;
}

// Runs body(i0, i1) over row ranges covering [0, rows), on several threads
// when the work (`terms` multiply-adds) is large enough to pay for them.
void ParallelRows(int64_t rows, int64_t terms, const std::function<void(int64_t, int64_t)>& body) {
  const int64_t threads =
      std::min<int64_t>({rows, std::max(1u, std::thread::hardware_concurrency()), terms / (int64_t{1} << 24) + 1});
  if (threads <= 1) return body(0, rows);
  std::vector<std::thread> pool;
  for (int64_t t = 0; t < threads; ++t) pool.emplace_back(body, rows * t / threads, rows * (t + 1) / threads);
  for (std::thread& th : pool) th.join();
}

// Summed in double, with SumTolerance's bound per element.
ReferenceOutput MatmulReference(const MatmulProblem& p, std::span<const std::span<const float>> in) {
  const int64_t m = p.M, n = p.N, k = p.K;
  const bool trans_b = p.trans_b, has_bias = p.bias, relu = p.relu;
  ReferenceOutput out;
  out.expected.resize(p.batch * m * n);
  out.tolerance.resize(p.batch * m * n);
  for (int64_t bi = 0; bi < p.batch; ++bi) {
    std::span<const float> a = in[0].subspan(bi * m * k, m * k), b = in[1].subspan(bi * k * n, k * n);
    std::vector<float> b_rows;  // B as [K,N]
    if (trans_b) {
      b_rows.resize(k * n);
      for (int64_t j = 0; j < n; ++j) {
        for (int64_t p = 0; p < k; ++p) b_rows[p * n + j] = b[j * k + p];
      }
      b = b_rows;
    }
    // The bias is one more term of the sum; ReLU cannot grow an error.
    const int64_t terms = k + (has_bias ? 1 : 0);
    // Rows are independent: large references (4096^3 is 7e10 terms) share
    // them among the machine's cores.
    auto rows = [&](int64_t i0, int64_t i1) {
      std::vector<double> acc(n), mag(n);
      for (int64_t i = i0; i < i1; ++i) {
        std::fill(acc.begin(), acc.end(), 0.0);
        std::fill(mag.begin(), mag.end(), 0.0);
        for (int64_t p = 0; p < k; ++p) {
          double av = a[i * k + p];
          const float* brow = &b[p * n];
          for (int64_t j = 0; j < n; ++j) {
            acc[j] += av * brow[j];
            mag[j] += std::abs(av * brow[j]);
          }
        }
        if (has_bias) {
          for (int64_t j = 0; j < n; ++j) {
            acc[j] += in[2][j];
            mag[j] += std::abs(static_cast<double>(in[2][j]));
          }
        }
        if (relu) {
          for (int64_t j = 0; j < n; ++j) acc[j] = std::max(acc[j], 0.0);
        }
        for (int64_t j = 0; j < n; ++j) {
          out.expected[bi * m * n + i * n + j] = static_cast<float>(acc[j]);
          out.tolerance[bi * m * n + i * n + j] =
              SumTolerance(terms, mag[j]) + (p.tf32 ? Tf32Tolerance(mag[j]) : 0.0f);
        }
      }
    };
    ParallelRows(m, m * n * k, rows);
  }
  return out;
}

}  // namespace

absl::StatusOr<ConfigSpace> MatmulFamilyTemplate::Space(const Workload& w) const {
  return GemmSpace(MatmulGemm(Problem(w)));
}

Config MatmulFamilyTemplate::DefaultConfig(const Workload& w, const ConfigSpace& space) const {
  return GemmDefaultConfig(MatmulGemm(Problem(w)), space);
}

std::vector<Config> MatmulFamilyTemplate::SeedConfigs(const Workload& w, const ConfigSpace& space) const {
  return GemmSeedConfigs(MatmulGemm(Problem(w)), space);
}

std::vector<BufferArg> MatmulFamilyTemplate::Buffers(const Workload& w) const {
  const MatmulProblem p = Problem(w);
  std::vector<BufferArg> out = {{"A", Type::Float(), p.batch * p.M * p.K, false},
                                {"B", Type::Float(), p.batch * p.K * p.N, false}};
  if (p.bias) out.push_back({"bias", Type::Float(), p.N, false});
  out.push_back({"C", Type::Float(), p.batch * p.M * p.N, true});
  return out;
}

double MatmulFamilyTemplate::Flops(const Workload& w) const {
  const MatmulProblem p = Problem(w);
  return 2.0 * static_cast<double>(p.batch) * static_cast<double>(p.M) * static_cast<double>(p.N) *
         static_cast<double>(p.K);
}

std::vector<ReferenceOutput> MatmulFamilyTemplate::Reference(const Workload& w,
                                                             std::span<const std::span<const float>> in) const {
  return {MatmulReference(Problem(w), in)};
}

absl::StatusOr<Kernel> MatmulFamilyTemplate::Instantiate(const Workload& w, const ConfigSpace& space,
                                                         const Config& c) const {
  return LowerGemm(MatmulGemm(Problem(w)), Buffers(w), space, c);
}

absl::Status MatmulFamilyTemplate::ValidateMatmul(const Workload& w, std::initializer_list<const char*> dims) const {
  for (const char* name : dims) {
    const int64_t v = w.param(name);
    if (v < 1 || v > kMaxDim) {
      return absl::InvalidArgumentError(
          absl::StrCat(w.op, " dimension ", name, "=", v, " is out of range [1, ", kMaxDim, "]"));
    }
  }
  for (const auto& [name, d] : OptionalParams()) {
    const int64_t v = w.param_or(name, d);
    if (v != 0 && v != 1) return absl::InvalidArgumentError(absl::StrCat(w.op, " ", name, " must be 0 or 1, got ", v));
  }
  const MatmulProblem p = Problem(w);
  // Dimensions are <= 2^20, so one set of matrices is <= 3 * 2^40 elements;
  // the batch factor is checked by division, never multiplied past the limit.
  const int64_t per_batch = p.M * p.K + p.K * p.N + p.M * p.N;
  if (per_batch > kMaxElements || p.batch > kMaxElements / per_batch) {
    return absl::InvalidArgumentError(absl::StrCat(w.op, " ", w.Key(), " needs more than the ",
                                                   kMaxElements * 4 / (1 << 20), " MiB buffer limit"));
  }
  return absl::OkStatus();
}

namespace {

class MatmulTemplate : public MatmulFamilyTemplate {
 public:
  std::string_view op() const override { return "matmul"; }
  std::vector<std::string> ParamNames() const override { return {"M", "N", "K"}; }
  std::vector<std::pair<std::string, int64_t>> OptionalParams() const override {
    return {{"trans_b", 0}, {"bias", 0}, {"relu", 0}, {"tf32", 0}};
  }
  std::string_view declared_version() const override { return "matmul-cpu-1"; }

  absl::Status Validate(const Workload& w) const override { return ValidateMatmul(w, {"M", "N", "K"}); }

 protected:
  MatmulProblem Problem(const Workload& w) const override {
    MatmulProblem p;
    p.M = w.param("M");
    p.N = w.param("N");
    p.K = w.param("K");
    p.trans_b = w.param_or("trans_b", 0) != 0;
    p.bias = w.param_or("bias", 0) != 0;
    p.relu = w.param_or("relu", 0) != 0;
    p.tf32 = w.param_or("tf32", 0) != 0;
    return p;
  }
};

// The CUDA GEMM form of a matmul (batch 1): A and B read straight from
// their buffers, as float4 along the contiguous dimension when its length
// keeps every group of four aligned.
GpuGemmSpec MatmulGpuGemm(const MatmulProblem& p) {
  GpuGemmSpec g;
  g.M = p.M;
  g.N = p.N;
  g.K = p.K;
  const int64_t N = p.N, K = p.K;
  g.a = {"A", [=](Expr i, Expr k) { return i * Expr(K) + k; }, {}, true, K % 4 == 0};
  if (p.trans_b) {
    g.b = {"B", [=](Expr j, Expr k) { return j * Expr(K) + k; }, {}, true, K % 4 == 0};
  } else {
    g.b = {"B", [=](Expr j, Expr k) { return k * Expr(N) + j; }, {}, false, N % 4 == 0};
  }
  g.bias = p.bias ? GemmSpec::Bias::kPerColumn : GemmSpec::Bias::kNone;
  g.relu = p.relu;
  g.tf32 = p.tf32;
  return g;
}

// matmul on CUDA GPUs: the same workloads, buffers and reference, the GPU
// GEMM schedule (gpu_gemm.h).
class CudaMatmulTemplate : public MatmulTemplate {
 public:
  DeviceClass device() const override { return DeviceClass::kCuda; }
  std::string_view declared_version() const override { return "matmul-cuda-1"; }
  absl::StatusOr<ConfigSpace> Space(const Workload& w) const override { return GpuGemmSpace(MatmulGpuGemm(Problem(w))); }
  Config DefaultConfig(const Workload& w, const ConfigSpace& space) const override {
    return GpuGemmDefaultConfig(MatmulGpuGemm(Problem(w)), space);
  }
  std::vector<Config> SeedConfigs(const Workload&, const ConfigSpace&) const override { return {}; }
  absl::StatusOr<Kernel> Instantiate(const Workload& w, const ConfigSpace& space, const Config& c) const override {
    return LowerGpuGemm(MatmulGpuGemm(Problem(w)), Buffers(w), space, c);
  }
};

}  // namespace

std::unique_ptr<Template> NewMatmulTemplate() { return std::make_unique<MatmulTemplate>(); }
std::unique_ptr<Template> NewCudaMatmulTemplate() { return std::make_unique<CudaMatmulTemplate>(); }

}  // namespace tunefarm::kernels
