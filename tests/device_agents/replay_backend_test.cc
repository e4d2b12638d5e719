// The replay device: answers from a tuning log built here with the Database
// API, never from running anything.
#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "tunefarm/database/database.h"
#include "tunefarm/device_agents/backend.h"

namespace tunefarm::device_agents {
namespace {

namespace fs = std::filesystem;
namespace v1 = tunefarm::v1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kWorkload[] = "matmul(M=8,N=8,K=8,dtype=float32)";

v1::Target SourceTarget(const std::string& key) {
  v1::Target t;
  t.set_kind(v1::DEVICE_KIND_CPU);
  t.set_arch("x86_64-avx2");
  t.set_model("Test CPU 9000");
  t.set_device_key(key);
  t.add_features("avx2");
  (*t.mutable_limits())["cores"] = 4;
  t.set_toolchain("gcc 12.2.0");
  return t;
}

database::RecordRow Row(const std::string& device_key, const std::string& target_json, uint64_t index,
                        std::vector<double> costs, int status = 0, std::string error = "") {
  database::RecordRow row;
  row.workload_key = kWorkload;
  row.device_key = device_key;
  row.target_json = target_json;
  row.toolchain = "gcc 12.2.0";
  row.template_name = "matmul";
  row.template_version = "v1";
  row.config_index = index;
  row.config_json = "{}";
  row.costs = std::move(costs);
  row.status = status;
  row.error = std::move(error);
  row.compile_time_s = 0.25 + static_cast<double>(index);
  row.agent_id = "agent-7";
  return row;
}

v1::MeasureRequest Request(uint64_t index, const std::string& version = "v1") {
  v1::MeasureRequest r;
  r.mutable_workload()->set_key(kWorkload);
  r.mutable_workload()->set_op("matmul");
  r.set_template_name("matmul");
  r.set_template_version(version);
  r.mutable_config()->set_index(index);
  return r;
}

// A fresh directory per test holding a tuning log with one cpu device,
// "src-cpu": configs 1 and 2 measured, 3 failed to compile.
class ReplayBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "tunefarm-replay-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    AddDevice("src-cpu", "cpu",
              {Row("src-cpu", "", 1, {1e-3, 2e-3}), Row("src-cpu", "", 2, {5e-4}),
               Row("src-cpu", "", 3, {}, v1::MEASURE_STATUS_COMPILE_HOST, "gcc: boom")});
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string DbPath() const { return (dir_ / "log.db").string(); }

  // Registers a device as the tuner does and adds its records (their
  // target_json filled in).
  void AddDevice(const std::string& key, const std::string& kind, std::vector<database::RecordRow> rows) {
    absl::StatusOr<std::unique_ptr<database::Database>> db = database::Database::Open(DbPath());
    ASSERT_TRUE(db.ok()) << db.status();
    std::string json;
    ASSERT_TRUE(google::protobuf::util::MessageToJsonString(SourceTarget(key), &json).ok());
    ASSERT_TRUE((*db)->UpsertDevice({key, kind, "x86_64-avx2", "Test CPU 9000", json, 0}).ok());
    for (database::RecordRow& row : rows) row.target_json = json;
    absl::StatusOr<int> added = (*db)->AddRecords(rows);
    ASSERT_TRUE(added.ok()) << added.status();
    ASSERT_EQ(*added, static_cast<int>(rows.size()));
  }

  std::unique_ptr<DeviceBackend> NewOrDie(const std::string& device_class, const BackendOptions& options = {}) {
    absl::StatusOr<std::unique_ptr<DeviceBackend>> b = NewBackend(device_class, options);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? std::move(b).value() : nullptr;
  }

  fs::path dir_;
};

TEST_F(ReplayBackendTest, RegisteredAsDeviceClass) { EXPECT_THAT(BackendNames(), ::testing::Contains("replay")); }

TEST_F(ReplayBackendTest, RecordedConfigsComeBackAsRecorded) {
  std::unique_ptr<DeviceBackend> b = NewOrDie("replay:" + DbPath());
  ASSERT_NE(b, nullptr);
  const int64_t before =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  absl::StatusOr<std::vector<v1::MeasureResult>> res = b->Measure({Request(2), Request(1), Request(3)});
  ASSERT_TRUE(res.ok()) << res.status();
  ASSERT_EQ(res->size(), 3u);

  const v1::MeasureResult& two = (*res)[0];
  EXPECT_EQ(two.config_index(), 2u);
  EXPECT_EQ(two.status(), v1::MEASURE_STATUS_OK);
  EXPECT_THAT(two.costs(), ElementsAre(5e-4));
  EXPECT_DOUBLE_EQ(two.compile_time_s(), 2.25);
  EXPECT_EQ(two.agent_id(), "replay");
  EXPECT_GE(two.timestamp_ms(), before);

  const v1::MeasureResult& one = (*res)[1];
  EXPECT_EQ(one.config_index(), 1u);
  EXPECT_EQ(one.status(), v1::MEASURE_STATUS_OK);
  EXPECT_THAT(one.costs(), ElementsAre(1e-3, 2e-3));
  EXPECT_TRUE(one.error().empty());

  const v1::MeasureResult& failed = (*res)[2];
  EXPECT_EQ(failed.config_index(), 3u);
  EXPECT_EQ(failed.status(), v1::MEASURE_STATUS_COMPILE_HOST);
  EXPECT_EQ(failed.error(), "gcc: boom");
  EXPECT_TRUE(failed.costs().empty());
  EXPECT_DOUBLE_EQ(failed.compile_time_s(), 3.25);
}

TEST_F(ReplayBackendTest, UnrecordedConfigOrVersionIsNotRecorded) {
  std::unique_ptr<DeviceBackend> b = NewOrDie("replay:" + DbPath());
  ASSERT_NE(b, nullptr);
  absl::StatusOr<std::vector<v1::MeasureResult>> res = b->Measure({Request(42), Request(1, "v2")});
  ASSERT_TRUE(res.ok()) << res.status();
  ASSERT_EQ(res->size(), 2u);
  EXPECT_EQ((*res)[0].status(), v1::MEASURE_STATUS_NOT_RECORDED);
  EXPECT_EQ((*res)[0].config_index(), 42u);
  EXPECT_TRUE((*res)[0].costs().empty());
  EXPECT_THAT((*res)[0].error(), HasSubstr("config 42"));
  EXPECT_THAT((*res)[0].error(), HasSubstr(kWorkload));
  EXPECT_THAT((*res)[0].error(), HasSubstr("src-cpu"));
  EXPECT_EQ((*res)[1].status(), v1::MEASURE_STATUS_NOT_RECORDED);
  EXPECT_EQ((*res)[1].config_index(), 1u);
  EXPECT_THAT((*res)[1].error(), HasSubstr("v2"));
}

TEST_F(ReplayBackendTest, TargetIsLabelledReplay) {
  std::unique_ptr<DeviceBackend> b = NewOrDie("replay:" + DbPath());
  ASSERT_NE(b, nullptr);
  const v1::Target& t = b->target();
  EXPECT_EQ(t.kind(), v1::DEVICE_KIND_REPLAY);
  EXPECT_EQ(t.device_key(), "replay-src-cpu");
  EXPECT_EQ(t.model(), "replay of Test CPU 9000");
  // The rest is the source's, for provenance.
  EXPECT_EQ(t.arch(), "x86_64-avx2");
  EXPECT_THAT(t.features(), ElementsAre("avx2"));
  EXPECT_EQ(t.limits().at("cores"), 4);
  EXPECT_EQ(t.toolchain(), "gcc 12.2.0");
}

TEST_F(ReplayBackendTest, MissingOrBadFileFailsClearly) {
  const std::string missing = (dir_ / "missing.db").string();
  absl::StatusOr<std::unique_ptr<DeviceBackend>> b = NewBackend("replay:" + missing);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(b.status().message(), HasSubstr(missing));
  EXPECT_THAT(b.status().message(), HasSubstr("does not exist"));
  EXPECT_FALSE(fs::exists(missing));  // read-only: never created

  const std::string junk = (dir_ / "junk.db").string();
  std::ofstream(junk) << "this is not an SQLite file, not even close to one, but long enough";
  b = NewBackend("replay:" + junk);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(b.status().message(), HasSubstr(junk));

  b = NewBackend("replay");
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(b.status().message(), HasSubstr("replay:PATH"));
}

TEST_F(ReplayBackendTest, AmbiguousFileNeedsSourceKey) {
  AddDevice("other-cpu", "cpu", {Row("other-cpu", "", 1, {9.0})});
  absl::StatusOr<std::unique_ptr<DeviceBackend>> b = NewBackend("replay:" + DbPath());
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(b.status().message(), HasSubstr("other-cpu"));
  EXPECT_THAT(b.status().message(), HasSubstr("src-cpu"));
  EXPECT_THAT(b.status().message(), HasSubstr("#SOURCE_KEY"));

  std::unique_ptr<DeviceBackend> src = NewOrDie("replay:" + DbPath() + "#src-cpu");
  ASSERT_NE(src, nullptr);
  EXPECT_EQ(src->target().device_key(), "replay-src-cpu");
  absl::StatusOr<std::vector<v1::MeasureResult>> res = src->Measure({Request(1)});
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_THAT((*res)[0].costs(), ElementsAre(1e-3, 2e-3));

  std::unique_ptr<DeviceBackend> other = NewOrDie("replay:" + DbPath() + "#other-cpu");
  ASSERT_NE(other, nullptr);
  res = other->Measure({Request(1), Request(2)});
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_THAT((*res)[0].costs(), ElementsAre(9.0));
  EXPECT_EQ((*res)[1].status(), v1::MEASURE_STATUS_NOT_RECORDED);

  b = NewBackend("replay:" + DbPath() + "#gpu");
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(b.status().message(), HasSubstr("'gpu'"));
  EXPECT_THAT(b.status().message(), HasSubstr("src-cpu"));
}

TEST_F(ReplayBackendTest, ReplayDevicesAreNotSources) {
  // What a tuning run on the replay device leaves behind.
  AddDevice("replay-src-cpu", "replay", {Row("replay-src-cpu", "", 1, {1e-3, 2e-3})});
  std::unique_ptr<DeviceBackend> b = NewOrDie("replay:" + DbPath());
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->target().device_key(), "replay-src-cpu");

  absl::StatusOr<std::unique_ptr<DeviceBackend>> again = NewBackend("replay:" + DbPath() + "#replay-src-cpu");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(again.status().message(), HasSubstr("replay device"));
}

TEST_F(ReplayBackendTest, DeviceKeyOverrideIsRefused) {
  BackendOptions options;
  options.device_key = "src-cpu";
  absl::StatusOr<std::unique_ptr<DeviceBackend>> b = NewBackend("replay:" + DbPath(), options);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  options.device_key = "replay-src-cpu";
  EXPECT_NE(NewOrDie("replay:" + DbPath(), options), nullptr);
}

TEST_F(ReplayBackendTest, CallbackFiresOncePerRequestInOrder) {
  std::unique_ptr<DeviceBackend> b = NewOrDie("replay:" + DbPath());
  ASSERT_NE(b, nullptr);
  std::vector<size_t> seen;
  std::vector<uint64_t> indices;
  absl::StatusOr<std::vector<v1::MeasureResult>> res =
      b->Measure({Request(1), Request(7), Request(3), Request(2)}, [&](size_t i, const v1::MeasureResult& r) {
        seen.push_back(i);
        indices.push_back(r.config_index());
      });
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_THAT(seen, ElementsAre(0u, 1u, 2u, 3u));
  EXPECT_THAT(indices, ElementsAre(1u, 7u, 3u, 2u));
  res = b->Measure({});
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_TRUE(res->empty());
}

TEST_F(ReplayBackendTest, LatencyDelaysEachMeasurement) {
  BackendOptions options;
  options.replay_latency_ms = 20;
  std::unique_ptr<DeviceBackend> b = NewOrDie("replay:" + DbPath(), options);
  ASSERT_NE(b, nullptr);
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<v1::MeasureResult>> res =
      b->Measure({Request(1), Request(2), Request(3), Request(4), Request(5)});
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(res->size(), 5u);
  EXPECT_GE(elapsed, std::chrono::milliseconds(100));

  options.replay_latency_ms = -1;
  absl::StatusOr<std::unique_ptr<DeviceBackend>> bad = NewBackend("replay:" + DbPath(), options);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tunefarm::device_agents
