// The matmul family: templates whose kernels are (batched) matrix products,
// sharing one schedule space, lowering and reference (matmul.cc).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tunefarm/kernels/config_space.h"
#include "tunefarm/kernels/template.h"

namespace tunefarm::kernels {

// `batch` row-major products C[b] = A[b] * B[b] (+ bias, ReLU), each of
// M x K by K x N, the matrices of one operand stored one after another.
struct MatmulProblem {
  int64_t batch = 1;
  int64_t M = 0, N = 0, K = 0;
  bool trans_b = false;  // B[b] is N x K
  bool bias = false;     // bias[N], shared by every batch
  bool relu = false;
  // The inputs may be rounded to TF32 (10 mantissa bits) before they are
  // multiplied, as tensor cores do: the reference's tolerance allows it.
  bool tf32 = false;
};

// Everything but a template's parameters follows from its MatmulProblem:
// buffers A, B, [bias], C; the space, the default config, the lowering
// (with batch 1 exactly an unbatched matmul's code) and the reference.
class MatmulFamilyTemplate : public Template {
 public:
  absl::StatusOr<ConfigSpace> Space(const Workload& w) const override;
  Config DefaultConfig(const Workload& w, const ConfigSpace& space) const override;
  std::vector<Config> SeedConfigs(const Workload& w, const ConfigSpace& space) const override;
  std::vector<ir::BufferArg> Buffers(const Workload& w) const override;
  double Flops(const Workload& w) const override;
  std::vector<ReferenceOutput> Reference(const Workload& w,
                                         std::span<const std::span<const float>> in) const override;
  absl::StatusOr<Kernel> Instantiate(const Workload& w, const ConfigSpace& space, const Config& c) const override;

 protected:
  // Only called on workloads that passed Validate.
  virtual MatmulProblem Problem(const Workload& w) const = 0;
  // Each of `dims` in [1, 2^20], every optional parameter 0 or 1, and at
  // most 1 GiB of buffers.
  absl::Status ValidateMatmul(const Workload& w, std::initializer_list<const char*> dims) const;
};

}  // namespace tunefarm::kernels
