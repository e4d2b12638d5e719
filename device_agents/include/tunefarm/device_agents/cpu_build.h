// Building CPU candidates outside a measurement: the same compilers and
// command lines the CPU backend uses, for benchmarks and kernel export.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tunefarm/device_agents/process.h"
#include "tunefarm/kernels/template.h"
#include "tunefarm/kernels/workload.h"

namespace tunefarm::device_agents {

struct CpuCompiler {
  std::string path;
  std::string version;  // first line of `--version`
};

struct CpuToolchain {
  // Compiler knob value ("clang", "gcc") -> installed compiler.
  std::map<std::string, CpuCompiler> compilers;
  // "clang: <version>; gcc: <version>", recorded with every result.
  std::string fingerprint;
};

// Finds clang (any of clang, clang-19 ... clang-14) and gcc on PATH.
// FailedPrecondition when neither is installed.
absl::StatusOr<CpuToolchain> DetectCpuToolchain(ProcessLauncher& launcher);

// The command that compiles `src` (GNU C11, which keeps FMA contraction on
// in gcc) into a shared library `so` for this machine (-march=native).
std::vector<std::string> CpuCompileCommand(const CpuCompiler& compiler, const kernels::CompileSpec& spec,
                                           const std::string& src, const std::string& so);

// Generates and compiles config `config_index` of `workload`'s template into
// `so` (its source goes to `so` + ".c"). The library exports
// `void tunefarm_kernel(void* const* args)`.
absl::Status BuildCpuKernel(const kernels::Workload& workload, uint64_t config_index, const std::string& so);

}  // namespace tunefarm::device_agents
