// batch_matmul: C[b] = A[b] * B[b] for b < B, float32, row-major, each matrix
// stored after the previous one. Same schedule space as matmul; the batch
// loop is outermost and the packing buffers are shared by all batches.
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "matmul_common.h"
#include "tunefarm/kernels/template.h"

namespace tunefarm::kernels {
namespace {

constexpr int64_t kMaxDim = int64_t{1} << 20;
constexpr int64_t kMaxElements = int64_t{1} << 28;  // 1 GiB of float buffers

class BatchMatmulTemplate : public Template {
 public:
  std::string_view op() const override { return "batch_matmul"; }
  std::vector<std::string> ParamNames() const override { return {"B", "M", "N", "K"}; }
  std::string_view declared_version() const override { return "batch_matmul-cpu-1"; }

  absl::Status Validate(const Workload& w) const override {
    for (const char* name : {"B", "M", "N", "K"}) {
      const int64_t v = w.param(name);
      if (v < 1 || v > kMaxDim) {
        return absl::InvalidArgumentError(
            absl::StrCat("batch_matmul dimension ", name, "=", v, " is out of range [1, ", kMaxDim, "]"));
      }
    }
    const MatmulProblem p = Problem(w);
    // Dimensions are <= 2^20, so one matrix set is <= 3 * 2^40 elements; the
    // batch factor is checked by division, never multiplied past the limit.
    const int64_t per_batch = p.M * p.K + p.K * p.N + p.M * p.N;
    if (per_batch > kMaxElements || p.batch > kMaxElements / per_batch) {
      return absl::InvalidArgumentError(absl::StrCat("batch_matmul ", w.Key(), " needs more than the ",
                                                     kMaxElements * 4 / (1 << 20), " MiB buffer limit"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<ConfigSpace> Space(const Workload&) const override { return MatmulSpace(false); }
  Config DefaultConfig(const Workload&, const ConfigSpace& space) const override {
    return MatmulDefaultConfig(space, false);
  }

  std::vector<ir::BufferArg> Buffers(const Workload& w) const override {
    const MatmulProblem p = Problem(w);
    return {{"A", ir::Type::Float(), p.batch * p.M * p.K, false},
            {"B", ir::Type::Float(), p.batch * p.K * p.N, false},
            {"C", ir::Type::Float(), p.batch * p.M * p.N, true}};
  }

  double Flops(const Workload& w) const override {
    const MatmulProblem p = Problem(w);
    return 2.0 * static_cast<double>(p.batch) * static_cast<double>(p.M) * static_cast<double>(p.N) *
           static_cast<double>(p.K);
  }

  std::vector<ReferenceOutput> Reference(const Workload& w,
                                         std::span<const std::span<const float>> in) const override {
    return {MatmulReference(Problem(w), in)};
  }

  absl::StatusOr<Kernel> Instantiate(const Workload& w, const ConfigSpace& space, const Config& c) const override {
    return LowerMatmul(Problem(w), Buffers(w), space, c);
  }

 private:
  static MatmulProblem Problem(const Workload& w) {
    MatmulProblem p;
    p.batch = w.param("B");
    p.M = w.param("M");
    p.N = w.param("N");
    p.K = w.param("K");
    return p;
  }
};

}  // namespace

std::unique_ptr<Template> NewBatchMatmulTemplate() { return std::make_unique<BatchMatmulTemplate>(); }

}  // namespace tunefarm::kernels
