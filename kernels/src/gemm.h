// The GEMM-shaped schedule shared by matmul, batch_matmul and conv2d: any
// kernel of the form out[b][i][j] = sum_k A(i,k) * B(k,j) (+ bias)(ReLU)
// where A and B may be gathers from the real buffers (conv2d's im2col
// operand), lowered by one GotoBLAS/BLIS-shaped loop nest (gemm.cc).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tunefarm/kernels/config_space.h"
#include "tunefarm/kernels/ir.h"
#include "tunefarm/kernels/template.h"

namespace tunefarm::kernels {

struct GemmSpec {
  int64_t batch = 1;
  int64_t M = 0, N = 0, K = 0;
  // Scalar A(i, k) and B(k, j) for indices inside the problem (i < M,
  // k < K, j < N), with k = k0 + kk: k0 is the first k of the current K
  // block, or of the current unit in a block of several (see k_unit), and
  // kk the offset from it. They may use the batch
  // index, Var "bi", which is bound only when batch > 1, and may be any
  // gather with bounds checks.
  std::function<ir::Expr(ir::Expr i, ir::Expr k0, ir::Expr kk)> a;
  std::function<ir::Expr(ir::Expr k0, ir::Expr kk, ir::Expr j)> b;
  // B(k, j .. j+lanes-1) as one vector of type `t`, when B is contiguous
  // along j; left empty otherwise, and then B is always packed. Only asked
  // for with j a multiple of the lanes (4, 8 or 16), so B may be stored in
  // blocks of 16 columns.
  std::function<ir::Expr(ir::Expr k0, ir::Expr kk, ir::Expr j, ir::Type t)> b_vector;
  // Optional: A(i, k .. k+lanes-1) as one vector of type `t`, when A is
  // contiguous along k (any k, not relative to a block). With it and no
  // k_unit, the last N % lanes columns, short of a whole vector, are
  // computed as dot products along k (A's rows against a packed copy of
  // those columns of B) rather than by register tiles of vectors that are
  // mostly padding: on 77x129x61 the 129th column cost as much as 16.
  std::function<ir::Expr(ir::Expr i, ir::Expr k, ir::Type t)> a_k_vector;
  // B is already stored as panels of whole vectors (weights blocked by the
  // caller): the seed configs read it as it is rather than packing it.
  bool b_panels = false;
  // When > 0 (K is then a multiple of it), k0 .. k0 + kk never cross a
  // multiple of k_unit: the K tile is a divisor of k_unit, or a multiple
  // that the block walks one unit at a time. So an accessor may treat
  // k0 / k_unit as fixed (e.g. conv2d's filter tap) and compute it once
  // per unit, outside the innermost loop.
  int64_t k_unit = 0;
  // With k_unit: whether A(i, k) may be nonzero for some row i in [i0, i1]
  // and some k of the unit that starts at k0 (e.g. false for a conv2d
  // filter tap that reads only padding rows for those output positions).
  // A register tile skips the units it is false for, as the reference
  // skips taps outside the input. Empty: every unit counts.
  std::function<ir::Expr(ir::Expr i0, ir::Expr i1, ir::Expr k0)> a_live;
  // With k_unit: whether row i of A may be nonzero in the unit that starts
  // at k0. A register tile of whole rows leaves its first or its last row
  // out of the units it is false for (e.g. the output position at the
  // left or right edge, for a filter tap that reads the padding column).
  std::function<ir::Expr(ir::Expr i, ir::Expr k0)> a_row_live;
  // Optional: A(i, k) read straight from the caller's buffer, without the
  // padded copy that `prologue` makes into `scratch` for `a` (both exist
  // only for that copy), for configs in which a_live and a_row_live skip
  // every read of the padding: A not packed, register tiles of whole rows
  // of positions (MR > 1 divides a_direct_rows) and no copy of the last
  // columns' tile (N % NR whole vectors). LowerGemm then drops the copy.
  std::function<ir::Expr(ir::Expr i, ir::Expr k0, ir::Expr kk)> a_direct;
  int64_t a_direct_rows = 0;
  // Index into `out` of (i, j) of batch "bi"; empty: row-major M x N
  // matrices one after another.
  std::function<ir::Expr(ir::Expr i, ir::Expr j)> out_index;
  // Work before everything else (e.g. padding the input into a scratch
  // buffer), work after each batch's product (e.g. copying a scratch output
  // out), and the heap buffers they and the accessors use.
  ir::Stmt prologue;
  ir::Stmt finish;
  std::vector<std::pair<std::string, int64_t>> scratch;
  // A is a gather too costly to read inside the micro-kernel: always pack.
  bool a_must_pack = false;
  // Pack B by walking k innermost (B stored as B^T) rather than j.
  bool b_pack_k_inner = false;
  // The output: a row-major M x N matrix per batch, one after another.
  std::string out = "C";
  enum class Bias { kNone, kPerRow, kPerColumn };
  Bias bias = Bias::kNone;
  std::string bias_buffer = "bias";
  bool relu = false;
};

// Knobs: mr, nv, vec (register tile), mc, nc, kc (cache tiles), order,
// inner, pack_a, pack_b, unroll_k, parallel (how threads share the work),
// compiler, cflags, threads. A pack knob has the single value 1 when the
// spec requires packing.
absl::StatusOr<ConfigSpace> GemmSpace(const GemmSpec& spec);
Config GemmDefaultConfig(const GemmSpec& spec, const ConfigSpace& space);
// Template::SeedConfigs of a GEMM space: the register tile that fits the
// shape and a 32-register AVX-512 file (MR rows with no or the least
// padding, NV as large as MR*NV accumulators + NV registers allow: the
// broadcast may take the place of a B vector read from memory) and
// the 6 x 4-vector tile, with B packed (before the block's tiles, or by
// the tiles themselves: pack_b=2) or not (never when it is in panels
// already: then read in place, with or without the next panel prefetched,
// pack_b=3 or 0), A as it is or in row
// panels, K blocks of 64 to 256; with threads, each packing all of the
// smaller operand (rows for M >= N, else cols when halves of N are nearly
// equal).
std::vector<Config> GemmSeedConfigs(const GemmSpec& spec, const ConfigSpace& space);
// Lowers one config; `args` are the function's buffers in argument order.
absl::StatusOr<Kernel> LowerGemm(const GemmSpec& spec, std::vector<ir::BufferArg> args, const ConfigSpace& space,
                                 const Config& c);

// The bound on |computed - exact| for a float sum of `terms` products whose
// absolute values sum to `magnitude`, with 1% headroom (Higham 3.1).
float SumTolerance(int64_t terms, double magnitude);
// What converting the inputs of products whose absolute values sum to
// `magnitude` to TF32 may add, by rounding (cvt.rna) or by truncation
// (tensor cores reading FP32 values drop their low 13 bits): each input is
// off by less than u = 2^-10 of itself, so each product by at most
// (2u + u^2) of its magnitude; 1% headroom.
float Tf32Tolerance(double magnitude);

}  // namespace tunefarm::kernels
