// What the CPU and CUDA backends share: finding the measurement program,
// the work directory, and the per-workload caches.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "tunefarm/device_agents/backend.h"
#include "tunefarm/kernels/template.h"

namespace tunefarm::device_agents {

// options.measure_program, else tunefarm-measure beside the running
// executable, else $TUNEFARM_MEASURE, else on PATH; FailedPrecondition when
// none is executable.
absl::StatusOr<std::string> FindMeasureProgram(const BackendOptions& options);

// options.work_dir (created), or a fresh directory under $TMPDIR that the
// caller owns (`*own` = true) and removes.
absl::StatusOr<std::string> MakeWorkDir(const BackendOptions& options, bool* own);

// Template versions and reference data files (inputs and expected outputs
// for a workload and seed, in `work_dir`), each computed once. Not
// thread-safe.
class MeasureCache {
 public:
  explicit MeasureCache(std::string work_dir) : work_dir_(std::move(work_dir)) {}
  absl::StatusOr<std::string> Version(const kernels::Template& t, const kernels::Workload& w);
  absl::StatusOr<std::string> DataFile(const kernels::Template& t, const kernels::Workload& w, uint64_t seed);

 private:
  const std::string work_dir_;
  std::map<std::string, std::string> versions_;    // workload key -> template version
  std::map<std::string, std::string> data_files_;  // workload key#seed -> data file
};

}  // namespace tunefarm::device_agents
