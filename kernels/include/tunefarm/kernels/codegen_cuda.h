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
  int64_t shared_bytes = 0;  // static __shared__ memory
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
// agree on it. Shared
// buffers become __shared__ arrays, local and stack buffers per-thread
// arrays, barriers __syncthreads(). Fails on parallel loops,
// heap buffers, more than three GPU loops of one kind, vector types other
// than float4 (which serves loads and stores, aligned) and vector
// arithmetic. Intrinsics (ir::Call) tf_round_tf32 and tf_mma_tf32_m16n8k8
// are defined as inline PTX in the source's prelude.
absl::StatusOr<CudaKernelSource> GenerateCuda(const ir::LoweredFunc& f);

}  // namespace tunefarm::kernels
