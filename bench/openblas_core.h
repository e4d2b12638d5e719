// OpenBLAS built with DYNAMIC_ARCH (as Debian's is) picks its kernels from
// the CPU's model number, and a model newer than the library (Emerald
// Rapids for OpenBLAS 0.3.21) falls back to "Prescott", the SSE3 kernels:
// a baseline several times slower than the library can be. A benchmark
// against OpenBLAS therefore makes sure the kernels match the CPU's vector
// extensions, as OPENBLAS_CORETYPE lets a user do by hand.
#pragma once

#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace tunefarm::bench {

// The OpenBLAS core whose kernels this CPU's vector extensions run best, or
// "" when the detected one cannot be improved on.
inline std::string PreferredOpenBlasCore() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq")) {
    return "SkylakeX";
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return "";
}

// Whether OpenBLAS's `core` already uses the vector extensions of
// `preferred` (a newer core of the same family counts).
inline bool OpenBlasCoreIsAtLeast(std::string core, const std::string& preferred) {
  std::transform(core.begin(), core.end(), core.begin(), [](unsigned char ch) { return std::tolower(ch); });
  const char* avx512[] = {"skylakex", "cooperlake", "sapphirerapids"};
  const bool is_avx512 = std::find(std::begin(avx512), std::end(avx512), core) != std::end(avx512);
  if (preferred == "SkylakeX") return is_avx512;
  if (preferred == "Haswell") return is_avx512 || core == "haswell" || core.rfind("zen", 0) == 0;
  return true;
}

// Call first thing in main, before any other work: when OpenBLAS chose
// kernels below the CPU's (and the user did not choose with
// OPENBLAS_CORETYPE), runs this program again with OPENBLAS_CORETYPE set,
// since OpenBLAS picks its kernels once, when it is loaded. Returns a line
// describing the kernels in use, for the report.
inline std::string EnsureOpenBlasCore(char** argv) {
  const std::string detected = openblas_get_corename();
  const char* chosen = std::getenv("OPENBLAS_CORETYPE");
  // Set only for the run again below, and not passed on to the processes
  // this one starts.
  const char* marker = std::getenv("TUNEFARM_OPENBLAS_DETECTED");
  const std::string fixed = marker != nullptr ? marker : "";
  unsetenv("TUNEFARM_OPENBLAS_DETECTED");
  if (chosen != nullptr) {
    return !fixed.empty() ? "OpenBLAS core " + detected + " (OPENBLAS_CORETYPE; it detected " + fixed + ")"
                          : "OpenBLAS core " + detected + " (OPENBLAS_CORETYPE)";
  }
  const std::string preferred = PreferredOpenBlasCore();
  if (preferred.empty() || OpenBlasCoreIsAtLeast(detected, preferred)) return "OpenBLAS core " + detected;
  std::fprintf(stderr,
               "OpenBLAS detected core %s on a CPU with the vector extensions of %s; running again with "
               "OPENBLAS_CORETYPE=%s\n",
               detected.c_str(), preferred.c_str(), preferred.c_str());
  setenv("OPENBLAS_CORETYPE", preferred.c_str(), 1);
  setenv("TUNEFARM_OPENBLAS_DETECTED", detected.c_str(), 1);
  execv("/proc/self/exe", argv);
  std::fprintf(stderr, "could not run again (%s); OpenBLAS keeps its %s kernels\n", std::strerror(errno),
               detected.c_str());
  return "OpenBLAS core " + detected + " (below this CPU's: set OPENBLAS_CORETYPE=" + preferred + ")";
}

}  // namespace tunefarm::bench
