#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "tunefarm/device_agents/backend.h"

namespace tunefarm::device_agents {

// An NVIDIA GPU: CUDA C++ from the templates' GPU schedules, compiled in
// parallel with NVRTC for the device's own architecture, loaded and
// launched through the driver API in this process (one context), checked
// against the reference and timed with CUDA events. A kernel that faults
// is a runtime error; the context is rebuilt and the backend goes on.
// `ordinal` picks the GPU. FailedPrecondition, with the reason, where
// there is no driver, no GPU or no NVRTC.
absl::StatusOr<std::unique_ptr<DeviceBackend>> NewCudaBackend(const BackendOptions& options, int ordinal);

}  // namespace tunefarm::device_agents
