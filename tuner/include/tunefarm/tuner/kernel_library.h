// Turning the tuning log into source code for a user's build: one kernel per
// workload (its best config for a device, else a fallback; C for a CPU, CUDA
// C++ for an NVIDIA GPU), one header with a typed function per workload and
// dispatchers by shape.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tunefarm/kernels/template.h"
#include "tunefarm/tuner/client.h"

namespace tunefarm::tuner {

struct LibraryOptions {
  std::string device_key;              // the device the library is for
  std::vector<std::string> workloads;  // workload texts, one kernel each
  std::string output_dir;              // created if missing; files are overwritten
  std::string prefix = "tunefarm";     // of every C symbol and of the header's name
  // CPU or CUDA kernels; unset: what the log's records of `device_key` were
  // measured on (CPU when it has none).
  std::optional<kernels::DeviceClass> device_class;
};

// Where a workload's config came from, most specific first: a record of the
// device key itself; one of another device of the same architecture family
// (for a CPU the same ISA level, the part of its target's arch after '-',
// e.g. "avx512"; for a GPU the same compute capability as the key's own
// records, e.g. "sm_90"); else the template's default config.
enum class FallbackLevel { kExactDevice, kArchFamily, kDefault };
const char* FallbackLevelName(FallbackLevel level);

struct LibraryEntry {
  std::string workload;  // canonical key
  std::string function;  // the typed C function
  std::string source;    // file name in the output directory (.c or .cu)
  FallbackLevel level = FallbackLevel::kDefault;
  std::optional<BestConfig> record;  // absent at kDefault
  std::string config;                // knob values, human-readable
  std::string why;                   // for a fallback: what was missing
};

// Writes into `output_dir`:
//   <prefix>_kernels.h   declarations, provenance, dispatchers;
//   kernel_<i>.c         the i-th workload's kernel (0-based, list order);
//   kernel_<i>.flags     its compiler flags (a response file: @kernel_<i>.flags);
//   <prefix>_dispatch.c  the dispatchers.
// For CUDA, kernel_<i>.cu instead holds the __global__ kernel and a host
// function that launches it, `int f(<device pointers>, void* stream)`
// (stream: a cudaStream_t, or NULL for the default stream) returning 0 or
// the launch's cudaError_t, for nvcc with the flags in kernel_<i>.flags
// (-arch of the measured GPU); the dispatchers take the stream too.
// Only records of this build's template version count (older ones index
// other spaces). The same workload twice is InvalidArgument; so is an empty
// list, and an operator without a template for the device class.
absl::StatusOr<std::vector<LibraryEntry>> WriteKernelLibrary(TuningLogClient& log, const LibraryOptions& options);

// The library's C function name for a workload, e.g.
// "tunefarm_matmul_M512_N512_K512".
std::string KernelFunctionName(const std::string& prefix, const std::string& workload_key);

}  // namespace tunefarm::tuner
