#include "conv_common.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "gemm.h"
#include "tunefarm/kernels/weights.h"

namespace tunefarm::kernels {
namespace {

constexpr int64_t kMaxDim = int64_t{1} << 20;
// All buffers together: 2^28 floats = 1 GiB.
constexpr int64_t kMaxElements = int64_t{1} << 28;

}  // namespace

std::vector<std::string> ConvParamNames(bool depthwise) {
  if (depthwise) return {"N", "C", "H", "W", "R", "S", "stride", "pad"};
  return {"N", "C", "H", "W", "K", "R", "S", "stride", "pad"};
}

std::vector<std::pair<std::string, int64_t>> ConvOptionalParams() {
  return {{"dilation", 1}, {"bias", 0}, {"relu", 0}};
}

std::vector<TextParamSpec> ConvTextParams() { return {{"layout", {"NCHW", "NHWC"}}}; }

ConvShape ConvShapeOf(const Workload& w, bool depthwise) {
  ConvShape s;
  s.depthwise = depthwise;
  s.N = w.param("N");
  s.C = w.param("C");
  s.H = w.param("H");
  s.W = w.param("W");
  s.K = depthwise ? s.C : w.param("K");
  s.R = w.param("R");
  s.S = w.param("S");
  s.stride = w.param("stride");
  s.pad = w.param("pad");
  s.dilation = w.param_or("dilation", 1);
  s.bias = w.param_or("bias", 0) != 0;
  s.relu = w.param_or("relu", 0) != 0;
  s.tf32 = !depthwise && w.param_or("tf32", 0) != 0;
  s.wblock = depthwise ? 0 : w.param_or("wblock", 0);
  // winograd=1: F(2x2, 3x3); winograd=2: F(4x4, 3x3).
  s.winograd = depthwise ? 0 : 2 * w.param_or("winograd", 0);
  s.nhwc = w.text("layout") == "NHWC";
  s.OH = (s.H + 2 * s.pad - (s.R - 1) * s.dilation - 1) / s.stride + 1;
  s.OW = (s.W + 2 * s.pad - (s.S - 1) * s.dilation - 1) / s.stride + 1;
  return s;
}

absl::Status ValidateConv(const Workload& w, bool depthwise) {
  auto range = [&](const char* name, int64_t v, int64_t lo, int64_t hi) -> absl::Status {
    if (v < lo || v > hi) {
      return absl::InvalidArgumentError(absl::StrCat(w.op, " ", name, "=", v, " is out of range [", lo, ", ", hi, "]"));
    }
    return absl::OkStatus();
  };
  std::vector<const char*> dims = {"N", "C", "H", "W", "R", "S"};
  if (!depthwise) dims.push_back("K");
  for (const char* d : dims) {
    if (absl::Status s = range(d, w.param(d), 1, kMaxDim); !s.ok()) return s;
  }
  if (absl::Status s = range("stride", w.param("stride"), 1, 1024); !s.ok()) return s;
  if (absl::Status s = range("pad", w.param("pad"), 0, kMaxDim); !s.ok()) return s;
  if (absl::Status s = range("dilation", w.param_or("dilation", 1), 1, 1024); !s.ok()) return s;
  for (const char* flag : {"bias", "relu", "tf32"}) {
    const int64_t v = w.param_or(flag, 0);
    if (v != 0 && v != 1) return absl::InvalidArgumentError(absl::StrCat(w.op, " ", flag, " must be 0 or 1, got ", v));
  }
  const int64_t wino = w.param_or("winograd", 0);
  if (wino < 0 || wino > 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        w.op, " winograd must be 0 (plain weights), 1 (transformed for F(2x2, 3x3)) or 2 (for F(4x4, 3x3)), got ",
        wino));
  }
  if (const int64_t b = w.param_or("wblock", 0); b != 0 && (b < 0 || b % 16 != 0 || b > 256)) {
    return absl::InvalidArgumentError(
        absl::StrCat(w.op, " wblock=", b, " must be 0 (plain weights) or a multiple of 16 up to 256"));
  }
  const ConvShape s = ConvShapeOf(w, depthwise);
  if (s.winograd) {
    if (!s.nhwc || s.R != 3 || s.S != 3 || s.stride != 1 || s.dilation != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(w.op, " winograd=", wino, " (weights transformed for Winograd F(", s.winograd, "x", s.winograd,
                       ", 3x3)) needs layout=NHWC, R=3, S=3, stride=1 and dilation=1; got layout=", w.text("layout"),
                       ", R=", s.R, ", S=", s.S, ", stride=", s.stride, ", dilation=", s.dilation));
    }
    if (s.wblock != 0 || s.tf32) {
      return absl::InvalidArgumentError(absl::StrCat(
          w.op, " winograd=", wino, " weights have a layout of their own and are float32: leave wblock and tf32 out"));
    }
  }
  const int64_t er = (s.R - 1) * s.dilation + 1, es = (s.S - 1) * s.dilation + 1;
  // Padding as large as the kernel would make whole output rows read
  // nothing but padding; TVM and oneDNN shapes never do that.
  if (s.pad >= er || s.pad >= es) {
    return absl::InvalidArgumentError(absl::StrCat(w.op, " pad=", s.pad, " must be smaller than the kernel (",
                                                   er, "x", es, " with dilation ", s.dilation, ")"));
  }
  if (er > s.H + 2 * s.pad || es > s.W + 2 * s.pad) {
    return absl::InvalidArgumentError(absl::StrCat(w.op, " kernel ", er, "x", es, " is larger than the padded input ",
                                                   s.H + 2 * s.pad, "x", s.W + 2 * s.pad));
  }
  // Each factor is <= 2^20 and the checks divide, so nothing overflows.
  auto product_over = [](std::initializer_list<int64_t> f) {
    int64_t p = 1;
    for (int64_t x : f) {
      if (p > kMaxElements / x) return true;
      p *= x;
    }
    return false;
  };
  const bool too_big = product_over({s.N, s.C, s.H, s.W}) || product_over({s.N, s.K, s.OH, s.OW}) ||
                       (!depthwise && product_over({s.weight_channels(), s.C, s.R, s.S})) ||
                       s.data_elements() + s.out_elements() + s.weight_elements() > kMaxElements;
  if (too_big) {
    return absl::InvalidArgumentError(absl::StrCat(w.op, " ", w.Key(), " needs more than the ",
                                                   kMaxElements * 4 / (1 << 20), " MiB buffer limit"));
  }
  return absl::OkStatus();
}

std::vector<ir::BufferArg> ConvBuffers(const ConvShape& s) {
  std::vector<ir::BufferArg> out = {{"data", ir::Type::Float(), s.data_elements(), false},
                                    {"weight", ir::Type::Float(), s.weight_elements(), false}};
  if (s.bias) out.push_back({"bias", ir::Type::Float(), s.K, false});
  out.push_back({"out", ir::Type::Float(), s.out_elements(), true});
  return out;
}

namespace {

// Winograd's matrices (Lavin and Gray, 2016): F(2x2, 3x3) on the points
// 0, 1, -1, inf; F(4x4, 3x3) on 0, 1, -1, 2, -2, inf.
constexpr double kBt2[] = {1, 0, -1, 0, 0, 1, 1, 0, 0, -1, 1, 0, 0, 1, 0, -1};
constexpr double kG2[] = {1, 0, 0, .5, .5, .5, .5, -.5, .5, 0, 0, 1};
constexpr double kAt2[] = {1, 1, 1, 0, 0, 1, -1, -1};
constexpr double kBt4[] = {4, 0,  -5, 0, 1, 0, 0, -4, -4, 1,  1, 0, 0, 4, -4, -1, 1, 0,
                           0, -2, -1, 2, 1, 0, 0, 2,  -1, -2, 1, 0, 0, 4, 0,  -5, 0, 1};
constexpr double kG4[] = {1. / 4,  0,       0,      -1. / 6, -1. / 6,  -1. / 6, -1. / 6, 1. / 6, -1. / 6,
                          1. / 24, 1. / 12, 1. / 6, 1. / 24, -1. / 12, 1. / 6,  0,       0,      1};
constexpr double kAt4[] = {1, 1, 1, 1, 1, 0, 0, 1, -1, 2, -2, 0, 0, 1, 1, 4, 4, 0, 0, 1, -1, 8, -8, 1};

// Output (n, k, oh, ow) of `ref`: `acc` plus the bias, through the ReLU;
// its tolerance that of a float sum along `terms` roundings whose terms'
// absolute values (with the bias) sum to `mag`, and with tf32 what
// rounding the inputs may add.
void StoreOutput(const ConvShape& s, std::span<const std::span<const float>> in, int64_t n, int64_t k, int64_t oh,
                 int64_t ow, double acc, double mag, int64_t terms, ReferenceOutput& ref) {
  if (s.bias) {
    acc += in[2][k];
    mag += std::abs(static_cast<double>(in[2][k]));
  }
  if (s.relu) acc = std::max(acc, 0.0);
  const int64_t o = s.out_index(n, k, oh, ow);
  ref.expected[o] = static_cast<float>(acc);
  ref.tolerance[o] = SumTolerance(terms, mag) + (s.tf32 ? Tf32Tolerance(mag) : 0.0f);
}

// Per output, sum over c and the a*a points xi = a*i' + j' of
// At[i][i'] At[j][j'] U[xi][c][k] V[xi][c] with V = B^T d B of the tile's
// a x a input patch d (zero outside the input). Each term of the float
// kernel's sum is one At At U Bt Bt d product. The kernel applies each
// transform one side after the other, a row of at most a terms and one
// multiply by a coefficient per side, so a term's rounding path is at
// most 2a (V) + 1 (product) + C (the sum over c) + 2a (the output
// transform) + 1 (the bias) + 1 operations long: SumTolerance(C + 4a + 3)
// of their absolute sum (C + 19 for F(2x2, 3x3)).
ReferenceOutput WinogradReference(const ConvShape& s, std::span<const std::span<const float>> in) {
  ReferenceOutput ref;
  ref.expected.resize(s.out_elements());
  ref.tolerance.resize(s.out_elements());
  const std::span<const float> data = in[0], u = in[1];
  const WinogradMatrices& wm = WinogradMatricesFor(s.winograd);
  const int m = wm.m, a = wm.a, points = a * a;
  const int64_t TH = (s.OH + m - 1) / m, TW = (s.OW + m - 1) / m;
  std::vector<double> v(points * s.C), vabs(points * s.C), d(points), prod(points), prod_abs(points);
  for (int64_t n = 0; n < s.N; ++n) {
    for (int64_t th = 0; th < TH; ++th) {
      for (int64_t tw = 0; tw < TW; ++tw) {
        for (int64_t c = 0; c < s.C; ++c) {
          for (int r = 0; r < a; ++r) {
            for (int q = 0; q < a; ++q) {
              const int64_t h = m * th - s.pad + r, x = m * tw - s.pad + q;
              d[r * a + q] = h >= 0 && h < s.H && x >= 0 && x < s.W ? data[s.data_index(n, c, h, x)] : 0.0;
            }
          }
          for (int xi = 0; xi < points; ++xi) {
            double sum = 0, mag = 0;
            for (int r = 0; r < a; ++r) {
              for (int q = 0; q < a; ++q) {
                const double f = wm.Bt(xi / a, r) * wm.Bt(xi % a, q);
                sum += f * d[r * a + q];
                mag += std::abs(f * d[r * a + q]);
              }
            }
            v[xi * s.C + c] = sum;
            vabs[xi * s.C + c] = mag;
          }
        }
        for (int64_t k = 0; k < s.K; ++k) {
          for (int xi = 0; xi < points; ++xi) {
            double sum = 0, mag = 0;
            for (int64_t c = 0; c < s.C; ++c) {
              const double w = u[(xi * s.C + c) * s.K + k];
              sum += w * v[xi * s.C + c];
              mag += std::abs(w) * vabs[xi * s.C + c];
            }
            prod[xi] = sum;
            prod_abs[xi] = mag;
          }
          for (int i = 0; i < m; ++i) {
            for (int j = 0; j < m; ++j) {
              const int64_t oh = m * th + i, ow = m * tw + j;
              if (oh >= s.OH || ow >= s.OW) continue;
              double acc = 0, mag = 0;
              for (int xi = 0; xi < points; ++xi) {
                const double f = wm.At(i, xi / a) * wm.At(j, xi % a);
                acc += f * prod[xi];
                mag += std::abs(f) * prod_abs[xi];
              }
              StoreOutput(s, in, n, k, oh, ow, acc, mag, s.C + 4 * a + 3, ref);
            }
          }
        }
      }
    }
  }
  return ref;
}

}  // namespace

const WinogradMatrices& WinogradMatricesFor(int64_t m) {
  static const WinogradMatrices f2{2, 4, kBt2, kG2, kAt2}, f4{4, 6, kBt4, kG4, kAt4};
  return m == 4 ? f4 : f2;
}

ReferenceOutput ConvReference(const ConvShape& s, std::span<const std::span<const float>> in) {
  if (s.winograd) return WinogradReference(s, in);
  ReferenceOutput ref;
  ref.expected.resize(s.out_elements());
  ref.tolerance.resize(s.out_elements());
  const std::span<const float> data = in[0], weight = in[1];
  const int64_t cin = s.depthwise ? 1 : s.C;
  const int64_t terms = cin * s.R * s.S + (s.bias ? 1 : 0);
  for (int64_t n = 0; n < s.N; ++n) {
    for (int64_t k = 0; k < s.K; ++k) {
      for (int64_t oh = 0; oh < s.OH; ++oh) {
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          double acc = 0, mag = 0;
          for (int64_t ci = 0; ci < cin; ++ci) {
            const int64_t c = s.depthwise ? k : ci;
            for (int64_t r = 0; r < s.R; ++r) {
              const int64_t h = oh * s.stride - s.pad + r * s.dilation;
              if (h < 0 || h >= s.H) continue;
              for (int64_t q = 0; q < s.S; ++q) {
                const int64_t x = ow * s.stride - s.pad + q * s.dilation;
                if (x < 0 || x >= s.W) continue;
                const double p = static_cast<double>(data[s.data_index(n, c, h, x)]) *
                                 static_cast<double>(weight[s.weight_index(k, ci, r, q)]);
                acc += p;
                mag += std::abs(p);
              }
            }
          }
          StoreOutput(s, in, n, k, oh, ow, acc, mag, terms, ref);
        }
      }
    }
  }
  return ref;
}

absl::StatusOr<std::vector<float>> ConvWeightsFor(const Workload& w, std::span<const float> plain) {
  if (w.op != "conv2d") return absl::InvalidArgumentError(absl::StrCat("ConvWeightsFor takes conv2d, not ", w.op));
  const ConvShape s = ConvShapeOf(w, false);
  ConvShape p = s;  // the plain layout
  p.wblock = 0;
  p.winograd = 0;
  if (static_cast<int64_t>(plain.size()) != p.weight_elements()) {
    return absl::InvalidArgumentError(
        absl::StrCat(w.Key(), " has ", p.weight_elements(), " plain weights, got ", plain.size()));
  }
  if (!s.winograd && s.wblock == 0) return std::vector<float>(plain.begin(), plain.end());
  std::vector<float> out(s.weight_elements(), 0.0f);
  for (int64_t k = 0; k < s.K; ++k) {
    for (int64_t c = 0; c < s.C; ++c) {
      if (s.winograd) {
        const WinogradMatrices& wm = WinogradMatricesFor(s.winograd);
        for (int xi = 0; xi < wm.a * wm.a; ++xi) {
          double u = 0;
          for (int r = 0; r < 3; ++r) {
            for (int q = 0; q < 3; ++q)
              u += wm.G(xi / wm.a, r) * wm.G(xi % wm.a, q) * plain[p.weight_index(k, c, r, q)];
          }
          out[(xi * s.C + c) * s.K + k] = static_cast<float>(u);
        }
      } else {
        for (int64_t r = 0; r < s.R; ++r) {
          for (int64_t q = 0; q < s.S; ++q) out[s.weight_index(k, c, r, q)] = plain[p.weight_index(k, c, r, q)];
        }
      }
    }
  }
  return out;
}

double ConvFlops(const ConvShape& s) {
  const double cin = s.depthwise ? 1.0 : static_cast<double>(s.C);
  return 2.0 * static_cast<double>(s.N) * static_cast<double>(s.K) * static_cast<double>(s.OH) *
         static_cast<double>(s.OW) * cin * static_cast<double>(s.R) * static_cast<double>(s.S);
}

ir::Stmt PaddedRowCopy(const std::string& dst, ir::Expr dst_base, const std::string& src, ir::Expr src_base,
                       ir::Expr row_inside, ir::Expr phase, int64_t W, int64_t pad, int64_t stride, int64_t Wq,
                       const std::string& var) {
  using namespace ir;  // NOLINT
  Expr v = Var::Make(var), st = Expr(stride);
  // Slots [lo, hi) read columns inside [0, W); the numerators are >= 0.
  Expr lo = min(Expr(Wq), (Expr(pad + stride - 1) - phase) / st);
  Expr hi = max(lo, min(Expr(Wq), (Expr(W + pad + stride - 1) - phase) / st));
  auto zeros = [&](Expr from, Expr count) {
    return For::Make(var, from, count, ForKind::kVectorized, Store::Make(dst, FloatImm::Make(0), dst_base + v));
  };
  Stmt copy = For::Make(var, lo, hi - lo, ForKind::kVectorized,
                        Store::Make(dst, Load::Make(src, src_base + v * st + phase - Expr(pad)), dst_base + v));
  return IfThenElse::Make(row_inside, Block::Make({zeros(Expr(0), lo), copy, zeros(hi, Expr(Wq) - hi)}),
                          zeros(Expr(0), Expr(Wq)));
}

}  // namespace tunefarm::kernels
