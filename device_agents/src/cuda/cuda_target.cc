#include "tunefarm/device_agents/cuda_target.h"

#include <algorithm>
#include <cctype>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tunefarm::device_agents {

std::string CudaDeviceKey(std::string_view name) {
  std::vector<std::string> words;
  std::string word;
  auto flush = [&] {
    if (!word.empty() && word != "nvidia" && word != "geforce" && word != "tesla" && word != "quadro") {
      words.push_back(word);
    }
    word.clear();
  };
  for (char ch : name) {
    if (std::isalnum(static_cast<unsigned char>(ch))) {
      word += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    } else {
      flush();
    }
  }
  flush();
  std::vector<std::string> key;
  for (const std::string& w : words) {
    key.push_back(w);
    if (w.find_first_of("0123456789") != std::string::npos) break;
  }
  return key.empty() ? "cuda-gpu" : absl::StrJoin(key, "-");
}

tunefarm::v1::Target CudaTarget(const CudaDeviceInfo& info, const std::string& nvrtc_version) {
  tunefarm::v1::Target t;
  t.set_kind(tunefarm::v1::DEVICE_KIND_CUDA);
  t.set_arch(absl::StrCat("sm_", info.cc_major, info.cc_minor));
  t.set_model(info.name);
  t.set_device_key(CudaDeviceKey(info.name));
  t.add_features(t.arch());
  if (info.cc_major >= 8) t.add_features("tf32");
  if (info.cc_major == 9 && info.cc_minor == 0) t.add_features("wgmma");  // sm_90a's warpgroup tensor cores
  auto& limits = *t.mutable_limits();
  limits["sm_count"] = info.sm_count;
  limits["max_threads_per_block"] = info.max_threads_per_block;
  limits["shared_memory_bytes"] = info.shared_bytes_per_block;
  // Dynamic shared memory a kernel may be given past that, on request.
  limits["shared_memory_optin_bytes"] = std::max(info.shared_bytes_per_block, info.shared_bytes_per_block_optin);
  limits["registers_per_block"] = info.registers_per_block;
  limits["memory_bytes"] = info.memory_bytes;
  limits["l2_bytes"] = info.l2_bytes;
  limits["clock_khz"] = info.clock_khz;
  limits["memory_clock_khz"] = info.memory_clock_khz;
  t.set_toolchain(absl::StrCat("NVRTC ", nvrtc_version, "; CUDA driver ", info.driver_version / 1000, ".",
                               info.driver_version % 1000 / 10));
  return t;
}

}  // namespace tunefarm::device_agents
