#pragma once

#include <cstdint>
#include <string_view>

namespace tunefarm::kernels {

// 64-bit FNV-1a: stable across processes and builds (std::hash is not).
inline uint64_t Fnv1a64(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace tunefarm::kernels
