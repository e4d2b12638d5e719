// The device registry and dispatch queue of the measurement farm: attached
// agents by device key, batches waiting for an agent, and leases (a batch
// out on one agent with a deadline). Transport-free: the gRPC agent service
// feeds it messages and implements AgentSession; tests drive it directly.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tunefarm/v1/agent.pb.h"
#include "tunefarm/v1/service.pb.h"
#include "tunefarm/v1/tuning.pb.h"

namespace tunefarm::rpc_runner {

// The dispatcher's handle on one attached agent. Called with the
// dispatcher's lock held: implementations queue the message and return; they
// never block and never call back into the Dispatcher.
class AgentSession {
 public:
  virtual ~AgentSession() = default;
  virtual void Send(const tunefarm::v1::ServerMessage& message) = 0;
  // Ends the agent's stream with UNAVAILABLE and `reason`.
  virtual void Close(const std::string& reason) = 0;
};

// A measured candidate ready to be committed to the tuning log.
struct Measured {
  const tunefarm::v1::MeasureRequest* request = nullptr;
  tunefarm::v1::MeasureResult result;
  const tunefarm::v1::Target* target = nullptr;  // the measuring agent's
  std::optional<int64_t> job_id;
};

// Commits results to the tuning log, all or nothing. Called from the
// dispatcher's commit thread, never with its lock held; a result is acked to
// its agent and delivered to the waiting Measure call only after the sink
// returned OK for it. An error is retried with the next commit.
using ResultSink = std::function<absl::Status(const std::vector<Measured>& results)>;

struct DispatcherOptions {
  // Heartbeats go out every interval; an agent silent for three is dropped
  // and its leases go back to the queue.
  int heartbeat_interval_ms = 2000;
  // Added to every lease's deadline on top of the candidates' own timeouts.
  int64_t lease_slack_ms = 30000;
  // Milliseconds since the Unix epoch; null: the system clock.
  std::function<int64_t()> clock;
};

struct BatchOptions {
  int priority = 0;  // higher first; FIFO within a priority
  std::optional<int64_t> job_id;
  // Polled while waiting: when it becomes true the batch is withdrawn
  // (its lease, if any, is cancelled) and Measure returns CANCELLED.
  const std::atomic<bool>* cancel = nullptr;
};

// Thread safety: every method may be called from any thread.
class Dispatcher {
 public:
  Dispatcher(DispatcherOptions options, ResultSink sink);
  ~Dispatcher();  // Shutdown()
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Registers an agent after its hello was checked, sends it its welcome
  // and returns its agent id. The hello's target must carry a device key.
  absl::StatusOr<std::string> Attach(std::shared_ptr<AgentSession> session, const tunefarm::v1::AgentHello& hello,
                                     const std::string& peer);
  // The agent is gone: its unfinished leases go back to the queue.
  void Detach(const std::string& agent_id, const std::string& why);
  void OnHeartbeat(const std::string& agent_id);
  // Results of stale leases (expired, re-leased, cancelled) and repeated
  // results are acked and otherwise ignored, so nothing counts twice.
  void OnResult(const std::string& agent_id, const tunefarm::v1::CandidateResult& result);
  void OnReturn(const std::string& agent_id, const tunefarm::v1::ReturnBatch& returned);
  // Expires leases past their deadline, drops silent agents and sends
  // heartbeats; the server calls it about every 100 ms.
  void Tick();

  // Measures `requests` on agents with `device_key`, waiting for one to
  // attach if there is none; blocks until every request is answered and
  // committed. `on_result` runs on the commit thread after each commit.
  // CANCELLED when options.cancel is set or the dispatcher shuts down.
  absl::StatusOr<std::vector<tunefarm::v1::MeasureResult>> Measure(
      const std::string& device_key, std::vector<tunefarm::v1::MeasureRequest> requests, const BatchOptions& options,
      const std::function<void(size_t, const tunefarm::v1::MeasureResult&)>& on_result = {});

  // The target of an attached agent with this key, waiting up to
  // `timeout_ms` (< 0: until `cancel` or shutdown) for one to attach.
  absl::StatusOr<tunefarm::v1::Target> WaitForTarget(const std::string& device_key, int64_t timeout_ms,
                                                     const std::atomic<bool>* cancel = nullptr);

  // Per device key: agents, free agents, queued and leased batches.
  std::vector<tunefarm::v1::DeviceQueue> Devices() const;

  // Fails every waiting Measure with CANCELLED and closes every session.
  void Shutdown();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace tunefarm::rpc_runner
