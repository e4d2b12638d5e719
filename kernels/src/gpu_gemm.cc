#include "gpu_gemm.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tunefarm::kernels {
namespace {

using namespace ir;  // NOLINT: this file builds IR

constexpr int64_t kWarp = 32;
constexpr int64_t kMaxThreads = 1024;
// Static __shared__ memory a block may declare, and the dynamic shared
// memory of the warpgroup path (an H100's opt-in limit per block; the
// backend checks the device's own).
constexpr int64_t kMaxSharedBytes = 48 * 1024;
constexpr int64_t kMaxDynamicSharedBytes = 227 * 1024;
constexpr int64_t kMaxGridY = 65535;

// The split-K workspace a kernel may keep in device memory.
constexpr int64_t kMaxWorkspaceBytes = int64_t{64} << 20;

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Split-K pays where the output has too few tiles to fill a large GPU and
// each has a long k loop: outputs of at most 2^21 elements, K >= 256.
bool SplitKOffered(const GpuGemmSpec& spec) { return spec.M * spec.N <= (int64_t{1} << 21) && spec.K >= 256; }

Expr AndAll(Expr a, Expr b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  return a && b;
}

// The cooperative load of one operand's bk-deep slice into shared memory,
// stored as [k][outer] rows of `row` floats whatever the global layout, so
// that the compute loop reads consecutive outer indices.
struct SliceLoad {
  const GpuOperand* op = nullptr;
  int64_t extent = 0;  // M or N
  int64_t K = 0;
  int64_t bo = 0, bk = 0;
  int64_t g = 1;  // elements per global read: 1 or 4
  int64_t threads = 0;
  // Reads past K happen (K is not a whole number of slices, or split-K
  // gives the last blocks slices beyond it) and must read zeros.
  bool guard_k = false;
  // Tensor-core fragments: pad 8, so that the 8 x 4 lanes reading k rows
  // t and columns g hit 32 different banks; and TF32 values in shared
  // memory, rounded once per element.
  bool mma = false;
  // A slice read along k is written transposed; a pad of one float4 keeps
  // its k rows in different banks.
  int64_t pad() const { return mma ? 8 : op->k_contiguous ? 4 : 0; }
  int64_t row() const { return bo + pad(); }
  int64_t elements() const { return bk * row(); }
  // The shared-memory element of (outer, k) of the slice.
  Expr At(const Expr& o, const Expr& k) const { return k * Expr(row()) + o; }
  int64_t groups() const { return bo * bk / g; }
  int64_t per_thread() const { return CeilDiv(groups(), threads); }

  // (outer, kk) of the first element of thread tid's l-th read.
  std::pair<Expr, Expr> Coord(const Expr& tid, int64_t l) const {
    Expr idx = tid + Expr(l * threads);
    if (op->k_contiguous) {
      const int64_t kg = bk / g;
      return {idx / Expr(kg), idx % Expr(kg) * Expr(g)};
    }
    const int64_t og = bo / g;
    return {idx % Expr(og) * Expr(g), idx / Expr(og)};
  }
  // Whether read l exists for thread tid; undefined when it always does.
  Expr Exists(const Expr& tid, int64_t l) const {
    if ((l + 1) * threads <= groups()) return Expr();
    return tid + Expr(l * threads) < Expr(groups());
  }

  // Global memory -> the staging registers `stage`, zeros outside the
  // problem; o0 / k0 are the slice's first outer index and k.
  Stmt Read(const Expr& tid, const Expr& o0, const Expr& k0, const std::string& stage) const {
    std::vector<Stmt> out;
    for (int64_t l = 0; l < per_thread(); ++l) {
      auto [o, kk] = Coord(tid, l);
      Expr go = o0 + o, gk = k0 + kk;
      Expr cond = Exists(tid, l);
      if (extent % bo != 0) cond = AndAll(cond, go < Expr(extent));
      if (guard_k) cond = AndAll(cond, gk < Expr(K));
      if (op->valid) cond = AndAll(cond, op->valid(go, gk));
      Stmt read = g == 4 ? Store::Make(stage, Load::Make(op->buffer, op->index(go, gk), Type::Float(32, 4)), l * 4)
                         : Store::Make(stage, Load::Make(op->buffer, op->index(go, gk)), l);
      if (!cond.defined()) {
        out.push_back(read);
        continue;
      }
      std::vector<Stmt> zeros;
      for (int64_t q = 0; q < g; ++q) zeros.push_back(Store::Make(stage, FloatImm::Make(0), l * g + q));
      out.push_back(IfThenElse::Make(cond, read, Block::Make(zeros)));
    }
    return Block::Make(out);
  }

  // The staging registers -> shared buffer `smem` from element `base`.
  Stmt Write(const Expr& tid, const Expr& base, const std::string& smem, const std::string& stage) const {
    std::vector<Stmt> out;
    for (int64_t l = 0; l < per_thread(); ++l) {
      auto [o, kk] = Coord(tid, l);
      std::vector<Stmt> stores;
      for (int64_t q = 0; q < g; ++q) {
        Expr at = op->k_contiguous ? At(o, kk + Expr(q)) : At(o, kk) + Expr(q);
        Expr v = Load::Make(stage, l * g + q);
        if (mma) v = Call::Make("tf_round_tf32", {v});
        stores.push_back(Store::Make(smem, v, base + at));
      }
      Expr exists = Exists(tid, l);
      out.push_back(exists.defined() ? IfThenElse::Make(exists, Block::Make(stores)) : Block::Make(stores));
    }
    return Block::Make(out);
  }
};

// Warpgroup tensor cores (mma=2): a 32-deep slice of one operand copied
// global -> shared with cp.async, K-major (row `outer` holds its 32 k
// values, 128 bytes) in the 128-byte swizzle wgmma reads: the copy
// intrinsics take the logical element o * 32 + k and place it at its
// swizzled address. Four k-contiguous values travel as one 16-byte copy
// (8 threads per row: coalesced, and one row's 8 units land in 8 bank
// groups); single values are 4-byte copies, a warp taking 8 outer x 4 k
// when outer is the contiguous dimension, which transposes it (32 bytes
// per global row read, 32 banks written).
struct AsyncSliceLoad {
  static constexpr int64_t kDepth = 32;
  const GpuOperand* op = nullptr;
  int64_t extent = 0, K = 0, bo = 0, threads = 0;
  bool guard_k = false;
  bool wide = false;  // 16-byte copies (op k-contiguous, vec4, vec=4)
  int64_t elements() const { return bo * kDepth; }
  int64_t units() const { return wide ? bo * kDepth / 4 : bo * kDepth; }

  // Issues this thread's copies of the slice from k0 into `smem` from
  // element `base`, zeros outside the problem.
  Stmt Issue(const Expr& tid, const Expr& o0, const Expr& k0, const std::string& smem, const Expr& base) const {
    std::vector<Stmt> out;
    for (int64_t l = 0; l < CeilDiv(units(), threads); ++l) {
      const Expr u = tid + Expr(l * threads);
      Expr o, k;
      if (wide) {
        o = u / Expr(kDepth / 4), k = u % Expr(kDepth / 4) * Expr(4);
      } else if (op->k_contiguous) {
        o = u / Expr(kDepth), k = u % Expr(kDepth);
      } else {
        const Expr q = u % Expr(32), w = u / Expr(32);
        o = w % Expr(bo / 8) * Expr(8) + q % Expr(8), k = w / Expr(bo / 8) * Expr(4) + q / Expr(8);
      }
      const Expr go = o0 + o, gk = k0 + k;
      Expr cond;
      if (extent % bo != 0) cond = AndAll(cond, go < Expr(extent));
      if (guard_k) cond = AndAll(cond, gk < Expr(K));
      if (op->valid) cond = AndAll(cond, op->valid(go, gk));
      // Nothing is read where cond fails; the address stays inside the
      // buffer all the same.
      Expr index = op->index(go, gk);
      if (cond.defined()) index = Select::Make(cond, index, Expr(0));
      Stmt copy = Evaluate::Make(Call::Make(wide ? "tf_cp_async16" : "tf_cp_async4",
                                            {Load::Make(smem, base + o * Expr(kDepth) + k),
                                             Load::Make(op->buffer, index), cond.defined() ? cond : Expr(1)}));
      const bool all = (l + 1) * threads <= units();
      out.push_back(all ? copy : IfThenElse::Make(u < Expr(units()), copy));
    }
    return Block::Make(out);
  }
};

struct Tiles {
  int64_t bm, bn, bk, tm, tn, warp_x, split, stages, vec, split_k;
  bool unroll_k;
  int64_t mma;                            // 0: CUDA cores; 1: warp tensor cores (mma.sync); 2: warpgroup ones (wgmma)
  int64_t tx() const { return bn / tn; }  // threads along n
  int64_t ty() const { return bm / tm; }  // threads along m
  int64_t threads() const { return tx() * ty(); }
  // Offset inside the block tile of a thread's i-th row (tile `t` = ty):
  // `split` strips of tm / split rows, bm / split apart.
  static Expr Offset(int64_t i, int64_t t_extent, int64_t per, int64_t split, const Expr& t) {
    const int64_t strip = per / split;
    return Expr((i / strip) * (t_extent / split) + i % strip) + t * Expr(strip);
  }
};

// Split-K's end of a block: the block publishes its partial sums in the
// workspace `tf_ws` (slot (tile, z, register) of every thread, threads
// adjacent), and the last of the tile's split_k blocks to arrive (counted
// in `tf_cnt`, which it resets for the next launch) sums the tile's
// partials in z order, so the result does not depend on which block came
// last, and runs `epilogue` on them. The workspace lives as long as the
// loaded module (zero when loaded), so launches of one loaded split-K
// kernel must not overlap.
Stmt SplitKReduce(const Tiles& t, int64_t threads, int64_t tiles, const Expr& tile, const Expr& bz, const Expr& tid,
                  const Stmt& epilogue) {
  const int64_t regs = t.tm * t.tn;
  auto slot = [&](const Expr& z, int64_t r) {
    return ((tile * Expr(t.split_k) + z) * Expr(regs) + Expr(r)) * Expr(threads) + tid;
  };
  const Expr first = EQ::Make(tid, Expr(0));
  std::vector<Stmt> publish;
  for (int64_t r = 0; r < regs; ++r) publish.push_back(Store::Make("tf_ws", Load::Make("acc", r), slot(bz, r)));
  // Visible to the block that sums them before this block is counted.
  publish.push_back(Evaluate::Make(Call::Make("tf_fence", {})));
  publish.push_back(Barrier::Make());
  const Expr arrived = Call::Make("tf_arrive", {Load::Make("tf_cnt", tile, Type::Int())}, Type::Int());
  publish.push_back(IfThenElse::Make(
      first, Store::Make("tf_last", Select::Make(EQ::Make(arrived, Expr(t.split_k - 1)), Expr(1), Expr(0)), Expr(0))));
  publish.push_back(Barrier::Make());
  std::vector<Stmt> sum = {IfThenElse::Make(first, Store::Make("tf_cnt", Expr(0), tile))};
  for (int64_t r = 0; r < regs; ++r) {
    // Read past the (incoherent) L1 cache: other blocks wrote them.
    Expr v;
    for (int64_t z = 0; z < t.split_k; ++z) {
      Expr p = Call::Make("tf_load_cg", {Load::Make("tf_ws", slot(Expr(z), r))});
      v = v.defined() ? v + p : p;
    }
    sum.push_back(Store::Make("acc", v, r));
  }
  sum.push_back(epilogue);
  publish.push_back(IfThenElse::Make(EQ::Make(Load::Make("tf_last", Expr(0), Type::Int()), Expr(1)), Block::Make(sum)));
  Stmt s = Block::Make(publish);
  s = Allocate::Make("tf_last", Type::Int(), Expr(1), MemoryScope::kShared, s);
  s = Allocate::Make("tf_cnt", Type::Int(), Expr(tiles), MemoryScope::kModule, s);
  return Allocate::Make("tf_ws", Type::Float(), Expr(t.split_k * tiles * regs * threads), MemoryScope::kModule, s);
}

}  // namespace

absl::StatusOr<ConfigSpace> GpuGemmSpace(const GpuGemmSpec& spec) {
  auto ints = [](std::initializer_list<int64_t> v) { return std::vector<KnobValue>(v.begin(), v.end()); };
  const bool any_vec = spec.a.vec4 || spec.b.vec4;
  return ConfigSpace::Create({
      {"bm", KnobKind::kSplit, ints({16, 32, 64, 128, 256})},
      {"bn", KnobKind::kSplit, ints({16, 32, 64, 128, 256})},
      {"bk", KnobKind::kSplit, ints({8, 16, 32})},
      {"tm", KnobKind::kSplit, ints({1, 2, 4, 8})},
      {"tn", KnobKind::kSplit, ints({1, 2, 4, 8, 16})},
      {"warp_x", KnobKind::kAnnotate, ints({4, 8, 16, 32})},
      {"split", KnobKind::kChoice, ints({1, 2})},
      {"stages", KnobKind::kChoice, spec.tf32 ? ints({1, 2, 3, 4}) : ints({1, 2})},
      {"vec", KnobKind::kAnnotate, any_vec ? ints({1, 4}) : ints({1})},
      {"unroll_k", KnobKind::kAnnotate, ints({0, 1})},
      {"mma", KnobKind::kChoice, spec.tf32 ? ints({0, 1, 2}) : ints({0})},
      {"split_k", KnobKind::kChoice, SplitKOffered(spec) ? ints({1, 2, 3, 4, 6}) : ints({1})},
  });
}

Config GpuGemmDefaultConfig(const GpuGemmSpec& spec, const ConfigSpace& space) {
  // 256 threads, 128x128x16 blocks of 8x8 micro-tiles (large problems) or
  // 64x64x8 of 4x4, double-buffered; on the tensor cores where the workload
  // allows TF32 (on an H100 at 4096^3: 2.3x the FP32 path with the same
  // tiles, and bk=16 1.2x bk=8 on either path), there with 64x64 warp tiles
  // for large problems (122 TFLOP/s against 112 for 32x64 ones).
  const bool large = spec.M >= 512 && spec.N >= 512;
  const bool wide_warps = large && spec.tf32;
  const int64_t tile = large ? 128 : 64, micro = large ? 8 : 4;
  absl::StatusOr<Config> c = space.FromValues({{"bm", tile},
                                               {"bn", tile},
                                               {"bk", int64_t{large ? 16 : 8}},
                                               {"tm", micro},
                                               {"tn", wide_warps ? 2 * micro : micro},
                                               {"warp_x", int64_t{wide_warps ? 4 : 8}},
                                               {"split", int64_t{large && !spec.tf32 ? 2 : 1}},
                                               {"stages", int64_t{2}},
                                               {"vec", int64_t{spec.a.vec4 || spec.b.vec4 ? 4 : 1}},
                                               {"unroll_k", int64_t{1}},
                                               {"mma", int64_t{spec.tf32 ? 1 : 0}},
                                               {"split_k", int64_t{1}}});
  return c.ok() ? *c : space.FromIndex(0);
}

absl::StatusOr<Kernel> LowerGpuGemm(const GpuGemmSpec& spec, std::vector<BufferArg> args, const ConfigSpace& space,
                                    const Config& c) {
  const Tiles t{space.IntValue(c, "bm"),
                space.IntValue(c, "bn"),
                space.IntValue(c, "bk"),
                space.IntValue(c, "tm"),
                space.IntValue(c, "tn"),
                space.IntValue(c, "warp_x"),
                space.IntValue(c, "split"),
                space.IntValue(c, "stages"),
                space.IntValue(c, "vec"),
                space.IntValue(c, "split_k"),
                space.IntValue(c, "unroll_k") != 0,
                space.IntValue(c, "mma")};
  const int64_t threads = t.threads(), warp_y = kWarp / t.warp_x;
  if (threads % kWarp != 0 || threads > kMaxThreads) {
    return absl::InvalidArgumentError(absl::StrCat("a ", t.bm, "x", t.bn, " block of ", t.tm, "x", t.tn,
                                                   " micro-tiles has ", threads,
                                                   " threads; it needs whole warps and at most ", kMaxThreads));
  }
  if (t.tx() % t.warp_x != 0 || t.ty() % warp_y != 0) {
    return absl::InvalidArgumentError(absl::StrCat("warps of ", warp_y, "x", t.warp_x, " micro-tiles do not tile ",
                                                   t.ty(), "x", t.tx(), " threads"));
  }
  if (t.tm % t.split != 0 || t.tn % t.split != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("split=", t.split, " does not divide the ", t.tm, "x", t.tn, " micro-tile"));
  }
  // With mma, each warp computes its (warp_y * tm) x (warp_x * tn) warp
  // tile as 16 x 8 tensor-core tiles.
  const int64_t warp_m = warp_y * t.tm, warp_n = t.warp_x * t.tn;
  if (t.mma == 1 && (warp_m % 16 != 0 || warp_n % 8 != 0 || t.split != 1)) {
    return absl::InvalidArgumentError(absl::StrCat("mma needs a warp tile of 16 x 8 tiles and split=1; this one is ",
                                                   warp_m, "x", warp_n, " with split=", t.split));
  }
  // With mma=2, the four warps of a warpgroup stack their 16-row warp tiles
  // into one 64 x warp_n tile, computed by wgmma m64n<warp_n>k8.
  if (t.mma == 2 && (warp_m != 16 || warp_n % 8 != 0 || warp_n > 256 || t.split != 1 || t.bm % 64 != 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("mma=2 needs warp tiles of 16 rows (tm = warp_x / 2), a multiple of 8 up to 256 wide, split=1 "
                     "and bm a multiple of 64; this one is ",
                     warp_m, "x", warp_n, " with split=", t.split, ", bm=", t.bm));
  }
  // Its slices are 32 deep (one 128-byte swizzle row per outer index) and
  // travel by cp.async through 3 or 4 buffers; the other paths stage
  // through registers into 1 or 2.
  if (t.mma == 2 && (t.bk != AsyncSliceLoad::kDepth || t.stages < 3 || !t.unroll_k)) {
    return absl::InvalidArgumentError(absl::StrCat("mma=2 needs bk=32, stages of 3 or more and unroll_k=1; this is bk=",
                                                   t.bk, ", stages=", t.stages, ", unroll_k=", t.unroll_k));
  }
  if (t.mma != 2 && t.stages > 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("stages=", t.stages, " needs mma=2 (cp.async); this is mma=", t.mma));
  }
  if (CeilDiv(spec.M, t.bm) > kMaxGridY) {
    return absl::InvalidArgumentError(absl::StrCat(CeilDiv(spec.M, t.bm), " row blocks exceed the grid's ", kMaxGridY));
  }
  // Split-K: block z takes `per` of the nk k slices, from slice z * per.
  const int64_t nk = CeilDiv(spec.K, t.bk), per = CeilDiv(nk, t.split_k);
  if (t.split_k > 1 && per * (t.split_k - 1) >= nk) {
    return absl::InvalidArgumentError(
        absl::StrCat("split_k=", t.split_k, " leaves blocks without k slices (", nk, " slices of ", t.bk, ")"));
  }
  const int64_t tiles = CeilDiv(spec.M, t.bm) * CeilDiv(spec.N, t.bn);
  const int64_t workspace_bytes = t.split_k > 1 ? t.split_k * tiles * t.tm * t.tn * threads * 4 : 0;
  if (workspace_bytes > kMaxWorkspaceBytes) {
    return absl::InvalidArgumentError(absl::StrCat("split_k=", t.split_k, " needs ", workspace_bytes,
                                                   " bytes of workspace; at most ", kMaxWorkspaceBytes));
  }
  const bool guard_k = spec.K % t.bk != 0 || per * t.split_k != nk;
  const bool wg = t.mma == 2;
  SliceLoad la{&spec.a, spec.M, spec.K, t.bm, t.bk, spec.a.vec4 ? t.vec : 1, threads, guard_k, t.mma == 1};
  SliceLoad lb{&spec.b, spec.N, spec.K, t.bn, t.bk, spec.b.vec4 ? t.vec : 1, threads, guard_k, t.mma == 1};
  AsyncSliceLoad aa{&spec.a, spec.M, spec.K, t.bm, threads, guard_k, spec.a.k_contiguous && spec.a.vec4 && t.vec == 4};
  AsyncSliceLoad ab{&spec.b, spec.N, spec.K, t.bn, threads, guard_k, spec.b.k_contiguous && spec.b.vec4 && t.vec == 4};
  const int64_t a_elements = wg ? aa.elements() : la.elements(), b_elements = wg ? ab.elements() : lb.elements();
  // The slices' buffers, and split-K's flag (a 1024-byte-aligned part of
  // the dynamic pool on the warpgroup path).
  const int64_t shared_bytes = t.stages * (a_elements + b_elements) * 4 + (t.split_k > 1 ? wg ? 1024 : 8 : 0);
  if (const int64_t most = wg ? kMaxDynamicSharedBytes : kMaxSharedBytes; shared_bytes > most) {
    return absl::InvalidArgumentError(
        absl::StrCat(shared_bytes, " bytes of shared memory exceed the ", most, " a block may use"));
  }

  const Expr tid = Var::Make("tid"), tx = Var::Make("tx"), ty = Var::Make("ty");
  const Expr bx = Var::Make("bx"), by = Var::Make("by"), bz = Var::Make("bz");
  const Expr m0 = by * Expr(t.bm), n0 = bx * Expr(t.bn);
  // The first k of slice ko of this block.
  auto k_at = [&](const Expr& ko) { return (t.split_k > 1 ? bz * Expr(per) + ko : ko) * Expr(t.bk); };
  auto row_of = [&](int64_t i) { return Tiles::Offset(i, t.bm, t.tm, t.split, ty); };
  auto col_of = [&](int64_t j) { return Tiles::Offset(j, t.bn, t.tn, t.split, tx); };

  // acc[i][j] += As[kk][row(i)] * Bs[kk][col(j)] over one slice.
  auto compute = [&](const Expr& a_base, const Expr& b_base) {
    auto step = [&](const Expr& kk) {
      std::vector<Stmt> s;
      for (int64_t i = 0; i < t.tm; ++i) {
        s.push_back(Store::Make("ra", Load::Make("As", a_base + kk * Expr(la.row()) + row_of(i)), i));
      }
      for (int64_t j = 0; j < t.tn; ++j) {
        s.push_back(Store::Make("rb", Load::Make("Bs", b_base + kk * Expr(lb.row()) + col_of(j)), j));
      }
      for (int64_t i = 0; i < t.tm; ++i) {
        for (int64_t j = 0; j < t.tn; ++j) {
          const int64_t at = i * t.tn + j;
          s.push_back(Store::Make("acc", Load::Make("acc", at) + Load::Make("ra", i) * Load::Make("rb", j), at));
        }
      }
      return Block::Make(s);
    };
    // The tensor-core step over k .. k+7: fragments from shared memory in
    // PTX's m16n8k8 layout (lane = 4g + t), then one mma per 16 x 8 tile.
    auto mma_step = [&](const Expr& k) {
      const Expr g = Var::Make("g"), tq = Var::Make("t");
      const Expr wr = Var::Make("wr") * Expr(warp_m), wc = Var::Make("wc") * Expr(warp_n);
      std::vector<Stmt> s;
      const int64_t mt = warp_m / 16, nt = warp_n / 8;
      for (int64_t mi = 0; mi < mt; ++mi) {
        for (int64_t q = 0; q < 4; ++q) {
          Expr kk = k + tq + Expr(q >= 2 ? 4 : 0), row = wr + Expr(mi * 16 + (q % 2 ? 8 : 0)) + g;
          s.push_back(Store::Make("fa", Load::Make("As", a_base + kk * Expr(la.row()) + row), mi * 4 + q));
        }
      }
      for (int64_t ni = 0; ni < nt; ++ni) {
        for (int64_t q = 0; q < 2; ++q) {
          Expr kk = k + tq + Expr(q * 4), col = wc + Expr(ni * 8) + g;
          s.push_back(Store::Make("fb", Load::Make("Bs", b_base + kk * Expr(lb.row()) + col), ni * 2 + q));
        }
      }
      for (int64_t mi = 0; mi < mt; ++mi) {
        for (int64_t ni = 0; ni < nt; ++ni) {
          std::vector<Expr> args;
          for (int64_t q = 0; q < 4; ++q) args.push_back(Load::Make("acc", (mi * nt + ni) * 4 + q));
          for (int64_t q = 0; q < 4; ++q) args.push_back(Load::Make("fa", mi * 4 + q));
          for (int64_t q = 0; q < 2; ++q) args.push_back(Load::Make("fb", ni * 2 + q));
          s.push_back(Evaluate::Make(Call::Make("tf_mma_tf32_m16n8k8", args)));
        }
      }
      return Block::Make(s);
    };
    // The warpgroup step over k .. k+7: one wgmma reads the warpgroup's
    // 64 rows of A and warp_n columns of B from shared memory.
    auto wgmma_step = [&](const Expr& k) {
      const Expr wgr = Var::Make("wgr") * Expr(64), wgc = Var::Make("wgc") * Expr(warp_n);
      const Expr depth(AsyncSliceLoad::kDepth);
      std::vector<Expr> args = {Load::Make("As", a_base + wgr * depth + k), Load::Make("Bs", b_base + wgc * depth + k)};
      for (int64_t r = 0; r < warp_n / 2; ++r) args.push_back(Load::Make("acc", r));
      return Evaluate::Make(Call::Make(WgmmaIntrinsic(warp_n), args));
    };
    const int64_t step_k = t.mma ? 8 : 1;
    auto one = [&](const Expr& k) { return t.mma == 2 ? wgmma_step(k) : t.mma ? mma_step(k) : step(k); };
    if (!t.unroll_k) {
      return For::Make("kk", 0, t.bk / step_k, ForKind::kSerial, one(Var::Make("kk") * Expr(step_k)));
    }
    std::vector<Stmt> s;
    for (int64_t kk = 0; kk < t.bk; kk += step_k) s.push_back(one(Expr(kk)));
    return Block::Make(s);
  };
  auto read = [&](const Expr& k0) { return Block::Make({la.Read(tid, m0, k0, "sa"), lb.Read(tid, n0, k0, "sb")}); };
  auto write = [&](const Expr& stage) {
    return Block::Make({la.Write(tid, stage * Expr(la.elements()), "As", "sa"),
                        lb.Write(tid, stage * Expr(lb.elements()), "Bs", "sb")});
  };

  const Expr ko = Var::Make("ko");
  auto call = [](const char* f, std::vector<Expr> args = {}) { return Evaluate::Make(Call::Make(f, std::move(args))); };
  Stmt main_loop;
  if (wg) {
    // cp.async fills slice ko + d (d = stages - 2) while the tensor cores
    // run slices ko and ko - 1: at the top of iteration ko this thread's
    // copies of slice ko have landed (at most d - 1 later groups in
    // flight), the fence and the barrier make everyone's visible to the
    // tensor cores, and every warpgroup has retired slice ko - 2 (it
    // waited for all but its newest group at the end of ko - 1), whose
    // buffer the copies of slice ko + d take.
    const int64_t d = t.stages - 2;
    auto issue_copies = [&](const Expr& slice) {
      const Expr stage = slice % Expr(t.stages);
      return Block::Make({aa.Issue(tid, m0, k_at(slice), "As", stage * Expr(a_elements)),
                          ab.Issue(tid, n0, k_at(slice), "Bs", stage * Expr(b_elements))});
    };
    std::vector<Stmt> prologue;
    for (int64_t s = 0; s < d; ++s) {
      prologue.push_back(s < per ? issue_copies(Expr(s)) : Stmt());
      prologue.push_back(call("tf_cp_async_commit"));
    }
    const Expr cur = ko % Expr(t.stages);
    Stmt body =
        Block::Make({call("tf_cp_async_wait", {Expr(d - 1)}), call("tf_fence_proxy_async"), Barrier::Make(),
                     IfThenElse::Make(ko + Expr(d) < Expr(per), issue_copies(ko + Expr(d))), call("tf_cp_async_commit"),
                     call("tf_wgmma_fence"), compute(cur * Expr(a_elements), cur * Expr(b_elements)),
                     call("tf_wgmma_commit"), call("tf_wgmma_wait", {Expr(1)})});
    main_loop = Block::Make(
        {Block::Make(prologue), For::Make("ko", 0, per, ForKind::kSerial, body), call("tf_wgmma_wait", {Expr(0)})});
  } else if (t.stages == 1) {
    main_loop = For::Make(
        "ko", 0, per, ForKind::kSerial,
        Block::Make({read(k_at(ko)), write(Expr(0)), Barrier::Make(), compute(Expr(0), Expr(0)), Barrier::Make()}));
  } else {
    // Slice ko+1 travels global -> registers while slice ko is computed
    // from shared memory, then lands in the other buffer: one barrier per
    // slice.
    const Expr cur = ko % Expr(2), nxt = (ko + Expr(1)) % Expr(2);
    const Expr more = ko + Expr(1) < Expr(per);
    Stmt body = Block::Make({per > 1 ? IfThenElse::Make(more, read(k_at(ko + Expr(1)))) : Stmt(),
                             compute(cur * Expr(la.elements()), cur * Expr(lb.elements())),
                             per > 1 ? IfThenElse::Make(more, write(nxt)) : Stmt(), Barrier::Make()});
    main_loop = Block::Make(
        {read(k_at(Expr(0))), write(Expr(0)), Barrier::Make(), For::Make("ko", 0, per, ForKind::kSerial, body)});
  }

  // The epilogue: bias, ReLU, and the store of every element inside the
  // problem. Accumulator `reg` of this thread holds (row, column) of the
  // block tile.
  std::vector<std::tuple<int64_t, Expr, Expr>> owned;
  if (t.mma) {
    // The tensor cores' accumulators, in PTX's m16n8 fragments (lane =
    // 4g + t): tile at / 4 of the warp tile's (warp_m / 16) x (warp_n / 8).
    // With wgmma, warp w4 of the warpgroup holds the warpgroup tile's rows
    // 16 w4 .. 16 w4 + 15.
    const Expr g = Var::Make("g"), tq = Var::Make("t");
    const Expr wr = wg ? Var::Make("wgr") * Expr(64) + Var::Make("w4") * Expr(16) : Var::Make("wr") * Expr(warp_m);
    const Expr wc = Var::Make(wg ? "wgc" : "wc") * Expr(warp_n);
    const int64_t nt = warp_n / 8;
    for (int64_t at = 0; at < t.tm * t.tn; ++at) {
      const int64_t tile = at / 4, q = at % 4, mi = tile / nt, ni = tile % nt;
      owned.emplace_back(at, wr + Expr(mi * 16 + (q >= 2 ? 8 : 0)) + g, wc + Expr(ni * 8 + q % 2) + tq * Expr(2));
    }
  } else {
    for (int64_t i = 0; i < t.tm; ++i) {
      for (int64_t j = 0; j < t.tn; ++j) owned.emplace_back(i * t.tn + j, row_of(i), col_of(j));
    }
  }
  std::vector<Stmt> epilogue;
  for (const auto& [reg, row, col] : owned) {
    Expr gi = m0 + row, gj = n0 + col;
    Expr v = Load::Make("acc", reg);
    if (spec.bias == GemmSpec::Bias::kPerColumn) v = v + Load::Make(spec.bias_buffer, gj);
    if (spec.bias == GemmSpec::Bias::kPerRow) v = v + Load::Make(spec.bias_buffer, gi);
    if (spec.relu) v = Select::Make(FloatImm::Make(0) < v, v, FloatImm::Make(0));
    Stmt store = Store::Make(spec.out, v, spec.out_index ? spec.out_index(gi, gj) : gi * Expr(spec.N) + gj);
    Expr inside;
    if (spec.M % t.bm != 0) inside = AndAll(inside, gi < Expr(spec.M));
    if (spec.N % t.bn != 0) inside = AndAll(inside, gj < Expr(spec.N));
    epilogue.push_back(inside.defined() ? IfThenElse::Make(inside, store) : store);
  }

  Stmt finish = Block::Make(epilogue);
  if (t.split_k > 1) finish = SplitKReduce(t, threads, tiles, by * Expr(CeilDiv(spec.N, t.bn)) + bx, bz, tid, finish);

  std::vector<Stmt> init;
  for (int64_t i = 0; i < t.tm * t.tn; ++i) init.push_back(Store::Make("acc", FloatImm::Make(0), i));
  Stmt thread = Block::Make({Block::Make(init), main_loop, finish});
  // Operand registers: a row and a column of the micro-tile, or the
  // tensor-core fragments of the warp tile.
  if (t.mma == 1) {
    thread = Allocate::Make("fa", Type::Float(), warp_m / 16 * 4, MemoryScope::kRegister,
                            Allocate::Make("fb", Type::Float(), warp_n / 8 * 2, MemoryScope::kRegister, thread));
  } else if (t.mma == 0) {
    thread = Allocate::Make("ra", Type::Float(), t.tm, MemoryScope::kRegister,
                            Allocate::Make("rb", Type::Float(), t.tn, MemoryScope::kRegister, thread));
  }
  if (!wg) {
    thread =
        Allocate::Make("sa", Type::Float(), la.per_thread() * la.g, MemoryScope::kRegister,
                       Allocate::Make("sb", Type::Float(), lb.per_thread() * lb.g, MemoryScope::kRegister, thread));
  }
  thread = Allocate::Make("acc", Type::Float(), t.tm * t.tn, MemoryScope::kRegister, thread);
  // Warps of warp_y x warp_x micro-tiles, laid out row-major over the block.
  const int64_t warps_per_row = t.tx() / t.warp_x;
  const Expr warp = tid / Expr(kWarp), lane = tid % Expr(kWarp);
  if (wg) {
    // Warpgroup (wgr, wgc) of the block, warp w4 inside it; lane = 4g + t.
    const Expr group = tid / Expr(4 * kWarp);
    thread = LetStmt::Make(
        "wgr", group / Expr(t.bn / warp_n),
        LetStmt::Make("wgc", group % Expr(t.bn / warp_n),
                      LetStmt::Make("w4", warp % Expr(4),
                                    LetStmt::Make("g", lane / Expr(4), LetStmt::Make("t", lane % Expr(4), thread)))));
  } else if (t.mma) {
    // Warp (wr, wc) of the block; lane = 4g + t inside the fragments.
    thread = LetStmt::Make(
        "wr", warp / Expr(warps_per_row),
        LetStmt::Make("wc", warp % Expr(warps_per_row),
                      LetStmt::Make("g", lane / Expr(4), LetStmt::Make("t", lane % Expr(4), thread))));
  } else {
    thread = LetStmt::Make("ty", warp / Expr(warps_per_row) * Expr(warp_y) + lane / Expr(t.warp_x),
                           LetStmt::Make("tx", warp % Expr(warps_per_row) * Expr(t.warp_x) + lane % Expr(t.warp_x),
                                         thread));
  }
  Stmt body = For::Make("tid", 0, threads, ForKind::kGpuThread, thread);
  body = Allocate::Make("As", Type::Float(), t.stages * a_elements, MemoryScope::kShared,
                        Allocate::Make("Bs", Type::Float(), t.stages * b_elements, MemoryScope::kShared, body));
  body = For::Make("by", 0, CeilDiv(spec.M, t.bm), ForKind::kGpuBlock,
                   For::Make("bx", 0, CeilDiv(spec.N, t.bn), ForKind::kGpuBlock, body));
  if (t.split_k > 1) body = For::Make("bz", 0, t.split_k, ForKind::kGpuBlock, body);

  Kernel k;
  k.func.name = "tunefarm_kernel";
  k.func.args = std::move(args);
  k.func.body = body;
  return k;
}

}  // namespace tunefarm::kernels
