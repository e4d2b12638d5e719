// NVRTC, the CUDA run-time compiler, loaded with dlopen: nothing links
// against the CUDA toolkit, so machines without it build and run everything
// else, and a CUDA device reports itself unavailable instead.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace tunefarm::device_agents {

class Nvrtc {
 public:
  // Loads libnvrtc.so (else libnvrtc.so.13, .so.12, also under
  // $CUDA_HOME/lib64 and /usr/local/cuda/lib64). Unavailable, naming what
  // was tried, when none loads or lacks an entry point.
  static absl::StatusOr<std::unique_ptr<Nvrtc>> Load();
  ~Nvrtc();
  Nvrtc(const Nvrtc&) = delete;
  Nvrtc& operator=(const Nvrtc&) = delete;

  // "13.0"
  std::string version() const;
  // Compiles CUDA C++ `source` (no #include) for a virtual architecture
  // such as "compute_90" to PTX. A source NVRTC rejects is InvalidArgument
  // with its log. Safe to call from several threads at once.
  absl::StatusOr<std::string> CompileToPtx(const std::string& source, const std::string& name,
                                           const std::string& arch) const;
  // The same for a real architecture such as "sm_90": machine code the
  // driver loads without compiling.
  absl::StatusOr<std::string> CompileToCubin(const std::string& source, const std::string& name,
                                             const std::string& arch) const;

 private:
  absl::StatusOr<std::string> Compile(const std::string& source, const std::string& name, const std::string& arch,
                                      bool cubin) const;
  struct Api;
  explicit Nvrtc(std::unique_ptr<Api> api);
  std::unique_ptr<Api> api_;
};

}  // namespace tunefarm::device_agents
