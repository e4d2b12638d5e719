// conv2d: out = data (*) weight, float32, NCHW with OIHW weights or NHWC with
// HWIO weights, stride, padding and dilation; optional bias[K] and ReLU.
//
// Lowered as an implicit GEMM on the shared GEMM schedule (gemm.h), so the
// whole GotoBLAS-shaped space applies:
//   NCHW: out[n][k][p] = sum_{c,r,s} weight[k][c,r,s] * im2col[c,r,s][p]
//         (M = K output channels, N = OH*OW positions, register tiles of
//         output channels x consecutive output positions);
//   NHWC: out[n][p][k] = sum_{r,s,c} im2col[p][r,s,c] * weight[r,s,c][k]
//         (M = positions, N = output channels).
// The im2col operand is never materialised: it is gathered, with zeros for
// padding, into the packed panel of the cache block that uses it, so the
// data's blocked layout is built inside the kernel (as oneDNN and TVM's x86
// schedules do) and costs one pass per cache block. A 1x1, stride-1,
// unpadded convolution is a plain matrix product and may skip packing.
#include "absl/status/status.h"
#include "conv_common.h"
#include "gemm.h"
#include "tunefarm/kernels/template.h"

namespace tunefarm::kernels {
namespace {

using namespace ir;  // NOLINT: this file builds IR

GemmSpec ConvGemm(const ConvShape& s) {
  GemmSpec g;
  g.batch = s.N;
  const int64_t P = s.OH * s.OW, CRS = s.C * s.R * s.S;
  const bool batched = s.N > 1;
  const int64_t image = s.C * s.H * s.W;
  auto data_at = [=](Expr idx) { return Load::Make("data", batched ? Var::Make("bi") * Expr(image) + idx : idx); };
  const bool pointwise = s.R == 1 && s.S == 1 && s.stride == 1 && s.pad == 0;
  // The input element of output position p at kernel offset (r, q) of
  // channel c, or zero in the padding.
  auto gather = [=](Expr p, Expr c, Expr r, Expr q) {
    Expr oh = p / Expr(s.OW), ow = p % Expr(s.OW);
    Expr h = oh * Expr(s.stride) + r * Expr(s.dilation) - Expr(s.pad);
    Expr x = ow * Expr(s.stride) + q * Expr(s.dilation) - Expr(s.pad);
    Expr idx = s.nhwc ? (h * Expr(s.W) + x) * Expr(s.C) + c : (c * Expr(s.H) + h) * Expr(s.W) + x;
    if (s.pad == 0) return data_at(idx);  // every tap lands inside
    Expr inside = (Expr(0) <= h) && (h < Expr(s.H)) && (Expr(0) <= x) && (x < Expr(s.W));
    return Select::Make(inside, data_at(idx), FloatImm::Make(0));
  };
  if (!s.nhwc) {
    g.M = s.K;
    g.N = P;
    g.K = CRS;
    g.a = [=](Expr i, Expr k) { return Load::Make("weight", i * Expr(CRS) + k); };
    if (pointwise) {
      g.b = [=](Expr k, Expr j) { return data_at(k * Expr(P) + j); };
      g.b_vector = [=](Expr k, Expr j, Type t) {
        return Load::Make("data", batched ? Var::Make("bi") * Expr(image) + k * Expr(P) + j : k * Expr(P) + j, t);
      };
    } else {
      g.b = [=](Expr k, Expr j) {
        return gather(j, k / Expr(s.R * s.S), k / Expr(s.S) % Expr(s.R), k % Expr(s.S));
      };
    }
    g.bias = s.bias ? GemmSpec::Bias::kPerRow : GemmSpec::Bias::kNone;
  } else {
    g.M = P;
    g.N = s.K;
    g.K = CRS;
    if (pointwise) {
      g.a = [=](Expr i, Expr k) { return data_at(i * Expr(s.C) + k); };
    } else {
      g.a = [=](Expr i, Expr k) {
        return gather(i, k % Expr(s.C), k / Expr(s.S * s.C), k / Expr(s.C) % Expr(s.S));
      };
      g.a_must_pack = true;
    }
    g.b = [=](Expr k, Expr j) { return Load::Make("weight", k * Expr(s.K) + j); };
    g.b_vector = [=](Expr k, Expr j, Type t) { return Load::Make("weight", k * Expr(s.K) + j, t); };
    g.bias = s.bias ? GemmSpec::Bias::kPerColumn : GemmSpec::Bias::kNone;
  }
  g.out = "out";
  g.relu = s.relu;
  return g;
}

class Conv2dTemplate : public Template {
 public:
  std::string_view op() const override { return "conv2d"; }
  std::vector<std::string> ParamNames() const override { return ConvParamNames(false); }
  std::vector<std::pair<std::string, int64_t>> OptionalParams() const override { return ConvOptionalParams(); }
  std::vector<TextParamSpec> TextParams() const override { return ConvTextParams(); }
  absl::Status Validate(const Workload& w) const override { return ValidateConv(w, false); }
  std::string_view declared_version() const override { return "conv2d-cpu-1"; }

  absl::StatusOr<ConfigSpace> Space(const Workload& w) const override { return GemmSpace(Gemm(w)); }
  Config DefaultConfig(const Workload& w, const ConfigSpace& space) const override {
    return GemmDefaultConfig(Gemm(w), space);
  }
  absl::StatusOr<Kernel> Instantiate(const Workload& w, const ConfigSpace& space, const Config& c) const override {
    return LowerGemm(Gemm(w), Buffers(w), space, c);
  }
  std::vector<BufferArg> Buffers(const Workload& w) const override { return ConvBuffers(ConvShapeOf(w, false)); }
  std::vector<ReferenceOutput> Reference(const Workload& w,
                                         std::span<const std::span<const float>> in) const override {
    return {ConvReference(ConvShapeOf(w, false), in)};
  }
  double Flops(const Workload& w) const override { return ConvFlops(ConvShapeOf(w, false)); }

 private:
  static GemmSpec Gemm(const Workload& w) { return ConvGemm(ConvShapeOf(w, false)); }
};

}  // namespace

std::unique_ptr<Template> NewConv2dTemplate() { return std::make_unique<Conv2dTemplate>(); }

}  // namespace tunefarm::kernels
