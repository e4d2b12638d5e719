// Turning the tuning log into source code for a user's build: one C kernel
// per workload (its best config for a device, else a fallback), one header
// with a typed function per workload and dispatchers by shape.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tunefarm/tuner/client.h"

namespace tunefarm::tuner {

struct LibraryOptions {
  std::string device_key;              // the device the library is for
  std::vector<std::string> workloads;  // workload texts, one kernel each
  std::string output_dir;              // created if missing; files are overwritten
  std::string prefix = "tunefarm";     // of every C symbol and of the header's name
};

// Where a workload's config came from, most specific first: a record of the
// device key itself; one of another device of the same architecture family
// (the same ISA level, the part of a CPU target's arch after '-', e.g.
// "avx512"); else the template's default config.
enum class FallbackLevel { kExactDevice, kArchFamily, kDefault };
const char* FallbackLevelName(FallbackLevel level);

struct LibraryEntry {
  std::string workload;  // canonical key
  std::string function;  // the typed C function
  std::string source;    // file name in the output directory
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
// Only records of this build's template version count (older ones index
// other spaces). The same workload twice is InvalidArgument; so is an empty
// list. CPU device keys only: the kernels are C.
absl::StatusOr<std::vector<LibraryEntry>> WriteKernelLibrary(TuningLogClient& log, const LibraryOptions& options);

// The library's C function name for a workload, e.g.
// "tunefarm_matmul_M512_N512_K512".
std::string KernelFunctionName(const std::string& prefix, const std::string& workload_key);

}  // namespace tunefarm::tuner
