// CUDA C++ code generation for GPU candidates, compiled at run time with
// NVRTC (which has no system headers, so the source includes none).
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "tunefarm/kernels/ir.h"

namespace tunefarm::kernels {

struct CudaKernelSource {
  std::string source;
  std::string entry;  // the extern "C" __global__ function
  // The launch shape: the extents of the gpu-block loops (grid) and the
  // gpu-thread loops (block), x innermost; 1 where there is no such loop.
  std::array<int64_t, 3> grid{1, 1, 1};
  std::array<int64_t, 3> block{1, 1, 1};
  // Shared memory per block: static __shared__ arrays, or the dynamic
  // pool, whose size must then be given at launch (dynamic_shared_bytes;
  // above 48 KiB only after raising the function's
  // MAX_DYNAMIC_SHARED_SIZE_BYTES attribute to it).
  int64_t shared_bytes = 0;
  int64_t dynamic_shared_bytes = 0;
  // Device memory kept by the loaded module between launches (a split-K
  // workspace): launches of one loaded kernel that has any must not overlap.
  int64_t module_bytes = 0;
  // The kernel uses instructions of its architecture alone (wgmma: sm_90a),
  // so it is compiled for CompileArch(arch).
  bool arch_specific = false;
  std::string CompileArch(const std::string& arch) const { return arch_specific ? arch + "a" : arch; }
};

// Prints `f` as one CUDA kernel taking its buffers as pointer parameters in
// argument order (inputs const). Gpu-block loops bind blockIdx and
// gpu-thread loops threadIdx: the innermost of a nest x, the next y, then z
// (counted from the deepest nest of that kind); their extents must be
// constants, as they are the launch shape, and loops bound to one axis must
// agree on it. Shared buffers become __shared__ arrays, or, when they need
// more than 48 KiB or the kernel uses the 128-byte-swizzled intrinsics
// (cp.async, wgmma), 1024-byte-aligned parts of the dynamic pool; local
// and stack buffers per-thread arrays, barriers __syncthreads(). Fails on
// parallel loops, heap buffers, more than three GPU loops of one kind,
// vector types other than float4 (which serves loads and stores, aligned)
// and vector arithmetic. Intrinsics (ir::Call) such as tf_round_tf32,
// tf_mma_tf32_m16n8k8, tf_cp_async16 and tf_wgmma_tf32_n<N> are defined as
// inline PTX in the source's prelude.
absl::StatusOr<CudaKernelSource> GenerateCuda(const ir::LoweredFunc& f);

}  // namespace tunefarm::kernels
