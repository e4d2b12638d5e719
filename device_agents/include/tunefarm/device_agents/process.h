// Child processes with deadlines: how the CPU backend runs compilers and
// measurement processes. An interface, so tests can wrap it to inject
// crashes, hangs and slow starts.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tunefarm::device_agents {

struct ProcessResult {
  // Exactly one of these describes how the child ended.
  bool timed_out = false;   // killed (SIGKILL) at the deadline
  int exit_code = -1;       // >= 0 when it exited normally
  int signal = 0;           // > 0 when a signal ended it
  std::string out;          // stdout, truncated to max_output_bytes
  std::string err;          // stderr, truncated to max_output_bytes
  double wall_seconds = 0;
  bool ok() const { return !timed_out && signal == 0 && exit_code == 0; }
  // "exit code 2", "killed by signal 11 (Segmentation fault)", "timed out after 2.0 s"
  std::string Describe() const;
};

struct ProcessOptions {
  std::chrono::milliseconds timeout{10000};
  std::string working_dir;            // empty: inherit
  std::vector<std::string> extra_env;  // "NAME=value", added to the parent's environment
  size_t max_output_bytes = 1 << 20;
};

// Thread safety: Run may be called from several threads at once.
class ProcessLauncher {
 public:
  virtual ~ProcessLauncher() = default;
  // Runs argv[0] (looked up on PATH when it has no '/') with stdin closed
  // (/dev/null), captures stdout and stderr, and waits for it to end or for
  // the timeout, at which point the child and its process group are killed.
  // A Status error means the child could not be started at all.
  virtual absl::StatusOr<ProcessResult> Run(const std::vector<std::string>& argv,
                                            const ProcessOptions& options) = 0;
};

// posix_spawn-based launcher; every child gets its own process group.
std::shared_ptr<ProcessLauncher> NewPosixProcessLauncher();

// A long-lived child that answers each line written to its stdin with one
// line on its stdout (a measurement server); its stderr is the parent's.
// It runs in its own process group, which destruction kills. Not
// thread-safe.
class LineChild {
 public:
  static absl::StatusOr<std::unique_ptr<LineChild>> Start(const std::vector<std::string>& argv);
  ~LineChild();
  LineChild(const LineChild&) = delete;
  LineChild& operator=(const LineChild&) = delete;

  // Writes `line` and a newline; Unavailable once the child has gone.
  absl::Status Send(const std::string& line);
  // The next line, without its newline. DeadlineExceeded after `timeout`;
  // Unavailable when the child closed its stdout (Describe() says how it
  // ended).
  absl::StatusOr<std::string> Receive(std::chrono::milliseconds timeout);
  // "exit code 4", "killed by signal 11 (Segmentation fault)", or
  // "running"; waits up to a second for a child that closed its stdout.
  std::string Describe();

 private:
  LineChild(int pid, int in, int out) : pid_(pid), in_(in), out_(out) {}
  int pid_;
  int in_, out_;  // the child's stdin (write end), stdout (read end)
  std::string buffer_;
  bool reaped_ = false;
  ProcessResult end_;
};

// Looks `name` up on PATH; empty when absent.
std::string FindExecutable(const std::string& name);

}  // namespace tunefarm::device_agents
