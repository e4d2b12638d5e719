#include "cuda/cuda_measure.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "measure_data.h"
#include "nlohmann/json.hpp"
#include "tunefarm/device_agents/cuda_driver.h"

namespace tunefarm::device_agents {
namespace {

using nlohmann::json;

// 0x7fc00000 is a quiet NaN: an output element the kernel never writes
// fails the check.
constexpr uint32_t kNaNWord = 0x7fc00000u;

void Emit(const json& j) { std::cout << j.dump() << "\n" << std::flush; }

// The inputs of one data file on the device, with the host-side reference.
struct DeviceData {
  std::string path;
  MeasureData host;
  std::vector<CudaDriver::DevicePtr> buffers;
};

class Server {
 public:
  explicit Server(CudaDriver& d) : d_(d) {}
  ~Server() { Drop(); }

  // One request's answer; "fatal" ones end the process.
  json Measure(const json& req) {
    const std::string data_path = req.value("data", ""), cubin_path = req.value("cubin", "");
    const std::string entry = req.value("entry", "");
    std::array<int64_t, 3> grid{1, 1, 1}, block{1, 1, 1};
    for (int i = 0; i < 3; ++i) {
      grid[i] = req.at("grid").at(i).get<int64_t>();
      block[i] = req.at("block").at(i).get<int64_t>();
    }
    const int64_t dynamic_shared = req.value("dynamic_shared", int64_t{0});
    const int64_t number0 = std::max<int64_t>(1, req.value("number", 1));
    const int repeat = std::max(1, req.value("repeat", 1));
    const double min_repeat_ms = std::max(0, req.value("min_repeat_ms", 0));
    const double cutoff_s = req.value("cutoff_s", 0.0), timeout_s = req.value("timeout_s", 10.0);

    if (absl::Status s = Load(data_path); !s.ok()) return Fatal(s);
    std::ifstream f(cubin_path, std::ios::binary);
    if (!f) return Error("runtime_error", "cannot read " + cubin_path, false);
    const std::string image((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    absl::StatusOr<std::shared_ptr<CudaDriver::Module>> m = d_.LoadModule(image, entry);
    if (!m.ok()) return Error("runtime_error", std::string(m.status().message()), false);
    if (dynamic_shared > 0) {
      if (absl::Status s = d_.AllowDynamicShared(**m, dynamic_shared); !s.ok()) {
        return Error("instantiation_error", std::string(s.message()), false);
      }
    }
    const int64_t threads = block[0] * block[1] * block[2];
    if (const int fit = d_.MaxThreadsPerBlock(**m); threads > fit) {
      return Error("instantiation_error",
                   "the kernel uses " + std::to_string(d_.Registers(**m)) + " registers per thread, so at most " +
                       std::to_string(fit) + " threads fit in a block; the config has " + std::to_string(threads),
                   false);
    }
    for (size_t i = 0; i < data_.host.buffers.size(); ++i) {
      if (!data_.host.buffers[i].is_output) continue;
      if (absl::Status s = d_.Fill32(data_.buffers[i], kNaNWord, data_.host.buffers[i].elements); !s.ok()) {
        return Fatal(s);
      }
    }
    auto launches = [&](int64_t n) {
      return [&, n]() -> absl::Status {
        for (int64_t i = 0; i < n; ++i) {
          if (absl::Status s = d_.Launch(**m, grid, block, data_.buffers, dynamic_shared); !s.ok()) return s;
        }
        return absl::OkStatus();
      };
    };
    // The checked warm-up run.
    absl::StatusOr<double> first = d_.Time(launches(1), timeout_s);
    if (!first.ok()) return Fatal(first.status());
    absl::StatusOr<std::string> wrong = Check();
    if (!wrong.ok()) return Fatal(wrong.status());
    if (!wrong->empty()) return Error("wrong_answer", *wrong, false);
    if (cutoff_s > 0 && *first > cutoff_s) return {{"status", "ok"}, {"costs", {*first}}, {"timed_once", true}};
    // TVM's time_evaluator: each repeat runs the kernel `number` times;
    // while one repeat is shorter than min_repeat_ms, `number` grows.
    int64_t number = number0;
    std::vector<double> costs;
    for (int r = 0; r < repeat; ++r) {
      for (;;) {
        absl::StatusOr<double> s = d_.Time(launches(number), timeout_s);
        if (!s.ok()) return Fatal(s.status());
        if (*s * 1000.0 >= min_repeat_ms || number >= (int64_t{1} << 24)) {
          costs.push_back(*s / static_cast<double>(number));
          break;
        }
        const double per_run = std::max(*s / static_cast<double>(number), 1e-9);
        number = std::max(static_cast<int64_t>(min_repeat_ms / 1000.0 / per_run) + 1,
                          static_cast<int64_t>(static_cast<double>(number) * 1.618) + 1);
      }
    }
    // The last timed run's output must be right too (a race shows here).
    wrong = Check();
    if (!wrong.ok()) return Fatal(wrong.status());
    if (!wrong->empty()) return Error("wrong_answer", *wrong + " (after the timed runs: a race?)", false);
    return {{"status", "ok"}, {"costs", costs}, {"number", number}};
  }

 private:
  static json Error(const char* status, const std::string& error, bool fatal) {
    return {{"status", status}, {"error", error}, {"fatal", fatal}};
  }
  // After a launch, any CUDA error may have poisoned the context.
  static json Fatal(const absl::Status& s) {
    return Error(absl::IsDeadlineExceeded(s) ? "timeout" : "runtime_error", std::string(s.message()), true);
  }

  void Drop() {
    for (CudaDriver::DevicePtr p : data_.buffers) d_.Free(p);
    data_ = DeviceData();
  }

  absl::Status Load(const std::string& path) {
    if (path == data_.path) return absl::OkStatus();
    Drop();
    absl::StatusOr<MeasureData> host = ReadMeasureData(path);
    if (!host.ok()) return host.status();
    data_.host = std::move(*host);
    for (const MeasureBuffer& b : data_.host.buffers) {
      absl::StatusOr<CudaDriver::DevicePtr> p = d_.Alloc(b.elements * sizeof(float));
      if (!p.ok()) return p.status();
      data_.buffers.push_back(*p);
      if (!b.is_output) {
        if (absl::Status s = d_.CopyToDevice(*p, b.input.data(), b.elements * sizeof(float)); !s.ok()) return s;
      }
    }
    data_.path = path;
    return absl::OkStatus();
  }

  // Empty when every output matches the reference.
  absl::StatusOr<std::string> Check() {
    for (size_t i = 0; i < data_.host.buffers.size(); ++i) {
      const MeasureBuffer& b = data_.host.buffers[i];
      if (!b.is_output) continue;
      std::vector<float> out(b.elements);
      if (absl::Status s = d_.CopyFromDevice(out.data(), data_.buffers[i], out.size() * sizeof(float)); !s.ok()) {
        return s;
      }
      if (std::string e = CheckOutput(b, out.data()); !e.empty()) return e;
    }
    return std::string();
  }

  CudaDriver& d_;
  DeviceData data_;
};

}  // namespace

int ServeCuda(int ordinal) {
  absl::StatusOr<std::unique_ptr<CudaDriver>> d = CudaDriver::Open(ordinal);
  if (!d.ok()) {
    Emit({{"status", "unavailable"}, {"error", std::string(d.status().message())}});
    return 3;
  }
  Emit({{"status", "ready"}, {"info", CudaInfoToJson((*d)->info())}});
  Server server(**d);
  std::string line;
  while (std::getline(std::cin, line)) {
    json req = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!req.is_object() || !req.contains("grid") || !req.contains("block")) {
      Emit({{"status", "error"}, {"error", "unreadable request: " + line.substr(0, 200)}});
      continue;
    }
    json answer;
    try {
      answer = server.Measure(req);
    } catch (const json::exception& e) {
      answer = {{"status", "error"}, {"error", std::string("bad request: ") + e.what()}};
    }
    Emit(answer);
    if (answer.value("fatal", false)) return 4;
  }
  return 0;
}

}  // namespace tunefarm::device_agents
