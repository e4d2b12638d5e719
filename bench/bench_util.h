// Pieces every CPU benchmark needs: medians, timing loops, and a tuned
// kernel built and loaded into this process.
#pragma once

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "tunefarm/device_agents/cpu_build.h"

namespace tunefarm::bench {

using Clock = std::chrono::steady_clock;
using KernelFn = void (*)(void* const*);

// Buffers on 64-byte (cache line) boundaries, as frameworks allocate tensors
// and as tunefarm's measurement process times candidates: a vector kernel
// on a misaligned buffer splits a cache line on every other load.
template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}  // NOLINT: allocators convert implicitly
  T* allocate(size_t n) {
    void* p = std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64);
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  template <typename U>
  bool operator==(const CacheLineAllocator<U>&) const {
    return true;
  }
};
using AlignedFloats = std::vector<float, CacheLineAllocator<float>>;

inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : (n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2);
}

inline double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Seconds per call of `fn`, repeated until one timing lasts >= 20 ms so
// small shapes time well.
template <typename Fn>
double TimePerCall(Fn&& fn) {
  for (int n = 1;; n *= 2) {
    const auto a = Clock::now();
    for (int i = 0; i < n; ++i) fn();
    const double s = Seconds(a, Clock::now());
    if (s >= 0.02) return s / n;
  }
}

// Builds config `config_index` of `w` into `so` and loads its entry point;
// the library stays loaded for the life of the process.
inline absl::StatusOr<KernelFn> BuildAndLoad(const kernels::Workload& w, uint64_t config_index, const std::string& so) {
  if (absl::Status s = device_agents::BuildCpuKernel(w, config_index, so); !s.ok()) return s;
  void* lib = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
  auto fn = lib ? reinterpret_cast<KernelFn>(dlsym(lib, "tunefarm_kernel")) : nullptr;
  if (fn == nullptr) return absl::InternalError(absl::StrCat("cannot load ", so, ": ", dlerror()));
  return fn;
}

}  // namespace tunefarm::bench
