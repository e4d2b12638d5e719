// The measurement farm's own speed: one in-process `tunefarm serve` and N
// real `tunefarm agent` processes on loopback, each a replay device that
// answers every measurement after a fixed latency, so the farm (dispatch,
// leases, commits, the tuning loops) is what is measured, not kernels.
//
// Prints, for each N: candidates per second, speedup over one agent, and the
// server's own CPU time per candidate; then the server's memory over one
// long job.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "CLI/CLI.hpp"
#include "spdlog/spdlog.h"
#include "tunefarm/database/database.h"
#include "tunefarm/tuner/server.h"
#include "tunefarm/v1/service.grpc.pb.h"

namespace {

namespace fs = std::filesystem;
namespace v1 = tunefarm::v1;

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

double RssMiB() {
  std::ifstream in("/proc/self/statm");
  long pages = 0, resident = 0;
  in >> pages >> resident;
  return resident * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1 << 20);
}

pid_t Spawn(const std::vector<std::string>& args, const std::string& log) {
  std::vector<char*> argv;
  std::vector<std::string> copy = args;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = 0;
  if (posix_spawn(&pid, copy[0].c_str(), &fa, nullptr, argv.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

// A tuning log with one recorded device: the agents replay it. Every config
// the job asks for is answered (NOT_RECORDED for all but one) after the
// replay latency, exactly like a recorded measurement would be.
std::string MakeReplaySource(const fs::path& dir) {
  const std::string path = (dir / "source.db").string();
  auto db = tunefarm::database::Database::Open(path);
  if (!db.ok()) return "";
  (void)(*db)->UpsertDevice({"farm-bench", "cpu", "x86_64", "recorded CPU", "", 0});
  tunefarm::database::RecordRow r;
  r.workload_key = "matmul(M=64,N=64,K=64,dtype=float32)";
  r.device_key = "farm-bench";
  r.template_name = "matmul";
  r.template_version = "0";
  r.config_json = "{}";
  r.costs = {1e-5};
  (void)(*db)->AddRecords({r});
  return path;
}

struct RunResult {
  int candidates = 0;
  double wall_s = 0;
  double server_cpu_s = 0;
  std::vector<double> rss_mib;  // sampled through the job
};

RunResult RunJob(const std::string& bin, const fs::path& dir, const std::string& source, int agents, int latency_ms,
                 int candidates, int batch) {
  RunResult out;
  const std::string db = (dir / ("farm-" + std::to_string(agents) + "-" + std::to_string(candidates) + ".db")).string();
  fs::remove(db);
  std::atomic<bool> stop{false};
  std::promise<int> port_promise;
  tunefarm::tuner::ServerOptions so;
  so.listen = "127.0.0.1:0";
  so.db_path = db;
  std::thread server([&] {
    absl::Status s = tunefarm::tuner::RunServer(so, stop, [&](int port) { port_promise.set_value(port); });
    if (!s.ok()) std::fprintf(stderr, "server: %s\n", std::string(s.message()).c_str());
  });
  const std::string addr = "127.0.0.1:" + std::to_string(port_promise.get_future().get());
  std::vector<pid_t> pids;
  for (int i = 0; i < agents; ++i) {
    pids.push_back(Spawn({bin, "agent", "--server", addr, "--device", "replay:" + source, "--replay-latency-ms",
                          std::to_string(latency_ms), "--workers", "1"},
                         (dir / "agents.log").string()));
  }
  auto stub = v1::TuningService::NewStub(grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
  for (int tries = 0; tries < 200; ++tries) {
    grpc::ClientContext ctx;
    v1::ListDevicesResponse d;
    if (stub->ListDevices(&ctx, {}, &d).ok() && d.devices_size() == 1 && d.devices(0).total() == agents) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // Eight tasks, so that eight agents can each have a batch.
  v1::SubmitJobRequest req;
  v1::JobSpec* spec = req.mutable_spec();
  spec->set_name("farm bench");
  spec->set_device_key("replay-farm-bench");
  for (int i = 0; i < 8; ++i) spec->add_workloads("matmul(M=" + std::to_string(64 + i) + ",N=64,K=64)");
  spec->set_total_trials(candidates);
  spec->set_strategy("random");
  spec->set_batch_size(batch);
  spec->set_no_transfer(true);
  const double cpu0 = CpuSeconds();
  const auto t0 = std::chrono::steady_clock::now();
  v1::JobStatus job;
  {
    grpc::ClientContext ctx;
    grpc::Status s = stub->SubmitJob(&ctx, req, &job);
    if (!s.ok()) std::fprintf(stderr, "submit: %s\n", s.error_message().c_str());
  }
  grpc::ClientContext wctx;
  v1::WatchJobRequest wreq;
  wreq.set_id(job.id());
  auto reader = stub->WatchJob(&wctx, wreq);
  v1::JobStatus st;
  int next_sample = 0;
  while (reader->Read(&st)) {
    if (st.trials_done() >= next_sample) {
      out.rss_mib.push_back(RssMiB());
      next_sample += std::max(1, candidates / 10);
    }
  }
  (void)reader->Finish();
  out.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out.server_cpu_s = CpuSeconds() - cpu0;
  out.candidates = st.trials_done();
  out.rss_mib.push_back(RssMiB());
  for (pid_t p : pids) kill(p, SIGTERM);
  for (pid_t p : pids) waitpid(p, nullptr, 0);
  stop = true;
  server.join();
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tunefarm farm benchmark: agents on loopback answering from a replay device"};
  std::string bin = TUNEFARM_BIN;
  int latency_ms = 20, per_agent = 400, long_job = 20000, batch = 8;
  std::vector<int> counts = {1, 2, 4, 8};
  app.add_option("--tunefarm", bin, "the tunefarm binary for the agents")->default_val(bin);
  app.add_option("--latency-ms", latency_ms, "replay latency per measurement")->default_val(latency_ms);
  app.add_option("--candidates-per-agent", per_agent,
                 "candidates per agent in each scaling run (the job grows with the farm, so the ramp-up and "
                 "the last batches weigh the same at every size)")
      ->default_val(per_agent);
  app.add_option("--agents", counts, "agent counts to run")->default_str("1 2 4 8");
  app.add_option("--batch-size", batch, "candidates per batch")->default_val(batch);
  app.add_option("--long-job", long_job, "candidates of the memory run with the most agents (0: skip)")
      ->default_val(long_job);
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);

  const fs::path dir = fs::temp_directory_path() / ("tunefarm-bench-farm-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string source = MakeReplaySource(dir);
  std::printf("farm on loopback: replay agents, %d ms per measurement, batches of %d, 8-task job, random strategy\n",
              latency_ms, batch);
  std::printf("%7s %11s %13s %9s %10s %16s\n", "agents", "candidates", "candidates/s", "speedup", "target",
              "server ms/cand");
  double base = 0;
  for (int n : counts) {
    RunResult r = RunJob(bin, dir, source, n, latency_ms, per_agent * n, batch);
    const double rate = r.candidates / r.wall_s;
    if (base == 0) base = rate / n;
    const double speedup = rate / base;
    std::printf("%7d %11d %13.1f %9.2f %10s %16.3f\n", n, r.candidates, rate, speedup,
                speedup >= 0.9 * n ? "met" : "MISSED", 1000.0 * r.server_cpu_s / r.candidates);
    std::fflush(stdout);
  }
  if (long_job > 0) {
    const int n = counts.empty() ? 8 : counts.back();
    RunResult r = RunJob(bin, dir, source, n, latency_ms, long_job, batch);
    std::printf("\nmemory of the server over a %d-candidate job with %d agents (%.0f s, %.1f candidates/s, %.3f ms "
                "server CPU per candidate):\n  RSS MiB at each tenth:",
                r.candidates, n, r.wall_s, r.candidates / r.wall_s, 1000.0 * r.server_cpu_s / r.candidates);
    for (double m : r.rss_mib) std::printf(" %.1f", m);
    const double first = r.rss_mib.size() > 2 ? r.rss_mib[1] : r.rss_mib.front();
    std::printf("\n  growth from 10%% to the end: %.1f MiB\n", r.rss_mib.back() - first);
  }
  fs::remove_all(dir);
  return 0;
}
