// `tunefarm serve`: the tuning server. It owns the tuning log, hosts the
// AgentService (device agents dial in) and the TuningService (clients submit
// and watch jobs, list devices, query best schedules), and runs the jobs.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tunefarm/v1/service.pb.h"

namespace tunefarm::tuner {

struct ServerOptions {
  std::string listen = "127.0.0.1:7070";  // host:port; port 0 picks a free one
  std::string db_path;                    // empty: database::DefaultDatabasePath()
  // Agents and clients must present this token; empty: none needed.
  std::string token;
  // PEM certificate chain and private key; both or neither. Without them
  // the server speaks plain TCP.
  std::string tls_cert_pem;
  std::string tls_key_pem;
  int heartbeat_interval_ms = 2000;
  int64_t lease_slack_ms = 30000;
};

// Serves until `stop` becomes true, then stops taking calls, hands running
// jobs back to the log (they resume on the next start) and returns.
// `on_listening` gets the bound port once the server accepts calls. Jobs
// left queued or running by an earlier server on the same database resume.
absl::Status RunServer(const ServerOptions& options, const std::atomic<bool>& stop,
                       const std::function<void(int port)>& on_listening = {});

// "queued", "running", "done", "failed", "cancelled" ("unknown" otherwise):
// the names the tuning log and the CLI use.
const char* JobStateName(tunefarm::v1::JobState state);

// Checks every field of a job spec and fills in defaults (strategy xgb,
// batch 8, objective reg, measure defaults). Errors are INVALID_ARGUMENT
// naming the field, e.g. "workloads[1]: unknown operator 'foo'".
absl::StatusOr<tunefarm::v1::JobSpec> ValidateJobSpec(tunefarm::v1::JobSpec spec);

}  // namespace tunefarm::tuner
