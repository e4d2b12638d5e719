// depthwise_conv2d: one filter per channel (channel multiplier 1), float32,
// NCHW with [C][R][S] weights or NHWC with [R][S][C] weights, stride,
// padding and dilation; optional bias[C] and ReLU.
//
// NHWC: channels are contiguous, so a register tile is `tile` consecutive
// output positions x `nv` vectors of channels; the filter taps are the
// reduction, and taps in the padding are skipped by one scalar test per
// (row, column), shared by every channel of the tile. Rows of the output are
// shared out between threads.
//
// NCHW: each channel's plane is first copied into a zero-padded plane split
// by column phase (column x of the padded plane goes to phase x % stride,
// slot x / stride), so every tap of `nv` vectors of consecutive output
// positions is one contiguous load, for any stride. A register tile is
// `tile` output rows x `nv` vectors of positions. Channels are shared out
// between threads, each with its own plane.
#include <algorithm>

#include "absl/status/status.h"
#include "conv_common.h"
#include "cpu_knobs.h"
#include "tunefarm/kernels/template.h"

namespace tunefarm::kernels {
namespace {

using namespace ir;  // NOLINT: this file builds IR

Expr V(const std::string& name) { return Var::Make(name); }

absl::StatusOr<ConfigSpace> DepthwiseSpace() {
  std::vector<Knob> knobs = {
      {"vec", KnobKind::kAnnotate, IntValues({4, 8, 16})},        // SIMD width in floats
      {"nv", KnobKind::kSplit, IntValues({1, 2, 3, 4})},          // vectors per tile row
      {"tile", KnobKind::kSplit, IntValues({1, 2, 3, 4, 6, 8})},  // NHWC: positions, NCHW: rows
      {"unroll_taps", KnobKind::kAnnotate, IntValues({0, 1})},    // unroll the filter loops
  };
  for (Knob& k : CpuBuildKnobs()) knobs.push_back(std::move(k));
  return ConfigSpace::Create(std::move(knobs));
}

Config DepthwiseDefault(const ConfigSpace& space) {
  std::vector<std::pair<std::string, KnobValue>> values = {
      {"vec", int64_t{8}}, {"nv", int64_t{1}}, {"tile", int64_t{2}}, {"unroll_taps", int64_t{0}}};
  for (auto& v : CpuBuildDefaults()) values.push_back(std::move(v));
  return *space.FromValues(values);
}

struct Knobs {
  int64_t W, NV, T, threads;
  bool unroll;
};

// ReLU over `count` consecutive outputs from `base`, when the workload asks.
Stmt ReluRun(const ConvShape& s, Expr base, Expr count) {
  if (!s.relu) return Stmt();
  Expr e = Var::Make("e", Type::Float()), l = V("l");
  Expr idx = base + l;
  return For::Make("l", 0, count, ForKind::kVectorized,
                   LetStmt::Make("e", Load::Make("out", idx),
                                 Store::Make("out", Select::Make(FloatImm::Make(0) < e, e, FloatImm::Make(0)), idx)));
}

Stmt LowerNhwc(const ConvShape& s, const Knobs& k) {
  const Type vt = Type::Float(32, static_cast<int>(k.W));
  const int64_t NR = k.NV * k.W;
  const ForKind taps = k.unroll ? ForKind::kUnrolled : ForKind::kSerial;
  Expr bi = V("bi"), oh = V("oh"), ow = V("ow"), c = V("c"), r = V("r"), q = V("q"), h = V("h");
  auto data_idx = [&](Expr hh, Expr xx, Expr cc) { return ((bi * Expr(s.H) + hh) * Expr(s.W) + xx) * Expr(s.C) + cc; };
  auto out_idx = [&](Expr pos, Expr cc) { return ((bi * Expr(s.OH) + oh) * Expr(s.OW) + pos) * Expr(s.C) + cc; };
  auto x_of = [&](Expr pos) { return pos * Expr(s.stride) + q * Expr(s.dilation) - Expr(s.pad); };
  auto guard = [&](Expr cond, Stmt body) { return s.pad == 0 ? body : IfThenElse::Make(cond, body, Stmt()); };
  auto inside_x = [&](Expr x) { return (Expr(0) <= x) && (x < Expr(s.W)); };

  // `positions` consecutive outputs from `ow` x NR channels from `c`, in
  // registers.
  auto vector_tile = [&](int64_t positions) {
    Expr i = V("i"), v = V("v");
    Stmt init = For::Make(
        "i", 0, positions, ForKind::kUnrolled,
        For::Make("v", 0, k.NV, ForKind::kUnrolled,
                  Store::Make("acc",
                              s.bias ? Load::Make("bias", c + v * Expr(k.W), vt)
                                     : Broadcast::Make(FloatImm::Make(0), static_cast<int>(k.W)),
                              i * Expr(k.NV) + v)));
    Stmt load_w = For::Make("v", 0, k.NV, ForKind::kUnrolled,
                            Store::Make("wv", Load::Make("weight", (r * Expr(s.S) + q) * Expr(s.C) + c + v * Expr(k.W), vt), v));
    Stmt fma = For::Make(
        "v", 0, k.NV, ForKind::kUnrolled,
        Store::Make("acc",
                    Load::Make("acc", i * Expr(k.NV) + v, vt) +
                        Load::Make("data", data_idx(h, V("x"), c + v * Expr(k.W)), vt) * Load::Make("wv", v, vt),
                    i * Expr(k.NV) + v));
    Stmt per_pos = For::Make("i", 0, positions, ForKind::kUnrolled,
                             LetStmt::Make("x", x_of(ow + i), guard(inside_x(V("x")), fma)));
    Stmt tap = Allocate::Make("wv", vt, k.NV, MemoryScope::kRegister, Block::Make({load_w, per_pos}));
    Stmt reduce = For::Make("r", 0, s.R, taps,
                            LetStmt::Make("h", oh * Expr(s.stride) + r * Expr(s.dilation) - Expr(s.pad),
                                          guard((Expr(0) <= h) && (h < Expr(s.H)), For::Make("q", 0, s.S, taps, tap))));
    Stmt store = For::Make("i", 0, positions, ForKind::kUnrolled,
                           For::Make("v", 0, k.NV, ForKind::kUnrolled,
                                     Store::Make("out", Load::Make("acc", i * Expr(k.NV) + v, vt),
                                                 out_idx(ow + i, c + v * Expr(k.W)))));
    Stmt relu = s.relu ? For::Make("i", 0, positions, ForKind::kSerial, ReluRun(s, out_idx(ow + i, c), Expr(NR)))
                       : Stmt();
    return Block::Make({Allocate::Make("acc", vt, positions * k.NV, MemoryScope::kRegister,
                                       Block::Make({init, reduce, store})),
                        relu});
  };
  // The channels past the last whole vector group, accumulated in memory.
  const int64_t c_main = s.C / NR * NR;
  auto channel_tail = [&](int64_t positions) -> Stmt {
    if (c_main == s.C) return Stmt();
    Expr i = V("i"), cc = V("c");
    Expr o = out_idx(ow + i, cc);
    Stmt init = For::Make("c", c_main, s.C - c_main, ForKind::kVectorized,
                          Store::Make("out", s.bias ? Load::Make("bias", cc) : FloatImm::Make(0), o));
    Stmt fma = For::Make("c", c_main, s.C - c_main, ForKind::kVectorized,
                         Store::Make("out",
                                     Load::Make("out", o) + Load::Make("data", data_idx(h, V("x"), cc)) *
                                                                Load::Make("weight", (r * Expr(s.S) + q) * Expr(s.C) + cc),
                                     o));
    Stmt reduce = For::Make(
        "r", 0, s.R, ForKind::kSerial,
        LetStmt::Make("h", oh * Expr(s.stride) + r * Expr(s.dilation) - Expr(s.pad),
                      guard((Expr(0) <= h) && (h < Expr(s.H)),
                            For::Make("q", 0, s.S, ForKind::kSerial,
                                      LetStmt::Make("x", x_of(ow + i), guard(inside_x(V("x")), fma))))));
    return For::Make("i", 0, positions, ForKind::kSerial,
                     Block::Make({init, reduce, ReluRun(s, out_idx(ow + i, Expr(c_main)), Expr(s.C - c_main))}));
  };
  auto position_block = [&](int64_t positions) {
    Stmt main = c_main == 0 ? Stmt()
                            : For::Make("co", 0, s.C / NR, ForKind::kSerial,
                                        LetStmt::Make("c", V("co") * Expr(NR), vector_tile(positions)));
    return Block::Make({main, channel_tail(positions)});
  };
  const int64_t ow_main = s.OW / k.T * k.T;
  Stmt row = Block::Make({
      ow_main == 0 ? Stmt()
                   : For::Make("owo", 0, s.OW / k.T, ForKind::kSerial,
                               LetStmt::Make("ow", V("owo") * Expr(k.T), position_block(k.T))),
      ow_main == s.OW ? Stmt() : For::Make("ow", ow_main, s.OW - ow_main, ForKind::kSerial, position_block(1)),
  });
  Stmt rows = For::Make("oh", 0, s.OH, k.threads > 1 ? ForKind::kParallel : ForKind::kSerial, row);
  return For::Make("bi", 0, s.N, ForKind::kSerial, rows);
}

Stmt LowerNchw(const ConvShape& s, const Knobs& k) {
  const Type vt = Type::Float(32, static_cast<int>(k.W));
  const int64_t NR = k.NV * k.W;
  const ForKind taps = k.unroll ? ForKind::kUnrolled : ForKind::kSerial;
  const int64_t st = s.stride, d = s.dilation;
  // The padded, phase-split plane: st phases x Hp rows x Wq slots.
  const int64_t Hp = (s.OH - 1) * st + (s.R - 1) * d + 1;
  const int64_t Wq = s.OW + (s.S - 1) * d / st;
  Expr bi = V("bi"), c = V("c"), oh = V("oh"), ow = V("ow"), r = V("r"), q = V("q");
  auto plane_idx = [&](Expr row, Expr slot) {
    // Tap q of an output column lands in phase (q*d) % st, slot + (q*d)/st.
    return ((q * Expr(d)) % Expr(st) * Expr(Hp) + row) * Expr(Wq) + slot + q * Expr(d) / Expr(st);
  };
  auto out_idx = [&](Expr row, Expr col) { return ((bi * Expr(s.C) + c) * Expr(s.OH) + row) * Expr(s.OW) + col; };
  Expr w_tap = Load::Make("weight", (c * Expr(s.R) + r) * Expr(s.S) + q);

  Stmt pack;
  {
    Expr hp = V("hp"), ph = V("ph"), hh = hp - Expr(s.pad);
    pack = For::Make("ph", 0, st, ForKind::kSerial,
                     For::Make("hp", 0, Hp, ForKind::kSerial,
                               PaddedRowCopy("plane", (ph * Expr(Hp) + hp) * Expr(Wq), "data",
                                             ((bi * Expr(s.C) + c) * Expr(s.H) + hh) * Expr(s.W),
                                             (Expr(0) <= hh) && (hh < Expr(s.H)), ph, s.W, s.pad, st, Wq, "wq")));
  }
  // `rows` output rows from oh x NR columns from ow, in registers.
  auto vector_tile = [&](int64_t rows) {
    Expr i = V("i"), v = V("v");
    Expr init_value = s.bias ? Broadcast::Make(Load::Make("bias", c), static_cast<int>(k.W))
                             : Broadcast::Make(FloatImm::Make(0), static_cast<int>(k.W));
    Stmt init = For::Make("i", 0, rows, ForKind::kUnrolled,
                          For::Make("v", 0, k.NV, ForKind::kUnrolled, Store::Make("acc", init_value, i * Expr(k.NV) + v)));
    Stmt fma = For::Make(
        "i", 0, rows, ForKind::kUnrolled,
        For::Make("v", 0, k.NV, ForKind::kUnrolled,
                  Store::Make("acc",
                              Load::Make("acc", i * Expr(k.NV) + v, vt) +
                                  Load::Make("plane", plane_idx((oh + i) * Expr(st) + r * Expr(d), ow + v * Expr(k.W)), vt) *
                                      Broadcast::Make(Var::Make("w", Type::Float()), static_cast<int>(k.W)),
                              i * Expr(k.NV) + v)));
    Stmt reduce = For::Make("r", 0, s.R, taps, For::Make("q", 0, s.S, taps, LetStmt::Make("w", w_tap, fma)));
    Stmt store = For::Make("i", 0, rows, ForKind::kUnrolled,
                           For::Make("v", 0, k.NV, ForKind::kUnrolled,
                                     Store::Make("out", Load::Make("acc", i * Expr(k.NV) + v, vt),
                                                 out_idx(oh + i, ow + v * Expr(k.W)))));
    Stmt relu =
        s.relu ? For::Make("i", 0, rows, ForKind::kSerial, ReluRun(s, out_idx(oh + i, ow), Expr(NR))) : Stmt();
    return Block::Make(
        {Allocate::Make("acc", vt, rows * k.NV, MemoryScope::kRegister, Block::Make({init, reduce, store})), relu});
  };
  // Columns past the last whole vector group, accumulated in memory.
  const int64_t ow_main = s.OW / NR * NR;
  auto column_tail = [&](int64_t rows) -> Stmt {
    if (ow_main == s.OW) return Stmt();
    Expr i = V("i"), col = V("ow");
    Expr o = out_idx(oh + i, col);
    Stmt init = For::Make("ow", ow_main, s.OW - ow_main, ForKind::kVectorized,
                          Store::Make("out", s.bias ? Load::Make("bias", c) : FloatImm::Make(0), o));
    Stmt fma = For::Make(
        "ow", ow_main, s.OW - ow_main, ForKind::kVectorized,
        Store::Make("out",
                    Load::Make("out", o) + Load::Make("plane", plane_idx((oh + i) * Expr(st) + r * Expr(d), col)) * Var::Make("w", Type::Float()),
                    o));
    Stmt reduce = For::Make("r", 0, s.R, ForKind::kSerial,
                            For::Make("q", 0, s.S, ForKind::kSerial, LetStmt::Make("w", w_tap, fma)));
    return For::Make("i", 0, rows, ForKind::kSerial,
                     Block::Make({init, reduce, ReluRun(s, out_idx(oh + i, Expr(ow_main)), Expr(s.OW - ow_main))}));
  };
  auto row_block = [&](int64_t rows) {
    Stmt main = ow_main == 0 ? Stmt()
                             : For::Make("owo", 0, s.OW / NR, ForKind::kSerial,
                                         LetStmt::Make("ow", V("owo") * Expr(NR), vector_tile(rows)));
    return Block::Make({main, column_tail(rows)});
  };
  const int64_t oh_main = s.OH / k.T * k.T;
  Stmt body = Block::Make({
      pack,
      oh_main == 0 ? Stmt()
                   : For::Make("oho", 0, s.OH / k.T, ForKind::kSerial,
                               LetStmt::Make("oh", V("oho") * Expr(k.T), row_block(k.T))),
      oh_main == s.OH ? Stmt() : For::Make("oh", oh_main, s.OH - oh_main, ForKind::kSerial, row_block(1)),
  });
  // Each channel (and so each thread) has its own plane; small ones live on
  // the stack.
  const int64_t plane = st * Hp * Wq;
  body = Allocate::Make("plane", Type::Float(), plane, plane <= 32768 ? MemoryScope::kStack : MemoryScope::kHeap, body);
  Stmt channels = For::Make("c", 0, s.C, k.threads > 1 ? ForKind::kParallel : ForKind::kSerial, body);
  return For::Make("bi", 0, s.N, ForKind::kSerial, channels);
}

class DepthwiseConv2dTemplate : public Template {
 public:
  std::string_view op() const override { return "depthwise_conv2d"; }
  std::vector<std::string> ParamNames() const override { return ConvParamNames(true); }
  std::vector<std::pair<std::string, int64_t>> OptionalParams() const override { return ConvOptionalParams(); }
  std::vector<TextParamSpec> TextParams() const override { return ConvTextParams(); }
  absl::Status Validate(const Workload& w) const override { return ValidateConv(w, true); }
  std::string_view declared_version() const override { return "depthwise_conv2d-cpu-1"; }

  absl::StatusOr<ConfigSpace> Space(const Workload&) const override { return DepthwiseSpace(); }
  Config DefaultConfig(const Workload&, const ConfigSpace& space) const override { return DepthwiseDefault(space); }
  absl::StatusOr<Kernel> Instantiate(const Workload& w, const ConfigSpace& space, const Config& c) const override {
    const ConvShape s = ConvShapeOf(w, true);
    Knobs k{space.IntValue(c, "vec"), space.IntValue(c, "nv"), space.IntValue(c, "tile"), space.IntValue(c, "threads"),
            space.IntValue(c, "unroll_taps") != 0};
    Kernel kernel;
    kernel.func.name = "tunefarm_kernel";
    kernel.func.args = Buffers(w);
    kernel.func.body = s.nhwc ? LowerNhwc(s, k) : LowerNchw(s, k);
    ApplyCpuBuildKnobs(space, c, kernel);
    return kernel;
  }
  std::vector<BufferArg> Buffers(const Workload& w) const override { return ConvBuffers(ConvShapeOf(w, true)); }
  std::vector<ReferenceOutput> Reference(const Workload& w,
                                         std::span<const std::span<const float>> in) const override {
    return {ConvReference(ConvShapeOf(w, true), in)};
  }
  double Flops(const Workload& w) const override { return ConvFlops(ConvShapeOf(w, true)); }
};

}  // namespace

std::unique_ptr<Template> NewDepthwiseConv2dTemplate() { return std::make_unique<DepthwiseConv2dTemplate>(); }

}  // namespace tunefarm::kernels
