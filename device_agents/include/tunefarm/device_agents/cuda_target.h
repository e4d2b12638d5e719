// Describes a CUDA GPU as a tunefarm.v1.Target.
#pragma once

#include <string>
#include <string_view>

#include "tunefarm/device_agents/cuda_driver.h"
#include "tunefarm/v1/tuning.pb.h"

namespace tunefarm::device_agents {

// The device key of a GPU model: its name without the vendor and brand
// words, lower-case, up to the first word with a digit, joined by '-':
// "NVIDIA H100 80GB HBM3" -> "h100", "NVIDIA A100-SXM4-80GB" -> "a100",
// "NVIDIA GeForce RTX 4090" -> "rtx-4090".
std::string CudaDeviceKey(std::string_view name);

// kind=CUDA, arch "sm_<major><minor>", model (the device name), features
// (the arch, and "tf32" from sm_80 on), limits ("sm_count",
// "max_threads_per_block", "shared_memory_bytes" per block,
// "registers_per_block", "memory_bytes", "l2_bytes", "clock_khz",
// "memory_clock_khz"), the device key and the toolchain ("NVRTC 13.0;
// CUDA driver 13.0").
tunefarm::v1::Target CudaTarget(const CudaDeviceInfo& info, const std::string& nvrtc_version);

}  // namespace tunefarm::device_agents
