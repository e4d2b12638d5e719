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

// Looks `name` up on PATH; empty when absent.
std::string FindExecutable(const std::string& name);

}  // namespace tunefarm::device_agents
