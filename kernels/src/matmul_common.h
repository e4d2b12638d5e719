// The matmul lowering, shared by the `matmul` and `batch_matmul` templates.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

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
};

absl::StatusOr<ConfigSpace> MatmulSpace(bool trans_b);
Config MatmulDefaultConfig(const ConfigSpace& space, bool trans_b);
// Inputs in argument order: A, B, then bias when present.
ReferenceOutput MatmulReference(const MatmulProblem& p, std::span<const std::span<const float>> in);
// `args` are the kernel's buffers in argument order (A, B, [bias], C). With
// batch 1 the code is exactly that of an unbatched matmul.
absl::StatusOr<Kernel> LowerMatmul(const MatmulProblem& p, std::vector<ir::BufferArg> args, const ConfigSpace& space,
                                   const Config& c);

}  // namespace tunefarm::kernels
