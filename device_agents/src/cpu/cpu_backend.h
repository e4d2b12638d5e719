#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "tunefarm/device_agents/backend.h"

namespace tunefarm::device_agents {

// The local CPU: C sources from the kernel templates, compiled in parallel
// with clang or gcc (-march=native), each candidate checked and timed in its
// own tunefarm-measure process.
absl::StatusOr<std::unique_ptr<DeviceBackend>> NewCpuBackend(const BackendOptions& options);

}  // namespace tunefarm::device_agents
