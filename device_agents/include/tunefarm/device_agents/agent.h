// The agent daemon: dials a tunefarm server, attaches one device backend and
// measures the batches the server leases to it.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "tunefarm/device_agents/backend.h"

namespace tunefarm::device_agents {

struct AgentOptions {
  std::string server;          // host:port
  std::string device = "cpu";  // a device class for NewBackend
  std::string token;           // sent in the hello; empty: none
  // PEM of the CA that signed the server's certificate; empty: plain TCP
  // (loopback and trusted networks only).
  std::string tls_ca_pem;
  // Reconnects back off exponentially from 200 ms to this, with jitter.
  int max_backoff_ms = 30000;
  // Backend settings (device key override, compile workers, ...).
  BackendOptions backend;
};

// Runs until SIGTERM or SIGINT. The first signal finishes the batch being
// measured (its results are sent), hands back batches not yet started and
// exits; a second one hands back the current batch too and exits at once.
// Lost connections are retried with backoff; a refusal by the server (wrong
// token, other templates, a bad hello) ends the agent with that status.
absl::Status RunAgent(const AgentOptions& options);

}  // namespace tunefarm::device_agents
