#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "tunefarm/device_agents/backend.h"

namespace tunefarm::device_agents {

// An NVIDIA GPU: CUDA C++ from the templates' GPU schedules, compiled in
// parallel with NVRTC for the device's own architecture (in this process,
// which never opens the device), then loaded, launched, checked against the
// reference and timed with CUDA events by the CUDA measurement server
// (tunefarm-measure --cuda, one context for as long as it runs). A kernel
// that faults is a runtime error and costs a server restart: the faulted
// context dies with its process, and the next candidate gets a new one.
// `ordinal` picks the GPU. FailedPrecondition, with the reason, where there
// is no driver, no GPU, no NVRTC or no tunefarm-measure.
absl::StatusOr<std::unique_ptr<DeviceBackend>> NewCudaBackend(const BackendOptions& options, int ordinal);

}  // namespace tunefarm::device_agents
