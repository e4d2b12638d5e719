// Device backends: generate, compile, check and time candidates on one
// device class. The agent daemon and the embedded tuner both drive a backend
// through this interface; a device class adds its files and one line in
// backend_registry.cc.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "tunefarm/device_agents/process.h"
#include "tunefarm/v1/tuning.pb.h"

namespace tunefarm::device_agents {

struct BackendOptions {
  // Where sources, binaries and reference data go; empty: a fresh directory
  // under $TMPDIR, removed when the backend is destroyed.
  std::string work_dir;
  // Overrides the detected device key.
  std::string device_key;
  // Parallel compile jobs; 0: one per core this process may use.
  int compile_workers = 0;
  // The measurement program; empty: `tunefarm-measure` beside the running
  // executable, else $TUNEFARM_MEASURE, else on PATH.
  std::string measure_program;
  // Process seam; null: the POSIX launcher.
  std::shared_ptr<ProcessLauncher> launcher;
  // Keep each candidate's generated source and compiler output (debugging).
  bool keep_files = false;
  std::string agent_id = "local";
  // Replay device only: milliseconds each measurement waits before its
  // answer, to emulate a device with a fixed latency; 0: answer at once.
  int replay_latency_ms = 0;
};

// Called after each candidate finishes, from the thread calling Measure.
using MeasureCallback = std::function<void(size_t index, const tunefarm::v1::MeasureResult&)>;

// Thread safety: one Measure call at a time per backend.
class DeviceBackend {
 public:
  virtual ~DeviceBackend() = default;
  virtual const tunefarm::v1::Target& target() const = 0;
  // Measures a batch; the i-th result answers the i-th request. A failing
  // candidate is a result with a non-OK status, never a Status error; an
  // error means the backend itself cannot work (e.g. no compiler at all).
  virtual absl::StatusOr<std::vector<tunefarm::v1::MeasureResult>> Measure(
      const std::vector<tunefarm::v1::MeasureRequest>& batch, const MeasureCallback& on_result = {}) = 0;
};

// Creates the backend for a device class: "cpu", or "name:ARG" for classes
// that take an argument (e.g. "replay:PATH"). Unknown names are
// InvalidArgument; a backend that cannot run here (no compiler, no driver)
// is FailedPrecondition with the reason.
absl::StatusOr<std::unique_ptr<DeviceBackend>> NewBackend(std::string_view device_class,
                                                          const BackendOptions& options = {});

// Device classes compiled into this build.
std::vector<std::string> BackendNames();

}  // namespace tunefarm::device_agents
