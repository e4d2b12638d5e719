#include "cuda/cuda_backend.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "measure_data.h"
#include "reference_data.h"
#include "spdlog/spdlog.h"
#include "tunefarm/device_agents/cuda_driver.h"
#include "tunefarm/device_agents/cuda_target.h"
#include "tunefarm/device_agents/nvrtc.h"
#include "tunefarm/kernels/codegen_cuda.h"
#include "tunefarm/kernels/template.h"

namespace tunefarm::device_agents {
namespace {

namespace v1 = tunefarm::v1;
using kernels::Template;

constexpr double kDefaultRunTimeoutS = 10;
// 0x7fc00000 is a quiet NaN: an output element the kernel never writes
// fails the check.
constexpr uint32_t kNaNWord = 0x7fc00000u;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Candidate {
  kernels::Workload workload;
  const Template* tmpl = nullptr;
  kernels::CudaKernelSource kernel;
  std::string cubin;
  bool pending = true;  // false once the result is final
};

// A workload's buffers on the device, with the host copy of the reference.
struct DeviceData {
  std::string key;  // workload key#seed
  int generation = -1;
  MeasureData host;
  std::vector<CudaDriver::DevicePtr> buffers;
};

class CudaBackend : public DeviceBackend {
 public:
  CudaBackend(BackendOptions options, v1::Target target, std::unique_ptr<CudaDriver> driver,
              std::unique_ptr<Nvrtc> nvrtc)
      : options_(std::move(options)),
        target_(std::move(target)),
        driver_(std::move(driver)),
        nvrtc_(std::move(nvrtc)) {}

  ~CudaBackend() override { FreeData(); }

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
    absl::StatusOr<kernels::Workload> w = kernels::ParseWorkload(req.workload().key());
    if (!w.ok()) return fail(std::string(w.status().message()));
    const Template* t = kernels::TemplateRegistry::Global().Find(w->op, kernels::DeviceClass::kCuda);
    if (t == nullptr) return fail(absl::StrCat("no CUDA template for operator ", w->op));
    absl::StatusOr<kernels::ConfigSpace> space = t->Space(*w);
    if (!space.ok()) return fail(std::string(space.status().message()));
    absl::StatusOr<std::string> version = Version(*t, *w);
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
    absl::StatusOr<kernels::CudaKernelSource> src = kernels::GenerateCuda(k->func);
    if (!src.ok()) return fail(std::string(src.status().message()));
    // The device's limits, before compiling.
    const CudaDeviceInfo& info = driver_->info();
    const int64_t threads = src->block[0] * src->block[1] * src->block[2];
    if (threads > info.max_threads_per_block) {
      return fail(absl::StrCat(threads, " threads per block exceed this device's ", info.max_threads_per_block));
    }
    if (src->shared_bytes > info.shared_bytes_per_block) {
      return fail(absl::StrCat(src->shared_bytes, " bytes of shared memory per block exceed this device's ",
                               info.shared_bytes_per_block));
    }
    c.workload = std::move(*w);
    c.tmpl = t;
    c.kernel = std::move(*src);
  }

  absl::StatusOr<std::string> Version(const Template& t, const kernels::Workload& w) {
    std::string key = w.Key();
    auto it = versions_.find(key);
    if (it != versions_.end()) return it->second;
    absl::StatusOr<std::string> v = kernels::TemplateVersion(t, w);
    if (v.ok()) versions_[key] = *v;
    return v;
  }

  // NVRTC for the device's own architecture, several candidates at once.
  void CompileAll(std::vector<Candidate>& cands, std::vector<v1::MeasureResult>& results) {
    std::atomic<size_t> next{0};
    auto worker = [&] {
      for (size_t i = next++; i < cands.size(); i = next++) {
        if (!cands[i].pending) continue;
        auto t0 = std::chrono::steady_clock::now();
        absl::StatusOr<std::string> cubin =
            nvrtc_->CompileToCubin(cands[i].kernel.source, "candidate.cu", target_.arch());
        results[i].set_compile_time_s(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        if (!cubin.ok()) {
          Finish(cands[i], results[i], v1::MEASURE_STATUS_COMPILE_DEVICE, std::string(cubin.status().message()));
        } else {
          cands[i].cubin = std::move(*cubin);
        }
      }
    };
    const int n = options_.compile_workers > 0 ? options_.compile_workers
                                               : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    std::vector<std::thread> threads;
    for (int t = 1; t < std::min<int>(n, static_cast<int>(cands.size())); ++t) threads.emplace_back(worker);
    worker();
    for (std::thread& t : threads) t.join();
  }

  void FreeData() {
    if (data_.generation == driver_->generation()) {
      for (CudaDriver::DevicePtr p : data_.buffers) driver_->Free(p);
    }
    data_ = DeviceData();
  }

  // The workload's inputs on the device (the last workload's are freed).
  absl::Status Upload(const Candidate& c, uint64_t seed) {
    const std::string key = absl::StrCat(c.workload.Key(), "#", seed);
    if (data_.key == key && data_.generation == driver_->generation()) return absl::OkStatus();
    MeasureData host;
    if (data_.key == key) {
      host = std::move(data_.host);
    } else {
      absl::StatusOr<MeasureData> built = BuildMeasureData(*c.tmpl, c.workload, seed);
      if (!built.ok()) return built.status();
      host = std::move(*built);
    }
    FreeData();
    data_.host = std::move(host);
    data_.generation = driver_->generation();
    for (const MeasureBuffer& b : data_.host.buffers) {
      absl::StatusOr<CudaDriver::DevicePtr> p = driver_->Alloc(b.elements * sizeof(float));
      if (!p.ok()) return p.status();
      data_.buffers.push_back(*p);
      if (!b.is_output) {
        if (absl::Status s = driver_->CopyToDevice(*p, b.input.data(), b.elements * sizeof(float)); !s.ok()) return s;
      }
    }
    data_.key = key;
    return absl::OkStatus();
  }

  // Empty when every output matches the reference.
  absl::StatusOr<std::string> CheckOutputs() {
    for (size_t i = 0; i < data_.host.buffers.size(); ++i) {
      const MeasureBuffer& b = data_.host.buffers[i];
      if (!b.is_output) continue;
      std::vector<float> out(b.elements);
      if (absl::Status s = driver_->CopyFromDevice(out.data(), data_.buffers[i], out.size() * sizeof(float)); !s.ok()) {
        return s;
      }
      if (std::string e = CheckOutput(b, out.data()); !e.empty()) return e;
    }
    return std::string();
  }

  // A fault leaves the context unusable: record it and rebuild the context.
  void Fault(Candidate& c, v1::MeasureResult& r, v1::MeasureStatus status, const absl::Status& s) {
    spdlog::warn("cuda: {} faulted ({}); rebuilding the context", c.workload.Key(), std::string(s.message()));
    Finish(c, r, status, std::string(s.message()));
    if (absl::Status reset = driver_->Reset(); !reset.ok()) {
      spdlog::error("cuda: the context could not be rebuilt: {}", std::string(reset.message()));
    }
    data_ = DeviceData();  // its memory went with the context
  }

  void Run(const v1::MeasureOptions& opt, Candidate& c, v1::MeasureResult& r) {
    if (absl::Status s = Upload(c, opt.seed()); !s.ok()) {
      return Fault(c, r, v1::MEASURE_STATUS_RUNTIME_DEVICE, s);
    }
    absl::StatusOr<std::shared_ptr<CudaDriver::Module>> m = driver_->LoadModule(c.cubin, c.kernel.entry);
    if (!m.ok()) return Finish(c, r, v1::MEASURE_STATUS_RUNTIME_DEVICE, std::string(m.status().message()));
    const int64_t threads = c.kernel.block[0] * c.kernel.block[1] * c.kernel.block[2];
    if (const int fit = driver_->MaxThreadsPerBlock(**m); threads > fit) {
      return Finish(c, r, v1::MEASURE_STATUS_INSTANTIATION_ERROR,
                    absl::StrCat("the kernel uses ", driver_->Registers(**m), " registers per thread, so at most ", fit,
                                 " threads fit in a block; the config has ", threads));
    }
    for (size_t i = 0; i < data_.host.buffers.size(); ++i) {
      if (!data_.host.buffers[i].is_output) continue;
      if (absl::Status s = driver_->Fill32(data_.buffers[i], kNaNWord, data_.host.buffers[i].elements); !s.ok()) {
        return Fault(c, r, v1::MEASURE_STATUS_RUNTIME_DEVICE, s);
      }
    }
    const double timeout = opt.run_timeout_s() > 0 ? opt.run_timeout_s() : kDefaultRunTimeoutS;
    auto launches = [&](int64_t n) {
      return [&, n]() -> absl::Status {
        for (int64_t i = 0; i < n; ++i) {
          if (absl::Status s = driver_->Launch(**m, c.kernel.grid, c.kernel.block, data_.buffers); !s.ok()) return s;
        }
        return absl::OkStatus();
      };
    };
    // The checked warm-up run.
    absl::StatusOr<double> first = driver_->Time(launches(1), timeout);
    if (!first.ok()) {
      return Fault(c, r,
                   absl::IsDeadlineExceeded(first.status()) ? v1::MEASURE_STATUS_RUN_TIMEOUT
                                                            : v1::MEASURE_STATUS_RUNTIME_DEVICE,
                   first.status());
    }
    absl::StatusOr<std::string> wrong = CheckOutputs();
    if (!wrong.ok()) return Fault(c, r, v1::MEASURE_STATUS_RUNTIME_DEVICE, wrong.status());
    if (!wrong->empty()) return Finish(c, r, v1::MEASURE_STATUS_WRONG_ANSWER, *wrong);
    if (opt.timing_cutoff_s() > 0 && *first > opt.timing_cutoff_s()) {
      r.add_costs(*first);
      r.set_status(v1::MEASURE_STATUS_OK);
      c.pending = false;
      return;
    }
    // TVM's time_evaluator: each repeat runs the kernel `number` times;
    // while one repeat is shorter than min_repeat_ms, `number` grows.
    int64_t number = std::max(1, opt.number());
    for (int rep = 0; rep < std::max(1, opt.repeat()); ++rep) {
      for (;;) {
        absl::StatusOr<double> s = driver_->Time(launches(number), timeout);
        if (!s.ok()) {
          return Fault(c, r,
                       absl::IsDeadlineExceeded(s.status()) ? v1::MEASURE_STATUS_RUN_TIMEOUT
                                                            : v1::MEASURE_STATUS_RUNTIME_DEVICE,
                       s.status());
        }
        if (*s * 1000.0 >= opt.min_repeat_ms() || number >= (int64_t{1} << 24)) {
          r.add_costs(*s / static_cast<double>(number));
          break;
        }
        const double per_run = std::max(*s / static_cast<double>(number), 1e-9);
        number = std::max(static_cast<int64_t>(opt.min_repeat_ms() / 1000.0 / per_run) + 1,
                          static_cast<int64_t>(static_cast<double>(number) * 1.618) + 1);
      }
    }
    // The last timed run's output must be right too (a race shows here).
    wrong = CheckOutputs();
    if (!wrong.ok()) return Fault(c, r, v1::MEASURE_STATUS_RUNTIME_DEVICE, wrong.status());
    if (!wrong->empty()) {
      r.clear_costs();
      return Finish(c, r, v1::MEASURE_STATUS_WRONG_ANSWER, *wrong + " (after the timed runs: a race?)");
    }
    r.set_status(v1::MEASURE_STATUS_OK);
    c.pending = false;
  }

  const BackendOptions options_;
  v1::Target target_;
  std::unique_ptr<CudaDriver> driver_;
  std::unique_ptr<Nvrtc> nvrtc_;
  std::map<std::string, std::string> versions_;  // workload key -> template version
  DeviceData data_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceBackend>> NewCudaBackend(const BackendOptions& options, int ordinal) {
  absl::StatusOr<std::unique_ptr<CudaDriver>> driver = CudaDriver::Open(ordinal);
  if (!driver.ok()) return absl::FailedPreconditionError(driver.status().message());
  absl::StatusOr<std::unique_ptr<Nvrtc>> nvrtc = Nvrtc::Load();
  if (!nvrtc.ok()) return absl::FailedPreconditionError(nvrtc.status().message());
  v1::Target target = CudaTarget((*driver)->info(), (*nvrtc)->version());
  if (!options.device_key.empty()) target.set_device_key(options.device_key);
  spdlog::info("cuda backend: {} ({}, {} SMs, {:.1f} GiB), key {}, {}", target.model(), target.arch(),
               (*driver)->info().sm_count, (*driver)->info().memory_bytes / double(1 << 30), target.device_key(),
               target.toolchain());
  return std::make_unique<CudaBackend>(options, std::move(target), std::move(*driver), std::move(*nvrtc));
}

}  // namespace tunefarm::device_agents
