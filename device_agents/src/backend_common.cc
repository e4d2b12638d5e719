#include "backend_common.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>
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

void ParallelFor(size_t n, int workers, const std::function<void(size_t)>& fn) {
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < n; i = next++) fn(i);
  };
  std::vector<std::thread> threads;
  for (int t = 1; t < workers && static_cast<size_t>(t) < n; ++t) threads.emplace_back(worker);
  worker();
  for (std::thread& t : threads) t.join();
}

absl::StatusOr<std::unique_ptr<WorkDir>> WorkDir::Create(const BackendOptions& options) {
  if (options.work_dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = absl::StrCat(tmp && *tmp ? tmp : "/tmp", "/tunefarm-XXXXXX");
    if (mkdtemp(tmpl.data()) == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat("cannot create a work directory from ", tmpl));
    }
    if (options.keep_files) spdlog::warn("keeping generated sources and binaries in {}", tmpl);
    return std::unique_ptr<WorkDir>(new WorkDir(tmpl, !options.keep_files));
  }
  std::error_code ec;
  fs::create_directories(options.work_dir, ec);
  if (ec) return absl::FailedPreconditionError(absl::StrCat("cannot create ", options.work_dir, ": ", ec.message()));
  return std::unique_ptr<WorkDir>(new WorkDir(options.work_dir, false));
}

WorkDir::~WorkDir() {
  if (!remove_) return;
  std::error_code ec;
  fs::remove_all(path_, ec);
}

absl::StatusOr<Instance> MeasureCache::Instantiate(const tunefarm::v1::MeasureRequest& req,
                                                  kernels::DeviceClass device) {
  auto fail = [](std::string e) { return absl::InvalidArgumentError(std::move(e)); };
  absl::StatusOr<kernels::Workload> w = kernels::ParseWorkload(req.workload().key());
  if (!w.ok()) return fail(std::string(w.status().message()));
  const kernels::Template* t = kernels::TemplateRegistry::Global().Find(w->op, device);
  if (t == nullptr) {
    return fail(absl::StrCat("no ", std::string(kernels::DeviceClassName(device)), " template for operator ", w->op));
  }
  absl::StatusOr<kernels::ConfigSpace> space = t->Space(*w);
  if (!space.ok()) return fail(std::string(space.status().message()));
  absl::StatusOr<std::string> version = kernels::TemplateVersion(*t, *w);
  if (!version.ok()) return fail(std::string(version.status().message()));
  if (!req.template_version().empty() && req.template_version() != *version) {
    return fail(absl::StrCat("template version mismatch: request has ", req.template_version(), ", this agent has ",
                             *version));
  }
  if (req.config().index() >= space->size()) {
    return fail(absl::StrCat("config index ", req.config().index(), " is outside the space of ", space->size()));
  }
  absl::StatusOr<kernels::Kernel> k = t->Instantiate(*w, *space, space->FromIndex(req.config().index()));
  if (!k.ok()) return fail(std::string(k.status().message()));
  return Instance{std::move(*w), t, std::move(*k)};
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
