#include "cuda/cuda_backend.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "backend_common.h"
#include "cuda/cuda_measure.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"
#include "tunefarm/device_agents/cuda_driver.h"
#include "tunefarm/device_agents/cuda_target.h"
#include "tunefarm/device_agents/nvrtc.h"
#include "tunefarm/device_agents/process.h"
#include "tunefarm/kernels/codegen_cuda.h"
#include "tunefarm/kernels/template.h"

namespace tunefarm::device_agents {
namespace {

namespace fs = std::filesystem;
namespace v1 = tunefarm::v1;
using kernels::Template;
using nlohmann::json;

constexpr double kDefaultRunTimeoutS = 10;
// How long the measurement server may take to open the device.
constexpr std::chrono::seconds kStartTimeout{120};

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Candidate {
  kernels::CudaKernelSource kernel;
  std::string cubin;  // file
  std::string data;   // measurement data file
  bool pending = true;  // false once the result is final
};

// The measurement server (cuda/cuda_measure.h) and the device it opened.
struct Server {
  std::unique_ptr<LineChild> child;
  CudaDeviceInfo info;
};

absl::StatusOr<Server> StartServer(const std::string& program, int ordinal) {
  absl::StatusOr<std::unique_ptr<LineChild>> child = LineChild::Start({program, "--cuda", std::to_string(ordinal)});
  if (!child.ok()) return child.status();
  absl::StatusOr<std::string> line = (*child)->Receive(kStartTimeout);
  if (!line.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("the CUDA measurement process did not start: ",
                                                      line.status().message()));
  }
  json j = json::parse(*line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || j.value("status", "") != "ready" || !j.contains("info")) {
    return absl::FailedPreconditionError(
        j.is_object() ? j.value("error", *line) : absl::StrCat("the CUDA measurement process said: ", *line));
  }
  Server s{std::move(*child), {}};
  try {
    s.info = CudaInfoFromJson(j["info"]);
  } catch (const json::exception& e) {
    return absl::FailedPreconditionError(absl::StrCat("the CUDA measurement process sent bad device info: ", e.what()));
  }
  return s;
}

class CudaBackend : public DeviceBackend {
 public:
  CudaBackend(BackendOptions options, v1::Target target, Server server, std::unique_ptr<Nvrtc> nvrtc,
              std::string program, int ordinal, std::unique_ptr<WorkDir> work_dir)
      : options_(std::move(options)),
        target_(std::move(target)),
        server_(std::move(server)),
        nvrtc_(std::move(nvrtc)),
        program_(std::move(program)),
        ordinal_(ordinal),
        work_dir_(std::move(work_dir)) {}

  // The server ends before its files go.
  ~CudaBackend() override { server_.child.reset(); }

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
    CompileAll(cands, results);
    for (size_t i = 0; i < batch.size(); ++i) {
      if (cands[i].pending) Run(batch[i].options(), cands[i], results[i]);
      results[i].set_timestamp_ms(NowMs());
      if (!options_.keep_files && !cands[i].cubin.empty()) {
        std::error_code ec;
        fs::remove(cands[i].cubin, ec);
      }
      if (on_result) on_result(i, results[i]);
    }
    return results;
  }

 private:
  static void Finish(Candidate& c, v1::MeasureResult& r, v1::MeasureStatus status, std::string error) {
    r.set_status(status);
    r.set_error(std::move(error));
    c.pending = false;
  }

  void Prepare(const v1::MeasureRequest& req, Candidate& c, v1::MeasureResult& r) {
    auto fail = [&](std::string e) { Finish(c, r, v1::MEASURE_STATUS_INSTANTIATION_ERROR, std::move(e)); };
    absl::StatusOr<Instance> in = cache_.Instantiate(req, kernels::DeviceClass::kCuda);
    if (!in.ok()) return fail(std::string(in.status().message()));
    absl::StatusOr<kernels::CudaKernelSource> src = kernels::GenerateCuda(in->kernel.func);
    if (!src.ok()) return fail(std::string(src.status().message()));
    // The device's limits, before compiling.
    const int64_t threads = src->block[0] * src->block[1] * src->block[2];
    if (threads > target_.limits().at("max_threads_per_block")) {
      return fail(absl::StrCat(threads, " threads per block exceed this device's ",
                               target_.limits().at("max_threads_per_block")));
    }
    // Static shared memory stops at the plain limit; the dynamic pool may
    // be raised to the opt-in one.
    const std::string limit = src->dynamic_shared_bytes > 0 ? "shared_memory_optin_bytes" : "shared_memory_bytes";
    const int64_t most =
        target_.limits().count(limit) > 0 ? target_.limits().at(limit) : target_.limits().at("shared_memory_bytes");
    if (src->shared_bytes > most) {
      return fail(absl::StrCat(src->shared_bytes, " bytes of shared memory per block exceed this device's ", most));
    }
    absl::StatusOr<std::string> data = cache_.DataFile(*in->tmpl, in->workload, req.options().seed());
    if (!data.ok()) return Finish(c, r, v1::MEASURE_STATUS_UNKNOWN_ERROR, std::string(data.status().message()));
    c.kernel = std::move(*src);
    c.data = *data;
  }

  // NVRTC for the device's own architecture, several candidates at once.
  void CompileAll(std::vector<Candidate>& cands, std::vector<v1::MeasureResult>& results) {
    std::atomic<uint64_t> id{next_id_};
    const int n = options_.compile_workers > 0 ? options_.compile_workers
                                               : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    ParallelFor(cands.size(), n, [&](size_t i) {
      Candidate& c = cands[i];
      if (!c.pending) return;
      auto t0 = std::chrono::steady_clock::now();
      absl::StatusOr<std::string> cubin =
          nvrtc_->CompileToCubin(c.kernel.source, "candidate.cu", c.kernel.CompileArch(target_.arch()));
      results[i].set_compile_time_s(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      if (!cubin.ok()) {
        return Finish(c, results[i], v1::MEASURE_STATUS_COMPILE_DEVICE, std::string(cubin.status().message()));
      }
      const std::string stem = absl::StrCat(work_dir_->path(), "/cand-", id++);
      if (options_.keep_files) std::ofstream(stem + ".cu") << c.kernel.source;
      c.cubin = stem + ".cubin";
      std::ofstream f(c.cubin, std::ios::binary);
      f.write(cubin->data(), static_cast<std::streamsize>(cubin->size()));
      if (!f) Finish(c, results[i], v1::MEASURE_STATUS_UNKNOWN_ERROR, "cannot write " + c.cubin);
    });
    next_id_ = id;
  }

  // After a fault the server's context is unusable and it exits; after a
  // hang it is killed. Either way a new one takes its place.
  void Restart(const std::string& why) {
    spdlog::warn("cuda: {}; restarting the measurement process", why);
    server_.child.reset();
    absl::StatusOr<Server> s = StartServer(program_, ordinal_);
    if (!s.ok()) {
      spdlog::error("cuda: the measurement process did not come back: {}", std::string(s.status().message()));
      return;
    }
    server_ = std::move(*s);
  }

  void Run(const v1::MeasureOptions& opt, Candidate& c, v1::MeasureResult& r) {
    if (!server_.child) Restart("no measurement process");
    if (!server_.child) return Finish(c, r, v1::MEASURE_STATUS_DEVICE_LOST, "the CUDA measurement process is gone");
    const double timeout = opt.run_timeout_s() > 0 ? opt.run_timeout_s() : kDefaultRunTimeoutS;
    json req = {
        {"cubin", c.cubin},
        {"entry", c.kernel.entry},
        {"grid", c.kernel.grid},
        {"block", c.kernel.block},
        {"dynamic_shared", c.kernel.dynamic_shared_bytes},
        {"data", c.data},
        {"number", std::max(1, opt.number())},
        {"repeat", std::max(1, opt.repeat())},
        {"min_repeat_ms", std::max(0, opt.min_repeat_ms())},
        {"cutoff_s", opt.timing_cutoff_s() > 0 && std::isfinite(opt.timing_cutoff_s()) ? opt.timing_cutoff_s() : 0},
        {"timeout_s", timeout}};
    absl::StatusOr<std::string> line;
    if (absl::Status s = server_.child->Send(req.dump()); !s.ok()) {
      line = s;
    } else {
      // Each timed launch sequence may take `timeout`; the checks and copies
      // add a little.
      const auto limit = std::chrono::milliseconds(static_cast<int64_t>((timeout * (std::max(1, opt.repeat()) + 2) + 30) * 1000));
      line = server_.child->Receive(limit);
    }
    if (!line.ok()) {
      const bool hung = absl::IsDeadlineExceeded(line.status());
      const std::string why = hung ? "the measurement process stopped answering" : std::string(line.status().message());
      Finish(c, r, hung ? v1::MEASURE_STATUS_RUN_TIMEOUT : v1::MEASURE_STATUS_RUNTIME_DEVICE, why);
      return Restart(why);
    }
    json j = json::parse(*line, nullptr, /*allow_exceptions=*/false);
    const std::string status = j.is_object() ? j.value("status", "") : "";
    const std::string error = j.is_object() ? j.value("error", "") : "";
    if (status == "ok") {
      for (const auto& cost : j["costs"]) r.add_costs(cost.get<double>());
      r.set_status(v1::MEASURE_STATUS_OK);
      c.pending = false;
    } else if (status == "wrong_answer") {
      Finish(c, r, v1::MEASURE_STATUS_WRONG_ANSWER, error);
    } else if (status == "instantiation_error") {
      Finish(c, r, v1::MEASURE_STATUS_INSTANTIATION_ERROR, error);
    } else if (status == "runtime_error") {
      Finish(c, r, v1::MEASURE_STATUS_RUNTIME_DEVICE, error);
    } else if (status == "timeout") {
      Finish(c, r, v1::MEASURE_STATUS_RUN_TIMEOUT, error);
    } else {
      Finish(c, r, v1::MEASURE_STATUS_UNKNOWN_ERROR, error.empty() ? "unreadable answer: " + line->substr(0, 200) : error);
    }
    if (j.is_object() && j.value("fatal", false)) Restart(absl::StrCat("the kernel faulted (", error, ")"));
  }

  const BackendOptions options_;
  v1::Target target_;
  Server server_;
  std::unique_ptr<Nvrtc> nvrtc_;
  const std::string program_;
  const int ordinal_;
  const std::unique_ptr<WorkDir> work_dir_;
  MeasureCache cache_{work_dir_->path()};
  uint64_t next_id_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceBackend>> NewCudaBackend(const BackendOptions& options, int ordinal) {
  absl::StatusOr<std::unique_ptr<Nvrtc>> nvrtc = Nvrtc::Load();
  if (!nvrtc.ok()) return absl::FailedPreconditionError(nvrtc.status().message());
  absl::StatusOr<std::string> program = FindMeasureProgram(options);
  if (!program.ok()) return program.status();
  absl::StatusOr<Server> server = StartServer(*program, ordinal);
  if (!server.ok()) return absl::FailedPreconditionError(server.status().message());
  absl::StatusOr<std::unique_ptr<WorkDir>> work_dir = WorkDir::Create(options);
  if (!work_dir.ok()) return work_dir.status();
  v1::Target target = CudaTarget(server->info, (*nvrtc)->version());
  if (!options.device_key.empty()) target.set_device_key(options.device_key);
  spdlog::info("cuda backend: {} ({}, {} SMs, {:.1f} GiB), key {}, {}", target.model(), target.arch(),
               server->info.sm_count, server->info.memory_bytes / double(1 << 30), target.device_key(),
               target.toolchain());
  return std::make_unique<CudaBackend>(options, std::move(target), std::move(*server), std::move(*nvrtc),
                                       std::move(*program), ordinal, std::move(*work_dir));
}

}  // namespace tunefarm::device_agents
