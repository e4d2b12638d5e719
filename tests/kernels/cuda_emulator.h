// Runs generated CUDA C++ on the CPU, for tests of GPU schedules on machines
// without a GPU. The source is compiled by the host C++ compiler against a
// small shim: blockIdx / threadIdx are per OS thread, __shared__ arrays are
// static storage (blocks run one after another), __syncthreads() is a
// barrier of the block's threads, float4 a 16-byte-aligned struct, and the
// tensor-core intrinsics warp-wide exchanges through the barrier. Every
// thread of a block runs as its own OS thread, so a missing barrier or a
// wrong index shows up as a wrong answer, as on a GPU. The asynchronous
// instructions complete as late as their waits allow (cp.async writes
// shared memory when its group is waited for; wgmma reads its operands
// then, and the launch fails if they differ from when it was issued), and
// the 128-byte swizzle of shared addresses is applied as the GPU does.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tunefarm/kernels/codegen_cuda.h"

namespace tunefarm::kernels {

// Launches `k` `launches` times over `buffers` (kernel argument order),
// calling `between` before each launch after the first; `work_dir` holds
// the compiled shim and kernel, loaded once for all the launches.
absl::Status EmulateCuda(const CudaKernelSource& k, const std::vector<float*>& buffers, const std::string& work_dir,
                         int launches = 1, const std::function<void()>& between = {});

}  // namespace tunefarm::kernels
