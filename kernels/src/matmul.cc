// matmul: C[M,N] = A[M,K] * B[K,N], float32, row-major, for CPUs.
// Optional parameters: trans_b=1 reads B as [N,K] (C = A * B^T), bias=1 adds
// bias[N] to every row, relu=1 clamps at zero; the epilogue is applied to
// each register tile as its last K block is stored.
//
// The schedule is GotoBLAS/BLIS-shaped: three cache-tile loops (jc over N,
// pc over K, ic over M) in a tunable order, optional packing of B and A into
// contiguous zero-padded panels, two register-tile loops (jr, ir), and a
// micro-kernel that keeps an MR x (NV*W) tile of C in vector registers while
// walking the K block. Tiles need not divide the shape: edge tiles take a
// scalar-indexed path with bounds, so primes work.
#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tunefarm/kernels/template.h"
#include "matmul_common.h"

namespace tunefarm::kernels {
namespace {

using namespace ir;  // NOLINT: this file builds IR

constexpr int64_t kMaxDim = int64_t{1} << 20;
// A, B and C together: 2^28 floats = 1 GiB.
constexpr int64_t kMaxElements = int64_t{1} << 28;

int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
Expr CeilDiv(const Expr& a, int64_t b) { return (a + Expr(b - 1)) / Expr(b); }
Expr V(const char* name) { return Var::Make(name); }

// A loop over one cache-tile dimension: binds <d>_o, <d> = <d>_o * tile and
// <size> = min(tile, extent - <d>) (the block's size) around `body`.
Stmt TileLoop(const std::string& d, const std::string& b, int64_t extent, int64_t tile, const Stmt& body) {
  std::string o = d + "_o";
  Stmt s = LetStmt::Make(b, min(Expr(tile), Expr(extent) - Var::Make(d)), body);
  s = LetStmt::Make(d, Var::Make(o) * Expr(tile), s);
  return For::Make(o, 0, Expr((extent + tile - 1) / tile), ForKind::kSerial, s);
}

absl::StatusOr<ConfigSpace> MatmulSpace(bool trans_b) {
  // A transposed B is always packed: the micro-kernel reads B rows as
  // vectors, which only the packed panel provides.
  auto ints = [](std::initializer_list<int64_t> v) { return std::vector<KnobValue>(v.begin(), v.end()); };
  auto strs = [](std::initializer_list<const char*> v) {
    std::vector<KnobValue> out;
    for (const char* s : v) out.emplace_back(std::string(s));
    return out;
  };
  return ConfigSpace::Create({
      {"mr", KnobKind::kSplit, ints({1, 2, 3, 4, 5, 6, 8, 12, 16})},  // register tile rows
      {"nv", KnobKind::kSplit, ints({1, 2, 3, 4})},                   // vectors per tile row
      {"vec", KnobKind::kAnnotate, ints({4, 8, 16})},                 // SIMD width in floats
      {"mc", KnobKind::kSplit, ints({8, 16, 32, 48, 64, 96, 128, 192, 256})},
      {"nc", KnobKind::kSplit, ints({32, 64, 128, 256, 512, 1024, 2048, 4096})},
      {"kc", KnobKind::kSplit, ints({16, 32, 64, 128, 256, 384, 512, 1024})},
      {"order", KnobKind::kReorder, strs({"jc,pc,ic", "jc,ic,pc", "pc,jc,ic", "pc,ic,jc", "ic,jc,pc", "ic,pc,jc"})},
      {"inner", KnobKind::kReorder, strs({"jr,ir", "ir,jr"})},
      {"pack_a", KnobKind::kChoice, ints({0, 1})},
      {"pack_b", KnobKind::kChoice, trans_b ? ints({1}) : ints({0, 1})},
      {"unroll_k", KnobKind::kAnnotate, ints({1, 2, 4, 8})},
      {"compiler", KnobKind::kChoice, strs({"clang", "gcc"})},
      {"cflags", KnobKind::kChoice, strs({"-O3", "-O3 -funroll-loops", "-O2"})},
      // Threads sharing the register-tile loop of each cache block (OpenMP);
      // a device rejects more than it has cores before compiling.
      {"threads", KnobKind::kAnnotate, ints({1, 2, 4, 8, 16, 32, 64})},
  });
}

Config MatmulDefaultConfig(const ConfigSpace& space, bool trans_b) {
  auto c = space.FromValues({{"mr", int64_t{4}},
                             {"nv", int64_t{2}},
                             {"vec", int64_t{8}},
                             {"mc", int64_t{64}},
                             {"nc", int64_t{256}},
                             {"kc", int64_t{256}},
                             {"order", std::string("jc,pc,ic")},
                             {"inner", std::string("jr,ir")},
                             {"pack_a", int64_t{0}},
                             {"pack_b", int64_t{trans_b ? 1 : 0}},
                             {"unroll_k", int64_t{1}},
                             {"compiler", std::string("clang")},
                             {"cflags", std::string("-O3")},
                             {"threads", int64_t{1}}});
  return *c;  // the values above are in the space by construction
}

// Summed in double. A correct float kernel, in any summation order and with
// or without FMA, satisfies |c - exact| <= gamma_K * sum_k |a_ik * b_kj|
// with gamma_K = K*u / (1 - K*u), u = 2^-24 (Higham, Accuracy and Stability
// of Numerical Algorithms, 3.1); rounding the expected value to float adds
// at most u*|c|. A wrong index or a missing term is off by about |a*b|,
// far above that bound for inputs drawn from [-1, 1].
ReferenceOutput MatmulReference(const MatmulProblem& p, std::span<const std::span<const float>> in) {
  const int64_t m = p.M, n = p.N, k = p.K;
  const bool trans_b = p.trans_b, has_bias = p.bias, relu = p.relu;
  ReferenceOutput out;
  out.expected.resize(p.batch * m * n);
  out.tolerance.resize(p.batch * m * n);
  for (int64_t bi = 0; bi < p.batch; ++bi) {
  std::span<const float> a = in[0].subspan(bi * m * k, m * k), b = in[1].subspan(bi * k * n, k * n);
  std::vector<float> b_rows;  // B as [K,N]
  if (trans_b) {
    b_rows.resize(k * n);
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t p = 0; p < k; ++p) b_rows[p * n + j] = b[j * k + p];
    }
    b = b_rows;
  }
  const double u = std::ldexp(1.0, -24);
  // The bias is one more term of the sum; ReLU cannot grow an error.
  const int64_t terms = k + (has_bias ? 1 : 0);
  const double gamma = static_cast<double>(terms + 1) * u / (1.0 - static_cast<double>(terms + 1) * u);
  std::vector<double> acc(n), mag(n);
  for (int64_t i = 0; i < m; ++i) {
    std::fill(acc.begin(), acc.end(), 0.0);
    std::fill(mag.begin(), mag.end(), 0.0);
    for (int64_t p = 0; p < k; ++p) {
      double av = a[i * k + p];
      const float* brow = &b[p * n];
      for (int64_t j = 0; j < n; ++j) {
        acc[j] += av * brow[j];
        mag[j] += std::abs(av * brow[j]);
      }
    }
    if (has_bias) {
      for (int64_t j = 0; j < n; ++j) {
        acc[j] += in[2][j];
        mag[j] += std::abs(static_cast<double>(in[2][j]));
      }
    }
    if (relu) {
      for (int64_t j = 0; j < n; ++j) acc[j] = std::max(acc[j], 0.0);
    }
    for (int64_t j = 0; j < n; ++j) {
      out.expected[bi * m * n + i * n + j] = static_cast<float>(acc[j]);
      // 1% headroom for rounding the bound itself to float.
      out.tolerance[bi * m * n + i * n + j] = static_cast<float>(1.01 * gamma * mag[j]) + 1e-30f;
    }
  }
  }
  return out;
}

absl::StatusOr<Kernel> LowerMatmul(const MatmulProblem& p, std::vector<ir::BufferArg> args, const ConfigSpace& space,
                                   const Config& c) {
  const int64_t M = p.M, N = p.N, K = p.K;
  const int64_t MR = space.IntValue(c, "mr"), NV = space.IntValue(c, "nv"), W = space.IntValue(c, "vec");
  const int64_t NR = NV * W;
  // Cache tiles are rounded up to whole register tiles and clipped to the
  // (rounded-up) problem, so packed panels are never larger than needed.
  const int64_t MC = RoundUp(std::min(space.IntValue(c, "mc"), RoundUp(M, MR)), MR);
  const int64_t NC = RoundUp(std::min(space.IntValue(c, "nc"), RoundUp(N, NR)), NR);
  const int64_t KC = std::min(space.IntValue(c, "kc"), K);
  const int64_t U = space.IntValue(c, "unroll_k");
  const bool pack_a = space.IntValue(c, "pack_a") != 0, pack_b = space.IntValue(c, "pack_b") != 0;
  const bool trans_b = p.trans_b, has_bias = p.bias, relu = p.relu;
  // Batched operands are strided by whole matrices; a single one has no
  // offset at all, so its code is exactly the unbatched kernel's.
  const bool batched = p.batch > 1;
  auto at = [&](const char* off, Expr idx) { return batched ? V(off) + idx : idx; };
  if (trans_b && !pack_b) return absl::InvalidArgumentError("a transposed B must be packed");
  std::vector<std::string> order = absl::StrSplit(space.StrValue(c, "order"), ',');
  const bool jr_outer = space.StrValue(c, "inner") == "jr,ir";

  const Type f32 = Type::Float(), vec_t = Type::Float(32, static_cast<int>(W));
  Expr jc = V("jc"), pc = V("pc"), ic = V("ic"), nb = V("nb"), kb = V("kb"), mb = V("mb");
  Expr jr_o = V("jr_o"), ir_o = V("ir_o"), jr = V("jr"), ir = V("ir");

  // Element accessors, relative to the current blocks and register tile.
  auto a_at = [&](Expr ii, Expr kk) {
    if (pack_a) return Load::Make("Ap", ir_o * kb * Expr(MR) + kk * Expr(MR) + ii);
    return Load::Make("A", at("a_off", (ic + ir + ii) * Expr(K) + pc + kk));
  };
  auto b_at = [&](Expr kk, Expr j, Type t) {
    if (pack_b) return Load::Make("Bp", jr_o * kb * Expr(NR) + kk * Expr(NR) + j, t);
    return Load::Make("B", at("b_off", (pc + kk) * Expr(N) + jc + jr + j), t);
  };
  auto c_index = [&](Expr ii, Expr j) { return at("c_off", (ic + ir + ii) * Expr(N) + jc + jr + j); };

  // --- micro-kernel for a full MR x NR tile ---
  auto k_step = [&](Expr kk) {
    Expr ii = V("ii"), v = V("v");
    Stmt load_b = For::Make("v", 0, NV, ForKind::kUnrolled, Store::Make("bv", b_at(kk, v * Expr(W), vec_t), v));
    Stmt update = Store::Make(
        "acc",
        Load::Make("acc", ii * Expr(NV) + v, vec_t) +
            Broadcast::Make(Var::Make("a", f32), static_cast<int>(W)) * Load::Make("bv", v, vec_t),
        ii * Expr(NV) + v);
    Stmt rows = For::Make("ii", 0, MR, ForKind::kUnrolled,
                          LetStmt::Make("a", a_at(ii, kk), For::Make("v", 0, NV, ForKind::kUnrolled, update)));
    return Allocate::Make("bv", vec_t, NV, MemoryScope::kRegister, Block::Make({load_b, rows}));
  };
  Stmt k_loop;
  if (U == 1) {
    k_loop = For::Make("kk", 0, kb, ForKind::kSerial, k_step(V("kk")));
  } else {
    Expr main_end = kb / Expr(U) * Expr(U);
    k_loop = Block::Make({
        For::Make("ko", 0, kb / Expr(U), ForKind::kSerial,
                  For::Make("ku", 0, U, ForKind::kUnrolled, k_step(V("ko") * Expr(U) + V("ku")))),
        For::Make("kk", main_end, kb - main_end, ForKind::kSerial, k_step(V("kk"))),
    });
  }
  Stmt tile_io_load, tile_io_store;
  {
    Expr ii = V("ii"), v = V("v");
    tile_io_load = For::Make(
        "ii", 0, MR, ForKind::kUnrolled,
        For::Make("v", 0, NV, ForKind::kUnrolled,
                  Store::Make("acc", Load::Make("C", c_index(ii, v * Expr(W)), vec_t), ii * Expr(NV) + v)));
    tile_io_store = For::Make(
        "ii", 0, MR, ForKind::kUnrolled,
        For::Make("v", 0, NV, ForKind::kUnrolled,
                  Store::Make("C", Load::Make("acc", ii * Expr(NV) + v, vec_t), c_index(ii, v * Expr(W)))));
  }
  // Epilogue over the rows x cols of the tile at (ir, jr), once the last K
  // block has been accumulated into C.
  auto epilogue = [&](Expr rows, Expr cols) -> Stmt {
    if (!has_bias && !relu) return Stmt();
    Expr ii = V("ii"), jj = V("jj");
    Expr x = Load::Make("C", c_index(ii, jj));
    if (has_bias) x = x + Load::Make("bias", jc + jr + jj);
    Expr e = Var::Make("e", f32);
    Expr value = relu ? Select::Make(FloatImm::Make(0) < e, e, FloatImm::Make(0)) : e;
    Stmt apply = For::Make("ii", 0, rows, ForKind::kSerial,
                           For::Make("jj", 0, cols, ForKind::kVectorized,
                                     LetStmt::Make("e", x, Store::Make("C", value, c_index(ii, jj)))));
    return IfThenElse::Make(EQ::Make(pc + kb, Expr(K)), apply, Stmt());
  };
  Stmt full_tile = Allocate::Make("acc", vec_t, MR * NV, MemoryScope::kRegister,
                                  Block::Make({tile_io_load, k_loop, tile_io_store}));
  full_tile = Block::Make({full_tile, epilogue(Expr(MR), Expr(NR))});

  // --- edge tile: bounds from the block, scalar A, compiler-vectorised j ---
  Stmt edge_tile;
  {
    Expr ii = V("ii"), kk = V("kk"), jj = V("jj");
    Stmt upd = Store::Make("C", Load::Make("C", c_index(ii, jj)) + Var::Make("a", f32) * b_at(kk, jj, f32),
                           c_index(ii, jj));
    edge_tile = For::Make(
        "ii", 0, min(Expr(MR), mb - ir), ForKind::kSerial,
        For::Make("kk", 0, kb, ForKind::kSerial,
                  LetStmt::Make("a", a_at(ii, kk), For::Make("jj", 0, min(Expr(NR), nb - jr), ForKind::kVectorized, upd))));
    edge_tile = Block::Make({edge_tile, epilogue(min(Expr(MR), mb - ir), min(Expr(NR), nb - jr))});
  }
  Stmt tile = IfThenElse::Make((ir + Expr(MR) <= mb) && (jr + Expr(NR) <= nb), full_tile, edge_tile);

  // --- register-tile loops ---
  Stmt jr_loop_body, inner;
  auto ir_loop = [&](Stmt body, ForKind kind = ForKind::kSerial) {
    return For::Make("ir_o", 0, CeilDiv(mb, MR), kind, LetStmt::Make("ir", ir_o * Expr(MR), body));
  };
  auto jr_loop = [&](Stmt body, ForKind kind = ForKind::kSerial) {
    return For::Make("jr_o", 0, CeilDiv(nb, NR), kind, LetStmt::Make("jr", jr_o * Expr(NR), body));
  };
  // With threads, the outer register-tile loop is shared out: each tile
  // writes its own part of C and only reads the packed panels, and the
  // packing happens before the loop, so there is nothing to race on.
  const int64_t T = space.IntValue(c, "threads");
  const ForKind outer = T > 1 ? ForKind::kParallel : ForKind::kSerial;
  inner = jr_outer ? jr_loop(ir_loop(tile), outer) : ir_loop(jr_loop(tile), outer);

  // --- packing ---
  Stmt pack_b_stmt, pack_a_stmt;
  if (pack_b) {
    Expr kk = V("kk"), jj = V("jj");
    Expr dst = jr_o * kb * Expr(NR) + kk * Expr(NR) + jj;
    // B^T is read along K (contiguous), B along N.
    Expr src = at("b_off", trans_b ? (jc + jr + jj) * Expr(K) + pc + kk : (pc + kk) * Expr(N) + jc + jr + jj);
    Stmt full = trans_b ? For::Make("jj", 0, NR, ForKind::kSerial,
                                    For::Make("kk", 0, kb, ForKind::kSerial, Store::Make("Bp", Load::Make("B", src), dst)))
                        : For::Make("kk", 0, kb, ForKind::kSerial,
                                    For::Make("jj", 0, NR, ForKind::kVectorized, Store::Make("Bp", Load::Make("B", src), dst)));
    Stmt edge = For::Make(
        "kk", 0, kb, ForKind::kSerial,
        For::Make("jj", 0, NR, ForKind::kSerial,
                  Store::Make("Bp", Select::Make(jr + jj < nb, Load::Make("B", src), FloatImm::Make(0)), dst)));
    pack_b_stmt = jr_loop(IfThenElse::Make(jr + Expr(NR) <= nb, full, edge));
  }
  if (pack_a) {
    Expr kk = V("kk"), ii = V("ii");
    Expr dst = ir_o * kb * Expr(MR) + kk * Expr(MR) + ii;
    Expr src = at("a_off", (ic + ir + ii) * Expr(K) + pc + kk);
    Stmt full = For::Make("ii", 0, MR, ForKind::kSerial,
                          For::Make("kk", 0, kb, ForKind::kSerial, Store::Make("Ap", Load::Make("A", src), dst)));
    Stmt edge = For::Make(
        "ii", 0, MR, ForKind::kSerial,
        For::Make("kk", 0, kb, ForKind::kSerial,
                  Store::Make("Ap", Select::Make(ir + ii < mb, Load::Make("A", src), FloatImm::Make(0)), dst)));
    pack_a_stmt = ir_loop(IfThenElse::Make(ir + Expr(MR) <= mb, full, edge));
  }

  // --- cache-tile loops in the chosen order; each pack sits just inside the
  // later of the two loops that fix its block ---
  auto pos = [&](const char* d) { return std::find(order.begin(), order.end(), d) - order.begin(); };
  const auto pb = std::max(pos("jc"), pos("pc")), pa = std::max(pos("ic"), pos("pc"));
  Stmt body = inner;
  for (int level = 2; level >= 0; --level) {
    body = Block::Make({level == pb ? pack_b_stmt : Stmt(), level == pa ? pack_a_stmt : Stmt(), body});
    const std::string& d = order[level];
    if (d == "jc") body = TileLoop("jc", "nb", N, NC, body);
    if (d == "pc") body = TileLoop("pc", "kb", K, KC, body);
    if (d == "ic") body = TileLoop("ic", "mb", M, MC, body);
  }

  // C accumulates across K blocks, so it starts at zero.
  Stmt zero = For::Make("z", 0, M * N, ForKind::kVectorized, Store::Make("C", FloatImm::Make(0), at("c_off", V("z"))));
  body = Block::Make({zero, body});
  if (batched) {
    body = LetStmt::Make("c_off", V("bi") * Expr(M * N), body);
    body = LetStmt::Make("b_off", V("bi") * Expr(K * N), body);
    body = LetStmt::Make("a_off", V("bi") * Expr(M * K), body);
    body = For::Make("bi", 0, p.batch, ForKind::kSerial, body);
  }
  if (pack_a) body = Allocate::Make("Ap", f32, MC * KC, MemoryScope::kHeap, body);
  if (pack_b) body = Allocate::Make("Bp", f32, KC * NC, MemoryScope::kHeap, body);

  Kernel k;
  k.func.name = "tunefarm_kernel";
  k.func.args = std::move(args);
  k.func.body = body;
  k.compile.compiler = space.StrValue(c, "compiler");
  k.compile.flags = space.StrValue(c, "cflags");
  k.func.threads = static_cast<int>(T);
  if (T > 1) k.compile.flags += " -fopenmp";
  return k;
}

}  // namespace

absl::StatusOr<ConfigSpace> MatmulFamilyTemplate::Space(const Workload& w) const {
  return MatmulSpace(Problem(w).trans_b);
}

Config MatmulFamilyTemplate::DefaultConfig(const Workload& w, const ConfigSpace& space) const {
  return MatmulDefaultConfig(space, Problem(w).trans_b);
}

std::vector<BufferArg> MatmulFamilyTemplate::Buffers(const Workload& w) const {
  const MatmulProblem p = Problem(w);
  std::vector<BufferArg> out = {{"A", Type::Float(), p.batch * p.M * p.K, false},
                                {"B", Type::Float(), p.batch * p.K * p.N, false}};
  if (p.bias) out.push_back({"bias", Type::Float(), p.N, false});
  out.push_back({"C", Type::Float(), p.batch * p.M * p.N, true});
  return out;
}

double MatmulFamilyTemplate::Flops(const Workload& w) const {
  const MatmulProblem p = Problem(w);
  return 2.0 * static_cast<double>(p.batch) * static_cast<double>(p.M) * static_cast<double>(p.N) *
         static_cast<double>(p.K);
}

std::vector<ReferenceOutput> MatmulFamilyTemplate::Reference(const Workload& w,
                                                             std::span<const std::span<const float>> in) const {
  return {MatmulReference(Problem(w), in)};
}

absl::StatusOr<Kernel> MatmulFamilyTemplate::Instantiate(const Workload& w, const ConfigSpace& space,
                                                         const Config& c) const {
  return LowerMatmul(Problem(w), Buffers(w), space, c);
}

absl::Status MatmulFamilyTemplate::ValidateMatmul(const Workload& w, std::initializer_list<const char*> dims) const {
  for (const char* name : dims) {
    const int64_t v = w.param(name);
    if (v < 1 || v > kMaxDim) {
      return absl::InvalidArgumentError(
          absl::StrCat(w.op, " dimension ", name, "=", v, " is out of range [1, ", kMaxDim, "]"));
    }
  }
  for (const auto& [name, d] : OptionalParams()) {
    const int64_t v = w.param_or(name, d);
    if (v != 0 && v != 1) return absl::InvalidArgumentError(absl::StrCat(w.op, " ", name, " must be 0 or 1, got ", v));
  }
  const MatmulProblem p = Problem(w);
  // Dimensions are <= 2^20, so one set of matrices is <= 3 * 2^40 elements;
  // the batch factor is checked by division, never multiplied past the limit.
  const int64_t per_batch = p.M * p.K + p.K * p.N + p.M * p.N;
  if (per_batch > kMaxElements || p.batch > kMaxElements / per_batch) {
    return absl::InvalidArgumentError(absl::StrCat(w.op, " ", w.Key(), " needs more than the ",
                                                   kMaxElements * 4 / (1 << 20), " MiB buffer limit"));
  }
  return absl::OkStatus();
}

namespace {

class MatmulTemplate : public MatmulFamilyTemplate {
 public:
  std::string_view op() const override { return "matmul"; }
  std::vector<std::string> ParamNames() const override { return {"M", "N", "K"}; }
  std::vector<std::pair<std::string, int64_t>> OptionalParams() const override {
    return {{"trans_b", 0}, {"bias", 0}, {"relu", 0}};
  }
  std::string_view declared_version() const override { return "matmul-cpu-1"; }

  absl::Status Validate(const Workload& w) const override { return ValidateMatmul(w, {"M", "N", "K"}); }

 protected:
  MatmulProblem Problem(const Workload& w) const override {
    MatmulProblem p;
    p.M = w.param("M");
    p.N = w.param("N");
    p.K = w.param("K");
    p.trans_b = w.param_or("trans_b", 0) != 0;
    p.bias = w.param_or("bias", 0) != 0;
    p.relu = w.param_or("relu", 0) != 0;
    return p;
  }
};

}  // namespace

std::unique_ptr<Template> NewMatmulTemplate() { return std::make_unique<MatmulTemplate>(); }

}  // namespace tunefarm::kernels
