#include "tunefarm/rpc_runner/dispatcher.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace tunefarm::rpc_runner {
namespace v1 = tunefarm::v1;

namespace {

int64_t SystemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// An agent's result as the tuning log accepts it: anything malformed
// becomes an UNKNOWN_ERROR result saying why, so one bad agent can neither
// poison a commit nor pass off garbage as a timing.
v1::MeasureResult Sanitize(v1::MeasureResult r) {
  constexpr int kMaxCosts = 10000;
  constexpr size_t kMaxError = 4096;
  std::string why;
  if (!v1::MeasureStatus_IsValid(r.status())) {
    why = "unknown status";
  } else if (r.costs_size() > kMaxCosts) {
    why = "too many costs";
  } else if (r.status() == v1::MEASURE_STATUS_OK && r.costs().empty()) {
    why = "status OK without costs";
  } else if (!std::isfinite(r.compile_time_s()) || r.compile_time_s() < 0) {
    why = "bad compile time";
  } else {
    for (double c : r.costs()) {
      if (!std::isfinite(c) || c <= 0) why = "a cost is not a finite positive number";
    }
  }
  if (r.error().size() > kMaxError) r.mutable_error()->resize(kMaxError);
  if (why.empty()) {
    if (r.status() != v1::MEASURE_STATUS_OK) r.clear_costs();
    return r;
  }
  v1::MeasureResult bad;
  bad.set_status(v1::MEASURE_STATUS_UNKNOWN_ERROR);
  bad.set_error("invalid result from the agent: " + why);
  bad.set_timestamp_ms(r.timestamp_ms());
  return bad;
}

// One Measure call's candidates.
struct Batch {
  std::string device_key;
  std::vector<v1::MeasureRequest> requests;
  std::vector<std::optional<v1::MeasureResult>> results;  // committed ones
  std::vector<bool> answered;  // received (maybe not yet committed)
  size_t committed = 0;
  int priority = 0;
  uint64_t seq = 0;  // FIFO order within a priority, kept when re-queued
  std::optional<int64_t> job_id;
  uint64_t lease_id = 0;  // 0: waiting in the queue
  // Set when Measure gave up on the batch; on_result is never called after
  // Measure returned, because it runs under deliver_mu and checks this.
  std::atomic<bool> withdrawn = false;
  std::mutex deliver_mu;
  std::function<void(size_t, const v1::MeasureResult&)> on_result;
};

struct Lease {
  std::shared_ptr<Batch> batch;
  std::string agent_id;
  std::vector<size_t> indices;  // lease index -> batch index
  int64_t deadline_ms = 0;
};

struct Agent {
  std::string id;
  std::shared_ptr<AgentSession> session;
  v1::AgentHello hello;
  // hello.target, shared with the commits of this agent's results, which
  // may outlive the agent.
  std::shared_ptr<const v1::Target> target;
  std::string peer;
  int64_t connected_ms = 0;
  int64_t last_heartbeat_ms = 0;
  uint64_t lease_id = 0;  // 0: free
  int64_t candidates_done = 0;
};

struct PendingCommit {
  std::shared_ptr<Batch> batch;
  size_t index = 0;
  v1::MeasureResult result;
  std::shared_ptr<const v1::Target> target;
  std::string agent_id;
  uint64_t lease_id = 0;
  uint32_t lease_index = 0;
};

}  // namespace

struct Dispatcher::State {
  DispatcherOptions options;
  ResultSink sink;

  mutable std::mutex mu;
  std::condition_variable changed;  // a batch finished, an agent attached, or shutdown
  bool shutdown = false;
  uint64_t next_id = 1;
  std::map<std::string, Agent> agents;
  std::vector<std::shared_ptr<Batch>> queue;  // waiting batches, any key
  std::map<uint64_t, Lease> leases;
  int64_t last_heartbeat_sent_ms = 0;

  std::mutex commit_mu;
  std::condition_variable commit_cv;
  std::deque<PendingCommit> commits;
  bool commit_stop = false;
  std::thread committer;

  int64_t Now() const { return options.clock ? options.clock() : SystemNowMs(); }

  // Hands waiting batches to free agents of their key. Requires mu.
  void Assign() {
    if (queue.empty()) return;
    std::stable_sort(queue.begin(), queue.end(), [](const auto& a, const auto& b) {
      return a->priority != b->priority ? a->priority > b->priority : a->seq < b->seq;
    });
    for (auto& [id, agent] : agents) {
      if (agent.lease_id != 0) continue;
      const std::string& key = agent.hello.target().device_key();
      auto it = std::find_if(queue.begin(), queue.end(), [&](const auto& b) { return b->device_key == key; });
      if (it == queue.end()) continue;
      std::shared_ptr<Batch> batch = *it;
      queue.erase(it);
      Lease lease;
      lease.batch = batch;
      lease.agent_id = id;
      v1::ServerMessage msg;
      v1::MeasureBatch* mb = msg.mutable_batch();
      double budget_s = 0;
      for (size_t i = 0; i < batch->requests.size(); ++i) {
        if (batch->answered[i]) continue;
        lease.indices.push_back(i);
        *mb->add_requests() = batch->requests[i];
        const v1::MeasureOptions& o = batch->requests[i].options();
        budget_s += o.build_timeout_s() / std::max(1, agent.hello.max_batch()) + o.run_timeout_s();
      }
      const uint64_t lease_id = next_id++;
      lease.deadline_ms = Now() + options.lease_slack_ms + static_cast<int64_t>(budget_s * 1000);
      mb->set_lease_id(lease_id);
      mb->set_deadline_ms(lease.deadline_ms);
      batch->lease_id = lease_id;
      agent.lease_id = lease_id;
      leases.emplace(lease_id, std::move(lease));
      agent.session->Send(msg);
    }
  }

  // Puts a lease's unanswered candidates back in the queue. Requires mu.
  void Requeue(uint64_t lease_id, const std::string& why) {
    auto it = leases.find(lease_id);
    if (it == leases.end()) return;
    std::shared_ptr<Batch> batch = it->second.batch;
    if (auto a = agents.find(it->second.agent_id); a != agents.end() && a->second.lease_id == lease_id) {
      a->second.lease_id = 0;
    }
    leases.erase(it);
    if (batch->lease_id != lease_id) return;
    batch->lease_id = 0;
    if (batch->withdrawn) return;
    if (std::find(batch->answered.begin(), batch->answered.end(), false) == batch->answered.end()) return;
    spdlog::info("lease {} returned to the queue: {}", lease_id, why);
    queue.push_back(batch);
  }

  void CommitLoop() {
    for (;;) {
      std::vector<PendingCommit> work;
      {
        std::unique_lock lock(commit_mu);
        commit_cv.wait(lock, [&] { return commit_stop || !commits.empty(); });
        if (commits.empty()) return;
        work.assign(std::make_move_iterator(commits.begin()), std::make_move_iterator(commits.end()));
        commits.clear();
      }
      std::vector<Measured> rows;
      rows.reserve(work.size());
      for (const PendingCommit& c : work) {
        rows.push_back({&c.batch->requests[c.index], c.result, c.target.get(), c.batch->job_id});
      }
      absl::Status s = sink ? sink(rows) : absl::OkStatus();
      if (!s.ok()) {
        spdlog::error("could not commit {} results, retrying: {}", rows.size(), std::string(s.message()));
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        std::lock_guard lock(commit_mu);
        for (auto it = work.rbegin(); it != work.rend(); ++it) commits.push_front(std::move(*it));
        continue;
      }
      {
        std::lock_guard lock(mu);
        for (PendingCommit& c : work) {
          if (auto a = agents.find(c.agent_id); a != agents.end()) {
            v1::ServerMessage ack;
            ack.mutable_ack()->set_lease_id(c.lease_id);
            ack.mutable_ack()->set_index(c.lease_index);
            a->second.session->Send(ack);
            ++a->second.candidates_done;
          }
          c.batch->results[c.index] = std::move(c.result);
        }
      }
      // Callbacks run outside mu; `committed` counts a result only after its
      // callback returned, so Measure never returns while one is running.
      for (PendingCommit& c : work) {
        std::lock_guard deliver(c.batch->deliver_mu);
        if (c.batch->on_result && !c.batch->withdrawn) c.batch->on_result(c.index, *c.batch->results[c.index]);
      }
      {
        std::lock_guard lock(mu);
        for (PendingCommit& c : work) ++c.batch->committed;
      }
      changed.notify_all();
    }
  }
};

Dispatcher::Dispatcher(DispatcherOptions options, ResultSink sink) : state_(std::make_unique<State>()) {
  state_->options = std::move(options);
  state_->sink = std::move(sink);
  state_->committer = std::thread([s = state_.get()] { s->CommitLoop(); });
}

Dispatcher::~Dispatcher() {
  Shutdown();
  {
    std::lock_guard lock(state_->commit_mu);
    state_->commit_stop = true;
  }
  state_->commit_cv.notify_all();
  state_->committer.join();
}

void Dispatcher::Shutdown() {
  std::lock_guard lock(state_->mu);
  if (state_->shutdown) return;
  state_->shutdown = true;
  for (auto& [id, agent] : state_->agents) agent.session->Close("the server is shutting down");
  state_->agents.clear();
  state_->changed.notify_all();
}

absl::StatusOr<std::string> Dispatcher::Attach(std::shared_ptr<AgentSession> session, const v1::AgentHello& hello,
                                               const std::string& peer) {
  if (hello.target().device_key().empty()) return absl::InvalidArgumentError("hello.target.device_key is empty");
  std::lock_guard lock(state_->mu);
  if (state_->shutdown) return absl::UnavailableError("the server is shutting down");
  Agent agent;
  agent.id = absl::StrCat("agent-", state_->next_id++);
  agent.session = std::move(session);
  agent.hello = hello;
  agent.target = std::make_shared<const v1::Target>(hello.target());
  agent.hello.clear_token();
  agent.peer = peer;
  agent.connected_ms = agent.last_heartbeat_ms = state_->Now();
  std::string id = agent.id;
  v1::ServerMessage welcome;
  welcome.mutable_welcome()->set_agent_id(id);
  welcome.mutable_welcome()->set_heartbeat_interval_ms(state_->options.heartbeat_interval_ms);
  agent.session->Send(welcome);
  spdlog::info("{} attached from {}: key {}, {} ({})", id, peer, hello.target().device_key(), hello.target().model(),
               hello.name());
  state_->agents.emplace(id, std::move(agent));
  state_->Assign();
  state_->changed.notify_all();
  return id;
}

void Dispatcher::Detach(const std::string& agent_id, const std::string& why) {
  std::lock_guard lock(state_->mu);
  auto it = state_->agents.find(agent_id);
  if (it == state_->agents.end()) return;
  spdlog::info("{} detached: {}", agent_id, why);
  uint64_t lease = it->second.lease_id;
  state_->agents.erase(it);
  if (lease != 0) state_->Requeue(lease, absl::StrCat(agent_id, " is gone"));
  state_->Assign();
}

void Dispatcher::OnHeartbeat(const std::string& agent_id) {
  std::lock_guard lock(state_->mu);
  if (auto it = state_->agents.find(agent_id); it != state_->agents.end()) it->second.last_heartbeat_ms = state_->Now();
}

void Dispatcher::OnResult(const std::string& agent_id, const v1::CandidateResult& r) {
  PendingCommit commit;
  {
    std::lock_guard lock(state_->mu);
    auto agent = state_->agents.find(agent_id);
    if (agent == state_->agents.end()) return;
    agent->second.last_heartbeat_ms = state_->Now();
    auto it = state_->leases.find(r.lease_id());
    if (it == state_->leases.end() || it->second.agent_id != agent_id || r.index() >= it->second.indices.size()) {
      // Stale or foreign: ack so the agent forgets it, count nothing.
      v1::ServerMessage ack;
      ack.mutable_ack()->set_lease_id(r.lease_id());
      ack.mutable_ack()->set_index(r.index());
      agent->second.session->Send(ack);
      return;
    }
    Lease& lease = it->second;
    const size_t i = lease.indices[r.index()];
    if (lease.batch->answered[i]) return;
    lease.batch->answered[i] = true;
    commit.batch = lease.batch;
    commit.index = i;
    commit.result = Sanitize(r.result());
    commit.result.set_agent_id(agent_id);
    commit.target = agent->second.target;
    commit.agent_id = agent_id;
    commit.lease_id = r.lease_id();
    commit.lease_index = r.index();
    if (std::all_of(lease.indices.begin(), lease.indices.end(), [&](size_t j) { return lease.batch->answered[j]; })) {
      agent->second.lease_id = 0;
      lease.batch->lease_id = 0;
      state_->leases.erase(it);
      state_->Assign();
    }
  }
  {
    std::lock_guard lock(state_->commit_mu);
    state_->commits.push_back(std::move(commit));
  }
  state_->commit_cv.notify_one();
}

void Dispatcher::OnReturn(const std::string& agent_id, const v1::ReturnBatch& returned) {
  std::lock_guard lock(state_->mu);
  auto it = state_->leases.find(returned.lease_id());
  if (it == state_->leases.end() || it->second.agent_id != agent_id) return;
  state_->Requeue(returned.lease_id(), absl::StrCat(agent_id, " returned it: ", returned.reason()));
  state_->Assign();
}

void Dispatcher::Tick() {
  std::lock_guard lock(state_->mu);
  const int64_t now = state_->Now();
  std::vector<uint64_t> expired;
  for (const auto& [id, lease] : state_->leases) {
    if (lease.deadline_ms <= now) expired.push_back(id);
  }
  for (uint64_t id : expired) {
    const std::string agent_id = state_->leases[id].agent_id;
    if (auto a = state_->agents.find(agent_id); a != state_->agents.end()) {
      v1::ServerMessage cancel;
      cancel.mutable_cancel()->set_lease_id(id);
      a->second.session->Send(cancel);
    }
    state_->Requeue(id, "its deadline passed");
  }
  const int64_t interval = state_->options.heartbeat_interval_ms;
  std::vector<std::string> silent;
  for (auto& [id, agent] : state_->agents) {
    if (now - agent.last_heartbeat_ms > 3 * interval) silent.push_back(id);
  }
  for (const std::string& id : silent) {
    Agent& agent = state_->agents[id];
    agent.session->Close("no heartbeat for three intervals");
    spdlog::warn("{} dropped: no heartbeat for {} ms", id, now - agent.last_heartbeat_ms);
    uint64_t lease = agent.lease_id;
    state_->agents.erase(id);
    if (lease != 0) state_->Requeue(lease, absl::StrCat(id, " went silent"));
  }
  if (now - state_->last_heartbeat_sent_ms >= interval) {
    state_->last_heartbeat_sent_ms = now;
    v1::ServerMessage hb;
    hb.mutable_heartbeat()->set_sent_ms(now);
    for (auto& [id, agent] : state_->agents) agent.session->Send(hb);
  }
  state_->Assign();
}

absl::StatusOr<std::vector<v1::MeasureResult>> Dispatcher::Measure(
    const std::string& device_key, std::vector<v1::MeasureRequest> requests, const BatchOptions& options,
    const std::function<void(size_t, const v1::MeasureResult&)>& on_result) {
  if (requests.empty()) return std::vector<v1::MeasureResult>{};
  auto batch = std::make_shared<Batch>();
  batch->device_key = device_key;
  batch->requests = std::move(requests);
  batch->results.resize(batch->requests.size());
  batch->answered.assign(batch->requests.size(), false);
  batch->priority = options.priority;
  batch->job_id = options.job_id;
  batch->on_result = on_result;
  std::unique_lock lock(state_->mu);
  if (state_->shutdown) return absl::CancelledError("the server is shutting down");
  batch->seq = state_->next_id++;
  state_->queue.push_back(batch);
  state_->Assign();
  for (;;) {
    if (batch->committed == batch->requests.size()) break;
    const bool cancelled = options.cancel != nullptr && options.cancel->load();
    if (state_->shutdown || cancelled) {
      batch->withdrawn = true;
      std::erase(state_->queue, batch);
      if (batch->lease_id != 0) {
        auto it = state_->leases.find(batch->lease_id);
        if (it != state_->leases.end()) {
          if (auto a = state_->agents.find(it->second.agent_id); a != state_->agents.end()) {
            v1::ServerMessage cancel;
            cancel.mutable_cancel()->set_lease_id(batch->lease_id);
            a->second.session->Send(cancel);
          }
        }
        state_->Requeue(batch->lease_id, "cancelled");
        state_->Assign();
      }
      lock.unlock();
      { std::lock_guard barrier(batch->deliver_mu); }
      return absl::CancelledError(cancelled ? "cancelled" : "the server is shutting down");
    }
    state_->changed.wait_for(lock, std::chrono::milliseconds(100));
  }
  std::vector<v1::MeasureResult> out;
  out.reserve(batch->results.size());
  for (auto& r : batch->results) out.push_back(std::move(*r));
  return out;
}

absl::StatusOr<v1::Target> Dispatcher::WaitForTarget(const std::string& device_key, int64_t timeout_ms,
                                                     const std::atomic<bool>* cancel) {
  std::unique_lock lock(state_->mu);
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max<int64_t>(timeout_ms, 0));
  for (;;) {
    for (const auto& [id, agent] : state_->agents) {
      if (agent.hello.target().device_key() == device_key) return agent.hello.target();
    }
    if (state_->shutdown) return absl::CancelledError("the server is shutting down");
    if (cancel != nullptr && cancel->load()) return absl::CancelledError("cancelled");
    if (timeout_ms >= 0 && std::chrono::steady_clock::now() >= until) {
      return absl::DeadlineExceededError(absl::StrCat("no agent with device key '", device_key, "' attached"));
    }
    state_->changed.wait_for(lock, std::chrono::milliseconds(100));
  }
}

std::vector<v1::DeviceQueue> Dispatcher::Devices() const {
  std::lock_guard lock(state_->mu);
  std::map<std::string, v1::DeviceQueue> by_key;
  for (const auto& [id, agent] : state_->agents) {
    v1::DeviceQueue& q = by_key[agent.hello.target().device_key()];
    q.set_total(q.total() + 1);
    if (agent.lease_id == 0) q.set_free(q.free() + 1);
    v1::AgentStatus* a = q.add_agents();
    a->set_agent_id(id);
    a->set_name(agent.hello.name());
    a->set_peer(agent.peer);
    *a->mutable_target() = agent.hello.target();
    a->set_connected_ms(agent.connected_ms);
    a->set_last_heartbeat_ms(agent.last_heartbeat_ms);
    a->set_busy(agent.lease_id != 0);
    a->set_candidates_done(agent.candidates_done);
  }
  for (const auto& b : state_->queue) {
    v1::DeviceQueue& q = by_key[b->device_key];
    q.set_pending(q.pending() + 1);
  }
  for (const auto& [id, lease] : state_->leases) {
    v1::DeviceQueue& q = by_key[lease.batch->device_key];
    q.set_leased(q.leased() + 1);
  }
  std::vector<v1::DeviceQueue> out;
  for (auto& [key, q] : by_key) {
    q.set_device_key(key);
    out.push_back(std::move(q));
  }
  return out;
}

}  // namespace tunefarm::rpc_runner
