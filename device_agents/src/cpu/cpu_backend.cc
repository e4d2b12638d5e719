#include "cpu/cpu_backend.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "measure_data.h"
#include "backend_common.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"
#include "tunefarm/device_agents/cpu_build.h"
#include "tunefarm/device_agents/cpu_target.h"
#include "tunefarm/kernels/codegen_c.h"
#include "tunefarm/kernels/template.h"

namespace tunefarm::device_agents {
namespace {

namespace fs = std::filesystem;
namespace v1 = tunefarm::v1;
using kernels::Template;

constexpr double kDefaultBuildTimeoutS = 30;
constexpr double kDefaultRunTimeoutS = 10;
constexpr const char* kSymbol = "tunefarm_kernel";

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Tail(const std::string& s, size_t n = 2000) { return s.size() <= n ? s : "..." + s.substr(s.size() - n); }

std::chrono::milliseconds Ms(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(std::ceil(seconds * 1000)));
}

// One candidate on its way through the pipeline.
struct Candidate {
  std::string source;
  kernels::CompileSpec spec;
  std::string stem;     // work_dir/cand-<n>
  std::string data;     // measurement data file
  bool pending = true;  // false once `result` is final
};

class CpuBackend : public DeviceBackend {
 public:
  CpuBackend(BackendOptions options, v1::Target target, CpuToolchain toolchain,
             std::string measure_program, std::unique_ptr<WorkDir> work_dir)
      : options_(std::move(options)),
        target_(std::move(target)),
        toolchain_(std::move(toolchain)),
        measure_program_(std::move(measure_program)),
        work_dir_(std::move(work_dir)) {}

  const v1::Target& target() const override { return target_; }

  absl::StatusOr<std::vector<v1::MeasureResult>> Measure(const std::vector<v1::MeasureRequest>& batch,
                                                         const MeasureCallback& on_result) override {
    std::vector<v1::MeasureResult> results(batch.size());
    std::vector<Candidate> cands(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      results[i].set_config_index(batch[i].config().index());
      results[i].set_agent_id(options_.agent_id);
      Prepare(batch[i], cands[i], results[i]);
    }
    // Requests for one kernel (a config measured in several rounds) share
    // its build: the later ones take the first one's binary, or its error.
    std::vector<size_t> built_by(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      built_by[i] = i;
      for (size_t j = 0; j < i && cands[i].pending; ++j) {
        if (built_by[j] == j && cands[j].pending && cands[j].source == cands[i].source &&
            cands[j].spec.compiler == cands[i].spec.compiler && cands[j].spec.flags == cands[i].spec.flags) {
          built_by[i] = j;
          cands[i].stem = cands[j].stem;
          break;
        }
      }
    }
    CompileAll(batch, built_by, cands, results);
    for (size_t i = 0; i < batch.size(); ++i) {
      if (const size_t j = built_by[i]; j != i) {
        results[i].set_compile_time_s(results[j].compile_time_s());
        if (!cands[j].pending && results[j].status() != v1::MEASURE_STATUS_OK) {
          Finish(cands[i], results[i], results[j].status(), results[j].error());
        }
      }
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      if (cands[i].pending) Run(batch[i].options(), cands[i], results[i]);
      results[i].set_timestamp_ms(NowMs());
      if (on_result) on_result(i, results[i]);
    }
    if (!options_.keep_files) {
      for (size_t i = 0; i < batch.size(); ++i) {
        if (built_by[i] != i || cands[i].stem.empty()) continue;
        std::error_code ec;
        fs::remove(cands[i].stem + ".so", ec);
        fs::remove(cands[i].stem + ".c", ec);
      }
    }
    return results;
  }

 private:
  static void Finish(Candidate& c, v1::MeasureResult& r, v1::MeasureStatus status, std::string error) {
    r.set_status(status);
    r.set_error(std::move(error));
    c.pending = false;
  }

  // Workload, template, version and config checks, then code generation.
  void Prepare(const v1::MeasureRequest& req, Candidate& c, v1::MeasureResult& r) {
    auto fail = [&](std::string e) { Finish(c, r, v1::MEASURE_STATUS_INSTANTIATION_ERROR, std::move(e)); };
    absl::StatusOr<Instance> in = cache_.Instantiate(req, kernels::DeviceClass::kCpu);
    if (!in.ok()) return fail(std::string(in.status().message()));
    const kernels::Kernel* k = &in->kernel;
    if (auto cores = target_.limits().find("cores"); cores != target_.limits().end() && k->func.threads > cores->second) {
      return fail(absl::StrCat(k->func.threads, " threads exceed this device's ", cores->second, " cores"));
    }
    absl::StatusOr<std::string> src = kernels::GenerateC(k->func);
    if (!src.ok()) return fail(std::string(src.status().message()));
    if (!toolchain_.compilers.count(k->compile.compiler)) {
      return fail(absl::StrCat("compiler '", k->compile.compiler, "' is not installed on this device"));
    }
    absl::StatusOr<std::string> data = cache_.DataFile(*in->tmpl, in->workload, req.options().seed());
    if (!data.ok()) return Finish(c, r, v1::MEASURE_STATUS_UNKNOWN_ERROR, std::string(data.status().message()));
    c.source = std::move(*src);
    c.spec = k->compile;
    c.data = *data;
    c.stem = absl::StrCat(work_dir_->path(), "/cand-", next_id_++);
  }

  // Compiles each pending candidate that builds its own kernel
  // (built_by[i] == i).
  void CompileAll(const std::vector<v1::MeasureRequest>& batch, const std::vector<size_t>& built_by,
                  std::vector<Candidate>& cands, std::vector<v1::MeasureResult>& results) {
    const int n = options_.compile_workers > 0 ? options_.compile_workers
                                               : static_cast<int>(std::max<int64_t>(1, target_.limits().at("cores")));
    ParallelFor(cands.size(), n, [&](size_t i) {
      if (cands[i].pending && built_by[i] == i) Compile(batch[i].options(), cands[i], results[i]);
    });
  }

  void Compile(const v1::MeasureOptions& opt, Candidate& c, v1::MeasureResult& r) {
    std::string src = c.stem + ".c", so = c.stem + ".so";
    if (FILE* f = std::fopen(src.c_str(), "w")) {
      std::fwrite(c.source.data(), 1, c.source.size(), f);
      std::fclose(f);
    } else {
      return Finish(c, r, v1::MEASURE_STATUS_UNKNOWN_ERROR, absl::StrCat("cannot write ", src));
    }
    std::vector<std::string> argv = CpuCompileCommand(toolchain_.compilers.at(c.spec.compiler), c.spec, src, so);
    double timeout = opt.build_timeout_s() > 0 ? opt.build_timeout_s() : kDefaultBuildTimeoutS;
    ProcessOptions po;
    po.timeout = Ms(timeout);
    absl::StatusOr<ProcessResult> p = options_.launcher->Run(argv, po);
    if (!p.ok()) return Finish(c, r, v1::MEASURE_STATUS_COMPILE_HOST, std::string(p.status().message()));
    r.set_compile_time_s(p->wall_seconds);
    if (p->timed_out) {
      return Finish(c, r, v1::MEASURE_STATUS_BUILD_TIMEOUT, absl::StrCat("compiler ", p->Describe()));
    }
    if (!p->ok()) {
      return Finish(c, r, v1::MEASURE_STATUS_COMPILE_HOST,
                    absl::StrCat(c.spec.compiler, " failed (", p->Describe(), "): ", Tail(p->err)));
    }
  }

  void Run(const v1::MeasureOptions& opt, Candidate& c, v1::MeasureResult& r) {
    std::vector<std::string> argv = {measure_program_,
                                      "--lib", c.stem + ".so",
                                      "--symbol", kSymbol,
                                      "--data", c.data,
                                      "--number", std::to_string(std::max(1, opt.number())),
                                      "--repeat", std::to_string(std::max(1, opt.repeat())),
                                      "--min-repeat-ms", std::to_string(std::max(0, opt.min_repeat_ms()))};
    if (opt.timing_cutoff_s() > 0 && std::isfinite(opt.timing_cutoff_s())) {
      argv.push_back("--cutoff-s");
      argv.push_back(absl::StrCat(opt.timing_cutoff_s()));
    }
    ProcessOptions po;
    po.timeout = Ms(opt.run_timeout_s() > 0 ? opt.run_timeout_s() : kDefaultRunTimeoutS);
    absl::StatusOr<ProcessResult> p = options_.launcher->Run(argv, po);
    if (!p.ok()) return Finish(c, r, v1::MEASURE_STATUS_UNKNOWN_ERROR, std::string(p.status().message()));
    if (p->timed_out) return Finish(c, r, v1::MEASURE_STATUS_RUN_TIMEOUT, absl::StrCat("kernel ", p->Describe()));
    if (!p->ok()) {
      return Finish(c, r, v1::MEASURE_STATUS_RUNTIME_DEVICE,
                    absl::StrCat("measurement process ", p->Describe(), p->err.empty() ? "" : ": ", Tail(p->err, 500)));
    }
    nlohmann::json j = nlohmann::json::parse(p->out, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("status")) {
      return Finish(c, r, v1::MEASURE_STATUS_UNKNOWN_ERROR,
                    absl::StrCat("unreadable measurement output: ", Tail(p->out, 200)));
    }
    std::string status = j.value("status", "");
    std::string error = j.value("error", "");
    if (status == "ok") {
      for (const auto& cost : j["costs"]) r.add_costs(cost.get<double>());
      r.set_status(v1::MEASURE_STATUS_OK);
      c.pending = false;
    } else if (status == "wrong_answer") {
      Finish(c, r, v1::MEASURE_STATUS_WRONG_ANSWER, error);
    } else if (status == "runtime_error") {
      Finish(c, r, v1::MEASURE_STATUS_RUNTIME_DEVICE, error);
    } else {
      Finish(c, r, v1::MEASURE_STATUS_UNKNOWN_ERROR, error);
    }
  }

  const BackendOptions options_;
  v1::Target target_;
  const CpuToolchain toolchain_;
  const std::string measure_program_;
  const std::unique_ptr<WorkDir> work_dir_;
  // Measure is not reentrant, so the cache needs no lock.
  MeasureCache cache_{work_dir_->path()};
  uint64_t next_id_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceBackend>> NewCpuBackend(const BackendOptions& in) {
  BackendOptions options = in;
  if (!options.launcher) options.launcher = NewPosixProcessLauncher();

  v1::Target target = DetectCpuTarget();
  if (!options.device_key.empty()) target.set_device_key(options.device_key);

  absl::StatusOr<CpuToolchain> toolchain = DetectCpuToolchain(*options.launcher);
  if (!toolchain.ok()) return toolchain.status();
  target.set_toolchain(toolchain->fingerprint);

  absl::StatusOr<std::string> measure = FindMeasureProgram(options);
  if (!measure.ok()) return measure.status();
  absl::StatusOr<std::unique_ptr<WorkDir>> work_dir = WorkDir::Create(options);
  if (!work_dir.ok()) return work_dir.status();
  spdlog::info("cpu backend: {} ({}), key {}, {}", target.model(), target.arch(), target.device_key(),
               toolchain->fingerprint);
  return std::make_unique<CpuBackend>(std::move(options), std::move(target), std::move(*toolchain), std::move(*measure),
                                      std::move(*work_dir));
}

}  // namespace tunefarm::device_agents
