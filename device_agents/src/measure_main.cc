// tunefarm-measure: runs one compiled CPU candidate in its own process, so a
// kernel that crashes or hangs costs one result, never the agent.
//
//   tunefarm-measure --lib K.so --symbol NAME --data D.bin
//                    [--number N] [--repeat R] [--min-repeat-ms MS] [--cutoff-s S]
//
// With --cutoff-s, a kernel whose checked first run takes longer than S
// seconds is timed by that run alone: it cannot be near the best, and
// repeating it would only spend the tuning budget.
// Prints one JSON object on stdout: {"status": "ok", "costs": [seconds...]}
// or {"status": "wrong_answer" | "runtime_error" | "error", "error": "..."}.
// The first (untimed) run's output is checked against the reference before
// any time counts; outputs start as NaN, so an element the kernel never
// writes fails the check.
#include <dlfcn.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "cuda/cuda_measure.h"
#include "measure_data.h"
#include "nlohmann/json.hpp"

namespace {

using tunefarm::device_agents::MeasureData;
using KernelFn = void (*)(void* const*);

int Emit(const nlohmann::json& j) {
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
  return 0;
}
int Fail(const char* status, const std::string& error) { return Emit({{"status", status}, {"error", error}}); }

struct AlignedFree {
  void operator()(float* p) const { std::free(p); }
};

}  // namespace

int main(int argc, char** argv) {
  // Die with the agent: a hung kernel must not outlive the process that
  // would have killed it at its deadline.
  const pid_t parent = getppid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) return 1;
  // The CUDA measurement server (cuda/cuda_measure.h).
  if (argc == 3 && std::string(argv[1]) == "--cuda") return tunefarm::device_agents::ServeCuda(std::atoi(argv[2]));
  std::string lib, symbol, data_path;
  long number = 1, repeat = 3, min_repeat_ms = 0;
  double cutoff_s = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--lib") lib = v;
    else if (k == "--symbol") symbol = v;
    else if (k == "--data") data_path = v;
    else if (k == "--number") number = std::strtol(v.c_str(), nullptr, 10);
    else if (k == "--repeat") repeat = std::strtol(v.c_str(), nullptr, 10);
    else if (k == "--min-repeat-ms") min_repeat_ms = std::strtol(v.c_str(), nullptr, 10);
    else if (k == "--cutoff-s") cutoff_s = std::strtod(v.c_str(), nullptr);
    else return Fail("error", "unknown argument " + k);
  }
  if (lib.empty() || symbol.empty() || data_path.empty() || number < 1 || repeat < 1 || min_repeat_ms < 0) {
    return Fail("error", "usage: tunefarm-measure --lib K.so --symbol NAME --data D.bin [--number N] "
                         "[--repeat R] [--min-repeat-ms MS]");
  }

  auto data = tunefarm::device_agents::ReadMeasureData(data_path);
  if (!data.ok()) return Fail("error", std::string(data.status().message()));

  std::vector<std::unique_ptr<float, AlignedFree>> owned;
  std::vector<void*> args;
  for (const auto& b : data->buffers) {
    size_t bytes = (b.elements * sizeof(float) + 63) / 64 * 64;
    float* p = static_cast<float*>(std::aligned_alloc(64, bytes == 0 ? 64 : bytes));
    if (p == nullptr) return Fail("runtime_error", "out of memory for buffer " + b.name);
    owned.emplace_back(p);
    if (b.is_output) {
      std::fill(p, p + b.elements, std::numeric_limits<float>::quiet_NaN());
    } else {
      std::memcpy(p, b.input.data(), b.elements * sizeof(float));
    }
    args.push_back(p);
  }

  void* handle = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) return Fail("runtime_error", std::string("dlopen: ") + dlerror());
  auto fn = reinterpret_cast<KernelFn>(dlsym(handle, symbol.c_str()));
  if (fn == nullptr) return Fail("runtime_error", "symbol " + symbol + " not found in " + lib);

  const auto first_start = std::chrono::steady_clock::now();
  fn(args.data());
  const double first_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - first_start).count();

  // Compares every output with the reference; reports a wrong answer and
  // returns false at the first mismatching buffer.
  auto check = [&](const char* when) -> bool {
    for (size_t i = 0; i < data->buffers.size(); ++i) {
      const auto& b = data->buffers[i];
      if (!b.is_output) continue;
      std::string error = tunefarm::device_agents::CheckOutput(b, static_cast<const float*>(args[i]));
      if (!error.empty()) {
        Fail("wrong_answer", error + when);
        return false;
      }
    }
    return true;
  };
  if (!check("")) return 0;
  if (cutoff_s > 0 && first_s > cutoff_s) {
    return Emit({{"status", "ok"}, {"costs", nlohmann::json::array({first_s})}, {"number", 1}, {"timed_once", true}});
  }

  // TVM's time_evaluator: each repeat runs the kernel `number` times; while
  // one repeat is shorter than min_repeat_ms, `number` grows and the repeat
  // runs again.
  using Clock = std::chrono::steady_clock;
  std::vector<double> costs;
  for (long r = 0; r < repeat; ++r) {
    for (;;) {
      auto t0 = Clock::now();
      for (long i = 0; i < number; ++i) fn(args.data());
      double s = std::chrono::duration<double>(Clock::now() - t0).count();
      if (s * 1000.0 >= static_cast<double>(min_repeat_ms) || number >= (1L << 30)) {
        costs.push_back(s / static_cast<double>(number));
        break;
      }
      double per_run = std::max(s / static_cast<double>(number), 1e-9);
      number = std::max(static_cast<long>(min_repeat_ms / 1000.0 / per_run) + 1,
                        static_cast<long>(static_cast<double>(number) * 1.618) + 1);
    }
  }
  // Threaded kernels must give the same answer every time: the output of
  // the last timed run is checked too.
  if (!check(" (after the timed runs: a race?)")) return 0;
  return Emit({{"status", "ok"}, {"costs", costs}, {"number", number}});
}
