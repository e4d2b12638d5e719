// The GEMM-shaped schedule for CUDA GPUs, shared by matmul and conv2d
// (implicit GEMM): out(i, j) = sum_k A(i, k) * B(k, j) (+ bias)(ReLU), where
// A and B may be gathers from the real buffers. One thread block computes a
// bm x bn tile of the output: it stages bk-deep slices of A and B through
// shared memory (double-buffered through registers when stages = 2, with
// float4 global loads when vec = 4), and each thread accumulates a tm x tn
// micro-tile in registers. Threads are laid out in warps of
// (32 / warp_x) x warp_x micro-tiles (the warp tile), and `split` spreads a
// thread's rows and columns over that many strips of the block tile, so
// that neighbouring threads read neighbouring shared words. With mma = 1 a
// warp computes its warp tile with tensor-core instructions instead, from
// TF32 values in shared memory. With mma = 2 a warpgroup does, with wgmma,
// its 32-deep slices copied by cp.async into 3 or 4 buffers of dynamic
// shared memory in the 128-byte-swizzled layout wgmma reads.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gemm.h"
#include "tunefarm/kernels/config_space.h"
#include "tunefarm/kernels/ir.h"
#include "tunefarm/kernels/template.h"

namespace tunefarm::kernels {

// One operand: `outer` is i for A and j for B.
struct GpuOperand {
  std::string buffer;
  // Element index of (outer, k), for outer and k inside the problem.
  std::function<ir::Expr(ir::Expr outer, ir::Expr k)> index;
  // Read only where this holds (else 0), e.g. conv2d's padding; empty:
  // everywhere inside the problem.
  std::function<ir::Expr(ir::Expr outer, ir::Expr k)> valid;
  // Consecutive k are adjacent in memory (else consecutive outer are).
  bool k_contiguous = true;
  // The four elements from a multiple of 4 along the contiguous dimension
  // are adjacent, 16-byte aligned, inside the problem together and valid
  // together, so they may be read as one float4.
  bool vec4 = false;
};

struct GpuGemmSpec {
  int64_t M = 0, N = 0, K = 0;
  GpuOperand a, b;
  std::string out = "C";
  // Index into `out` of (i, j); empty: row-major M x N.
  std::function<ir::Expr(ir::Expr i, ir::Expr j)> out_index;
  GemmSpec::Bias bias = GemmSpec::Bias::kNone;
  std::string bias_buffer = "bias";
  bool relu = false;
  // The inputs may be rounded to TF32 (the workload says so): the space
  // then offers the tensor-core path.
  bool tf32 = false;
};

// Knobs: bm, bn, bk (block tile), tm, tn (thread micro-tile), warp_x (warp
// tile), split, stages, vec, unroll_k, split_k (that many blocks per output
// tile, each over its share of k, the last to finish summing their partials
// from a workspace in module memory; offered for small outputs with long k
// loops), and mma (only where spec.tf32; TF32 inputs and FP32 accumulation):
// 1 computes the warp tile with mma.sync m16n8k8, 2 computes a warpgroup's
// four 16-row warp tiles as one 64-row tile with Hopper's wgmma from shared
// memory (sm_90a; bk = 32, stages 3 or 4, which only it takes). Configs
// that do not fit together (threads not a whole number of warps or more
// than 1024, a warp layout that does not tile the block, more than 48 KiB
// of shared memory (227 KiB with mma = 2), more than 64 MiB of split-K
// workspace, split-K leaving blocks without k) are instantiation errors.
absl::StatusOr<ConfigSpace> GpuGemmSpace(const GpuGemmSpec& spec);
Config GpuGemmDefaultConfig(const GpuGemmSpec& spec, const ConfigSpace& space);
absl::StatusOr<Kernel> LowerGpuGemm(const GpuGemmSpec& spec, std::vector<ir::BufferArg> args, const ConfigSpace& space,
                                    const Config& c);

}  // namespace tunefarm::kernels
