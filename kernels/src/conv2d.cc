// conv2d: out = data (*) weight, float32, NCHW with OIHW weights or NHWC with
// HWIO weights, stride, padding and dilation; optional bias[K] and ReLU.
//
// Lowered on the shared GEMM schedule (gemm.h), so the whole GotoBLAS-shaped
// space applies. A 1x1, stride-1, unpadded convolution is a plain matrix
// product per image:
//   NCHW: out[k][p] = weight[k][c] * data[c][p]   (M = K, N = OH*OW)
//   NHWC: out[p][k] = data[p][c] * weight[c][k]   (M = OH*OW, N = K)
// Every other shape is a direct convolution whose reduction runs over the
// filter taps and, innermost, the input channels (k = (r*S + s)*C + c; a K
// block is part of one tap or whole taps walked one by one, so for a tap
// the input is a strided matrix and needs no gather):
//   NCHW: out[k][j] += weight[k][r,s,c] * plane_c[j + shift(r, s)] with
//         j = oh*Wq + ow (M = K, N = positions; one GEMM per image): output
//         positions are laid out over a padded width, so a tap is the same
//         shift for every position, and the positions past the real width
//         are computed into a scratch output and dropped. The input is
//         first copied into zero-padded planes split by row and column
//         phase, so a shift is contiguous for any stride; the weights are
//         reordered once to [K][R][S][C].
//   NHWC: out[i][k] += pin[oh*st + r*d][ow*st + s*d][c] * weight[r,s,c][k]
//         with i = oh*OW + ow (M = positions, N = K; one GEMM per image)
//         over the zero-padded input pin, copied row by row.
// These copies and the packed panels are the blocked layouts of data and
// weights built inside the kernel, as oneDNN and TVM's x86 schedules do.
// With wblock, the caller has blocked the weights once (as oneDNN's
// reorder and TVM's layout transform of constant weights do): with NHWC
// they are then B in panels of whole vectors, which the micro-kernel reads
// as they are. An NHWC 3x3 convolution at stride 1 may also run as
// Winograd F(2x2, 3x3), or F(4x4, 3x3) on weights given transformed for it
// (LowerWinograd).
#include <algorithm>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "conv_common.h"
#include "cpu_knobs.h"
#include "gemm.h"
#include "gpu_gemm.h"
#include "tunefarm/kernels/template.h"

namespace tunefarm::kernels {
namespace {

using namespace ir;  // NOLINT: this file builds IR

// The fewest input channels for which the space offers Winograd. The
// reference's tolerance is the bound on a float sum of the C*9 products,
// which grows with C; Winograd rounds in its transforms too. On random
// inputs in [-1, 1] its worst error was 2.4 times that bound at C = 1, 0.15
// at C = 4 and 0.017 at C = 16 (0.004 at C = 64).
constexpr int64_t kWinogradMinChannels = 16;

GemmSpec PointwiseGemm(const ConvShape& s) {
  GemmSpec g;
  g.batch = s.N;
  const int64_t P = s.OH * s.OW, image = s.C * P;
  auto at = [=](Expr idx) { return s.N > 1 ? Var::Make("bi") * Expr(image) + idx : idx; };
  if (!s.nhwc) {
    g.M = s.K;
    g.N = P;
    g.K = s.C;
    g.a = [=](Expr i, Expr k0, Expr kk) { return Load::Make("weight", s.weight_index(i, k0 + kk)); };
    g.b = [=](Expr k0, Expr kk, Expr j) { return Load::Make("data", at((k0 + kk) * Expr(P) + j)); };
    g.b_vector = [=](Expr k0, Expr kk, Expr j, Type t) { return Load::Make("data", at((k0 + kk) * Expr(P) + j), t); };
    g.bias = s.bias ? GemmSpec::Bias::kPerRow : GemmSpec::Bias::kNone;
  } else {
    g.M = P;
    g.N = s.K;
    g.K = s.C;
    g.a = [=](Expr i, Expr k0, Expr kk) { return Load::Make("data", at(i * Expr(s.C) + k0 + kk)); };
    g.b = [=](Expr k0, Expr kk, Expr j) { return Load::Make("weight", s.weight_index(j, k0 + kk)); };
    g.b_vector = [=](Expr k0, Expr kk, Expr j, Type t) {
      return Load::Make("weight", s.weight_index(j, k0 + kk), t);
    };
    g.b_panels = s.wblock > 0;
    g.bias = s.bias ? GemmSpec::Bias::kPerColumn : GemmSpec::Bias::kNone;
  }
  g.out = "out";
  g.relu = s.relu;
  return g;
}

GemmSpec DirectGemm(const ConvShape& s) {
  GemmSpec g;
  g.K = s.R * s.S * s.C;
  g.k_unit = s.C;
  const int64_t st = s.stride, d = s.dilation;
  // The filter tap (r, q) of a K block and the channel c0 + kk.
  auto tap_r = [=](Expr k0) { return k0 / Expr(s.C) / Expr(s.S); };
  auto tap_q = [=](Expr k0) { return k0 / Expr(s.C) % Expr(s.S); };
  auto chan = [=](Expr k0, Expr kk) { return k0 % Expr(s.C) + kk; };
  if (!s.nhwc) {
    // One GEMM per image over a padded width: output (oh, ow) is column
    // j = oh*Wq + ow, and columns with ow >= OW are computed into a scratch
    // output and dropped. The input is copied into zero-padded planes split
    // by row and column phase, [N][C][st][st][Hq][Wq] (row y of the padded
    // input goes to phase y % st, slot y / st; columns alike), or used as it
    // is when that is the same thing; then tap (r, q) of column j is element
    // j of the plane shifted by the tap, for every stride.
    g.batch = s.N;
    const int64_t Hq = s.OH + (s.R - 1) * d / st, Wq = s.OW + (s.S - 1) * d / st;
    const int64_t plane = st * st * Hq * Wq, cols = (s.OH - 1) * Wq + s.OW;
    const bool copy = st > 1 || s.pad > 0;
    const std::string src = copy ? "dpad" : "data";
    const Expr img = s.N > 1 ? Var::Make("bi") : Expr(0);
    if (copy) {
      Expr nn = Var::Make("n"), c = Var::Make("c"), py = Var::Make("py"), px = Var::Make("px"), hq = Var::Make("hq");
      Expr h = hq * Expr(st) + py - Expr(s.pad);
      Expr dst = ((((nn * Expr(s.C) + c) * Expr(st) + py) * Expr(st) + px) * Expr(Hq) + hq) * Expr(Wq);
      g.prologue = For::Make(
          "n", 0, s.N, ForKind::kSerial,
          For::Make("c", 0, s.C, ForKind::kSerial,
                    For::Make("py", 0, st, ForKind::kSerial,
                              For::Make("px", 0, st, ForKind::kSerial,
                                        For::Make("hq", 0, Hq, ForKind::kSerial,
                                                  PaddedRowCopy("dpad", dst, "data",
                                                                ((nn * Expr(s.C) + c) * Expr(s.H) + h) * Expr(s.W),
                                                                (Expr(0) <= h) && (h < Expr(s.H)), px, s.W, s.pad, st,
                                                                Wq, "wq"))))));
      g.scratch.emplace_back("dpad", s.N * s.C * plane);
    }
    auto in_at = [=](Expr k0, Expr kk, Expr j) {
      Expr r = tap_r(k0), q = tap_q(k0);
      Expr phase = (r * Expr(d)) % Expr(st) * Expr(st) + (q * Expr(d)) % Expr(st);
      Expr shift = (r * Expr(d)) / Expr(st) * Expr(Wq) + (q * Expr(d)) / Expr(st);
      return (img * Expr(s.C) + chan(k0, kk)) * Expr(plane) + phase * Expr(Hq * Wq) + shift + j;
    };
    // The weights reordered once to [K][R*S][C], so that A is a plain
    // row-major K x (R*S*C) matrix in the reduction order.
    {
      Expr k = Var::Make("k"), t = Var::Make("t"), c = Var::Make("c");
      Stmt reorder = For::Make(
          "k", 0, s.K, ForKind::kSerial,
          For::Make("t", 0, s.R * s.S, ForKind::kSerial,
                    For::Make("c", 0, s.C, ForKind::kSerial,
                              Store::Make("wt", Load::Make("weight", s.weight_index(k, c * Expr(s.R * s.S) + t)),
                                          (k * Expr(s.R * s.S) + t) * Expr(s.C) + c))));
      g.prologue = g.prologue.defined() ? Block::Make({g.prologue, reorder}) : reorder;
      g.scratch.emplace_back("wt", s.K * s.C * s.R * s.S);
    }
    g.M = s.K;
    g.N = cols;
    g.a = [=](Expr i, Expr k0, Expr kk) { return Load::Make("wt", i * Expr(s.C * s.R * s.S) + k0 + kk); };
    g.b = [=](Expr k0, Expr kk, Expr j) { return Load::Make(src, in_at(k0, kk, j)); };
    g.b_vector = [=](Expr k0, Expr kk, Expr j, Type t) { return Load::Make(src, in_at(k0, kk, j), t); };
    g.out = "otmp";
    g.out_index = [=](Expr i, Expr j) { return i * Expr(cols) + j; };
    g.scratch.emplace_back("otmp", s.K * cols);
    {
      Expr k = Var::Make("k"), oh = Var::Make("oh"), ow = Var::Make("ow");
      g.finish = For::Make(
          "k", 0, s.K, ForKind::kSerial,
          For::Make("oh", 0, s.OH, ForKind::kSerial,
                    For::Make("ow", 0, s.OW, ForKind::kVectorized,
                              Store::Make("out", Load::Make("otmp", k * Expr(cols) + oh * Expr(Wq) + ow),
                                          ((img * Expr(s.K) + k) * Expr(s.OH) + oh) * Expr(s.OW) + ow))));
    }
    g.bias = s.bias ? GemmSpec::Bias::kPerRow : GemmSpec::Bias::kNone;
    g.relu = s.relu;
    return g;
  } else {
    // The input, zero-padded to [N][Hp][Wp][C] when the convolution pads.
    const int64_t Hp = s.H + 2 * s.pad, Wp = s.W + 2 * s.pad;
    const std::string src = s.pad > 0 ? "dpad" : "data";
    if (s.pad > 0) {
      // Row by row: a padded row is pad*C zeros, the W*C floats of the
      // input row, pad*C zeros (or all zeros above and below the input).
      Expr nn = Var::Make("n"), hp = Var::Make("hp");
      Expr h = hp - Expr(s.pad);
      g.prologue = For::Make(
          "n", 0, s.N, ForKind::kSerial,
          For::Make("hp", 0, Hp, ForKind::kSerial,
                    PaddedRowCopy("dpad", (nn * Expr(Hp) + hp) * Expr(Wp * s.C), "data",
                                  (nn * Expr(s.H) + h) * Expr(s.W * s.C), (Expr(0) <= h) && (h < Expr(s.H)), Expr(0),
                                  s.W * s.C, s.pad * s.C, 1, Wp * s.C, "e")));
      g.scratch.emplace_back("dpad", s.N * Hp * Wp * s.C);
    }
    // One GEMM per image: output position i = oh*OW + ow is row i, and its
    // tap (r, q) reads padded input row (oh*st + r*d, ow*st + q*d); each
    // row of a register tile finds its own start once, outside the
    // reduction. "bi" (bound when N > 1) is the image.
    g.batch = s.N;
    g.M = s.OH * s.OW;
    g.N = s.K;
    const Expr img = s.N > 1 ? Var::Make("bi") : Expr(0);
    // The padded input row and column that position i reads at the tap
    // of k0.
    auto y_of = [=](Expr i, Expr k0) { return i / Expr(s.OW) * Expr(st) + tap_r(k0) * Expr(d); };
    auto x_of = [=](Expr i, Expr k0) { return i % Expr(s.OW) * Expr(st) + tap_q(k0) * Expr(d); };
    // Element (y, x) of channel chan(k0, kk) in an [N][h][w][C] buffer.
    auto input_at = [=](const std::string& buf, int64_t h, int64_t w, Expr y, Expr x, Expr k0, Expr kk) {
      return Load::Make(buf, ((img * Expr(h) + y) * Expr(w) + x) * Expr(s.C) + chan(k0, kk));
    };
    g.a = [=](Expr i, Expr k0, Expr kk) { return input_at(src, Hp, Wp, y_of(i, k0), x_of(i, k0), k0, kk); };
    // A tile of positions skips a tap whose input rows, for the first
    // position's output row and the last's, are both above or both below
    // the input: they read nothing but padding. A tile of whole rows also
    // leaves out its first or last position when the tap reads only
    // padding there (a row or a column outside the input).
    if (s.pad > 0) {
      g.a_live = [=](Expr i0, Expr i1, Expr k0) {
        return (Expr(s.pad) <= y_of(i1, k0)) && (y_of(i0, k0) < Expr(s.pad + s.H));
      };
      g.a_row_live = [=](Expr i, Expr k0) {
        Expr y = y_of(i, k0), x = x_of(i, k0);
        return (Expr(s.pad) <= y) && (y < Expr(s.pad + s.H)) && (Expr(s.pad) <= x) && (x < Expr(s.pad + s.W));
      };
    }
    // At stride 1 with one column of padding, a tap reads the left padding
    // only at the first position of an output row and the right padding
    // only at the last (never both: the filter is wider than the padding),
    // so register tiles of whole rows, leaving those out (and the taps of
    // rows outside the input), read the input in place.
    if (s.pad == 1 && st == 1) {
      g.a_direct = [=](Expr i, Expr k0, Expr kk) {
        return input_at("data", s.H, s.W, y_of(i, k0) - Expr(1), x_of(i, k0) - Expr(1), k0, kk);
      };
      g.a_direct_rows = s.OW;
    }
    g.out = "out";
    g.b = [=](Expr k0, Expr kk, Expr j) { return Load::Make("weight", s.weight_index(j, k0 + kk)); };
    g.b_vector = [=](Expr k0, Expr kk, Expr j, Type t) {
      return Load::Make("weight", s.weight_index(j, k0 + kk), t);
    };
    g.b_panels = s.wblock > 0;
    g.bias = s.bias ? GemmSpec::Bias::kPerColumn : GemmSpec::Bias::kNone;
    g.relu = s.relu;
    return g;
  }
}

// Winograd F(m x m, 3x3) (Lavin and Gray, 2016) for NHWC 3x3 convolutions
// at stride 1, over a = m + 2 points: each m x m tile of outputs is
// A^T [(G g G^T) . (B^T d B)] A of the a x a input patch d under it
// (padding read as zeros), so with m = 2 a tile costs 16 multiplies per
// input channel instead of 36, with m = 4 36 instead of 144. The
// element-wise products of a chunk of `tb` tiles are a*a GEMMs over the
// input channels, one per point xi of the a x a transform (batch "bi" =
// xi):
//   wm[xi][t][k] = sum_c wv[xi][t][c] * wu[xi][c][k]
// (M = tb, N = K, K = C), lowered on the shared GEMM schedule. Weights
// given transformed (winograd=1: m = 2, winograd=2: m = 4) are wu; plain
// or blocked ones are transformed once per call into wu (G g G^T, m = 2).
// Then per image and chunk, the input into wv (B^T d B), the products,
// and wm back to the output tiles (A^T m A) plus the bias, through the
// ReLU: a chunk's wv and wm stay in cache from one step to the next. The
// a*a matrices of each buffer lie one cache line more than their size
// apart: the transforms read or write all of them at once, and sizes that
// are multiples of 4 KiB would put those streams in one L1 set.
bool WinogradApplies(const ConvShape& s) {
  return s.nhwc && s.R == 3 && s.S == 3 && s.stride == 1 && s.dilation == 1 && !s.tf32 && s.C >= kWinogradMinChannels;
}

struct WinogradShape {
  explicit WinogradShape(const ConvShape& s, int64_t tiles)
      : m(s.winograd ? s.winograd : 2),
        a(m + 2),
        TW((s.OW + m - 1) / m),
        T((s.OH + m - 1) / m * TW),
        tb(std::min(tiles, T)),
        su(s.winograd ? s.C * s.K : s.C * s.K + 16),
        sv(tb * s.C + 16),
        sm(tb * s.K + 16) {}
  int64_t m, a;        // output tile m x m, transform points a x a
  int64_t TW, T;       // tiles per row, tiles
  int64_t tb;          // tiles per chunk
  // The strides of wu, wv and wm from one xi to the next; the weights given
  // transformed (winograd=1 or 2) are wu, unpadded.
  int64_t su, sv, sm;
};

GemmSpec WinogradGemm(const ConvShape& s, const WinogradShape& ws) {
  GemmSpec g;
  g.batch = ws.a * ws.a;
  g.M = ws.tb;
  g.N = s.K;
  g.K = s.C;
  const Expr bi = Var::Make("bi");
  g.a = [=](Expr i, Expr k0, Expr kk) { return Load::Make("wv", bi * Expr(ws.sv) + i * Expr(s.C) + k0 + kk); };
  auto u_at = [=](Expr k0, Expr kk, Expr j) { return bi * Expr(ws.su) + (k0 + kk) * Expr(s.K) + j; };
  const std::string u = s.winograd ? "weight" : "wu";
  g.b = [=](Expr k0, Expr kk, Expr j) { return Load::Make(u, u_at(k0, kk, j)); };
  g.b_vector = [=](Expr k0, Expr kk, Expr j, Type t) { return Load::Make(u, u_at(k0, kk, j), t); };
  g.out = "wm";
  g.out_index = [=](Expr i, Expr j) { return bi * Expr(ws.sm) + i * Expr(s.K) + j; };
  return g;
}

// Row i of a transform matrix x (`cols` columns, row-major) applied to
// f(0 .. cols-1): its terms chained in column order from the first
// positive one, +-1 coefficients as adds and subtracts, and a magnitude
// all the terms share (other than 1) multiplied once, after the sum. The
// two-sided transform X y X^T is then TwoSided(x, cols, i, j, y).
using TransformRow = std::function<Expr(int)>;
Expr ApplyRow(const double* x, int cols, int i, const TransformRow& f) {
  const double* row = x + i * cols;
  double shared = 0;
  for (int j = 0; j < cols; ++j) {
    if (row[j] == 0) continue;
    if (shared == 0) {
      shared = std::abs(row[j]);
    } else if (std::abs(row[j]) != shared) {
      shared = 1;
    }
  }
  auto term = [&](int j) {
    const double c = std::abs(row[j]) / shared;
    return c == 1 ? f(j) : FloatImm::Make(c) * f(j);
  };
  int first = 0;
  while (first < cols && !(row[first] > 0)) ++first;
  Expr sum = first < cols ? term(first) : Expr();
  for (int j = 0; j < cols; ++j) {
    if (j == first || row[j] == 0) continue;
    if (!sum.defined()) {
      sum = FloatImm::Make(0) - term(j);
    } else {
      sum = row[j] > 0 ? sum + term(j) : sum - term(j);
    }
  }
  return shared == 1 ? sum : FloatImm::Make(shared) * sum;
}
Expr TwoSided(const double* x, int cols, int i, int j, const std::function<Expr(int, int)>& y) {
  return ApplyRow(x, cols, i, [&](int r) { return ApplyRow(x, cols, j, [&](int q) { return y(r, q); }); });
}

absl::StatusOr<Kernel> LowerWinograd(const ConvShape& s, std::vector<BufferArg> args, const ConfigSpace& space,
                                     const Config& c) {
  const WinogradShape ws(s, space.IntValue(c, "wtiles"));
  const WinogradMatrices& wmx = WinogradMatricesFor(ws.m);
  const int a = static_cast<int>(ws.a), points = a * a;
  const int64_t chunks = (ws.T + ws.tb - 1) / ws.tb, threads = space.IntValue(c, "threads");
  // With threads and chunks enough for each to take two or more, each
  // thread runs whole chunks (its own wv and wm; the products serial): a
  // chunk's work is too small to share out 18 times over. Otherwise the
  // threads share each step of a chunk.
  const bool by_chunk = threads > 1 && chunks >= 2 * threads;
  absl::StatusOr<Config> gemm_config = by_chunk ? space.With(c, {{"threads", int64_t{1}}}) : c;
  if (!gemm_config.ok()) return gemm_config.status();
  absl::StatusOr<Kernel> kernel = LowerGemm(WinogradGemm(s, ws), std::move(args), space, *gemm_config);
  if (!kernel.ok()) return kernel;
  ApplyCpuBuildKnobs(space, c, *kernel);
  const ForKind step = by_chunk ? ForKind::kSerial : ForKind::kParallel;
  Expr n = Var::Make("n"), ch = Var::Make("ch"), tl = Var::Make("tl"), t = Var::Make("t"), ci = Var::Make("c"),
       k = Var::Make("k");
  Expr th = t / Expr(ws.TW), tw = t % Expr(ws.TW);

  // The chunk's input, wv[xi][tl][c] = (B^T d B)[xi] of tile t = ch*tb + tl
  // (the last tile again past the end), whose patch element (r, q) is input
  // row m*th - pad + r, column m*tw - pad + q; a position outside the
  // input reads a clamped one and takes zero instead.
  // (Each element is loaded unconditionally into "d<r><q>" first, so that
  // the compiler may vectorize the loop over channels.)
  auto y_of = [&](int r) { return th * Expr(ws.m) + Expr(r - s.pad); };
  auto x_of = [&](int q) { return tw * Expr(ws.m) + Expr(q - s.pad); };
  auto d_name = [](int r, int q) { return "d" + std::to_string(r) + std::to_string(q); };
  auto patch = [&](int r, int q) {
    Expr y = y_of(r), x = x_of(q);
    Expr inside = (Expr(0) <= y) && (y < Expr(s.H)) && (Expr(0) <= x) && (x < Expr(s.W));
    return Select::Make(inside, Var::Make(d_name(r, q), Type::Float()), FloatImm::Make(0));
  };
  std::vector<Stmt> wv;
  for (int xi = 0; xi < points; ++xi) {
    wv.push_back(Store::Make("wv", TwoSided(wmx.bt, a, xi / a, xi % a, patch), Expr(xi * ws.sv) + tl * Expr(s.C) + ci));
  }
  Stmt transform = Block::Make(wv);
  for (int r = a - 1; r >= 0; --r) {
    for (int q = a - 1; q >= 0; --q) {
      Expr yc = max(Expr(0), min(Expr(s.H - 1), y_of(r))), xc = max(Expr(0), min(Expr(s.W - 1), x_of(q)));
      transform = LetStmt::Make(d_name(r, q), Load::Make("data", s.data_index(n, ci, yc, xc)), transform);
    }
  }
  auto over_chunk = [&](Stmt body) {
    return For::Make("tl", 0, ws.tb, step, LetStmt::Make("t", min(ch * Expr(ws.tb) + tl, Expr(ws.T - 1)), body));
  };
  Stmt input = over_chunk(For::Make("c", 0, s.C, ForKind::kVectorized, transform));

  // The chunk's outputs: tile t's m x m outputs are (A^T m A) of its a*a
  // products, plus the bias, through the ReLU; a tile past the end, or
  // past an edge that m does not divide, keeps only the outputs inside.
  auto prod = [&](int r, int q) { return Load::Make("wm", Expr((r * a + q) * ws.sm) + tl * Expr(s.K) + k); };
  std::vector<Stmt> outs;
  for (int i = 0; i < ws.m; ++i) {
    for (int j = 0; j < ws.m; ++j) {
      Expr v = TwoSided(wmx.at, a, i, j, prod);
      if (s.bias) v = v + Load::Make("bias", k);
      if (s.relu) v = Select::Make(FloatImm::Make(0) < v, v, FloatImm::Make(0));
      Expr oh = th * Expr(ws.m) + Expr(i), ow = tw * Expr(ws.m) + Expr(j);
      Stmt st = Store::Make("out", v, s.out_index(n, k, oh, ow));
      Expr inside;
      if (s.OH % ws.m != 0 && i >= s.OH % ws.m) inside = oh < Expr(s.OH);
      if (s.OW % ws.m != 0 && j >= s.OW % ws.m) {
        inside = inside.defined() ? inside && (ow < Expr(s.OW)) : ow < Expr(s.OW);
      }
      outs.push_back(inside.defined() ? IfThenElse::Make(inside, st) : st);
    }
  }
  Stmt output = For::Make("k", 0, s.K, ForKind::kVectorized, Block::Make(outs));
  if (ws.T % ws.tb != 0) output = IfThenElse::Make(ch * Expr(ws.tb) + tl < Expr(ws.T), output);
  output = over_chunk(output);
  auto chunk_buffers = [&](Stmt st) {
    st = Allocate::Make("wm", Type::Float(), points * ws.sm, MemoryScope::kHeap, st);
    return Allocate::Make("wv", Type::Float(), points * ws.sv, MemoryScope::kHeap, st);
  };
  Stmt chunk = Block::Make({input, kernel->func.body, output});
  Stmt body = by_chunk ? For::Make("ch", 0, chunks, ForKind::kParallel, chunk_buffers(chunk))
                       : chunk_buffers(For::Make("ch", 0, chunks, ForKind::kSerial, chunk));
  body = For::Make("n", 0, s.N, ForKind::kSerial, body);
  if (!s.winograd) {
    // Weights not given transformed are transformed first, in every call:
    // wu[xi][c][k] = (G g G^T)[xi] of filter (c, k), for k = kq*kw + kl in
    // the weights' own blocks (kw output channels): the innermost loop reads
    // a block's taps contiguously, and the next channel continues each tap's
    // run.
    const int64_t kw = s.weight_block();
    Expr kq = Var::Make("kq"), kl = Var::Make("kl");
    std::vector<Stmt> wu;
    for (int xi = 0; xi < points; ++xi) {
      Expr v = TwoSided(wmx.g, 3, xi / a, xi % a, [&](int r, int q) {
        return Load::Make("weight", s.weight_index_in_block(kq, kl, Expr((r * 3 + q) * s.C) + ci));
      });
      wu.push_back(Store::Make("wu", v, Expr(xi * ws.su) + ci * Expr(s.K) + k));
    }
    Stmt wu_block = Block::Make(wu);
    if (s.K % kw != 0) wu_block = IfThenElse::Make(k < Expr(s.K), wu_block);
    wu_block = LetStmt::Make("k", kq * Expr(kw) + kl, wu_block);
    Stmt weights =
        For::Make("kq", 0, (s.K + kw - 1) / kw, ForKind::kSerial,
                  For::Make("c", 0, s.C, ForKind::kParallel, For::Make("kl", 0, kw, ForKind::kVectorized, wu_block)));
    body = Allocate::Make("wu", Type::Float(), points * ws.su, MemoryScope::kHeap, Block::Make({weights, body}));
  }
  kernel->func.body = body;
  return kernel;
}

GemmSpec ConvGemm(const ConvShape& s) {
  const bool pointwise = s.R == 1 && s.S == 1 && s.stride == 1 && s.pad == 0;
  return pointwise ? PointwiseGemm(s) : DirectGemm(s);
}

class Conv2dTemplate : public Template {
 public:
  std::string_view op() const override { return "conv2d"; }
  std::vector<std::string> ParamNames() const override { return ConvParamNames(false); }
  // tf32=1: the inputs may be rounded to TF32 (the GPU space then offers
  // tensor cores). wblock=b: the weights come blocked by b output channels;
  // winograd=1 / 2: transformed for Winograd F(2x2, 3x3) / F(4x4, 3x3)
  // (conv_common.h); CPU only.
  std::vector<std::pair<std::string, int64_t>> OptionalParams() const override {
    std::vector<std::pair<std::string, int64_t>> p = ConvOptionalParams();
    p.emplace_back("tf32", 0);
    p.emplace_back("wblock", 0);
    p.emplace_back("winograd", 0);
    return p;
  }
  std::vector<TextParamSpec> TextParams() const override { return ConvTextParams(); }
  absl::Status Validate(const Workload& w) const override { return ValidateConv(w, false); }
  std::string_view declared_version() const override { return "conv2d-cpu-1"; }

  // The GEMM space, and for a convolution Winograd applies to, the knobs
  // "algo" ("direct" or "winograd") and "wtiles" (Winograd's tiles per
  // chunk; see LowerWinograd), before the build knobs. Weights given
  // transformed (winograd=1 or 2) leave Winograd only: no "algo".
  absl::StatusOr<ConfigSpace> Space(const Workload& w) const override {
    const ConvShape s = ConvShapeOf(w, false);
    absl::StatusOr<ConfigSpace> space = GemmSpace(Gemm(w));
    if (!space.ok() || !(s.winograd || WinogradApplies(s))) return space;
    std::vector<Knob> knobs = space->knobs();
    const auto at = knobs.end() - static_cast<std::ptrdiff_t>(CpuBuildKnobs().size());
    std::vector<Knob> added = {{"wtiles", KnobKind::kSplit, IntValues({8, 16, 32, 64})}};
    if (!s.winograd) added.insert(added.begin(), {"algo", KnobKind::kChoice, StringValues({"direct", "winograd"})});
    knobs.insert(at, added.begin(), added.end());
    return ConfigSpace::Create(std::move(knobs));
  }
  Config DefaultConfig(const Workload& w, const ConfigSpace& space) const override {
    return GemmDefaultConfig(Gemm(w), space);
  }
  // The GEMM seeds of the direct convolution and, where it applies, those
  // of the Winograd products in chunks of 16 tiles (the chunk that measured
  // best on ResNet's 3x3 layers).
  std::vector<Config> SeedConfigs(const Workload& w, const ConfigSpace& space) const override {
    const ConvShape s = ConvShapeOf(w, false);
    std::vector<Config> seeds;
    if (!s.winograd) seeds = GemmSeedConfigs(Gemm(w), space);
    if (!space.HasKnob("wtiles")) return seeds;  // Space offers it where Winograd applies
    constexpr int64_t kTiles = 16;
    std::vector<std::pair<std::string, KnobValue>> winograd = {{"wtiles", kTiles}};
    if (!s.winograd) winograd.emplace_back("algo", std::string("winograd"));
    for (const Config& c : GemmSeedConfigs(WinogradGemm(s, WinogradShape(s, kTiles)), space)) {
      absl::StatusOr<Config> wc = space.With(c, winograd);
      if (wc.ok()) seeds.push_back(*wc);
    }
    return seeds;
  }
  absl::StatusOr<Kernel> Instantiate(const Workload& w, const ConfigSpace& space, const Config& c) const override {
    const ConvShape s = ConvShapeOf(w, false);
    if (s.winograd || (space.HasKnob("algo") && space.StrValue(c, "algo") == "winograd")) {
      return LowerWinograd(s, Buffers(w), space, c);
    }
    return LowerGemm(ConvGemm(s), Buffers(w), space, c);
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

// Implicit GEMM on a GPU: no copies, the padding is a bounds check on the
// gather, and the images are one GEMM dimension.
//   NHWC: i = (n, oh, ow), j = k, reduction (r, s, c): A is the input
//         gather, B the HWIO weights as a (R*S*C) x K matrix.
//   NCHW: i = k, j = (n, oh, ow), reduction (c, r, s): A is the OIHW
//         weights as a K x (C*R*S) matrix, B the input gather.
GpuGemmSpec ConvGpuGemm(const ConvShape& s) {
  GpuGemmSpec g;
  const int64_t P = s.OH * s.OW, st = s.stride, d = s.dilation;
  const bool pointwise = s.R == 1 && s.S == 1 && s.stride == 1 && s.pad == 0;
  // Input row h and column w of output (oh, ow) at tap (r, q).
  auto h_of = [=](Expr oh, Expr r) { return oh * Expr(st) - Expr(s.pad) + r * Expr(d); };
  auto w_of = [=](Expr ow, Expr q) { return ow * Expr(st) - Expr(s.pad) + q * Expr(d); };
  auto inside = [=](Expr h, Expr w) {
    return (Expr(0) <= h) && (h < Expr(s.H)) && (Expr(0) <= w) && (w < Expr(s.W));
  };
  g.K = s.R * s.S * s.C;
  if (s.nhwc) {
    g.M = s.N * P;
    g.N = s.K;
    // k = (r*S + q)*C + c
    auto h = [=](Expr i, Expr k) { return h_of(i % Expr(P) / Expr(s.OW), k / Expr(s.C) / Expr(s.S)); };
    auto w = [=](Expr i, Expr k) { return w_of(i % Expr(s.OW), k / Expr(s.C) % Expr(s.S)); };
    g.a.buffer = "data";
    g.a.index = [=](Expr i, Expr k) {
      return ((i / Expr(P) * Expr(s.H) + h(i, k)) * Expr(s.W) + w(i, k)) * Expr(s.C) + k % Expr(s.C);
    };
    if (!pointwise) g.a.valid = [=](Expr i, Expr k) { return inside(h(i, k), w(i, k)); };
    g.a.k_contiguous = true;
    g.a.vec4 = s.C % 4 == 0;
    g.b = {"weight", [=](Expr j, Expr k) { return k * Expr(s.K) + j; }, {}, false, s.K % 4 == 0};
    g.bias = s.bias ? GemmSpec::Bias::kPerColumn : GemmSpec::Bias::kNone;
  } else {
    g.M = s.K;
    g.N = s.N * P;
    const int64_t RS = s.R * s.S, CRS = g.K;
    g.a = {"weight", [=](Expr i, Expr k) { return i * Expr(CRS) + k; }, {}, true, CRS % 4 == 0};
    // k = (c*R + r)*S + q
    auto h = [=](Expr j, Expr k) { return h_of(j % Expr(P) / Expr(s.OW), k % Expr(RS) / Expr(s.S)); };
    auto w = [=](Expr j, Expr k) { return w_of(j % Expr(s.OW), k % Expr(s.S)); };
    g.b.buffer = "data";
    g.b.index = [=](Expr j, Expr k) {
      return ((j / Expr(P) * Expr(s.C) + k / Expr(RS)) * Expr(s.H) + h(j, k)) * Expr(s.W) + w(j, k);
    };
    if (!pointwise) g.b.valid = [=](Expr j, Expr k) { return inside(h(j, k), w(j, k)); };
    g.b.k_contiguous = false;
    // A pointwise plane is contiguous along the positions of one image.
    g.b.vec4 = pointwise && P % 4 == 0;
    g.out_index = [=](Expr i, Expr j) { return (j / Expr(P) * Expr(s.K) + i) * Expr(P) + j % Expr(P); };
    g.bias = s.bias ? GemmSpec::Bias::kPerRow : GemmSpec::Bias::kNone;
  }
  g.out = "out";
  g.relu = s.relu;
  g.tf32 = s.tf32;
  return g;
}

class CudaConv2dTemplate : public Conv2dTemplate {
 public:
  DeviceClass device() const override { return DeviceClass::kCuda; }
  std::string_view declared_version() const override { return "conv2d-cuda-1"; }
  absl::Status Validate(const Workload& w) const override {
    if (w.param_or("wblock", 0) != 0 || w.param_or("winograd", 0) != 0) {
      return absl::InvalidArgumentError(
          "conv2d wblock / winograd: blocked or transformed weights are CPU layouts; the cuda template takes "
          "plain weights (leave wblock and winograd out)");
    }
    return Conv2dTemplate::Validate(w);
  }
  absl::StatusOr<ConfigSpace> Space(const Workload& w) const override { return GpuGemmSpace(Gemm(w)); }
  Config DefaultConfig(const Workload& w, const ConfigSpace& space) const override {
    return GpuGemmDefaultConfig(Gemm(w), space);
  }
  std::vector<Config> SeedConfigs(const Workload&, const ConfigSpace&) const override { return {}; }
  absl::StatusOr<Kernel> Instantiate(const Workload& w, const ConfigSpace& space, const Config& c) const override {
    return LowerGpuGemm(Gemm(w), Buffers(w), space, c);
  }

 private:
  static GpuGemmSpec Gemm(const Workload& w) { return ConvGpuGemm(ConvShapeOf(w, false)); }
};

}  // namespace

std::unique_ptr<Template> NewConv2dTemplate() { return std::make_unique<Conv2dTemplate>(); }
std::unique_ptr<Template> NewCudaConv2dTemplate() { return std::make_unique<CudaConv2dTemplate>(); }

}  // namespace tunefarm::kernels
