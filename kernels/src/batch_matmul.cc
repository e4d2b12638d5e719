// batch_matmul: C[b] = A[b] * B[b] for b < B, float32, row-major, each matrix
// stored after the previous one. Same schedule space as matmul; the batch
// loop is outermost and the packing buffers are shared by all batches.
#include <cstdint>

#include "matmul_common.h"
#include "tunefarm/kernels/template.h"

namespace tunefarm::kernels {
namespace {

class BatchMatmulTemplate : public MatmulFamilyTemplate {
 public:
  std::string_view op() const override { return "batch_matmul"; }
  std::vector<std::string> ParamNames() const override { return {"B", "M", "N", "K"}; }
  std::string_view declared_version() const override { return "batch_matmul-cpu-1"; }
  absl::Status Validate(const Workload& w) const override { return ValidateMatmul(w, {"B", "M", "N", "K"}); }

 protected:
  MatmulProblem Problem(const Workload& w) const override {
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
