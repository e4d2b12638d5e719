// The schedule is GotoBLAS/BLIS-shaped: three cache-tile loops (jc over N,
// pc over K, ic over M) in a tunable order, optional packing of B and A into
// contiguous zero-padded panels, two register-tile loops (jr, ir), and a
// micro-kernel that keeps an MR x (NV*W) tile of the output in vector
// registers while walking the K block. Tiles need not divide the shape, so
// primes work: a tile short of rows runs the micro-kernel on rows it then
// drops, and the last columns' tile runs a narrower one, on the output when
// those columns are whole vectors and on a zero-padded copy otherwise, its
// B columns zero-padded in a panel.
#include "gemm.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <initializer_list>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cpu_knobs.h"

namespace tunefarm::kernels {
namespace {

using namespace ir;  // NOLINT: this file builds IR

// The most floats of packed panels a kernel keeps on the stack (per
// thread with rows / cols): 128 KiB, far below any thread's stack.
constexpr int64_t kStackPanelFloats = 32768;
// Vector registers of AVX-512, the file the register tiles are sized for.
constexpr int64_t kVectorRegisters = 32;
// Rows of A that the dot-product columns (LowerGemm) take at a time.
constexpr int64_t kDotRows = 8;
// k steps ahead that a tile packing its B panel as it goes (pack_b=2)
// brings B's rows into L1. The tiles before it bring them into L2 only;
// from there each of the tile's steps still waited on a row of B (on matmul
// 128x3072x768 the tile loop ran ~6% faster with this, any of 4 .. 12
// steps ahead alike).
constexpr int64_t kPackAhead = 8;

int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
Expr CeilDiv(const Expr& a, int64_t b) { return (a + Expr(b - 1)) / Expr(b); }
Expr V(const char* name) { return Var::Make(name); }

// Whether threads had better split N than M: each thread of a split packs
// all of the other operand, so the split goes along the longer of M and N,
// unless halves of N in whole tiles of `nr` columns are far from equal
// (N=129 in tiles of 48: 96 and 33).
bool SplitColumns(const GemmSpec& spec, int64_t nr) {
  const int64_t half = RoundUp((spec.N + 1) / 2, nr);
  return spec.M < spec.N && 2 * half * 4 <= spec.N * 5;
}

// A loop over one cache-tile dimension of the range [lo, end): binds <d>_o,
// <d> = lo + <d>_o * tile and <size> = min(tile, end - <d>) (the block's
// size) around `body`.
Stmt TileLoop(const std::string& d, const std::string& b, const Expr& lo, const Expr& end, int64_t tile,
              const Stmt& body) {
  std::string o = d + "_o";
  const IntImm* lo_imm = lo.as<IntImm>();
  const bool from_zero = lo_imm != nullptr && lo_imm->value == 0;
  Stmt s = LetStmt::Make(b, min(Expr(tile), end - Var::Make(d)), body);
  s = LetStmt::Make(d, from_zero ? Var::Make(o) * Expr(tile) : lo + Var::Make(o) * Expr(tile), s);
  return For::Make(o, 0, CeilDiv(from_zero ? end : end - lo, tile), ForKind::kSerial, s);
}

// What FoldRows builds: `stmt` leaves each row's sum in one float of the
// stack array (`stack_floats` floats), row r's at index `lane[r]`.
struct FoldedRows {
  Stmt stmt;
  std::vector<int64_t> lane;
  int64_t stack_floats = 0;
};

// Sums the lanes of each of the `rows` (a power of two) vectors of `lanes`
// floats in register array `regs` together: vectors are folded in pairs,
// each fold (tf_fold<lanes>_<g>, two shuffles and one add) halving the
// lanes that each row's partial sums take, until every row's sum is one
// lane; the vectors left are stored into `stack`. Eight rows of 16 lanes
// take 8 folds, where summing each row alone takes 8 x 4 halvings.
FoldedRows FoldRows(const std::string& regs, const std::string& stack, int64_t rows, int64_t lanes) {
  const Type vec_t = Type::Float(32, static_cast<int>(lanes));
  // The row of each lane of each vector still in use.
  std::vector<std::vector<int64_t>> label(rows, std::vector<int64_t>(lanes));
  for (int64_t r = 0; r < rows; ++r) std::fill(label[r].begin(), label[r].end(), r);
  std::vector<Stmt> steps;
  for (int64_t g = lanes; g > 1; g /= 2) {
    const int64_t h = g / 2, pairs = std::max<int64_t>(1, static_cast<int64_t>(label.size()) / 2);
    const std::string fold = absl::StrCat("tf_fold", lanes, "_", g);
    std::vector<std::vector<int64_t>> next;
    for (int64_t p = 0; p < pairs; ++p) {
      const int64_t x = label.size() > 1 ? 2 * p : 0, y = label.size() > 1 ? 2 * p + 1 : 0;
      // Lane i of the fold: group i / h, from x for even groups and y for
      // odd ones, both halves of that group of g lanes added.
      std::vector<int64_t> out(lanes);
      for (int64_t i = 0; i < lanes; ++i) out[i] = label[(i / h) % 2 ? y : x][(i / h / 2) * g + i % h];
      next.push_back(std::move(out));
      steps.push_back(Store::Make(
          regs, Call::Make(fold, {Load::Make(regs, Expr(x), vec_t), Load::Make(regs, Expr(y), vec_t)}, vec_t),
          Expr(p)));
    }
    label = std::move(next);
  }
  FoldedRows folded;
  folded.lane.assign(rows, -1);
  for (size_t v = 0; v < label.size(); ++v) {
    steps.push_back(Store::Make(stack, Load::Make(regs, Expr(static_cast<int64_t>(v)), vec_t),
                                Expr(static_cast<int64_t>(v) * lanes)));
    for (int64_t i = lanes - 1; i >= 0; --i) folded.lane[label[v][i]] = static_cast<int64_t>(v) * lanes + i;
  }
  folded.stack_floats = static_cast<int64_t>(label.size()) * lanes;
  folded.stmt = Block::Make(steps);
  return folded;
}

}  // namespace

float Tf32Tolerance(double magnitude) {
  return static_cast<float>((std::ldexp(2.0, -10) + std::ldexp(1.0, -20)) * magnitude * 1.01);
}

float SumTolerance(int64_t terms, double magnitude) {
  // A correct float kernel, in any summation order and with or without FMA,
  // satisfies |c - exact| <= gamma_n * sum |terms| with gamma_n = n*u / (1 -
  // n*u), u = 2^-24 (Higham, Accuracy and Stability of Numerical
  // Algorithms, 3.1); rounding the expected value to float adds one more u.
  // A wrong index or a missing term is off by about one |term|, far above
  // that bound for inputs drawn from [-1, 1].
  const double u = std::ldexp(1.0, -24);
  const double n = static_cast<double>(terms + 1);
  const double gamma = n * u / (1.0 - n * u);
  // 1% headroom for rounding the bound itself to float.
  return static_cast<float>(1.01 * gamma * magnitude) + 1e-30f;
}

absl::StatusOr<ConfigSpace> GemmSpace(const GemmSpec& spec) {
  std::vector<Knob> knobs = {
      {"mr", KnobKind::kSplit, IntValues({1, 2, 3, 4, 5, 6, 7, 8, 12, 14, 16})},  // register tile rows
      {"nv", KnobKind::kSplit, IntValues({1, 2, 3, 4})},                          // vectors per tile row
      {"vec", KnobKind::kAnnotate, IntValues({4, 8, 16})},                        // SIMD width in floats
      {"mc", KnobKind::kSplit, IntValues({8, 16, 32, 48, 64, 96, 128, 192, 256})},
      {"nc", KnobKind::kSplit, IntValues({32, 64, 128, 256, 512, 1024, 2048, 4096})},
      {"kc", KnobKind::kSplit, IntValues({16, 32, 64, 128, 256, 384, 512, 1024})},
      {"order", KnobKind::kReorder,
       StringValues({"jc,pc,ic", "jc,ic,pc", "pc,jc,ic", "pc,ic,jc", "ic,jc,pc", "ic,pc,jc"})},
      {"inner", KnobKind::kReorder, StringValues({"jr,ir", "ir,jr"})},
      // A packed per cache block: 1, k-major panels (the MR values of one k
      // side by side, a transposing copy); 2, row-major panels (each row's
      // run of k copied as it is, rows a little more than the block apart
      // so that they do not share cache sets).
      {"pack_a", KnobKind::kChoice, spec.a_must_pack ? IntValues({1, 2}) : IntValues({0, 1, 2})},
      // The micro-kernel reads B rows as vectors, which only a contiguous
      // B or its packed panel provides. B packed per cache block: 1, before
      // the block's tiles; 2, by the first row tile of each panel as it
      // goes (each k step stores the B row it reads into the panel, while
      // the tiles before it prefetch that panel's rows), so that reading B
      // overlaps the multiply-adds; 3, read as it is (as with 0) while the
      // tiles prefetch the next panel's rows as with 2. Whether 3 beats 0
      // depends on the config: on a 1x1 convolution (C=2048, 7x7, one
      // thread) one with 5 x 4 tiles and K blocks of 64 ran 8% faster with
      // it, one with 6 x 4 tiles and blocks of 256 5% slower.
      {"pack_b", KnobKind::kChoice, spec.b_vector ? IntValues({0, 1, 2, 3}) : IntValues({1})},
      {"unroll_k", KnobKind::kAnnotate, IntValues({1, 2, 4, 8})},
      // How threads share the work (with threads > 1): "tiles", the outer
      // register-tile loop of each cache block, and its packing; "rows" /
      // "cols", one contiguous part of M / N per thread, each running the
      // whole blocked product on its part with its own packed panels.
      {"parallel", KnobKind::kAnnotate, StringValues({"tiles", "rows", "cols"})},
  };
  for (Knob& k : CpuBuildKnobs()) knobs.push_back(std::move(k));
  return ConfigSpace::Create(std::move(knobs));
}

Config GemmDefaultConfig(const GemmSpec& spec, const ConfigSpace& space) {
  std::vector<std::pair<std::string, KnobValue>> values = {{"mr", int64_t{4}},
                                                           {"nv", int64_t{2}},
                                                           {"vec", int64_t{8}},
                                                           {"mc", int64_t{64}},
                                                           {"nc", int64_t{256}},
                                                           {"kc", int64_t{256}},
                                                           {"order", std::string("jc,pc,ic")},
                                                           {"inner", std::string("jr,ir")},
                                                           {"pack_a", int64_t{spec.a_must_pack ? 1 : 0}},
                                                           {"pack_b", int64_t{spec.b_vector ? 0 : 1}},
                                                           {"unroll_k", int64_t{1}},
                                                           {"parallel", std::string("rows")}};
  for (auto& v : CpuBuildDefaults()) values.push_back(std::move(v));
  return *space.FromValues(values);  // the values above are in the space by construction
}

std::vector<Config> GemmSeedConfigs(const GemmSpec& spec, const ConfigSpace& space) {
  // The register-tile height that pads M least, earlier candidates first
  // among equals.
  int64_t mr = 1, waste = spec.M;
  for (int64_t m : {6, 8, 7, 14, 12, 16, 5, 4, 3, 2, 1}) {
    const int64_t w = RoundUp(spec.M, m) - spec.M;
    if (w < waste) mr = m, waste = w;
  }
  // As many vectors as leave the accumulators and all but one B vector in
  // registers (see k_step: 7 x 4 reads its last B vector from memory).
  int64_t nv = 4;
  while (nv > 1 && mr * nv + nv > kVectorRegisters) --nv;
  const Config d = GemmDefaultConfig(spec, space);
  // B packed (1, or 2 fused where the tiles can pack it: see LowerGemm)
  // unless it is in panels already, and always when it must be. Panels
  // already made are read as they are, with the next panel prefetched (3)
  // where the seed would fuse the packing.
  auto b_packing = [&](int64_t pack_b) -> int64_t {
    if (!spec.b_vector) return 1;
    if (pack_b == 0) return 0;
    if (spec.b_panels) return pack_b == 2 ? 3 : 0;
    return pack_b == 2 && (spec.a_live || spec.a_row_live) ? 1 : pack_b;
  };
  auto seed = [&](int64_t rows, int64_t vectors, int64_t pack_b, int64_t pack_a, const char* inner,
                  int64_t kc) -> std::optional<Config> {
    absl::StatusOr<Config> c =
        space.With(d, {{"mr", rows},
                       {"nv", vectors},
                       {"vec", int64_t{16}},
                       {"mc", int64_t{128}},
                       {"nc", int64_t{1024}},
                       {"kc", kc},
                       {"inner", std::string(inner)},
                       {"pack_b", b_packing(pack_b)},
                       {"pack_a", spec.a_must_pack && pack_a == 0 ? int64_t{1} : pack_a},
                       {"parallel", std::string(SplitColumns(spec, vectors * 16) ? "cols" : "rows")}});
    return c.ok() ? std::optional<Config>(*c) : std::nullopt;
  };
  // The tile that fits the shape, and 6 x 4 vectors: 24 accumulators, the
  // fewest loads per multiply-add that leave room for the B row and a
  // broadcast, and on this kind of core often the fastest whatever the
  // padding.
  std::vector<Config> out;
  for (const std::optional<Config>& c :
       {seed(mr, nv, 2, 0, "jr,ir", 256), seed(6, 4, 1, 0, "jr,ir", 256), seed(mr, nv, 0, 0, "ir,jr", 256),
        seed(6, 4, 2, 0, "jr,ir", 128), seed(mr, nv, 2, 2, "jr,ir", 64)}) {
    if (c && c->index != d.index &&
        std::none_of(out.begin(), out.end(), [&](const Config& o) { return o.index == c->index; })) {
      out.push_back(*c);
    }
  }
  return out;
}

absl::StatusOr<Kernel> LowerGemm(const GemmSpec& spec, std::vector<ir::BufferArg> args, const ConfigSpace& space,
                                 const Config& c) {
  const int64_t M = spec.M, N = spec.N, K = spec.K;
  const int64_t MR = space.IntValue(c, "mr"), NV = space.IntValue(c, "nv"), W = space.IntValue(c, "vec");
  const int64_t NR = NV * W;
  // The register tiles cover the first NT columns; the last E, short of a
  // whole vector, are dot products along k (GemmSpec::a_k_vector).
  const int64_t E = spec.a_k_vector && spec.k_unit == 0 && N > W && N % W != 0 ? N % W : 0, NT = N - E;
  // With threads splitting M or N, each thread's part is a whole number of
  // register tiles; `part_m` x `part_n` is the most one thread works on.
  const int64_t T = space.IntValue(c, "threads");
  const std::string parallel = space.StrValue(c, "parallel");
  const bool split_rows = T > 1 && parallel == "rows" && M > MR;
  const bool split_cols = T > 1 && parallel == "cols" && NT > NR;
  const int64_t part_m = split_rows ? RoundUp((M + T - 1) / T, MR) : M;
  const int64_t part_n = split_cols ? RoundUp((NT + T - 1) / T, NR) : NT;
  // Cache tiles are rounded up to whole register tiles and clipped to the
  // (rounded-up) part, so packed panels are never larger than needed.
  const int64_t MC = RoundUp(std::min(space.IntValue(c, "mc"), RoundUp(part_m, MR)), MR);
  const int64_t NC = RoundUp(std::min(space.IntValue(c, "nc"), RoundUp(part_n, NR)), NR);
  // With a k_unit, a K block is a divisor of the unit or whole units; with
  // several units, the block walks them one after another (`units`).
  int64_t KC = std::min(space.IntValue(c, "kc"), K);
  if (spec.k_unit > 0 && KC >= spec.k_unit) {
    KC -= KC % spec.k_unit;
  } else if (spec.k_unit > 0) {
    while (spec.k_unit % KC != 0) --KC;
  }
  const bool units = spec.k_unit > 0 && KC > spec.k_unit;
  if (spec.k_unit > 0 && K % spec.k_unit != 0) return absl::InternalError("K is not a multiple of the GEMM's k_unit");
  if ((spec.a_live || spec.a_row_live) && spec.k_unit == 0) {
    return absl::InternalError("a_live and a_row_live need the GEMM's k_unit");
  }
  const int64_t U = space.IntValue(c, "unroll_k");
  const int64_t b_mode = space.IntValue(c, "pack_b");
  const bool pack_a = space.IntValue(c, "pack_a") != 0, pack_b = b_mode == 1 || b_mode == 2;
  const bool a_rows = space.IntValue(c, "pack_a") == 2;
  // Every register tile starts at a multiple of NR, so only the last N % NR
  // columns form a tile short of columns; it is NVE vectors wide. Its B
  // columns come zero-padded from the packed panel or, with B unpacked,
  // from a panel of their own ("Be", packed per block like Bp).
  const int64_t NVE = NT % NR == 0 ? NV : (NT % NR + W - 1) / W, NRE = NVE * W;
  // A without its padded copy where no tile reads the padding (gemm.h).
  const bool a_direct = spec.a_direct && !pack_a && MR > 1 && spec.a_direct_rows % MR == 0 && (NT % NR) % W == 0;
  const auto& a_read = a_direct ? spec.a_direct : spec.a;
  const bool edge_panel = !pack_b && NT % NR != 0;
  // Row stride of a row-major A panel: whole 64-byte lines, never a power
  // of two (rows that far apart would fall into the same cache sets).
  int64_t LDA = RoundUp(KC, 16) + 16;
  if ((LDA & (LDA - 1)) == 0) LDA += 16;
  if (!pack_b && !spec.b_vector) return absl::InvalidArgumentError("this B operand must be packed");
  if (!pack_a && spec.a_must_pack) return absl::InvalidArgumentError("this A operand must be packed");
  // Batched outputs are strided by whole matrices; a single one has no
  // offset at all.
  const bool batched = spec.batch > 1;
  const std::string& out = spec.out;
  std::vector<std::string> order = absl::StrSplit(space.StrValue(c, "order"), ',');
  const bool jr_outer = space.StrValue(c, "inner") == "jr,ir";
  const ForKind outer = T > 1 && parallel == "tiles" ? ForKind::kParallel : ForKind::kSerial;
  const bool team = outer == ForKind::kParallel;
  // Fused packing (pack_b=2): the first row tile of a panel packs it, so
  // every k of the block must pass through that tile (no k runs skipped
  // where A is zero), and it must run before the panel's other tiles
  // (which a team sharing out the row tiles does not ensure); otherwise
  // the block is packed first, as with pack_b=1.
  const bool fused_b = b_mode == 2 && !spec.a_live && !spec.a_row_live && (jr_outer || !team);
  auto pos = [&](const char* d) { return std::find(order.begin(), order.end(), d) - order.begin(); };
  const auto pb = std::max(pos("jc"), pos("pc")), pa = std::max(pos("ic"), pos("pc"));
  // With fused packing and jr outer, a panel's tiles all run before the
  // next panel is packed; when no later row block reads the B block again
  // (one row block per part, or B packed again for each), the panels take
  // turns in one panel's room, whose lines are still in L1 when the next
  // panel's stores reach them, and the last columns' panel, packed before
  // the block's tiles, in a second. Not in a team, whose threads pack their
  // panels at the same time. (matmul 128x3072x768, one thread, 8 x 3
  // tiles: 4% faster than a room for every panel of the block.)
  const bool one_panel = fused_b && jr_outer && !team && (pos("ic") < pb || MC >= part_m);

  const Type f32 = Type::Float(), vec_t = Type::Float(32, static_cast<int>(W));
  Expr jc = V("jc"), pc = V("pc"), ic = V("ic"), nb = V("nb"), kb = V("kb"), mb = V("mb");
  Expr jr_o = V("jr_o"), ir_o = V("ir_o"), jr = V("jr"), ir = V("ir");
  // Whether the register tile at (ir, jr) has all MR rows / NR columns.
  Expr rows_full = ir + Expr(MR) <= mb, cols_full = jr + Expr(NR) <= nb;

  // A k inside the current K block: k = k0 + kk, k0 the first k of the
  // block or, when the block walks several units, of the current unit; kq =
  // k - pc, the offset in the block (and in its packed panels).
  struct KPos {
    Expr k0, kk, kq;
  };
  // The position k0 + kk of a run of k that starts at offset q0 of the block.
  auto k_at = [&](Expr k0, Expr q0, Expr kk) -> KPos { return {k0, kk, units ? q0 + kk : kk}; };
  // The K block as runs of k that share k0: the whole block, or with units
  // one run per unit (loop "kt"). `run(k0, q0, n)` covers k0 .. k0 + n - 1,
  // which sit at offsets q0 .. q0 + n - 1 of the block.
  auto over_units = [&](const std::function<Stmt(Expr k0, Expr q0, Expr n)>& run) -> Stmt {
    if (!units) return run(pc, Expr(0), kb);
    Expr kt = V("kt"), q0 = kt * Expr(spec.k_unit);
    return For::Make("kt", 0, kb / Expr(spec.k_unit), ForKind::kSerial, run(pc + q0, q0, Expr(spec.k_unit)));
  };
  // A loop over the K block binding "kk" (and with units "kt"), `body` at
  // each k.
  auto over_k = [&](const std::function<Stmt(const KPos&)>& body, ForKind kind = ForKind::kSerial) -> Stmt {
    return over_units([&](Expr k0, Expr q0, Expr n) { return For::Make("kk", 0, n, kind, body(k_at(k0, q0, V("kk")))); });
  };

  // Where row ii of register tile ir_o and offset kq of the K block sit in
  // the packed A panel (row-major or k-major), and column j of tile jr_o in
  // the packed B panel.
  auto ap_index = [&](Expr ii, Expr kq) {
    return a_rows ? (ir_o * Expr(MR) + ii) * Expr(LDA) + kq : ir_o * kb * Expr(MR) + kq * Expr(MR) + ii;
  };
  auto bp_index = [&](Expr kq, Expr j) {
    Expr panel = jr_o;
    if (one_panel) panel = NT % NR == 0 ? Expr(0) : Select::Make(cols_full, Expr(0), Expr(1));
    return panel * kb * Expr(NR) + kq * Expr(NR) + j;
  };
  // `fn` ("tf_prefetch" or "tf_prefetch_l1") of the cache lines of B's row
  // at k, columns j0 .. j0 + cols - 1; nothing where B is not a plain array
  // (a prefetch takes its address).
  auto prefetch_row = [&](const char* fn, const KPos& k, Expr j0, int64_t cols) -> Stmt {
    auto line = [&](Expr l) { return spec.b(k.k0, k.kk, j0 + l * Expr(16)); };
    if (line(Expr(0)).as<Load>() == nullptr) return Stmt();
    return For::Make("pl", 0, (cols + 15) / 16, ForKind::kUnrolled, Evaluate::Make(Call::Make(fn, {line(V("pl"))})));
  };
  // Element accessors, relative to the current blocks and register tile.
  // With `clamp`, rows of A past the block read its last row instead (the
  // results of those rows are dropped).
  auto a_at = [&](Expr ii, const KPos& k, bool clamp = false) {
    if (pack_a) return Load::Make("Ap", ap_index(ii, k.kq));
    return a_read(clamp ? min(ic + ir + ii, ic + mb - Expr(1)) : ic + ir + ii, k.k0, k.kk);
  };
  auto b_at = [&](const KPos& k, Expr j, Type t, bool edge = false) {
    if (pack_b) return Load::Make("Bp", bp_index(k.kq, j), t);
    if (edge) return Load::Make("Be", k.kq * Expr(NRE) + j, t);
    return t.is_vector() ? spec.b_vector(k.k0, k.kk, jc + jr + j, t) : spec.b(k.k0, k.kk, jc + jr + j);
  };
  // Index into `out` of row i and the column that is the sum of `cols`.
  auto out_at = [&](Expr i, std::initializer_list<Expr> cols) {
    Expr j, idx = i * Expr(N);
    for (const Expr& c : cols) j = j.defined() ? j + c : c, idx = idx + c;
    if (spec.out_index) return spec.out_index(i, j);
    return batched ? V("c_off") + idx : idx;
  };
  auto c_index = [&](Expr ii, Expr j) { return out_at(ic + ir + ii, {jc, jr, j}); };

  // --- micro-kernel for an MR x NR tile or, with `edge`, the MR x NRE
  // tile of the last columns (see padded_tile) ---
  // Rows [r0, r1) of the tile take part; the others keep their sums.
  // A step one vector register short (its rows x nv accumulators, nv B vectors
  // and the broadcast need 33 of AVX-512's 32, as 7 x 4 does) keeps its
  // last B vector in memory: each row's multiply-add reads it as an operand
  // (tf_fma_mem, one more L1 load per row). Left to themselves the
  // compilers spill instead: 3% slower on one 3x3 layer, 13-16% on another.
  // `extra`: what the step does besides (prefetches).
  auto k_step = [&](const KPos& kk, bool clamp, bool edge, int64_t r0, int64_t r1, bool fuse, Stmt extra) {
    const int64_t nv = edge ? NVE : NV;
    Expr ii = V("ii"), v = V("v");
    // The panel's first row tile stores the B row into the panel before
    // reading it back from there (from the store, forwarded).
    Stmt pack_row = fuse ? For::Make("v", 0, nv, ForKind::kUnrolled,
                                     Store::Make("Bp", spec.b_vector(kk.k0, kk.kk, jc + jr + v * Expr(W), vec_t),
                                                 bp_index(kk.kq, v * Expr(W))))
                         : Stmt();
    Expr last_b = b_at(kk, Expr((nv - 1) * W), vec_t, edge);
    const int64_t acc = (r1 - r0) * nv;  // the step's accumulators
    const bool b_in_memory =
        W == 16 && acc + nv + 1 > kVectorRegisters && acc + nv <= kVectorRegisters && last_b.as<Load>() != nullptr;
    const int64_t nv_reg = b_in_memory ? nv - 1 : nv;
    Expr a = Broadcast::Make(Var::Make("a", f32), static_cast<int>(W));
    Stmt load_b =
        For::Make("v", 0, nv_reg, ForKind::kUnrolled, Store::Make("bv", b_at(kk, v * Expr(W), vec_t, edge), v));
    Stmt row =
        For::Make("v", 0, nv_reg, ForKind::kUnrolled,
                  Store::Make("acc", Load::Make("acc", ii * Expr(nv) + v, vec_t) + a * Load::Make("bv", v, vec_t),
                              ii * Expr(nv) + v));
    if (b_in_memory) {
      Expr last = ii * Expr(nv) + Expr(nv - 1);
      row = Block::Make(
          {row,
           Store::Make("acc", Call::Make("tf_fma_mem", {Load::Make("acc", last, vec_t), a, last_b}, vec_t), last)});
    }
    Stmt rows = For::Make("ii", r0, r1 - r0, ForKind::kUnrolled, LetStmt::Make("a", a_at(ii, kk, clamp), row));
    return Allocate::Make("bv", vec_t, nv_reg, MemoryScope::kRegister, Block::Make({extra, pack_row, load_b, rows}));
  };
  // The whole K block, each run's k steps unrolled by U; with a_live,
  // the runs (units) where the tile's rows of A are all zero are skipped.
  // With `ends` and a_row_live, a run where the first or the last row of
  // A is zero leaves that row out. `ends` is set only for tiles that read
  // every row of A as it is (no clamped rows, none dropped): the three
  // copies of the K loop are worth their code there, not in the rare
  // tiles short of rows. A packing tile (`fuse`) brings the B row it reads
  // kPackAhead steps on (or the run's last) into L1; each step runs
  // `side`(its offset in the K block), where given. Only the first `live`
  // rows of the tile are computed.
  auto k_loop = [&](bool clamp, bool edge, bool ends, bool fuse, const std::function<Stmt(Expr)>& side,
                    int64_t live) -> Stmt {
    return over_units([&](Expr k0, Expr q0, Expr n) -> Stmt {
      auto at = [&](Expr kk) { return k_at(k0, q0, kk); };
      auto rows_run = [&](int64_t r0, int64_t r1) -> Stmt {
        auto step = [&](Expr kk) {
          Stmt extra;
          if (fuse) {
            extra = prefetch_row("tf_prefetch_l1", at(min(kk + Expr(kPackAhead), n - Expr(1))), jc + jr,
                                 (edge ? NVE : NV) * W);
          }
          if (side) extra = Block::Make({extra, side(at(kk).kq)});
          return k_step(at(kk), clamp, edge, r0, r1, fuse, extra);
        };
        if (U == 1) return For::Make("kk", 0, n, ForKind::kSerial, step(V("kk")));
        Expr main_end = n / Expr(U) * Expr(U);
        return Block::Make({
            For::Make("ko", 0, n / Expr(U), ForKind::kSerial,
                      For::Make("ku", 0, U, ForKind::kUnrolled, step(V("ko") * Expr(U) + V("ku")))),
            For::Make("kk", main_end, n - main_end, ForKind::kSerial, step(V("kk"))),
        });
      };
      Stmt run = rows_run(0, live);
      if (ends && spec.a_row_live && MR > 1) {
        run = IfThenElse::Make(spec.a_row_live(ic + ir, k0),
                               IfThenElse::Make(spec.a_row_live(ic + ir + Expr(MR - 1), k0), run, rows_run(0, MR - 1)),
                               rows_run(1, MR));
      }
      if (!spec.a_live) return run;
      return IfThenElse::Make(spec.a_live(ic + ir, ic + min(ir + Expr(MR), mb) - Expr(1), k0), run);
    });
  };
  // The output is never zeroed as a whole: the first K block of a tile
  // starts from zero instead of what is in memory.
  Expr first_k_block = EQ::Make(pc, Expr(0));
  // The register tile's round trip through memory: from `buf` at
  // `index`(ii, j) into the accumulators (zeros in the first K block), the
  // K block, and back, for the tile's first `rows` rows (the others are not
  // computed). `clamp`: rows past the block read A's last row (see a_at).
  // `fuse`: the tile packs its B panel (pack_b=2); `side`: see k_loop.
  auto micro_kernel = [&](const std::string& buf, const std::function<Expr(Expr, Expr)>& index, int64_t rows,
                          bool clamp = false, bool edge = false, bool fuse = false,
                          const std::function<Stmt(Expr)>& side = nullptr) {
    const bool ends = rows == MR && !clamp;
    const int64_t nv = edge ? NVE : NV;
    Expr ii = V("ii"), v = V("v");
    auto row = [&](Expr value) {
      return For::Make("v", 0, nv, ForKind::kUnrolled, Store::Make("acc", value, ii * Expr(nv) + v));
    };
    Stmt zeros = row(Broadcast::Make(FloatImm::Make(0), static_cast<int>(W)));
    Stmt loaded = row(Load::Make(buf, index(ii, v * Expr(W)), vec_t));
    Stmt stored = For::Make("v", 0, nv, ForKind::kUnrolled,
                            Store::Make(buf, Load::Make("acc", ii * Expr(nv) + v, vec_t), index(ii, v * Expr(W))));
    Stmt load = IfThenElse::Make(first_k_block, For::Make("ii", 0, rows, ForKind::kUnrolled, zeros),
                                 For::Make("ii", 0, rows, ForKind::kUnrolled, loaded));
    Stmt store = For::Make("ii", 0, rows, ForKind::kUnrolled, stored);
    return Allocate::Make("acc", vec_t, rows * nv, MemoryScope::kRegister,
                          Block::Make({load, k_loop(clamp, edge, ends, fuse, side, rows), store}));
  };
  // Stores x, the sum for output row `row`, column `col`, at `index` of the
  // output with the bias added and the ReLU applied (through Var "e").
  auto store_fused = [&](Expr x, Expr row, Expr col, Expr index) -> Stmt {
    if (spec.bias == GemmSpec::Bias::kPerColumn) x = x + Load::Make(spec.bias_buffer, col);
    if (spec.bias == GemmSpec::Bias::kPerRow) x = x + Load::Make(spec.bias_buffer, row);
    Expr e = Var::Make("e", f32);
    Expr value = spec.relu ? Select::Make(FloatImm::Make(0) < e, e, FloatImm::Make(0)) : e;
    return LetStmt::Make("e", x, Store::Make(out, value, index));
  };
  // Epilogue over the rows x cols of the tile at (ir, jr), once the last K
  // block has been accumulated into the output.
  auto epilogue = [&](Expr rows, Expr cols) -> Stmt {
    if (spec.bias == GemmSpec::Bias::kNone && !spec.relu) return Stmt();
    Expr ii = V("ii"), jj = V("jj");
    Stmt apply = For::Make(
        "ii", 0, rows, ForKind::kSerial,
        For::Make("jj", 0, cols, ForKind::kVectorized,
                  store_fused(Load::Make(out, c_index(ii, jj)), ic + ir + ii, jc + jr + jj, c_index(ii, jj))));
    return IfThenElse::Make(EQ::Make(pc + kb, Expr(K)), apply, Stmt());
  };

  // --- the last columns' tile: the micro-kernel on a zero-padded MR x NRE
  // copy of the tile on the stack. Columns past the block read the zero
  // padding of the B panel; rows past it that of the packed A panel or A's
  // last row. ---
  Stmt padded_tile;
  {
    Expr ii = V("ii"), jj = V("jj"), z = V("z");
    Expr rows = min(Expr(MR), mb - ir), cols = min(Expr(NRE), nb - jr);
    auto tmp = [&](Expr i, Expr j) { return i * Expr(NRE) + j; };
    Stmt zero = For::Make("z", 0, MR * NRE, ForKind::kVectorized, Store::Make("ct", FloatImm::Make(0), z));
    Stmt in = For::Make("ii", 0, rows, ForKind::kSerial,
                        For::Make("jj", 0, cols, ForKind::kVectorized,
                                  Store::Make("ct", Load::Make(out, c_index(ii, jj)), tmp(ii, jj))));
    Stmt back = For::Make("ii", 0, rows, ForKind::kSerial,
                          For::Make("jj", 0, cols, ForKind::kVectorized,
                                    Store::Make(out, Load::Make("ct", tmp(ii, jj)), c_index(ii, jj))));
    padded_tile = Block::Make({Allocate::Make("ct", f32, MR * NRE, MemoryScope::kStack,
                                              Block::Make({zero, IfThenElse::Make(Expr(0) < pc, in),
                                                           micro_kernel("ct", tmp, MR, !pack_a, true), back})),
                               epilogue(rows, cols)});
  }
  // --- a tile straight on the output, NR columns wide or, with `edge`,
  // the NRE of the last columns when those are whole vectors. A tile short
  // of rows computes only its M % MR rows: blocks of rows and the threads'
  // parts are whole register tiles, so only the last tile of M is short
  // (matmul 77x129x61 with 8-row tiles: 3 of every 80 rows were computed
  // and dropped). ---
  auto output_tile = [&](bool edge, bool fuse = false, const std::function<Stmt(Expr)>& side = nullptr) {
    const int64_t short_rows = M % MR;
    Expr cols = Expr(edge ? NRE : NR);
    Stmt full = Block::Make({micro_kernel(out, c_index, MR, false, edge, fuse, side), epilogue(Expr(MR), cols)});
    if (short_rows == 0) return full;
    return IfThenElse::Make(rows_full, full,
                            Block::Make({micro_kernel(out, c_index, short_rows, false, edge, fuse, side),
                                         epilogue(Expr(short_rows), cols)}));
  };
  // With rows / cols, part "tp" of M / N is [m_lo, m_end) / [n_lo, n_end).
  Expr m_lo = Expr(0), m_end = Expr(M), n_lo = Expr(0), n_end = Expr(NT);
  if (split_rows) m_lo = V("tp") * Expr(part_m), m_end = min(Expr(M), m_lo + Expr(part_m));
  if (split_cols) n_lo = V("tp") * Expr(part_n), n_end = min(Expr(NT), n_lo + Expr(part_n));
  // The first row tile to read a panel (which with fused packing packs
  // it): the tile at its top, in the first row block of the part when the
  // B block serves several.
  Expr packs_panel = EQ::Make(ir_o, Expr(0));
  if (pos("ic") > pb) packs_panel = packs_panel && EQ::Make(ic, m_lo);
  // With fused packing (or pack_b=3), each row tile of a panel (jr outer)
  // prefetches its share of the rows of B that the next panel's first tile
  // reads, or the panel's first tile all of them (ir outer), so that it
  // finds them in the cache: the next panel of the block or, from the
  // block's last panel, the first panel of the next B block. One row per
  // k step of the tile's first steps, "pf_panel" / "pf_block" of them (0:
  // none): the same prefetches issued together before the tile ran the
  // kernel 2-3% slower.
  std::function<Stmt(Expr)> prefetch_next;
  Expr pf_panel, pf_block;
  if (fused_b || b_mode == 3) {
    Expr n_ir = jr_outer ? CeilDiv(mb, MR) : Expr(1), per = (Expr(KC) + n_ir - Expr(1)) / n_ir;
    Expr row0 = jr_outer ? ir_o * per : Expr(0);
    // Row kq of the B block from k0.
    auto row_at = [&](Expr k0, Expr kq) {
      return units ? KPos{k0 + kq / Expr(spec.k_unit) * Expr(spec.k_unit), kq % Expr(spec.k_unit), kq}
                   : KPos{k0, kq, kq};
    };
    // The B block after this one: the inner of its two loops advances,
    // wrapping to the outer one's next block, and after the last block to
    // the first (the next row block's, or nothing).
    Expr pc_next, jc_next;
    const Expr pc_more = pc + kb < Expr(K), jc_more = jc + nb < n_end;
    if (pos("pc") > pos("jc")) {
      pc_next = Select::Make(pc_more, pc + kb, Expr(0));
      jc_next = Select::Make(pc_more, jc, Select::Make(jc_more, jc + nb, n_lo));
    } else {
      jc_next = Select::Make(jc_more, jc + nb, n_lo);
      pc_next = Select::Make(jc_more, pc, Select::Make(pc_more, pc + kb, Expr(0)));
    }
    Expr full_next = jr + Expr(2 * NR) <= nb, last = nb <= jr + Expr(NR);
    if (!jr_outer) full_next = full_next && packs_panel, last = last && packs_panel;
    pf_panel = Select::Make(full_next, min(per, kb - row0), Expr(0));
    pf_block = Select::Make(last, min(per, min(Expr(KC), Expr(K) - pc_next) - row0), Expr(0));
    if (prefetch_row("tf_prefetch", row_at(pc, row0), jc, NR).defined()) {
      prefetch_next = [=, &prefetch_row](Expr kq) -> Stmt {
        return Block::Make({IfThenElse::Make(kq < V("pf_panel"), prefetch_row("tf_prefetch", row_at(pc, row0 + kq),
                                                                              jc + jr + Expr(NR), NR)),
                            IfThenElse::Make(kq < V("pf_block"),
                                             prefetch_row("tf_prefetch", row_at(pc_next, row0 + kq), jc_next, NR))});
      };
    }
  }
  Stmt tile = fused_b ? IfThenElse::Make(packs_panel, output_tile(false, true, prefetch_next),
                                         output_tile(false, false, prefetch_next))
                      : output_tile(false, false, prefetch_next);
  if (NT % NR != 0) tile = IfThenElse::Make(cols_full, tile, NT % NR == NRE ? output_tile(true) : padded_tile);
  if (prefetch_next) tile = LetStmt::Make("pf_panel", pf_panel, LetStmt::Make("pf_block", pf_block, tile));

  // --- register-tile loops ---
  auto ir_loop = [&](Stmt body, ForKind kind = ForKind::kSerial) {
    return For::Make("ir_o", 0, CeilDiv(mb, MR), kind, LetStmt::Make("ir", ir_o * Expr(MR), body));
  };
  auto jr_loop = [&](Stmt body, ForKind kind = ForKind::kSerial) {
    return For::Make("jr_o", 0, CeilDiv(nb, NR), kind, LetStmt::Make("jr", jr_o * Expr(NR), body));
  };
  // --- threads ---
  // With parallel=tiles, one team of threads runs the whole blocked
  // product: each block's packing is shared out among them, a panel each,
  // then its outer register-tile loop; each phase ends in a barrier. Each
  // tile writes its own part of the output and only reads the packed
  // panels, so there is nothing to race on. (With rows, a team packing B
  // together was slower than each thread packing all of it: half of the
  // panels then sit in the other core's cache.)
  Stmt inner = jr_outer ? jr_loop(ir_loop(tile), outer) : ir_loop(jr_loop(tile), outer);

  // --- packing ---
  Stmt pack_b_stmt, pack_a_stmt;
  // Column jj of panel jr_o at k in the packed panel, and in B; a row of
  // the last panel, zero past the block's columns.
  Expr jj = V("jj");
  auto dst = [&](const KPos& kk) { return bp_index(kk.kq, jj); };
  auto src = [&](const KPos& kk) { return spec.b(kk.k0, kk.kk, jc + jr + jj); };
  auto edge_row = [&](const KPos& kk) {
    return For::Make("jj", 0, NR, ForKind::kSerial,
                     Store::Make("Bp", Select::Make(jr + jj < nb, src(kk), FloatImm::Make(0)), dst(kk)));
  };
  if (fused_b) {
    // The tiles pack the whole panels; the last panel of the last column
    // block, short of columns, is packed first with its zero padding.
    if (NT % NR != 0) {
      pack_b_stmt = IfThenElse::Make(
          Expr(0) < nb % Expr(NR),
          LetStmt::Make("jr_o", nb / Expr(NR), LetStmt::Make("jr", jr_o * Expr(NR), over_k(edge_row))));
    }
  } else if (pack_b) {
    if (spec.b_pack_k_inner || team) {
      // A panel at a time, for B^T because each panel column is a
      // contiguous run of k, and in a team because each thread packs the
      // panels it then multiplies by (both loops share out the same
      // panels), into its own core's cache.
      Stmt full = spec.b_pack_k_inner
                      ? For::Make("jj", 0, NR, ForKind::kSerial,
                                  over_k([&](const KPos& kk) { return Store::Make("Bp", src(kk), dst(kk)); }))
                      : over_k([&](const KPos& kk) {
                          return For::Make("jj", 0, NR, ForKind::kVectorized, Store::Make("Bp", src(kk), dst(kk)));
                        });
      pack_b_stmt = jr_loop(IfThenElse::Make(cols_full, full, over_k(edge_row)), outer);
    } else {
      // Row by row, each row of the block read once from left to right
      // into every panel: a panel at a time would walk the rows with a
      // stride of N floats, which the hardware prefetchers do not follow.
      pack_b_stmt = over_k([&](const KPos& kk) {
        Stmt full = For::Make("jj", 0, NR, ForKind::kVectorized, Store::Make("Bp", src(kk), dst(kk)));
        return jr_loop(IfThenElse::Make(cols_full, full, edge_row(kk)));
      });
    }
  } else if (edge_panel) {
    // B unpacked: only the block's last columns, when it has them, as one
    // zero-padded kb x NRE panel.
    Expr je = nb / Expr(NR) * Expr(NR);
    auto row = [&](const KPos& kk) {
      Expr b = Select::Make(je + jj < nb, spec.b(kk.k0, kk.kk, jc + je + jj), FloatImm::Make(0));
      return For::Make("jj", 0, NRE, ForKind::kSerial, Store::Make("Be", b, kk.kq * Expr(NRE) + jj));
    };
    pack_b_stmt = IfThenElse::Make(je < nb, over_k(row, outer));
  }
  if (a_rows) {
    // Each row a straight copy of its runs of k; rows past the block zeros.
    Expr ii = V("ii");
    auto copy = [&](const KPos& kk) { return Store::Make("Ap", spec.a(ic + ir + ii, kk.k0, kk.kk), ap_index(ii, kk.kq)); };
    auto zero = [&](const KPos& kk) { return Store::Make("Ap", FloatImm::Make(0), ap_index(ii, kk.kq)); };
    pack_a_stmt = ir_loop(For::Make("ii", 0, MR, ForKind::kSerial,
                                    IfThenElse::Make(ir + ii < mb, over_k(copy, ForKind::kVectorized),
                                                     over_k(zero, ForKind::kVectorized))),
                          outer);
  } else if (pack_a) {
    Expr ii = V("ii");
    auto dst = [&](const KPos& kk) { return ap_index(ii, kk.kq); };
    auto src = [&](const KPos& kk) { return spec.a(ic + ir + ii, kk.k0, kk.kk); };
    Stmt full = For::Make("ii", 0, MR, ForKind::kSerial,
                          over_k([&](const KPos& kk) { return Store::Make("Ap", src(kk), dst(kk)); }));
    Stmt edge = For::Make("ii", 0, MR, ForKind::kSerial, over_k([&](const KPos& kk) {
                            return Store::Make("Ap", Select::Make(ir + ii < mb, src(kk), FloatImm::Make(0)), dst(kk));
                          }));
    pack_a_stmt = ir_loop(IfThenElse::Make(rows_full, full, edge), outer);
  }

  // --- cache-tile loops in the chosen order; each pack sits just inside the
  // later of the two loops that fix its block ---
  Stmt body = inner;
  for (int level = 2; level >= 0; --level) {
    body = Block::Make({level == pb ? pack_b_stmt : Stmt(), level == pa ? pack_a_stmt : Stmt(), body});
    const std::string& d = order[level];
    if (d == "jc") body = TileLoop("jc", "nb", n_lo, n_end, NC, body);
    if (d == "pc") body = TileLoop("pc", "kb", Expr(0), Expr(K), KC, body);
    if (d == "ic") body = TileLoop("ic", "mb", m_lo, m_end, MC, body);
  }
  // Panels of small products live on the stack: a heap allocation and its
  // first touch cost a few percent of a kernel that runs for microseconds.
  const int64_t ap_size = pack_a ? MC * (a_rows ? LDA : KC) : 0;
  const int64_t bp_size = !pack_b ? 0 : one_panel ? KC * NR * (NT % NR == 0 ? 1 : 2) : KC * NC;
  const int64_t be_size = edge_panel ? KC * NRE : 0;
  const MemoryScope panels = ap_size + bp_size + be_size <= kStackPanelFloats ? MemoryScope::kStack : MemoryScope::kHeap;
  auto allocate_panels = [&](Stmt s) {
    if (pack_a) s = Allocate::Make("Ap", f32, ap_size, panels, s);
    if (pack_b) s = Allocate::Make("Bp", f32, bp_size, panels, s);
    if (edge_panel) s = Allocate::Make("Be", f32, be_size, panels, s);
    return s;
  };
  // --- the last E columns as dot products along the whole of K: those
  // columns of B packed k-contiguous ("Bt"), then for rows [lo, hi), kDotRows
  // rows at a time, a vector of products per W values of k. The rows of a
  // group are independent chains of multiply-adds (one row alone waits on
  // each add's latency), and each vector of B serves all of them. A K short
  // of whole vectors ends on each row's last W values of k, the lanes
  // already counted zeroed (tf_keep_last: an infinity there must not meet
  // a zero of B) and their B lanes zero; the group's vectors are then
  // summed together (FoldRows). With K below W, each row is a scalar chain.
  // The last group reads row hi - 1 again in place of rows past the end and
  // stores its sums again: the same values. ---
  auto dot_columns = [&](Expr lo, Expr hi) -> Stmt {
    if (E == 0) return Stmt();
    const int64_t KV = K / W * W, KP = RoundUp(K, W), DR = kDotRows;
    Expr dr = V("dr"), dj = V("dj"), dk = V("dk"), j = Expr(NT) + dj;
    auto row_at = [&](Expr r) { return min(lo + V("dg") * Expr(DR) + r, hi - Expr(1)); };
    auto rows = [&](Stmt s) { return For::Make("dr", 0, DR, ForKind::kUnrolled, s); };
    // Column dj of Bt: k 0 .. KV - 1, then the last vector's k K - W ..
    // K - 1 with those below KV zero (or, with K below W, k 0 .. K - 1).
    const int64_t plain = KV > 0 ? KV : K;
    Stmt pack =
        For::Make("dk", 0, plain, ForKind::kSerial, Store::Make("Bt", spec.b(Expr(0), dk, j), dj * Expr(KP) + dk));
    if (K > KV && KV > 0) {
      Expr k = Expr(K - W) + dk;
      Expr b = Select::Make(Expr(KV) <= k, spec.b(Expr(0), k, j), FloatImm::Make(0));
      pack = Block::Make(
          {pack, For::Make("dk", 0, W, ForKind::kSerial, Store::Make("Bt", b, dj * Expr(KP) + Expr(KV) + dk))});
    }
    pack = For::Make("dj", 0, E, ForKind::kSerial, pack);
    std::vector<Stmt> steps;
    std::vector<Expr> sums;  // each row's sum, once `steps` ran
    int64_t dq_floats = 0;   // the folded vectors' stack array (FoldRows)
    if (KV > 0) {
      auto multiply_add = [&](Expr a, Expr bt) {
        return rows(
            Store::Make("ds", Load::Make("ds", dr, vec_t) + a * Load::Make("Bt", dj * Expr(KP) + bt, vec_t), dr));
      };
      steps.push_back(rows(Store::Make("ds", Broadcast::Make(FloatImm::Make(0), static_cast<int>(W)), dr)));
      steps.push_back(For::Make("dk", 0, KV / W, ForKind::kSerial,
                                multiply_add(spec.a_k_vector(row_at(dr), dk * Expr(W), vec_t), dk * Expr(W))));
      if (K > KV) {
        Expr a = Call::Make("tf_keep_last", {spec.a_k_vector(row_at(dr), Expr(K - W), vec_t), Expr(K - KV)}, vec_t);
        steps.push_back(multiply_add(a, Expr(KV)));
      }
      const FoldedRows folded = FoldRows("ds", "dq", DR, W);
      steps.push_back(folded.stmt);
      dq_floats = folded.stack_floats;
      for (int64_t at : folded.lane) sums.push_back(Load::Make("dq", Expr(at)));
    } else {
      steps.push_back(rows(Store::Make("dt", FloatImm::Make(0), dr)));
      steps.push_back(For::Make(
          "dk", 0, K, ForKind::kSerial,
          rows(Store::Make(
              "dt", Load::Make("dt", dr) + spec.a(row_at(dr), Expr(0), dk) * Load::Make("Bt", dj * Expr(KP) + dk),
              dr))));
      for (int64_t r = 0; r < DR; ++r) sums.push_back(Load::Make("dt", Expr(r)));
    }
    for (int64_t r = 0; r < DR; ++r)
      steps.push_back(store_fused(sums[r], row_at(Expr(r)), j, out_at(row_at(Expr(r)), {j})));
    Stmt column = Block::Make(steps);
    if (KV > 0) {
      column = Allocate::Make("ds", vec_t, DR, MemoryScope::kRegister,
                              Allocate::Make("dq", f32, dq_floats, MemoryScope::kStack, column));
    } else {
      column = Allocate::Make("dt", f32, DR, MemoryScope::kRegister, column);
    }
    Stmt groups =
        For::Make("dg", 0, CeilDiv(hi - lo, DR), ForKind::kSerial, For::Make("dj", 0, E, ForKind::kSerial, column));
    return Allocate::Make("Bt", f32, E * KP, E * KP <= kStackPanelFloats ? MemoryScope::kStack : MemoryScope::kHeap,
                          Block::Make({pack, groups}));
  };
  // A batch of products split into parts runs each part of every product
  // in one parallel loop, outside the batch: one fork and join per call,
  // not one per product (Winograd's 16 products of 7 x 7 layers are tens of
  // microseconds each). Not with work between the products (dot-product
  // columns, `finish`).
  const bool parts_outside = batched && (split_rows || split_cols) && E == 0 && !spec.finish.defined();
  const int64_t parts = split_rows ? (M + part_m - 1) / part_m : (NT + part_n - 1) / part_n;
  // A team shares all panels. Otherwise each part writes only its own rows
  // / columns of the output and packs into its own panels; parts of rows
  // also compute the dot-product columns of their rows.
  if (team) {
    body = For::Make("team", 0, T, ForKind::kTeam, body);
  } else if ((split_rows || split_cols) && !parts_outside) {
    body = allocate_panels(body);
    if (split_rows) body = Block::Make({body, dot_columns(m_lo, m_end)});
    body = For::Make("tp", 0, parts, ForKind::kParallel, body);
  }
  if (!split_rows) body = Block::Make({body, dot_columns(Expr(0), Expr(M))});
  if (batched && !spec.out_index) body = LetStmt::Make("c_off", V("bi") * Expr(M * N), body);
  if (spec.finish.defined()) body = Block::Make({body, spec.finish});
  if (batched) body = For::Make("bi", 0, spec.batch, ForKind::kSerial, body);
  if (parts_outside) body = For::Make("tp", 0, parts, ForKind::kParallel, allocate_panels(body));
  if (spec.prologue.defined() && !a_direct) body = Block::Make({spec.prologue, body});
  if (!split_rows && !split_cols) body = allocate_panels(body);
  if (!a_direct) {
    for (const auto& [name, elements] : spec.scratch)
      body = Allocate::Make(name, f32, elements, MemoryScope::kHeap, body);
  }

  Kernel k;
  k.func.name = "tunefarm_kernel";
  k.func.args = std::move(args);
  k.func.body = body;
  ApplyCpuBuildKnobs(space, c, k);
  return k;
}

}  // namespace tunefarm::kernels
