// conv2d: out = data (*) weight, float32, NCHW with OIHW weights or NHWC with
// HWIO weights, stride, padding and dilation; optional bias[K] and ReLU.
//
// Lowered on the shared GEMM schedule (gemm.h), so the whole GotoBLAS-shaped
// space applies. A 1x1, stride-1, unpadded convolution is a plain matrix
// product per image:
//   NCHW: out[k][p] = weight[k][c] * data[c][p]   (M = K, N = OH*OW)
//   NHWC: out[p][k] = data[p][c] * weight[c][k]   (M = OH*OW, N = K)
// Every other shape is a direct convolution: one GEMM per output row (the
// batch runs over images x output rows) whose reduction runs over the
// filter taps and, innermost, the input channels (k = (r*S + s)*C + c; a K
// block never crosses a tap, so inside a block the input is a strided
// matrix and needs no gather):
//   NCHW: out[k][ow] += weight[k][c,r,s] * in[c][oh*st + r*d][ow*st + s*d]
//         (M = K, N = OW: register tiles of output channels x consecutive
//         output columns, which are contiguous input columns because the
//         input is first copied into zero-padded planes split by column
//         phase, column x going to phase x % stride, slot x / stride);
//   NHWC: out[ow][k] += in[oh*st + r*d][ow*st + s*d][c] * weight[r,s,c][k]
//         (M = OW, N = K; the input is copied into a zero-padded image when
//         the convolution pads).
// These copies and the packed panels are the blocked layouts of data and
// weights built inside the kernel, as oneDNN and TVM's x86 schedules do.
#include "absl/status/status.h"
#include "conv_common.h"
#include "gemm.h"
#include "tunefarm/kernels/template.h"

namespace tunefarm::kernels {
namespace {

using namespace ir;  // NOLINT: this file builds IR

GemmSpec PointwiseGemm(const ConvShape& s) {
  GemmSpec g;
  g.batch = s.N;
  const int64_t P = s.OH * s.OW, image = s.C * P;
  auto at = [=](Expr idx) { return s.N > 1 ? Var::Make("bi") * Expr(image) + idx : idx; };
  if (!s.nhwc) {
    g.M = s.K;
    g.N = P;
    g.K = s.C;
    g.a = [=](Expr i, Expr k0, Expr kk) { return Load::Make("weight", i * Expr(s.C) + k0 + kk); };
    g.b = [=](Expr k0, Expr kk, Expr j) { return Load::Make("data", at((k0 + kk) * Expr(P) + j)); };
    g.b_vector = [=](Expr k0, Expr kk, Expr j, Type t) { return Load::Make("data", at((k0 + kk) * Expr(P) + j), t); };
    g.bias = s.bias ? GemmSpec::Bias::kPerRow : GemmSpec::Bias::kNone;
  } else {
    g.M = P;
    g.N = s.K;
    g.K = s.C;
    g.a = [=](Expr i, Expr k0, Expr kk) { return Load::Make("data", at(i * Expr(s.C) + k0 + kk)); };
    g.b = [=](Expr k0, Expr kk, Expr j) { return Load::Make("weight", (k0 + kk) * Expr(s.K) + j); };
    g.b_vector = [=](Expr k0, Expr kk, Expr j, Type t) { return Load::Make("weight", (k0 + kk) * Expr(s.K) + j, t); };
    g.bias = s.bias ? GemmSpec::Bias::kPerColumn : GemmSpec::Bias::kNone;
  }
  g.out = "out";
  g.relu = s.relu;
  return g;
}

GemmSpec DirectGemm(const ConvShape& s) {
  GemmSpec g;
  g.batch = s.N * s.OH;
  g.K = s.R * s.S * s.C;
  g.k_unit = s.C;
  const int64_t st = s.stride, d = s.dilation;
  // Image n and output row oh of the current GEMM; with one of each, "bi"
  // is not bound.
  const bool batched = g.batch > 1;
  const Expr bi = batched ? Var::Make("bi") : Expr(0);
  const Expr n = bi / Expr(s.OH), oh = bi % Expr(s.OH);
  // The filter tap (r, q) of a K block and the channel c0 + kk.
  auto tap_r = [=](Expr k0) { return k0 / Expr(s.C) / Expr(s.S); };
  auto tap_q = [=](Expr k0) { return k0 / Expr(s.C) % Expr(s.S); };
  auto chan = [=](Expr k0, Expr kk) { return k0 % Expr(s.C) + kk; };
  if (!s.nhwc) {
    // Zero-padded planes [N][C][st][Hp][Wq], or the input itself when that
    // is the same thing.
    const int64_t Hp = (s.OH - 1) * st + (s.R - 1) * d + 1, Wq = s.OW + (s.S - 1) * d / st;
    const bool copy = st > 1 || s.pad > 0;
    const std::string src = copy ? "dpad" : "data";
    if (copy) {
      Expr nn = Var::Make("n"), c = Var::Make("c"), ph = Var::Make("ph"), hp = Var::Make("hp"), wq = Var::Make("wq");
      Expr h = hp - Expr(s.pad), x = wq * Expr(st) + ph - Expr(s.pad);
      Expr inside = (Expr(0) <= h) && (h < Expr(s.H)) && (Expr(0) <= x) && (x < Expr(s.W));
      Expr value = Select::Make(inside, Load::Make("data", ((nn * Expr(s.C) + c) * Expr(s.H) + h) * Expr(s.W) + x),
                                FloatImm::Make(0));
      g.prologue = For::Make(
          "n", 0, s.N, ForKind::kSerial,
          For::Make("c", 0, s.C, ForKind::kSerial,
                    For::Make("ph", 0, st, ForKind::kSerial,
                              For::Make("hp", 0, Hp, ForKind::kSerial,
                                        For::Make("wq", 0, Wq, ForKind::kVectorized,
                                                  Store::Make("dpad", value,
                                                              (((nn * Expr(s.C) + c) * Expr(st) + ph) * Expr(Hp) + hp) *
                                                                      Expr(Wq) +
                                                                  wq))))));
      g.scratch.emplace_back("dpad", s.N * s.C * st * Hp * Wq);
    }
    auto in_at = [=](Expr k0, Expr kk, Expr j) {
      Expr q = tap_q(k0);
      Expr plane = (n * Expr(s.C) + chan(k0, kk)) * Expr(st) + q * Expr(d) % Expr(st);
      return (plane * Expr(Hp) + oh * Expr(st) + tap_r(k0) * Expr(d)) * Expr(Wq) + j + q * Expr(d) / Expr(st);
    };
    g.M = s.K;
    g.N = s.OW;
    g.a = [=](Expr i, Expr k0, Expr kk) {
      return Load::Make("weight", i * Expr(s.C * s.R * s.S) + chan(k0, kk) * Expr(s.R * s.S) + k0 / Expr(s.C));
    };
    g.b = [=](Expr k0, Expr kk, Expr j) { return Load::Make(src, in_at(k0, kk, j)); };
    g.b_vector = [=](Expr k0, Expr kk, Expr j, Type t) { return Load::Make(src, in_at(k0, kk, j), t); };
    g.out_index = [=](Expr i, Expr j) { return ((n * Expr(s.K) + i) * Expr(s.OH) + oh) * Expr(s.OW) + j; };
    g.bias = s.bias ? GemmSpec::Bias::kPerRow : GemmSpec::Bias::kNone;
  } else {
    // A zero-padded copy [N][Hp][Wp][C] when the convolution pads.
    const int64_t Hp = s.H + 2 * s.pad, Wp = s.W + 2 * s.pad;
    const std::string src = s.pad > 0 ? "dpad" : "data";
    if (s.pad > 0) {
      Expr nn = Var::Make("n"), hp = Var::Make("hp"), wp = Var::Make("wp"), c = Var::Make("c");
      Expr h = hp - Expr(s.pad), x = wp - Expr(s.pad);
      Expr inside = (Expr(0) <= h) && (h < Expr(s.H)) && (Expr(0) <= x) && (x < Expr(s.W));
      Expr value = Select::Make(inside, Load::Make("data", ((nn * Expr(s.H) + h) * Expr(s.W) + x) * Expr(s.C) + c),
                                FloatImm::Make(0));
      g.prologue = For::Make(
          "n", 0, s.N, ForKind::kSerial,
          For::Make("hp", 0, Hp, ForKind::kSerial,
                    For::Make("wp", 0, Wp, ForKind::kSerial,
                              For::Make("c", 0, s.C, ForKind::kVectorized,
                                        Store::Make("dpad", value, ((nn * Expr(Hp) + hp) * Expr(Wp) + wp) * Expr(s.C) + c)))));
      g.scratch.emplace_back("dpad", s.N * Hp * Wp * s.C);
    }
    g.M = s.OW;
    g.N = s.K;
    g.a = [=](Expr i, Expr k0, Expr kk) {
      Expr row = n * Expr(Hp) + oh * Expr(st) + tap_r(k0) * Expr(d);
      Expr col = i * Expr(st) + tap_q(k0) * Expr(d);
      return Load::Make(src, (row * Expr(Wp) + col) * Expr(s.C) + chan(k0, kk));
    };
    g.b = [=](Expr k0, Expr kk, Expr j) { return Load::Make("weight", (k0 + kk) * Expr(s.K) + j); };
    g.b_vector = [=](Expr k0, Expr kk, Expr j, Type t) { return Load::Make("weight", (k0 + kk) * Expr(s.K) + j, t); };
    g.bias = s.bias ? GemmSpec::Bias::kPerColumn : GemmSpec::Bias::kNone;
  }
  g.out = "out";
  g.relu = s.relu;
  return g;
}

GemmSpec ConvGemm(const ConvShape& s) {
  const bool pointwise = s.R == 1 && s.S == 1 && s.stride == 1 && s.pad == 0;
  return pointwise ? PointwiseGemm(s) : DirectGemm(s);
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
