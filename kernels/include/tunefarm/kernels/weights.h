// Constant conv2d weights, from the plain layout into the one a workload's
// optional parameters declare: converted once, when a model is loaded,
// before its kernels run.
#pragma once

#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "tunefarm/kernels/workload.h"

namespace tunefarm::kernels {

// `plain`: the weights of conv2d workload `w` in the plain layout of its
// data layout (OIHW, [K][C][R][S], with NCHW; HWIO, [R][S][C][K], with
// NHWC). Returns the weights w's kernels take:
//   wblock=B    blocked by B output channels, [ceil(K/B)][plain without
//               K][B], the channels past K zero;
//   winograd=1  transformed for Winograd F(2x2, 3x3), U[xi][c][k] =
//               (G g G^T)[xi / 4][xi % 4] of filter g of (k, c), [16][C][K];
//   winograd=2  transformed for Winograd F(4x4, 3x3), U[xi][c][k] =
//               (G g G^T)[xi / 6][xi % 6], [36][C][K];
//   neither     `plain` as it is.
// InvalidArgument when w is not a conv2d workload or `plain` has not
// K*C*R*S elements.
absl::StatusOr<std::vector<float>> ConvWeightsFor(const Workload& w, std::span<const float> plain);

}  // namespace tunefarm::kernels
