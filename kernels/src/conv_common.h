// Shapes, validation and reference shared by conv2d and depthwise_conv2d.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "tunefarm/kernels/template.h"
#include "tunefarm/kernels/workload.h"

namespace tunefarm::kernels {

// A 2-D convolution, float32. Data and output are NCHW or NHWC. conv2d's
// weights are OIHW ([K][C][R][S]) with NCHW and HWIO ([R][S][C][K]) with
// NHWC; depthwise weights are [C][R][S] and [R][S][C] (K == C). With
// wblock = b > 0 (conv2d only), the weights come blocked by output channel
// as oneDNN's and TVM's x86 convolutions keep them: [ceil(K/b)][C][R][S][b]
// with NCHW, [ceil(K/b)][R][S][C][b] with NHWC (the plain layout with K
// moved out in blocks of b, and innermost within a block), the channels
// past K in the last block unused. A caller blocks constant weights once,
// outside the kernel; the kernel then reads b output channels as whole
// vectors, with no packing of its own. With winograd = m > 0 (conv2d,
// NHWC, 3x3, stride 1; m = 2 or 4), the weights come transformed for
// Winograd F(m x m, 3x3) as TVM's conv2d_winograd_without_weight_transform
// takes them: U[xi][c][k] = (G g G^T)[xi / a][xi % a] of filter
// g = weight(k, c, ., .), [a*a][C][K] with a = m + 2 and G of
// WinogradMatricesFor(m). A caller transforms constant weights once
// (ConvWeightsFor in weights.h); the output is then that of the Winograd
// algorithm on U, which is the convolution by g whenever U is such a
// transform.
struct ConvShape {
  int64_t N = 1, C = 1, H = 1, W = 1, K = 1, R = 1, S = 1;
  int64_t stride = 1, pad = 0, dilation = 1;
  int64_t OH = 1, OW = 1;
  bool nhwc = false;
  bool depthwise = false;
  bool bias = false, relu = false;
  // conv2d only: the inputs may be rounded to TF32 (tensor cores).
  bool tf32 = false;
  // conv2d only: the output-channel block of the weights; 0 = plain.
  int64_t wblock = 0;
  // conv2d only: the weights come as Winograd F(m x m, 3x3)'s transformed
  // U, m = winograd (2 or 4); 0 = they do not.
  int64_t winograd = 0;

  // Element indices of data and out, for the reference (I = int64_t) and
  // the generated kernels (I = ir::Expr).
  template <class I>
  I data_index(I n, I c, I h, I w) const {
    return nhwc ? ((n * I(H) + h) * I(W) + w) * I(C) + c : ((n * I(C) + c) * I(H) + h) * I(W) + w;
  }
  template <class I>
  I out_index(I n, I k, I oh, I ow) const {
    return nhwc ? ((n * I(OH) + oh) * I(OW) + ow) * I(K) + k : ((n * I(K) + k) * I(OH) + oh) * I(OW) + ow;
  }
  // conv2d: weight (k, c, r, s); depthwise: c is ignored (the channel is k).
  int64_t weight_index(int64_t k, int64_t c, int64_t r, int64_t s) const {
    if (depthwise) return nhwc ? (r * S + s) * C + k : (k * R + r) * S + s;
    return weight_index<int64_t>(k, nhwc ? (r * S + s) * C + c : (c * R + r) * S + s);
  }
  // conv2d: weight (k, t) where t is the position among output channel k's
  // C*R*S weights in the plain layout's order: (c*R + r)*S + s with NCHW,
  // (r*S + s)*C + c with NHWC. One formula for the reference (I = int64_t)
  // and the generated kernels (I = ir::Expr).
  template <class I>
  I weight_index(I k, I t) const {
    if (wblock > 0) return weight_index_in_block(k / I(wblock), k % I(wblock), t);
    return weight_index_in_block(I(0), k, t);
  }
  // weight_index(kb * weight_block() + kl, t) for 0 <= kl < weight_block().
  template <class I>
  I weight_index_in_block(I kb, I kl, I t) const {
    const int64_t crs = C * R * S;
    if (wblock > 0) return (kb * I(crs) + t) * I(wblock) + kl;
    return nhwc ? t * I(K) + kl : kl * I(crs) + t;
  }
  // The output channels of one weight block: wblock, or all K when plain.
  int64_t weight_block() const { return wblock > 0 ? wblock : K; }
  // K rounded up to whole weight blocks.
  int64_t weight_channels() const { return wblock > 0 ? (K + wblock - 1) / wblock * wblock : K; }
  int64_t data_elements() const { return N * C * H * W; }
  int64_t weight_elements() const {
    if (winograd) return (winograd + 2) * (winograd + 2) * C * K;
    return depthwise ? C * R * S : weight_channels() * C * R * S;
  }
  int64_t out_elements() const { return N * K * OH * OW; }
};

// Winograd F(m x m, 3x3) (Lavin and Gray, 2016) over a = m + 2 points:
// an m x m tile of outputs is A^T [(G g G^T) . (B^T d B)] A of the a x a
// input patch d under it and the 3 x 3 filter g.
struct WinogradMatrices {
  int m = 0, a = 0;
  const double* bt = nullptr;  // B^T, [a][a]
  const double* g = nullptr;   // G, [a][3]
  const double* at = nullptr;  // A^T, [m][a]
  double Bt(int i, int j) const { return bt[i * a + j]; }
  double G(int i, int j) const { return g[i * 3 + j]; }
  double At(int i, int j) const { return at[i * a + j]; }
};
// m = 2 or 4.
const WinogradMatrices& WinogradMatricesFor(int64_t m);

// Parameter lists of the two templates (canonical order).
std::vector<std::string> ConvParamNames(bool depthwise);
std::vector<std::pair<std::string, int64_t>> ConvOptionalParams();
std::vector<TextParamSpec> ConvTextParams();

// Only for workloads that passed ValidateConv.
ConvShape ConvShapeOf(const Workload& w, bool depthwise);
// Ranges, a kernel that fits the padded input, padding smaller than the
// kernel, a weight block that is 0 or a multiple of 16 (a vector of up to
// 16 floats then never straddles two blocks), and at most 1 GiB of
// buffers; messages name the parameter.
absl::Status ValidateConv(const Workload& w, bool depthwise);

// Buffers data, weight, [bias], out.
std::vector<ir::BufferArg> ConvBuffers(const ConvShape& s);
// The direct convolution in double, with SumTolerance per element; with
// winograd, Winograd's algorithm on the transformed weights in double,
// with the bound for its float rounding.
ReferenceOutput ConvReference(const ConvShape& s, std::span<const std::span<const float>> in);
double ConvFlops(const ConvShape& s);

// One row of a zero-padded, column-phase-split copy of the input: slot
// wq < Wq of `dst` at `dst_base` gets column wq*stride + phase - pad of the
// source row at `src_base`, or zero where that column is outside [0, W) or
// the whole row is outside (`row_inside` false). The interior is a plain
// strided copy the compiler can vectorise; `var` names the loop variable.
ir::Stmt PaddedRowCopy(const std::string& dst, ir::Expr dst_base, const std::string& src, ir::Expr src_base,
                       ir::Expr row_inside, ir::Expr phase, int64_t W, int64_t pad, int64_t stride, int64_t Wq,
                       const std::string& var);

}  // namespace tunefarm::kernels
