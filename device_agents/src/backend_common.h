// What the CPU and CUDA backends share: finding the measurement program,
// the work directory, and the per-workload caches.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tunefarm/device_agents/backend.h"
#include "tunefarm/kernels/template.h"

namespace tunefarm::device_agents {

// options.measure_program, else tunefarm-measure beside the running
// executable, else $TUNEFARM_MEASURE, else on PATH; FailedPrecondition when
// none is executable.
absl::StatusOr<std::string> FindMeasureProgram(const BackendOptions& options);

// Calls fn(i) for every i in [0, n) on up to `workers` threads (the
// calling one among them), each taking the next index as it is free.
void ParallelFor(size_t n, int workers, const std::function<void(size_t)>& fn);

// options.work_dir (created), or a fresh directory under $TMPDIR that is
// removed with this object unless options.keep_files.
class WorkDir {
 public:
  static absl::StatusOr<std::unique_ptr<WorkDir>> Create(const BackendOptions& options);
  ~WorkDir();
  const std::string& path() const { return path_; }

 private:
  WorkDir(std::string path, bool remove) : path_(std::move(path)), remove_(remove) {}
  const std::string path_;
  const bool remove_;
};

// A request's workload, the template of the backend's device class and
// the kernel of the requested config.
struct Instance {
  kernels::Workload workload;
  const kernels::Template* tmpl = nullptr;
  kernels::Kernel kernel;
};

// Reference data files (inputs and expected outputs for a workload and
// seed, in `work_dir`), each computed once. Not thread-safe.
class MeasureCache {
 public:
  explicit MeasureCache(std::string work_dir) : work_dir_(std::move(work_dir)) {}
  // What every backend checks before generating code: the workload
  // parses, `device` has a template for it, the request's template version
  // (when it names one) is this build's, the config index is inside the
  // space; then the config is instantiated. InvalidArgument, with the
  // reason, is an instantiation error.
  absl::StatusOr<Instance> Instantiate(const tunefarm::v1::MeasureRequest& req, kernels::DeviceClass device);
  absl::StatusOr<std::string> DataFile(const kernels::Template& t, const kernels::Workload& w, uint64_t seed);

 private:
  const std::string work_dir_;
  std::map<std::string, std::string> data_files_;  // workload key#seed -> data file
};

}  // namespace tunefarm::device_agents
