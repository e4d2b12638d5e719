// The `tunefarm` command.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

#include <google/protobuf/util/json_util.h>

#include "CLI/CLI.hpp"
#include "nlohmann/json.hpp"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"
#include "tunefarm/database/database.h"
#include "tunefarm/device_agents/backend.h"
#include "tunefarm/device_agents/cpu_target.h"
#include "tunefarm/kernels/template.h"
#include "tunefarm/kernels/workload.h"
#include "tunefarm/tuner/strategy.h"
#include "tunefarm/tuner/tune.h"
#include "errors.h"
#include "farm.h"

namespace {

namespace v1 = tunefarm::v1;
using nlohmann::ordered_json;

using tunefarm::cli::Error;
using tunefarm::cli::kExitFailure;
using tunefarm::cli::kExitUsage;

int StatusExit(const absl::Status& s) {
  bool usage = s.code() == absl::StatusCode::kInvalidArgument || s.code() == absl::StatusCode::kNotFound;
  return Error(usage ? kExitUsage : kExitFailure, s.message());
}

std::string Human(double seconds) {
  char buf[32];
  if (seconds >= 1) std::snprintf(buf, sizeof buf, "%.3f s", seconds);
  else if (seconds >= 1e-3) std::snprintf(buf, sizeof buf, "%.3f ms", seconds * 1e3);
  else std::snprintf(buf, sizeof buf, "%.1f us", seconds * 1e6);
  return buf;
}

std::string IsoTime(int64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// A one-line progress bar on a terminal; on anything else a plain line at
// every tenth of the work, so logs of long runs still show progress.
class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled), tty_(isatty(STDERR_FILENO) == 1) {}
  void Update(const tunefarm::tuner::TuneProgress& p) {
    if (!enabled_ || p.trials_total <= 0) return;
    if (tty_) {
      constexpr int kWidth = 30;
      int filled = p.trials_done * kWidth / p.trials_total;
      std::fprintf(stderr, "\r[%s%s] %d/%d trials  best %.1f GFLOP/s  errors %d ",
                   std::string(filled, '#').c_str(), std::string(kWidth - filled, '.').c_str(), p.trials_done,
                   p.trials_total, p.best_gflops, p.errors);
      std::fflush(stderr);
      dirty_ = true;
    } else if (int tenth = p.trials_done * 10 / p.trials_total; tenth > last_tenth_) {
      last_tenth_ = tenth;
      std::fprintf(stderr, "progress: %d/%d trials, best %.1f GFLOP/s, %d errors\n", p.trials_done,
                   p.trials_total, p.best_gflops, p.errors);
    }
  }
  void Finish() {
    if (dirty_) std::fprintf(stderr, "\n");
    dirty_ = false;
  }

 private:
  bool enabled_, tty_, dirty_ = false;
  int last_tenth_ = 0;
};

// The first Ctrl-C asks the tuning loop to stop after the batch in flight is
// recorded; the second one ends the process at once (default action).
std::atomic<bool> g_stop{false};

extern "C" void OnInterrupt(int sig) {
  g_stop.store(true);
  static const char kMsg[] = "\ntunefarm: interrupted; finishing the current batch (Ctrl-C again to abort)\n";
  ssize_t ignored = write(STDERR_FILENO, kMsg, sizeof kMsg - 1);
  (void)ignored;
  signal(sig, SIG_DFL);
}

struct Common {
  std::string db_path;
  bool json = false;
};

absl::StatusOr<std::unique_ptr<tunefarm::database::Database>> OpenDb(const std::string& path, bool read_only) {
  tunefarm::database::OpenOptions o;
  o.read_only = read_only;
  o.migrate_older = read_only;
  return tunefarm::database::Database::Open(path, o);
}

// ---- tune ----

struct TuneArgs {
  std::string workload;
  std::vector<std::string> pins;
  std::string device = "cpu";
  std::string key;
  int workers = 0;
  bool keep_files = false;
  tunefarm::tuner::TuneOptions options;
  int number = 1, repeat = 3, min_repeat_ms = 20;
  double build_timeout = 30, run_timeout = 10;
};

// `tune`, or with record_samples > 0 `record`: the same loop measuring a
// random sample, or the whole space in index order when it is that small.
int RunTune(const Common& common, TuneArgs& a, int record_samples) {
  absl::StatusOr<tunefarm::kernels::Workload> w = tunefarm::kernels::ParseWorkload(a.workload);
  if (!w.ok()) return StatusExit(w.status());
  auto pins = tunefarm::kernels::ParsePins(a.pins);
  if (!pins.ok()) return StatusExit(pins.status());
  a.options.pins = *pins;
  if (record_samples > 0) {
    // "cuda:1" measures with the CUDA templates; "cpu" and "replay:..." with the CPU ones.
    const auto device = tunefarm::kernels::DeviceClassFromName(a.device.substr(0, a.device.find(':')));
    const auto* t = tunefarm::kernels::TemplateRegistry::Global().Find(
        w->op, device.value_or(tunefarm::kernels::DeviceClass::kCpu));
    if (t == nullptr) return Error(kExitUsage, "no template for operator " + w->op + " on device " + a.device);
    auto space = t->Space(*w);
    if (space.ok() && !pins->empty()) space = space->Pin(*pins);
    if (!space.ok()) return StatusExit(space.status());
    bool all = space->size() <= static_cast<uint64_t>(record_samples);
    a.options.strategy = all ? "grid" : "random";
    a.options.trials = all ? static_cast<int>(space->size()) : record_samples;
    a.options.transfer = false;
    a.options.timing_cutoff_factor = 0;  // a recording times every config fully
  }
  a.options.measure = tunefarm::tuner::DefaultMeasureOptions();
  a.options.measure.set_number(a.number);
  a.options.measure.set_repeat(a.repeat);
  a.options.measure.set_min_repeat_ms(a.min_repeat_ms);
  a.options.measure.set_build_timeout_s(a.build_timeout);
  a.options.measure.set_run_timeout_s(a.run_timeout);

  tunefarm::device_agents::BackendOptions bo;
  bo.device_key = a.key;
  bo.compile_workers = a.workers;
  bo.keep_files = a.keep_files;
  auto backend = tunefarm::device_agents::NewBackend(a.device, bo);
  if (!backend.ok()) return StatusExit(backend.status());
  auto db = OpenDb(common.db_path, false);
  if (!db.ok()) return Error(kExitFailure, db.status().message());

  ordered_json spec = {{"workload", w->Key()},     {"device", a.device},
                       {"device_key", (*backend)->target().device_key()},
                       {"strategy", a.options.strategy}, {"trials", a.options.trials},
                       {"batch_size", a.options.batch_size}, {"seed", a.options.seed}};
  auto job = (*db)->CreateJob(spec.dump());
  if (!job.ok()) return Error(kExitFailure, job.status().message());
  a.options.job_id = *job;

  a.options.stop = &g_stop;
  signal(SIGINT, OnInterrupt);
  signal(SIGTERM, OnInterrupt);
  ProgressBar bar(true);
  auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<tunefarm::tuner::TuneReport> r =
      tunefarm::tuner::TuneTask(*w, **backend, **db, a.options, [&](const auto& p) { bar.Update(p); });
  bar.Finish();
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const char* state = !r.ok() ? "failed" : r->interrupted ? "cancelled" : "done";
  (void)(*db)->UpdateJob(*job, state, r.ok() ? "" : std::string(r.status().message()));
  if (!r.ok()) return StatusExit(r.status());

  const double best_s = r->best ? r->best->min_cost : 0;
  auto gflops = [&](double s) { return s > 0 ? r->flops / s / 1e9 : 0.0; };
  if (common.json) {
    ordered_json j = {{"workload", r->workload_key},
                      {"device_key", r->device_key},
                      {"template_version", r->template_version},
                      {"space_size", r->space_size},
                      {"job_id", *job},
                      {"trials", r->trials_run},
                      {"errors", r->errors},
                      {"confirmed", r->confirmed},
                      {"early_stopped", r->early_stopped},
                      {"exhausted", r->exhausted},
                      {"interrupted", r->interrupted},
                      {"seconds", elapsed},
                      {"database", common.db_path}};
    if (r->best) {
      j["best"] = {{"record_id", r->best->id},
                   {"config_index", r->best->config_index},
                   {"config", ordered_json::parse(r->best->config_json)},
                   {"seconds", best_s},
                   {"gflops", gflops(best_s)}};
    } else {
      j["best"] = nullptr;
    }
    if (r->default_seconds) {
      j["default"] = {{"seconds", *r->default_seconds}, {"gflops", gflops(*r->default_seconds)}};
      if (r->best) j["speedup_over_default"] = *r->default_seconds / best_s;
    } else {
      j["default"] = {{"error", r->default_error.value_or("not measured")}};
    }
    std::cout << j.dump(2) << "\n";
    return r->best ? 0 : kExitFailure;
  }
  std::printf("Tuned %s on %s: %d trials (%d failed) in %.1f s\n", r->workload_key.c_str(), r->device_key.c_str(),
              r->trials_run, r->errors, elapsed);
  if (r->exhausted) std::printf("  the config space (%llu points) is fully measured\n",
                                static_cast<unsigned long long>(r->space_size));
  if (r->interrupted) std::printf("  interrupted: every finished trial is in the log; run again to continue\n");
  if (r->early_stopped) std::printf("  stopped early: no improvement in %d trials\n", a.options.early_stopping);
  if (r->confirmed > 0)
    std::printf("  the best %d configs measured again; their records keep every measurement\n", r->confirmed);
  if (!r->best) {
    std::printf("No candidate passed its check; see `tunefarm best` or rerun with -v for errors.\n");
    return kExitFailure;
  }
  std::printf("Best:     %s  %.2f GFLOP/s  (record %lld)\n", Human(best_s).c_str(), gflops(best_s),
              static_cast<long long>(r->best->id));
  std::printf("Config:   %s\n", r->best_config.c_str());
  if (r->default_seconds) {
    std::printf("Default:  %s  %.2f GFLOP/s  -> speedup %.2fx\n", Human(*r->default_seconds).c_str(),
                gflops(*r->default_seconds), *r->default_seconds / best_s);
  } else {
    std::printf("Default:  failed: %s\n", r->default_error.value_or("not measured").c_str());
  }
  std::printf("Database: %s\n", common.db_path.c_str());
  return 0;
}

// ---- best ----

int RunBest(const Common& common, const std::string& workload, const std::string& device_key, int top) {
  absl::StatusOr<tunefarm::kernels::Workload> w = tunefarm::kernels::ParseWorkload(workload);
  if (!w.ok()) return StatusExit(w.status());
  if (top < 1) return Error(kExitUsage, "--top must be at least 1");
  if (access(common.db_path.c_str(), F_OK) != 0) {
    return Error(kExitFailure, "no tuning log at " + common.db_path + " (run `tunefarm tune` first, or pass --db)");
  }
  auto db = OpenDb(common.db_path, true);
  if (!db.ok()) return Error(kExitFailure, db.status().message());
  auto records = (*db)->BestRecords(w->Key(), device_key, top);
  if (!records.ok()) return Error(kExitFailure, records.status().message());
  const tunefarm::kernels::Template* t = tunefarm::kernels::TemplateRegistry::Global().Find(w->op);
  const double flops = t->Flops(*w);
  if (common.json) {
    ordered_json list = ordered_json::array();
    for (const auto& r : *records) {
      list.push_back({{"record_id", r.id},
                      {"device_key", r.device_key},
                      {"template_version", r.template_version},
                      {"config_index", r.config_index},
                      {"config", ordered_json::parse(r.config_json, nullptr, false)},
                      {"seconds", r.min_cost},
                      {"mean_seconds", r.mean_cost},
                      {"costs", r.costs},
                      {"gflops", flops / r.min_cost / 1e9},
                      {"compile_time_s", r.compile_time_s},
                      {"toolchain", r.toolchain},
                      {"timestamp", IsoTime(r.timestamp_ms)},
                      {"job_id", r.job_id ? ordered_json(*r.job_id) : ordered_json(nullptr)}});
    }
    std::cout << ordered_json{{"workload", w->Key()}, {"device_key", device_key}, {"records", list}}.dump(2) << "\n";
    return records->empty() ? kExitFailure : 0;
  }
  if (records->empty()) {
    return Error(kExitFailure, "no successful record for " + w->Key() +
                                   (device_key.empty() ? std::string() : " on " + device_key) + " in " +
                                   common.db_path);
  }
  std::printf("%-4s %-12s %-10s %-20s %-8s %s\n", "rank", "time", "GFLOP/s", "device", "record", "config");
  int rank = 1;
  for (const auto& r : *records) {
    std::string cfg;
    auto j = ordered_json::parse(r.config_json, nullptr, false);
    if (j.is_object()) {
      for (auto& [k, v] : j.items()) cfg += (cfg.empty() ? "" : " ") + k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
    }
    std::printf("%-4d %-12s %-10.2f %-20s %-8lld %s\n", rank++, Human(r.min_cost).c_str(), flops / r.min_cost / 1e9,
                r.device_key.c_str(), static_cast<long long>(r.id), cfg.c_str());
  }
  return 0;
}

// ---- target ----

// `device`: "cpu" (detected without starting a backend) or a device class
// whose backend describes its device, e.g. "cuda".
int RunTarget(const Common& common, const std::string& device) {
  v1::Target t;
  if (device == "cpu") {
    t = tunefarm::device_agents::DetectCpuTarget();
  } else {
    auto backend = tunefarm::device_agents::NewBackend(device);
    if (!backend.ok()) return StatusExit(backend.status());
    t = (*backend)->target();
  }
  if (common.json) {
    std::string s;
    google::protobuf::util::JsonPrintOptions o;
    o.add_whitespace = true;
    o.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(t, &s, o);
    std::cout << s;
    return 0;
  }
  std::printf("device key: %s\nmodel:      %s\narch:       %s\n", t.device_key().c_str(), t.model().c_str(),
              t.arch().c_str());
  for (const auto& [k, v] : t.limits()) std::printf("%-11s %lld\n", (k + ":").c_str(), static_cast<long long>(v));
  std::string f;
  for (const auto& x : t.features()) f += (f.empty() ? "" : " ") + x;
  std::printf("features:   %s\n", f.c_str());
  if (!t.toolchain().empty()) std::printf("toolchain:  %s\n", t.toolchain().c_str());
  return 0;
}

// Empty when `value` is "name" or "name:ARG" for a device class this build
// has; otherwise why not.
std::string CheckDeviceClass(const std::string& value) {
  std::string name = value.substr(0, value.find(':'));
  for (const std::string& n : tunefarm::device_agents::BackendNames()) {
    if (n == name) return "";
  }
  std::string known;
  for (const std::string& n : tunefarm::device_agents::BackendNames()) known += (known.empty() ? "" : ", ") + n;
  return "unknown device class '" + name + "' (available: " + known + ")";
}

CLI::Validator DeviceClassValidator() {
  return CLI::Validator([](std::string& value) { return CheckDeviceClass(value); }, "DEVICE");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tunefarm: autotune tensor kernels on the devices they run on, and keep every measurement."};
  app.require_subcommand(1);
  app.fallthrough();  // global flags (-v, --log-level) work after the subcommand too
  std::string log_level = "warn";
  bool verbose = false;
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")->default_val("warn");
  app.add_flag("-v,--verbose", verbose, "same as --log-level info");

  Common common;
  const std::string db_help =
      "tuning log (SQLite); default $TUNEFARM_DB, else $XDG_DATA_HOME/tunefarm/tunefarm.db";
  auto add_common = [&](CLI::App* sub) {
    sub->add_option("--db", common.db_path, db_help);
    sub->add_flag("--json", common.json, "print one JSON document on stdout and nothing else");
  };

  TuneArgs tune;
  bool no_transfer = false;
  // Options `tune` and `record` share: where and how candidates are measured.
  auto add_measure_options = [&](CLI::App* sub) {
    sub->add_option("workload", tune.workload, "canonical workload text, e.g. 'matmul(M=512,N=512,K=512)'")
        ->required();
    sub->add_option("--pin", tune.pins, "fix a knob to one value, e.g. --pin compiler=clang (repeatable)");
    sub->add_option("--batch-size", tune.options.batch_size, "candidates compiled in parallel per round")
        ->default_val(8)->check(CLI::Range(1, 4096));
    sub->add_option("--seed", tune.options.seed, "seed of the search strategy")->default_val(0);
    sub->add_option("--device", tune.device,
                    "device to measure on: cpu, cuda[:GPU] (an NVIDIA GPU, through the CUDA driver and NVRTC), "
                    "or replay:LOG.db[#KEY] to answer from recorded measurements; "
                    "with --server, the device key of the farm's agents")
        ->default_val("cpu");
    sub->add_option("--key", tune.key, "device key to record under (default: detected, see `tunefarm target`)");
    sub->add_option("--workers", tune.workers, "parallel compile jobs (default: one per core)")
        ->check(CLI::NonNegativeNumber);
    sub->add_option("--number", tune.number, "kernel runs per measurement")->default_val(1)
        ->check(CLI::Range(1, 1000000));
    sub->add_option("--repeat", tune.repeat, "measurements per candidate")->default_val(3)->check(CLI::Range(1, 1000));
    sub->add_option("--min-repeat-ms", tune.min_repeat_ms, "raise --number until a measurement lasts this long")
        ->default_val(20)->check(CLI::Range(0, 60000));
    sub->add_option("--build-timeout", tune.build_timeout, "seconds a compile may take")->default_val(30)
        ->check(CLI::Range(0.1, 3600.0));
    sub->add_option("--run-timeout", tune.run_timeout, "seconds a measurement process may take")->default_val(10)
        ->check(CLI::Range(0.1, 3600.0));
    sub->add_flag("--keep-files", tune.keep_files, "keep generated sources and binaries (debugging)");
    sub->add_option("--timing-cutoff", tune.options.timing_cutoff_factor,
                    "time a candidate once when its checked run is this many times slower than the best so far "
                    "(0: always --repeat times)")
        ->default_val(3.0)->check(CLI::Range(0.0, 1e6));
    add_common(sub);
  };

  CLI::App* tune_cmd = app.add_subcommand("tune", "tune one workload on a device (default: this machine's CPU)");
  tune_cmd->footer(
      "Example: tunefarm tune 'matmul(M=512,N=512,K=512)' --trials 200\n"
      "Configs already in the log for this workload and device are skipped, so running again continues the search.");
  tune_cmd->add_option("--trials", tune.options.trials, "new configs to measure")->default_val(200)
      ->check(CLI::Range(1, 10000000));
  tune_cmd->add_option("--strategy", tune.options.strategy,
                       "search strategy: xgb (cost model + simulated annealing), ga, random or grid")
      ->default_val("xgb")->check(CLI::IsMember(tunefarm::tuner::StrategyNames()));
  tune_cmd->add_option("--objective", tune.options.objective,
                       "xgb cost model: reg (regression on throughput normalised per task) or rank (pairwise ranking, one group per task)")
      ->default_val("reg")->check(CLI::IsMember({"reg", "rank"}));
  tune_cmd->add_flag("--no-transfer", no_transfer,
                     "do not warm-start the cost model from other workloads' records on this device key");
  tune_cmd->add_option("--early-stopping", tune.options.early_stopping,
                       "stop after N trials without improvement (0: off)")->default_val(0)->check(CLI::NonNegativeNumber);
  tune_cmd
      ->add_option("--confirm", tune.options.confirm,
                   "measure the best N configs again once the search ends, in three interleaved rounds, so that "
                   "one lucky measurement cannot pick the winner (0: off)")
      ->default_val(5)
      ->check(CLI::Range(0, 100));
  add_measure_options(tune_cmd);

  int record_samples = 1000;
  CLI::App* record_cmd = app.add_subcommand(
      "record", "measure a dense sample of a space (all of it when small), e.g. for --device replay:LOG.db");
  record_cmd->footer(
      "Example: tunefarm record 'matmul(M=128,N=128,K=128)' --pin compiler=clang --pin cflags=-O3 \\\n"
      "           --pin order=jc,pc,ic --samples 3000 --db space.db");
  record_cmd->add_option("--samples", record_samples,
                         "configs to measure; the whole (pinned) space in index order when it is no larger")
      ->default_val(1000)->check(CLI::Range(1, 10000000));
  add_measure_options(record_cmd);

  std::string best_workload, best_device;
  int best_top = 1;
  CLI::App* best_cmd =
      app.add_subcommand("best", "show the best tuned config(s) of a workload, ranked by their fastest run");
  best_cmd->add_option("workload", best_workload, "canonical workload text")->required();
  best_cmd->add_option("--device", best_device, "device key (default: any device)");
  best_cmd->add_option("-k,--top", best_top, "how many records")->default_val(1)->check(CLI::Range(1, 1000));
  add_common(best_cmd);

  std::string target_device = "cpu";
  CLI::App* target_cmd = app.add_subcommand("target", "show what a device of this machine is detected as");
  target_cmd->add_flag("--json", common.json, "print JSON");
  target_cmd->add_option("--device", target_device, "cpu, or cuda[:GPU] (an NVIDIA GPU)")
      ->default_val("cpu")
      ->check(DeviceClassValidator());

  std::string export_workload, export_device, export_out, import_file, export_format = "jsonl";
  bool import_atomic = false;
  tunefarm::cli::LibraryArgs library;
  CLI::App* export_cmd = app.add_subcommand(
      "export", "write tuning records as JSON lines, or a kernel library for a device (from --db or a server)");
  export_cmd->add_option("--format", export_format, "jsonl: the records; library: C kernels + header for --device")
      ->default_val("jsonl")->check(CLI::IsMember({"jsonl", "library"}));
  export_cmd->add_option("--workload", export_workload, "jsonl: only this workload");
  export_cmd->add_option("--device", export_device, "jsonl: only this device key; library: the device (required)");
  export_cmd->add_option("--workloads", library.workloads_file, "library: file with one workload per line (required)");
  export_cmd->add_option("--prefix", library.prefix, "library: prefix of its C symbols and header")->default_val("tunefarm");
  export_cmd->add_option("--device-class", library.device_class,
                         "library: cpu (C kernels) or cuda (CUDA kernels with host launchers, for nvcc); "
                         "default: what the log's records of --device were measured on");
  export_cmd->add_flag("--strict", library.strict, "library: exit 1 when a workload was not tuned on --device");
  export_cmd->add_option("-o,--output", export_out, "jsonl: file to write (default: stdout); library: directory");
  export_cmd->footer(
      "A library has one C kernel per workload: the best record of --device, else of another device of the same "
      "architecture family (ISA level, e.g. avx512), else the template's default config; a table says which.");
  export_cmd->add_option("--db", common.db_path, db_help);
  CLI::App* import_cmd = app.add_subcommand("import", "add JSON-lines records to a tuning log (--db or a server)");
  import_cmd->add_option("file", import_file, "JSON lines, as `tunefarm export` writes them")->required();
  import_cmd->add_flag("--atomic", import_atomic, "import nothing if any line is bad (database files only)");
  import_cmd->add_option("--db", common.db_path, db_help);
  import_cmd->footer("Records already present are skipped; bad lines are reported by number and the rest imported.");

  // ---- the farm ----
  tunefarm::cli::ClientArgs client;
  auto add_client = [&](CLI::App* sub, bool with_json = true) {
    sub->add_option("--server", client.server, "tuning server host:port (default: $TUNEFARM_SERVER)");
    sub->add_option("--token-file", client.token_file, "file holding the server's token (default: $TUNEFARM_TOKEN_FILE)");
    sub->add_option("--tls-ca", client.tls_ca, "PEM file of the CA that signed the server's certificate");
    if (with_json) sub->add_flag("--json", client.json, "print one JSON document on stdout and nothing else");
  };
  tune_cmd->add_option("--server", client.server,
                       "run as a one-task job on this tuning server instead of here (or $TUNEFARM_SERVER with --remote)");
  tune_cmd->add_option("--token-file", client.token_file, "file holding the server's token");
  tune_cmd->add_option("--tls-ca", client.tls_ca, "PEM file of the CA that signed the server's certificate");
  best_cmd->add_option("--server", client.server, "ask this tuning server instead of a local database");
  best_cmd->add_option("--token-file", client.token_file, "file holding the server's token");
  best_cmd->add_option("--tls-ca", client.tls_ca, "PEM file of the CA that signed the server's certificate");

  tunefarm::tuner::ServerOptions serve;
  std::string serve_token_file, serve_tls_cert, serve_tls_key;
  CLI::App* serve_cmd = app.add_subcommand("serve", "run the tuning server: jobs, device registry, the tuning log");
  serve_cmd->add_option("--listen", serve.listen, "host:port to listen on (port 0: any free port)")
      ->default_val("127.0.0.1:7070");
  serve_cmd->add_option("--db", serve.db_path, db_help);
  serve_cmd->add_option("--token-file", serve_token_file, "agents and clients must present the token in this file");
  serve_cmd->add_option("--tls-cert", serve_tls_cert, "PEM certificate chain (with --tls-key: serve TLS)");
  serve_cmd->add_option("--tls-key", serve_tls_key, "PEM private key");
  serve_cmd->add_option("--heartbeat-ms", serve.heartbeat_interval_ms, "heartbeat interval; silent agents are dropped after three")
      ->default_val(2000)->check(CLI::Range(100, 600000));
  serve_cmd->footer("Example: tunefarm serve --listen 0.0.0.0:7070 --db /var/lib/tunefarm/log.db --token-file /etc/tunefarm/token");

  std::string agent_device = "cpu", agent_key, agent_token_file, agent_tls_ca, agent_server;
  int agent_workers = 0, agent_replay_ms = 0;
  CLI::App* agent_cmd = app.add_subcommand("agent", "attach this machine's device to a tuning server and measure for it");
  agent_cmd->add_option("--server", agent_server, "tuning server host:port (default: $TUNEFARM_SERVER)");
  agent_cmd->add_option("--device", agent_device, "device class: cpu, cuda[:GPU], or replay:LOG.db[#KEY]")
      ->default_val("cpu")->check(DeviceClassValidator());
  agent_cmd->add_option("--key", agent_key, "device key to serve under (default: detected)");
  agent_cmd->add_option("--token-file", agent_token_file, "file holding the server's token");
  agent_cmd->add_option("--tls-ca", agent_tls_ca, "PEM file of the CA that signed the server's certificate");
  agent_cmd->add_option("--workers", agent_workers, "parallel compile jobs (default: one per core)")
      ->check(CLI::Range(0, 1024));
  agent_cmd->add_option("--replay-latency-ms", agent_replay_ms, "replay device: milliseconds per measurement")
      ->default_val(0)->check(CLI::Range(0, 600000));
  agent_cmd->footer("SIGTERM finishes the batch being measured and exits; a second SIGTERM exits at once.");

  add_client(export_cmd, false);
  add_client(import_cmd, false);
  CLI::App* devices_cmd = app.add_subcommand("devices", "list device keys, their agents and queues on a server");
  add_client(devices_cmd);
  std::string spec_file;
  bool submit_watch = false;
  CLI::App* submit_cmd = app.add_subcommand("submit", "submit a batch tuning job (a JSON job spec) to a server");
  submit_cmd->add_option("spec", spec_file, "job spec file (JSON)")->required();
  submit_cmd->add_flag("-w,--watch", submit_watch, "follow the job until it ends");
  submit_cmd->footer(
      "Spec example:\n"
      "  {\"name\": \"resnet\", \"device_key\": \"amd-epyc-avx512\",\n"
      "   \"workloads\": [\"matmul(M=512,N=512,K=512)\", \"matmul(M=128,N=3072,K=768)\"],\n"
      "   \"total_trials\": 400, \"strategy\": \"xgb\", \"batch_size\": 8, \"priority\": 0,\n"
      "   \"measure\": {\"repeat\": 3, \"min_repeat_ms\": 20}}\n"
      "Budget: trials_per_task (each task at most that many) or total_trials (shared; tasks that\n"
      "still improve get more).");
  add_client(submit_cmd);
  bool jobs_all = false;
  CLI::App* jobs_cmd = app.add_subcommand("jobs", "list jobs on a server");
  jobs_cmd->add_flag("-a,--all", jobs_all, "include finished jobs");
  add_client(jobs_cmd);
  int64_t job_id = 0;
  CLI::App* watch_cmd = app.add_subcommand("watch", "follow a job's progress until it ends");
  watch_cmd->add_option("job", job_id, "job id")->required()->check(CLI::PositiveNumber);
  add_client(watch_cmd);
  CLI::App* cancel_cmd = app.add_subcommand("cancel", "cancel a job (the batches in flight finish first)");
  cancel_cmd->add_option("job", job_id, "job id")->required()->check(CLI::PositiveNumber);
  add_client(cancel_cmd);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : kExitUsage;
  }

  auto logger = spdlog::stderr_color_mt("tunefarm");
  spdlog::set_default_logger(logger);
  spdlog::set_level(verbose ? spdlog::level::info : spdlog::level::from_str(log_level));
  if (common.db_path.empty()) common.db_path = tunefarm::database::DefaultDatabasePath();

  tune.options.transfer = !no_transfer;
  client.json = client.json || common.json;
  if (tune_cmd->parsed() && !client.server.empty()) {
    if (!tune.pins.empty()) return Error(kExitUsage, "--pin is not supported with --server");
    if (tune.key.empty() && tune.device != "cpu") tune.key = tune.device;
    if (tune.key.empty()) {
      return Error(kExitUsage, "--server needs --device KEY: the device key of the farm's agents to tune on");
    }
    v1::JobSpec spec;
    spec.set_name("tune " + tune.workload);
    spec.set_device_key(tune.key);
    spec.add_workloads(tune.workload);
    spec.set_trials_per_task(tune.options.trials);
    spec.set_strategy(tune.options.strategy);
    spec.set_batch_size(tune.options.batch_size);
    spec.set_seed(tune.options.seed);
    spec.set_no_transfer(no_transfer);
    spec.set_objective(tune.options.objective);
    spec.set_early_stopping(tune.options.early_stopping);
    v1::MeasureOptions* m = spec.mutable_measure();
    m->set_number(tune.number);
    m->set_repeat(tune.repeat);
    m->set_min_repeat_ms(tune.min_repeat_ms);
    m->set_build_timeout_s(tune.build_timeout);
    m->set_run_timeout_s(tune.run_timeout);
    int rc = tunefarm::cli::RunSubmitSpec(client, spec, /*watch=*/true);
    if (rc != 0 || client.json) return rc;
    return tunefarm::cli::RunBestRemote(client, tune.workload, tune.key, 1);
  }
  if (std::string why = CheckDeviceClass(tune.device); !why.empty() && (tune_cmd->parsed() || record_cmd->parsed())) {
    return Error(kExitUsage, "--device: " + why);
  }
  if (tune_cmd->parsed()) return RunTune(common, tune, /*record_samples=*/0);
  if (record_cmd->parsed()) return RunTune(common, tune, record_samples);
  if (best_cmd->parsed() && !client.server.empty()) {
    return tunefarm::cli::RunBestRemote(client, best_workload, best_device, best_top);
  }
  if (best_cmd->parsed()) return RunBest(common, best_workload, best_device, best_top);
  if (serve_cmd->parsed()) return tunefarm::cli::RunServe(serve, serve_token_file, serve_tls_cert, serve_tls_key);
  if (agent_cmd->parsed()) {
    return tunefarm::cli::RunAgentCommand(agent_server, agent_device, agent_key, agent_token_file, agent_tls_ca,
                                          agent_workers, agent_replay_ms);
  }
  if (devices_cmd->parsed()) return tunefarm::cli::RunDevices(client);
  if (export_cmd->parsed() && export_format == "library") {
    library.device_key = export_device;
    library.output_dir = export_out;
    return tunefarm::cli::RunExportLibrary(client, common.db_path, library);
  }
  if (export_cmd->parsed()) {
    return tunefarm::cli::RunExport(client, common.db_path, export_workload, export_device, export_out);
  }
  if (import_cmd->parsed()) return tunefarm::cli::RunImport(client, common.db_path, import_file, import_atomic);
  if (submit_cmd->parsed()) return tunefarm::cli::RunSubmit(client, spec_file, submit_watch);
  if (jobs_cmd->parsed()) return tunefarm::cli::RunJobs(client, jobs_all);
  if (watch_cmd->parsed()) return tunefarm::cli::RunWatch(client, job_id);
  if (cancel_cmd->parsed()) return tunefarm::cli::RunCancel(client, job_id);
  if (target_cmd->parsed()) return RunTarget(common, target_device);
  return kExitUsage;
}
