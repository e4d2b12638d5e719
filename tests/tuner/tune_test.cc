// The tuning loop against a scripted backend (a unit-test double for the
// device) and a real SQLite file.
#include "tunefarm/tuner/tune.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <set>
#include <utility>
#include <vector>

#include "tunefarm/kernels/template.h"

namespace tunefarm::tuner {
namespace {

namespace v1 = tunefarm::v1;

// Cost is a fixed function of the config index; every 7th config fails.
class ScriptedBackend : public device_agents::DeviceBackend {
 public:
  ScriptedBackend() {
    target_.set_kind(v1::DEVICE_KIND_CPU);
    target_.set_device_key("test-cpu");
    target_.set_toolchain("none");
  }
  const v1::Target& target() const override { return target_; }
  absl::StatusOr<std::vector<v1::MeasureResult>> Measure(const std::vector<v1::MeasureRequest>& batch,
                                                         const device_agents::MeasureCallback& cb) override {
    std::vector<v1::MeasureResult> out;
    for (size_t i = 0; i < batch.size(); ++i) {
      uint64_t idx = batch[i].config().index();
      measured.push_back(idx);
      v1::MeasureResult r;
      r.set_config_index(idx);
      if (idx % 7 == 3) {
        r.set_status(v1::MEASURE_STATUS_WRONG_ANSWER);
        r.set_error("scripted");
      } else {
        r.add_costs(Cost(idx));
      }
      if (again) again(std::count(measured.begin(), measured.end(), idx) - 1, r);
      if (cb) cb(i, r);
      out.push_back(r);
    }
    return out;
  }
  static double Cost(uint64_t idx) { return 1e-3 * (1.0 + static_cast<double>(idx % 1000) / 100.0); }
  // The first `n` configs measured, those that passed (not i % 7 == 3),
  // fastest first (ties by index, as the log orders them).
  std::vector<uint64_t> PassedByCost(size_t n) const {
    std::vector<uint64_t> ok;
    for (size_t i = 0; i < n; ++i) {
      if (measured[i] % 7 != 3) ok.push_back(measured[i]);
    }
    std::sort(ok.begin(), ok.end(),
              [](uint64_t a, uint64_t b) { return std::make_pair(Cost(a), a) < std::make_pair(Cost(b), b); });
    return ok;
  }
  std::vector<uint64_t> measured;
  // Optional: rewrites the result of a config's measurement after `n` earlier ones.
  std::function<void(long n, v1::MeasureResult& r)> again;

 private:
  v1::Target target_;
};

class TuneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tunefarm-tune-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    auto db = database::Database::Open((dir_ / "log.db").string());
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    workload_ = *kernels::ParseWorkload("matmul(M=64,N=64,K=64)");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
  std::unique_ptr<database::Database> db_;
  kernels::Workload workload_;
};

TEST_F(TuneTest, RecordsEveryTrialAndReportsBest) {
  ScriptedBackend backend;
  TuneOptions o;
  o.trials = 40;
  o.batch_size = 8;
  o.seed = 3;
  int calls = 0;
  auto r = TuneTask(workload_, backend, *db_, o, [&](const TuneProgress& p) {
    ++calls;
    EXPECT_LE(p.trials_done, 40);
  });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->trials_run, 40);
  // 40 trials, then the best five measured again (confirm = 5), in three
  // rounds of the same order.
  ASSERT_EQ(backend.measured.size(), 55u);
  EXPECT_EQ(r->confirmed, 5);
  std::vector<uint64_t> trials(backend.measured.begin(), backend.measured.begin() + 40);
  const std::vector<uint64_t> ok_trials = backend.PassedByCost(40);
  std::vector<uint64_t> best5(ok_trials.begin(), ok_trials.begin() + 5);
  std::sort(best5.begin(), best5.end());
  const std::vector<uint64_t> round1(backend.measured.begin() + 40, backend.measured.begin() + 45);
  for (int round = 1; round < 3; ++round) {
    EXPECT_EQ(
        std::vector<uint64_t>(backend.measured.begin() + 40 + 5 * round, backend.measured.begin() + 45 + 5 * round),
        round1);
  }
  std::vector<uint64_t> confirmed = round1;
  std::sort(confirmed.begin(), confirmed.end());
  EXPECT_EQ(confirmed, best5);
  EXPECT_GT(calls, 40);
  auto counts = db_->CountRecords(r->workload_key, "test-cpu");
  EXPECT_EQ(counts->total, 40);
  ASSERT_TRUE(r->best.has_value());
  double best = 1e9;
  int errors = 0;
  for (uint64_t i : trials) {
    if (i % 7 == 3) {
      ++errors;
      continue;
    }
    best = std::min(best, ScriptedBackend::Cost(i));
  }
  EXPECT_DOUBLE_EQ(r->best->min_cost, best);
  EXPECT_EQ(r->best->costs.size(), 4u);  // measured four times, the same every time
  EXPECT_EQ(r->errors, errors);
  // The default config is the first one measured.
  const kernels::Template& t = *kernels::TemplateRegistry::Global().Find("matmul");
  uint64_t def = t.DefaultConfig(workload_, *t.Space(workload_)).index;
  EXPECT_EQ(backend.measured.front(), def);
  EXPECT_EQ(r->default_seconds.has_value(), def % 7 != 3);
}

// A run with the threads knob pinned starts from the log's best configs of
// other thread counts moved to the pinned value, and reports the best
// config of its own thread count.
TEST_F(TuneTest, PinnedRunStartsFromTheBestOfOtherPinnedValues) {
  const kernels::Template& t = *kernels::TemplateRegistry::Global().Find("matmul");
  auto space = t.Space(workload_);
  ScriptedBackend backend;
  TuneOptions o;
  o.strategy = "random";
  o.trials = 30;
  o.batch_size = 10;
  o.seed = 4;
  o.pins = {{"threads", int64_t{1}}};
  auto one = TuneTask(workload_, backend, *db_, o);
  ASSERT_TRUE(one.ok()) << one.status();
  auto ranked = db_->BestRecords(one->workload_key, "test-cpu", 4, one->template_version);
  ASSERT_EQ(ranked->size(), 4u);
  std::vector<uint64_t> expected;
  for (const database::Record& r : *ranked) {
    expected.push_back(space->With(space->FromIndex(r.config_index), {{"threads", int64_t{2}}})->index);
  }
  backend.measured.clear();
  o.pins = {{"threads", int64_t{2}}};
  o.trials = 10;
  auto two = TuneTask(workload_, backend, *db_, o);
  ASSERT_TRUE(two.ok()) << two.status();
  ASSERT_GE(backend.measured.size(), 5u);
  // The default (with threads=1) lies outside this run's space; the moved
  // configs come first.
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(backend.measured[i], expected[i]) << i;
  ASSERT_TRUE(two->best.has_value());
  EXPECT_EQ(space->IntValue(space->FromIndex(two->best->config_index), "threads"), 2);
  EXPECT_EQ(space->IntValue(space->FromIndex(one->best->config_index), "threads"), 1);
}

TEST_F(TuneTest, SecondRunContinuesWithoutRemeasuring) {
  TuneOptions o;
  o.trials = 24;
  o.batch_size = 5;
  o.seed = 9;  // same seed both runs: proposals repeat and must be skipped
  o.confirm = 0;  // the search alone; confirmation has its own test
  ScriptedBackend first, second;
  ASSERT_TRUE(TuneTask(workload_, first, *db_, o).ok());
  auto r = TuneTask(workload_, second, *db_, o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(second.measured.size(), 24u);
  std::set<uint64_t> all(first.measured.begin(), first.measured.end());
  for (uint64_t i : second.measured) EXPECT_TRUE(all.insert(i).second) << "config " << i << " measured twice";
  EXPECT_EQ(db_->CountRecords(r->workload_key, "test-cpu")->total, 48);
  // The default was measured by the first run and found in the log.
  EXPECT_TRUE(r->default_seconds.has_value() || r->default_error.has_value());
}

TEST_F(TuneTest, GridStopsWhenSpaceIsExhaustedAndEarlyStoppingStops) {
  TuneOptions o;
  o.trials = 1000;
  o.batch_size = 50;
  o.early_stopping = 60;
  o.strategy = "grid";
  ScriptedBackend backend;
  auto r = TuneTask(workload_, backend, *db_, o);
  ASSERT_TRUE(r.ok());
  // Grid walks the lowest indices, whose cost rises with the index: after the
  // first batch nothing improves.
  EXPECT_TRUE(r->early_stopped);
  EXPECT_LT(r->trials_run, 1000);
}

// Pipelined: the next batch is prepared while one is measured, so the
// strategy learns one batch late; every other promise holds.
TEST_F(TuneTest, PipelinedRunKeepsEveryPromise) {
  for (const char* strategy : {"random", "xgb"}) {
    SCOPED_TRACE(strategy);
    TuneOptions o;
    o.trials = 30;
    o.batch_size = 4;
    o.seed = 5;
    o.strategy = strategy;
    o.pipeline = true;
    o.transfer = false;
    o.confirm = 0;  // the search alone; confirmation has its own test
    kernels::Workload w = *kernels::ParseWorkload(std::string("matmul(M=40,N=40,K=") + (strategy[0] == 'r' ? "40)" : "41)"));
    ScriptedBackend backend;
    auto r = TuneTask(w, backend, *db_, o);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->trials_run, 30);
    EXPECT_EQ(backend.measured.size(), 30u);
    std::set<uint64_t> distinct(backend.measured.begin(), backend.measured.end());
    EXPECT_EQ(distinct.size(), 30u);
    EXPECT_EQ(db_->CountRecords(r->workload_key, "test-cpu")->total, 30);
    const kernels::Template& t = *kernels::TemplateRegistry::Global().Find("matmul");
    EXPECT_EQ(backend.measured.front(), t.DefaultConfig(w, *t.Space(w)).index);
  }
}

// The search's best config runs into a busy spell of the machine each time
// it is measured again (ten times slower), while the others measure as
// before: it keeps its place, since records rank by their fastest run (a
// mean would now put it behind the second). Failing its check the second
// time (a race) takes it out of the best altogether.
TEST_F(TuneTest, ConfirmationKeepsABusySpellsBestAndDemotesAFlakyOne) {
  for (const char* mode : {"off", "busy", "flaky"}) {
    SCOPED_TRACE(mode);
    std::filesystem::remove_all(dir_ / mode);
    auto db = database::Database::Open((dir_ / mode / "log.db").string());
    ASSERT_TRUE(db.ok()) << db.status();
    ScriptedBackend backend;
    uint64_t first = 0;
    backend.again = [&](long n, v1::MeasureResult& r) {
      if (n == 0 || r.status() != v1::MEASURE_STATUS_OK) return;
      if (first == 0) first = backend.PassedByCost(16).front();
      if (r.config_index() != first) return;
      if (mode[0] == 'b') r.set_costs(0, 10 * r.costs(0));
      if (mode[0] == 'f') {
        r.clear_costs();
        r.set_status(v1::MEASURE_STATUS_WRONG_ANSWER);
        r.set_error("differs from the reference");
      }
    };
    TuneOptions o;
    o.trials = 16;
    o.batch_size = 8;
    o.seed = 4;
    o.confirm = mode[0] == 'o' ? 0 : 3;
    auto r = TuneTask(workload_, backend, **db, o);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->best.has_value());
    const std::vector<uint64_t> ok = backend.PassedByCost(16);
    ASSERT_GE(ok.size(), 4u);
    if (mode[0] == 'o') {
      EXPECT_EQ(r->confirmed, 0);
      EXPECT_EQ(r->best->config_index, ok[0]);
      EXPECT_EQ(backend.measured.size(), 16u);
      continue;
    }
    EXPECT_EQ(backend.measured.size(), 25u);  // 16 trials, then 3 configs in 3 rounds
    std::optional<database::Record> d = *(*db)->FindRecord(r->workload_key, "test-cpu", r->template_version, ok[0]);
    ASSERT_TRUE(d.has_value());
    if (mode[0] == 'b') {
      EXPECT_EQ(r->confirmed, 3);
      EXPECT_EQ(r->best->config_index, ok[0]);
      const double c = ScriptedBackend::Cost(ok[0]);
      EXPECT_EQ(d->costs, (std::vector<double>{c, 10 * c, 10 * c, 10 * c}));
      EXPECT_GT(d->mean_cost, ScriptedBackend::Cost(ok[1]));
      EXPECT_DOUBLE_EQ(d->min_cost, c);
    } else {
      // The second of the three leads now, one of those measured again:
      // no second pass.
      EXPECT_EQ(r->confirmed, 3);
      EXPECT_EQ(r->best->config_index, ok[1]);
      EXPECT_EQ(r->best->costs.size(), 4u);
      EXPECT_EQ(d->status, v1::MEASURE_STATUS_WRONG_ANSWER);
      EXPECT_EQ(d->error, "differs from the reference");
    }
  }
}

// The best three of the search all fail their check when measured again
// (races), so the fourth, never measured again, leads; it is measured again
// with the two behind it, and keeps its place.
TEST_F(TuneTest, ConfirmationMeasuresANewLeaderAgain) {
  ScriptedBackend backend;
  std::set<uint64_t> failed;
  int again_calls = 0;
  backend.again = [&](long n, v1::MeasureResult& r) {
    if (n == 0 || r.status() != v1::MEASURE_STATUS_OK) return;
    if (++again_calls <= 9) failed.insert(r.config_index());  // the first pass: 3 configs, 3 rounds
    if (failed.count(r.config_index())) {
      r.clear_costs();
      r.set_status(v1::MEASURE_STATUS_WRONG_ANSWER);
      r.set_error("differs from the reference");
    }
  };
  TuneOptions o;
  o.trials = 16;
  o.batch_size = 8;
  o.seed = 4;
  o.confirm = 3;
  auto r = TuneTask(workload_, backend, *db_, o);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::vector<uint64_t> ok = backend.PassedByCost(16);
  ASSERT_GE(ok.size(), 6u);
  EXPECT_EQ(failed, std::set<uint64_t>(ok.begin(), ok.begin() + 3));
  EXPECT_EQ(backend.measured.size(), 16u + 2 * 9);  // two passes
  EXPECT_EQ(r->confirmed, 6);
  ASSERT_TRUE(r->best.has_value());
  EXPECT_EQ(r->best->config_index, ok[3]);
  EXPECT_EQ(r->best->costs.size(), 4u);
}

TEST_F(TuneTest, RejectsBadOptions) {
  ScriptedBackend backend;
  TuneOptions o;
  o.batch_size = 0;
  EXPECT_FALSE(TuneTask(workload_, backend, *db_, o).ok());
  o.batch_size = 4;
  o.strategy = "nope";
  EXPECT_FALSE(TuneTask(workload_, backend, *db_, o).ok());
}

}  // namespace
}  // namespace tunefarm::tuner
