// Pieces every CPU template's space shares: knob value lists, and the three
// knobs that decide how a candidate is built and run (compiler, flags,
// OpenMP threads), in the order every CPU space lists them last.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "tunefarm/kernels/config_space.h"
#include "tunefarm/kernels/template.h"

namespace tunefarm::kernels {

inline std::vector<KnobValue> IntValues(std::initializer_list<int64_t> v) {
  return std::vector<KnobValue>(v.begin(), v.end());
}

inline std::vector<KnobValue> StringValues(std::initializer_list<const char*> v) {
  std::vector<KnobValue> out;
  for (const char* s : v) out.emplace_back(std::string(s));
  return out;
}

// compiler, cflags, threads. A device rejects more threads than it has
// cores before compiling.
inline std::vector<Knob> CpuBuildKnobs() {
  return {
      {"compiler", KnobKind::kChoice, StringValues({"clang", "gcc"})},
      {"cflags", KnobKind::kChoice, StringValues({"-O3", "-O3 -funroll-loops", "-O2"})},
      {"threads", KnobKind::kAnnotate, IntValues({1, 2, 4, 8, 16, 32, 64})},
  };
}

// The default values of CpuBuildKnobs(): clang -O3, one thread.
inline std::vector<std::pair<std::string, KnobValue>> CpuBuildDefaults() {
  return {{"compiler", std::string("clang")}, {"cflags", std::string("-O3")}, {"threads", int64_t{1}}};
}

// Sets how `k` is built and run from config `c` of a space with
// CpuBuildKnobs(): the compiler, its flags (-fopenmp with threads) and the
// thread count the C printer gives parallel loops.
inline void ApplyCpuBuildKnobs(const ConfigSpace& space, const Config& c, Kernel& k) {
  const int64_t threads = space.IntValue(c, "threads");
  k.compile.compiler = space.StrValue(c, "compiler");
  k.compile.flags = space.StrValue(c, "cflags");
  k.func.threads = static_cast<int>(threads);
  if (threads > 1) k.compile.flags += " -fopenmp";
}

}  // namespace tunefarm::kernels
