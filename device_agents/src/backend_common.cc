#include "backend_common.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "measure_data.h"
#include "reference_data.h"
#include "spdlog/spdlog.h"
#include "tunefarm/device_agents/process.h"

namespace tunefarm::device_agents {

namespace fs = std::filesystem;

absl::StatusOr<std::string> FindMeasureProgram(const BackendOptions& options) {
  std::string found = options.measure_program;
  if (found.empty()) {
    std::error_code ec;
    fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
      fs::path beside = self.parent_path() / "tunefarm-measure";
      if (fs::exists(beside, ec)) found = beside.string();
    }
  }
  if (found.empty()) {
    if (const char* env = std::getenv("TUNEFARM_MEASURE"); env && *env) found = env;
  }
  if (found.empty()) found = FindExecutable("tunefarm-measure");
  if (found.empty() || access(found.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(
        "tunefarm-measure not found (looked beside this program, in $TUNEFARM_MEASURE and on PATH)");
  }
  return found;
}

absl::StatusOr<std::string> MakeWorkDir(const BackendOptions& options, bool* own) {
  *own = options.work_dir.empty();
  if (*own) {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = absl::StrCat(tmp && *tmp ? tmp : "/tmp", "/tunefarm-XXXXXX");
    if (mkdtemp(tmpl.data()) == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat("cannot create a work directory from ", tmpl));
    }
    return tmpl;
  }
  std::error_code ec;
  fs::create_directories(options.work_dir, ec);
  if (ec) return absl::FailedPreconditionError(absl::StrCat("cannot create ", options.work_dir, ": ", ec.message()));
  return options.work_dir;
}

absl::StatusOr<std::string> MeasureCache::Version(const kernels::Template& t, const kernels::Workload& w) {
  std::string key = w.Key();
  auto it = versions_.find(key);
  if (it != versions_.end()) return it->second;
  absl::StatusOr<std::string> v = kernels::TemplateVersion(t, w);
  if (v.ok()) versions_[key] = *v;
  return v;
}

absl::StatusOr<std::string> MeasureCache::DataFile(const kernels::Template& t, const kernels::Workload& w,
                                                   uint64_t seed) {
  std::string key = absl::StrCat(w.Key(), "#", seed);
  auto it = data_files_.find(key);
  if (it != data_files_.end()) return it->second;
  auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<MeasureData> data = BuildMeasureData(t, w, seed);
  if (!data.ok()) return data.status();
  std::string path = absl::StrCat(work_dir_, "/data-", w.Hash(), "-", seed, ".bin");
  if (absl::Status s = WriteMeasureData(path, *data); !s.ok()) return s;
  spdlog::debug("reference for {} (seed {}) computed in {:.2f} s", w.Key(), seed,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  data_files_[key] = path;
  return path;
}

}  // namespace tunefarm::device_agents
