// A hand-scheduled GPU kernel for the CUDA printer's tests: C = A * B (M x K
// by K x N, row-major) with T x T thread blocks, one output element per
// thread, and both operand tiles staged in shared memory per K step. The
// sizes must be multiples of T.
#pragma once

#include "tunefarm/kernels/ir.h"

namespace tunefarm::kernels {

inline ir::LoweredFunc TiledMatmulForTest(int64_t M, int64_t N, int64_t K, int64_t T) {
  using namespace ir;  // NOLINT
  Expr by = Var::Make("by"), bx = Var::Make("bx"), ty = Var::Make("ty"), tx = Var::Make("tx");
  Expr kt = Var::Make("kt"), kk = Var::Make("kk");
  Expr row = by * Expr(T) + ty, col = bx * Expr(T) + tx;
  Stmt stage = Block::Make({
      Store::Make("As", Load::Make("A", row * Expr(K) + kt * Expr(T) + tx), ty * Expr(T) + tx),
      Store::Make("Bs", Load::Make("B", (kt * Expr(T) + ty) * Expr(N) + col), ty * Expr(T) + tx),
      Barrier::Make(),
      For::Make("kk", 0, T, ForKind::kSerial,
                Store::Make("acc",
                            Load::Make("acc", 0) + Load::Make("As", ty * Expr(T) + kk) * Load::Make("Bs", kk * Expr(T) + tx),
                            0)),
      Barrier::Make(),
  });
  Stmt thread = Allocate::Make(
      "acc", Type::Float(), 1, MemoryScope::kRegister,
      Block::Make({Store::Make("acc", FloatImm::Make(0), 0), For::Make("kt", 0, K / T, ForKind::kSerial, stage),
                   Store::Make("C", Load::Make("acc", 0), row * Expr(N) + col)}));
  Stmt threads = For::Make("ty", 0, T, ForKind::kGpuThread, For::Make("tx", 0, T, ForKind::kGpuThread, thread));
  Stmt body = For::Make(
      "bx", 0, N / T, ForKind::kGpuBlock,
      For::Make("by", 0, M / T, ForKind::kGpuBlock,
                Allocate::Make("As", Type::Float(), T * T, MemoryScope::kShared,
                               Allocate::Make("Bs", Type::Float(), T * T, MemoryScope::kShared, threads))));
  return {"tiled_matmul",
          {{"A", Type::Float(), M * K}, {"B", Type::Float(), K * N}, {"C", Type::Float(), M * N, true}},
          body};
}

}  // namespace tunefarm::kernels
