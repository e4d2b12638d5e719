#include "tunefarm/rpc_runner/dispatcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <future>
#include <mutex>
#include <thread>

namespace tunefarm::rpc_runner {
namespace {
namespace v1 = tunefarm::v1;
using namespace std::chrono_literals;

// Records what the dispatcher sends to one agent.
class FakeSession : public AgentSession {
 public:
  void Send(const v1::ServerMessage& m) override {
    std::lock_guard lock(mu);
    sent.push_back(m);
  }
  void Close(const std::string& reason) override {
    std::lock_guard lock(mu);
    closed = reason;
  }
  // Waits for the n-th batch (0-based) this agent was sent.
  std::optional<v1::MeasureBatch> WaitBatch(size_t n) {
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard lock(mu);
        size_t seen = 0;
        for (const auto& m : sent) {
          if (m.has_batch() && seen++ == n) return m.batch();
        }
      }
      std::this_thread::sleep_for(5ms);
    }
    return std::nullopt;
  }
  int Count(v1::ServerMessage::MsgCase c) {
    std::lock_guard lock(mu);
    int n = 0;
    for (const auto& m : sent) n += m.msg_case() == c;
    return n;
  }
  std::mutex mu;
  std::vector<v1::ServerMessage> sent;
  std::string closed;
};

v1::AgentHello Hello(const std::string& key) {
  v1::AgentHello h;
  h.mutable_target()->set_device_key(key);
  h.set_max_batch(4);
  return h;
}

std::vector<v1::MeasureRequest> Requests(int n) {
  std::vector<v1::MeasureRequest> r(n);
  for (int i = 0; i < n; ++i) {
    r[i].mutable_config()->set_index(100 + i);
    r[i].mutable_options()->set_run_timeout_s(1);
  }
  return r;
}

v1::CandidateResult Result(uint64_t lease, uint32_t index, double cost) {
  v1::CandidateResult r;
  r.set_lease_id(lease);
  r.set_index(index);
  r.mutable_result()->add_costs(cost);
  return r;
}

struct Fixture {
  std::atomic<int64_t> now{1'000'000};
  std::mutex mu;
  std::vector<uint64_t> committed;  // config indices the sink saw
  std::unique_ptr<Dispatcher> d;

  Fixture() {
    DispatcherOptions o;
    o.heartbeat_interval_ms = 1000;
    o.lease_slack_ms = 5000;
    o.clock = [this] { return now.load(); };
    d = std::make_unique<Dispatcher>(o, [this](const std::vector<Measured>& rows) {
      std::lock_guard lock(mu);
      for (const Measured& m : rows) committed.push_back(m.request->config().index());
      return absl::OkStatus();
    });
  }
};

TEST(DispatcherTest, WaitsForAnAgentThenReturnsResultsInRequestOrder) {
  Fixture f;
  auto measure = std::async(std::launch::async, [&] { return f.d->Measure("k", Requests(3), {}); });
  std::this_thread::sleep_for(50ms);
  auto s = std::make_shared<FakeSession>();
  absl::StatusOr<std::string> id = f.d->Attach(s, Hello("k"), "peer");
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(s->Count(v1::ServerMessage::kWelcome), 1);
  std::optional<v1::MeasureBatch> b = s->WaitBatch(0);
  ASSERT_TRUE(b);
  ASSERT_EQ(b->requests_size(), 3);
  EXPECT_GT(b->deadline_ms(), f.now.load());
  // Answers out of order; one answer repeated.
  f.d->OnResult(*id, Result(b->lease_id(), 2, 0.3));
  f.d->OnResult(*id, Result(b->lease_id(), 0, 0.1));
  f.d->OnResult(*id, Result(b->lease_id(), 0, 9.9));
  f.d->OnResult(*id, Result(b->lease_id(), 1, 0.2));
  absl::StatusOr<std::vector<v1::MeasureResult>> r = measure.get();
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_DOUBLE_EQ((*r)[0].costs(0), 0.1);
  EXPECT_DOUBLE_EQ((*r)[1].costs(0), 0.2);
  EXPECT_DOUBLE_EQ((*r)[2].costs(0), 0.3);
  EXPECT_EQ((*r)[0].agent_id(), *id);
  EXPECT_EQ(f.committed.size(), 3u);
  EXPECT_EQ(s->Count(v1::ServerMessage::kAck), 3);
}

TEST(DispatcherTest, LostAgentsUnansweredCandidatesGoToAnotherAgentAndLateResultsDoNotCount) {
  Fixture f;
  auto a = std::make_shared<FakeSession>();
  std::string ida = *f.d->Attach(a, Hello("k"), "a");
  auto measure = std::async(std::launch::async, [&] { return f.d->Measure("k", Requests(3), {}); });
  std::optional<v1::MeasureBatch> b = a->WaitBatch(0);
  ASSERT_TRUE(b);
  f.d->OnResult(ida, Result(b->lease_id(), 0, 0.1));
  f.d->Detach(ida, "killed");
  auto c = std::make_shared<FakeSession>();
  std::string idc = *f.d->Attach(c, Hello("k"), "c");
  std::optional<v1::MeasureBatch> b2 = c->WaitBatch(0);
  ASSERT_TRUE(b2);
  ASSERT_EQ(b2->requests_size(), 2);  // only the unanswered ones
  EXPECT_EQ(b2->requests(0).config().index(), 101u);
  EXPECT_NE(b2->lease_id(), b->lease_id());
  f.d->OnResult(idc, Result(b->lease_id(), 1, 5.0));  // a stale lease
  f.d->OnResult(idc, Result(b2->lease_id(), 0, 0.2));
  f.d->OnResult(idc, Result(b2->lease_id(), 1, 0.3));
  absl::StatusOr<std::vector<v1::MeasureResult>> r = measure.get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_DOUBLE_EQ((*r)[1].costs(0), 0.2);
  std::sort(f.committed.begin(), f.committed.end());
  EXPECT_EQ(f.committed, (std::vector<uint64_t>{100, 101, 102}));
}

TEST(DispatcherTest, ExpiredLeaseIsCancelledAndReleased) {
  Fixture f;
  auto a = std::make_shared<FakeSession>();
  std::string ida = *f.d->Attach(a, Hello("k"), "a");
  auto measure = std::async(std::launch::async, [&] { return f.d->Measure("k", Requests(1), {}); });
  std::optional<v1::MeasureBatch> b = a->WaitBatch(0);
  ASSERT_TRUE(b);
  f.now = b->deadline_ms() + 1;
  f.d->OnHeartbeat(ida);
  f.d->Tick();
  EXPECT_EQ(a->Count(v1::ServerMessage::kCancel), 1);
  std::optional<v1::MeasureBatch> again = a->WaitBatch(1);  // the only agent gets it again
  ASSERT_TRUE(again);
  EXPECT_NE(again->lease_id(), b->lease_id());
  f.d->OnResult(ida, Result(b->lease_id(), 0, 7.0));  // late answer to the old lease
  f.d->OnResult(ida, Result(again->lease_id(), 0, 0.5));
  absl::StatusOr<std::vector<v1::MeasureResult>> r = measure.get();
  ASSERT_TRUE(r.ok());
  EXPECT_DOUBLE_EQ((*r)[0].costs(0), 0.5);
  EXPECT_EQ(f.committed.size(), 1u);
}

TEST(DispatcherTest, SilentAgentIsDroppedAndItsLeaseRequeued) {
  Fixture f;
  auto a = std::make_shared<FakeSession>();
  ASSERT_TRUE(f.d->Attach(a, Hello("k"), "a").ok());
  auto measure = std::async(std::launch::async, [&] { return f.d->Measure("k", Requests(1), {}); });
  ASSERT_TRUE(a->WaitBatch(0));
  f.now += 3500;
  f.d->Tick();
  EXPECT_FALSE(a->closed.empty());
  std::vector<v1::DeviceQueue> devices = f.d->Devices();
  ASSERT_EQ(devices.size(), 1u);
  EXPECT_EQ(devices[0].total(), 0);
  EXPECT_EQ(devices[0].pending(), 1);
  auto c = std::make_shared<FakeSession>();
  std::string idc = *f.d->Attach(c, Hello("k"), "c");
  std::optional<v1::MeasureBatch> b = c->WaitBatch(0);
  ASSERT_TRUE(b);
  f.d->OnResult(idc, Result(b->lease_id(), 0, 0.5));
  EXPECT_TRUE(measure.get().ok());
}

TEST(DispatcherTest, MalformedResultsBecomeErrorsNotTimings) {
  Fixture f;
  auto a = std::make_shared<FakeSession>();
  std::string id = *f.d->Attach(a, Hello("k"), "a");
  auto measure = std::async(std::launch::async, [&] { return f.d->Measure("k", Requests(3), {}); });
  std::optional<v1::MeasureBatch> b = a->WaitBatch(0);
  ASSERT_TRUE(b);
  f.d->OnResult(id, Result(b->lease_id(), 0, std::nan("")));
  f.d->OnResult(id, Result(b->lease_id(), 1, -1.0));
  v1::CandidateResult no_costs;
  no_costs.set_lease_id(b->lease_id());
  no_costs.set_index(2);
  f.d->OnResult(id, no_costs);  // status OK, no costs
  absl::StatusOr<std::vector<v1::MeasureResult>> r = measure.get();
  ASSERT_TRUE(r.ok());
  for (const v1::MeasureResult& x : *r) {
    EXPECT_EQ(x.status(), v1::MEASURE_STATUS_UNKNOWN_ERROR);
    EXPECT_TRUE(x.costs().empty());
    EXPECT_NE(x.error().find("invalid result from the agent"), std::string::npos);
  }
}

TEST(DispatcherTest, CancelWithdrawsTheBatch) {
  Fixture f;
  std::atomic<bool> cancel = false;
  BatchOptions o;
  o.cancel = &cancel;
  auto measure = std::async(std::launch::async, [&] { return f.d->Measure("nobody", Requests(2), o); });
  std::this_thread::sleep_for(50ms);
  cancel = true;
  EXPECT_EQ(measure.get().status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(f.d->Devices().empty() || f.d->Devices()[0].pending() == 0);
}

TEST(DispatcherTest, HigherPriorityFirstAndOnlyMatchingKeys) {
  Fixture f;
  BatchOptions low, high;
  high.priority = 5;
  auto m1 = std::async(std::launch::async, [&] { return f.d->Measure("k", Requests(1), low); });
  std::this_thread::sleep_for(30ms);
  auto m2 = std::async(std::launch::async, [&] { return f.d->Measure("k", Requests(2), high); });
  std::this_thread::sleep_for(30ms);
  auto other = std::make_shared<FakeSession>();
  ASSERT_TRUE(f.d->Attach(other, Hello("other"), "o").ok());
  EXPECT_EQ(other->Count(v1::ServerMessage::kBatch), 0);
  auto a = std::make_shared<FakeSession>();
  std::string id = *f.d->Attach(a, Hello("k"), "a");
  std::optional<v1::MeasureBatch> b = a->WaitBatch(0);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->requests_size(), 2);  // the high-priority batch
  f.d->OnResult(id, Result(b->lease_id(), 0, 1));
  f.d->OnResult(id, Result(b->lease_id(), 1, 1));
  std::optional<v1::MeasureBatch> b2 = a->WaitBatch(1);
  ASSERT_TRUE(b2);
  f.d->OnResult(id, Result(b2->lease_id(), 0, 1));
  EXPECT_TRUE(m1.get().ok());
  EXPECT_TRUE(m2.get().ok());
}

}  // namespace
}  // namespace tunefarm::rpc_runner
