// Describes the local CPU as a tunefarm.v1.Target.
#pragma once

#include <string>

#include "tunefarm/v1/tuning.pb.h"

namespace tunefarm::device_agents {

// Fills kind=CPU, arch ("x86_64-avx512", "x86_64-avx2", "x86_64-sse4",
// "aarch64-neon", ... from the ISA features), model (the /proc/cpuinfo model
// name), features (ISA flags relevant to code generation: sse4_2, avx,
// avx2, fma, avx512f, avx512bw, avx512vl, avx512_bf16, avx512_vnni, neon,
// sve, ...), limits ("cores" = CPUs this process may run on, "l1d_bytes",
// "l2_bytes", "l3_bytes" per instance, from /sys/devices/system/cpu/cpu0/cache)
// and a stable device key: lower-case model words without vendor noise,
// joined by '-', plus the arch suffix, e.g. "amd-epyc-avx512" or
// "intel-xeon-gold-6248-avx512" ("cpu-<arch>" when the model is unknown).
// The same machine always yields the same key. `toolchain` is left empty.
//
// `root` prefixes the /proc and /sys paths, so tests can point it at a
// fake tree.
tunefarm::v1::Target DetectCpuTarget(const std::string& root = "");

}  // namespace tunefarm::device_agents
