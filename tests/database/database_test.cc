#include "tunefarm/database/database.h"

#include <sqlite3.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tunefarm::database {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kMatmul[] = "matmul(M=64,N=64,K=64,dtype=float32)";
constexpr char kConv[] = "conv2d(N=1,C=64,H=56,W=56,K=64,R=3,S=3,dtype=float32)";

// A fresh directory per test under the system temp directory.
class DatabaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "tunefarm-db-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string DbPath() const { return (dir_ / "tunefarm.db").string(); }

  std::unique_ptr<Database> OpenOrDie(const std::string& path, const OpenOptions& options = {}) {
    absl::StatusOr<std::unique_ptr<Database>> db = Database::Open(path, options);
    EXPECT_TRUE(db.ok()) << db.status();
    return db.ok() ? std::move(db).value() : nullptr;
  }

  fs::path dir_;
};

// A second, raw connection to inspect or tamper with a file behind the
// library's back.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
    sqlite3_busy_timeout(db_, 5000);
  }
  ~RawDb() { sqlite3_close_v2(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  void Exec(const std::string& sql) {
    char* err = nullptr;
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << (err != nullptr ? err : "");
    sqlite3_free(err);
  }

  // First column of the first row, as text; "<null>" for NULL, "<none>" when
  // there is no row.
  std::string Text(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK)
        << sql << ": " << sqlite3_errmsg(db_);
    std::string out = "<none>";
    if (sqlite3_step(stmt) == SQLITE_ROW) {
      const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
      out = text != nullptr ? text : "<null>";
    }
    sqlite3_finalize(stmt);
    return out;
  }

  int64_t Int(const std::string& sql) { return std::stoll(Text(sql)); }

 private:
  sqlite3* db_ = nullptr;
};

RecordRow Ok(std::string workload, std::string device, std::string version, uint64_t index,
             std::vector<double> costs) {
  RecordRow row;
  row.workload_key = std::move(workload);
  row.device_key = std::move(device);
  row.target_json = R"({"kind":"cpu","arch":"x86_64-avx2"})";
  row.toolchain = "gcc 12.2.0";
  row.template_name = "matmul";
  row.template_version = std::move(version);
  row.config_index = index;
  row.config_json = "{\"tile\":" + std::to_string(index) + "}";
  row.costs = std::move(costs);
  row.agent_id = "agent-1";
  return row;
}

RecordRow Failed(std::string workload, std::string device, std::string version, uint64_t index,
                 int status) {
  RecordRow row = Ok(std::move(workload), std::move(device), std::move(version), index, {});
  row.status = status;
  row.error = "compile error: boom";
  return row;
}

// The schema as version 3 had it: records without min_cost, the best-k
// indexes on mean_cost.
void DowngradeToVersion3(RawDb& raw) {
  raw.Exec(
      "DROP INDEX records_best; DROP INDEX records_best_any; ALTER TABLE records DROP COLUMN min_cost; "
      "CREATE INDEX records_best ON records(workload_id, device_key, status, mean_cost); "
      "CREATE INDEX records_best_any ON records(workload_id, status, mean_cost); PRAGMA user_version = 3");
}

std::vector<uint64_t> Indices(const std::vector<Record>& records) {
  std::vector<uint64_t> out;
  for (const Record& r : records) out.push_back(r.config_index);
  return out;
}

TEST_F(DatabaseTest, OpenCreatesDirectoriesFileWalAndSchema) {
  const std::string path = (dir_ / "a" / "b" / "tunefarm.db").string();
  std::unique_ptr<Database> db = OpenOrDie(path);
  ASSERT_NE(db, nullptr);
  EXPECT_TRUE(fs::exists(path));
  absl::StatusOr<int> version = db->SchemaVersion();
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(*version, Database::kSchemaVersion);

  RawDb raw(path);
  EXPECT_EQ(raw.Text("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(raw.Int("PRAGMA user_version"), Database::kSchemaVersion);
  for (const char* table : {"workloads", "devices", "targets", "jobs", "records"}) {
    EXPECT_EQ(raw.Int(std::string("SELECT count(*) FROM sqlite_master WHERE type='table' AND "
                                  "name='") +
                      table + "'"),
              1)
        << table;
  }
}

TEST_F(DatabaseTest, MigratesEmptyFileAndReopenIsIdempotent) {
  { std::ofstream(DbPath()).flush(); }
  ASSERT_EQ(fs::file_size(DbPath()), 0u);
  {
    std::unique_ptr<Database> db = OpenOrDie(DbPath());
    ASSERT_NE(db, nullptr);
    ASSERT_EQ(*db->SchemaVersion(), Database::kSchemaVersion);
    ASSERT_EQ(*db->AddRecords({Ok(kMatmul, "cpu", "v1", 7, {1.0})}), 1);
  }
  for (int i = 0; i < 2; ++i) {
    std::unique_ptr<Database> db = OpenOrDie(DbPath());
    ASSERT_NE(db, nullptr);
    EXPECT_EQ(*db->SchemaVersion(), Database::kSchemaVersion);
    EXPECT_EQ(db->CountRecords(kMatmul, "cpu")->total, 1);
  }
}

TEST_F(DatabaseTest, InMemoryDatabaseWorks) {
  std::unique_ptr<Database> db = OpenOrDie(":memory:");
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(*db->SchemaVersion(), Database::kSchemaVersion);
  EXPECT_EQ(*db->AddRecords({Ok(kMatmul, "cpu", "v1", 1, {1.0})}), 1);
  EXPECT_FALSE(fs::exists(":memory:"));
}

TEST_F(DatabaseTest, RefusesNewerSchemaInBothModes) {
  { ASSERT_NE(OpenOrDie(DbPath()), nullptr); }
  { RawDb(DbPath()).Exec("PRAGMA user_version = 99"); }

  for (bool read_only : {false, true}) {
    OpenOptions options;
    options.read_only = read_only;
    absl::StatusOr<std::unique_ptr<Database>> db = Database::Open(DbPath(), options);
    ASSERT_FALSE(db.ok()) << "read_only=" << read_only;
    EXPECT_EQ(db.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(db.status().message(), HasSubstr("99"));
    EXPECT_THAT(db.status().message(), HasSubstr("newer"));
  }
  EXPECT_EQ(RawDb(DbPath()).Int("PRAGMA user_version"), 99);
}

TEST_F(DatabaseTest, ReadOnlyOpen) {
  OpenOptions read_only;
  read_only.read_only = true;

  absl::StatusOr<std::unique_ptr<Database>> missing = Database::Open(DbPath(), read_only);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(fs::exists(DbPath()));

  { std::ofstream(DbPath()).flush(); }
  absl::StatusOr<std::unique_ptr<Database>> old = Database::Open(DbPath(), read_only);
  EXPECT_EQ(old.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(old.status().message(), HasSubstr("older"));
  EXPECT_EQ(fs::file_size(DbPath()), 0u) << "a read-only open must not migrate";

  {
    std::unique_ptr<Database> writer = OpenOrDie(DbPath());
    ASSERT_NE(writer, nullptr);
    ASSERT_EQ(*writer->AddRecords({Ok(kMatmul, "cpu", "v1", 3, {2.0}), Ok(kMatmul, "cpu", "v1", 5, {5.0, 1.5}),
                                   Failed(kMatmul, "cpu", "v1", 6, 2)}),
              3);
  }
  std::unique_ptr<Database> db = OpenOrDie(DbPath(), read_only);
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(db->CountRecords(kMatmul, "cpu")->total, 3);
  EXPECT_THAT(Indices(*db->BestRecords(kMatmul, "cpu", 5)), ElementsAre(5u, 3u));
  EXPECT_EQ(db->AddRecords({Ok(kMatmul, "cpu", "v1", 4, {1.0})}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(db->CreateJob("{}").status().code(), absl::StatusCode::kFailedPrecondition);
  db.reset();

  // A version-3 file (records without min_cost, ranked by their mean):
  // refused read-only, since the best-k query needs min_cost; a read-write
  // open adds the column, each successful record's least cost, as does a
  // read-only open that may migrate an older file first.
  {
    RawDb raw(DbPath());
    DowngradeToVersion3(raw);
  }
  absl::StatusOr<std::unique_ptr<Database>> v3 = Database::Open(DbPath(), read_only);
  EXPECT_EQ(v3.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(v3.status().message(), HasSubstr("read-write"));
  EXPECT_EQ(RawDb(DbPath()).Int("PRAGMA user_version"), 3);
  for (bool reader : {false, true}) {
    if (reader) {
      RawDb raw(DbPath());
      DowngradeToVersion3(raw);
    }
    OpenOptions migrating = read_only;
    migrating.migrate_older = true;
    std::unique_ptr<Database> migrated = reader ? OpenOrDie(DbPath(), migrating) : OpenOrDie(DbPath());
    ASSERT_NE(migrated, nullptr);
    std::vector<Record> best = *migrated->BestRecords(kMatmul, "cpu", 5);
    ASSERT_EQ(best.size(), 2u);
    EXPECT_EQ(best[0].config_index, 5u);
    EXPECT_DOUBLE_EQ(best[0].min_cost, 1.5);
    EXPECT_DOUBLE_EQ(best[0].mean_cost, 3.25);
    EXPECT_DOUBLE_EQ(best[1].min_cost, 2.0);
    std::optional<Record> failed = *migrated->FindRecord(kMatmul, "cpu", "v1", 6);
    ASSERT_TRUE(failed.has_value());
    EXPECT_TRUE(std::isinf(failed->min_cost));
    if (reader) {
      EXPECT_EQ(migrated->AddRecords({Ok(kMatmul, "cpu", "v1", 4, {1.0})}).status().code(),
                absl::StatusCode::kFailedPrecondition);
    }
    migrated.reset();
    EXPECT_EQ(RawDb(DbPath()).Int("PRAGMA user_version"), Database::kSchemaVersion);
  }
  // Reading a current file with migrate_older changes nothing.
  OpenOptions migrating = read_only;
  migrating.migrate_older = true;
  EXPECT_NE(OpenOrDie(DbPath(), migrating), nullptr);
}

TEST_F(DatabaseTest, JobsAndTheirRecordsAndPagedListing) {
  std::unique_ptr<Database> db = OpenOrDie(DbPath());
  ASSERT_NE(db, nullptr);
  const int64_t a = *db->CreateJob("{\"a\":1}");
  const int64_t b = *db->CreateJob("{\"b\":1}");
  ASSERT_TRUE(db->UpdateJob(a, "done", "").ok());
  ASSERT_TRUE(db->UpdateJob(b, "queued", "").ok());
  std::vector<Job> open = *db->ListJobs(false, 10);
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0].id, b);
  std::vector<Job> all = *db->ListJobs(true, 10);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].id, b);  // newest first
  EXPECT_EQ(db->ListJobs(true, 0).status().code(), absl::StatusCode::kInvalidArgument);

  std::vector<RecordRow> rows;
  for (uint64_t i = 0; i < 5; ++i) {
    RecordRow r = Ok(i < 3 ? kMatmul : "matmul(M=2,N=2,K=2,dtype=float32)", "cpu", "v1", i, {1.0 + i});
    r.job_id = b;
    if (i == 1) {
      r.costs.clear();
      r.status = 5;
      r.error = "wrong";
    }
    rows.push_back(r);
  }
  rows.push_back(Ok(kMatmul, "gpu", "v1", 9, {1.0}));  // no job
  ASSERT_EQ(*db->AddRecords(rows), 6);
  std::vector<JobTaskCount> counts = *db->JobRecordCounts(b);
  ASSERT_EQ(counts.size(), 2u);  // by workload key
  EXPECT_EQ(counts[0].workload_key, "matmul(M=2,N=2,K=2,dtype=float32)");
  EXPECT_EQ(counts[0].records, 2);
  EXPECT_EQ(counts[0].errors, 0);
  EXPECT_EQ(counts[1].workload_key, kMatmul);
  EXPECT_EQ(counts[1].records, 3);
  EXPECT_EQ(counts[1].errors, 1);
  EXPECT_TRUE(db->JobRecordCounts(a)->empty());

  // Paged by id; filters by workload and device key.
  std::vector<uint64_t> seen;
  int64_t after = 0;
  for (;;) {
    std::vector<Record> page = *db->ListRecords("", "", after, 4);
    if (page.empty()) break;
    for (const Record& r : page) seen.push_back(r.config_index);
    after = page.back().id;
  }
  EXPECT_THAT(seen, ElementsAre(0u, 1u, 2u, 3u, 4u, 9u));
  EXPECT_THAT(Indices(*db->ListRecords(kMatmul, "cpu", 0, 100)), ElementsAre(0u, 1u, 2u));
  EXPECT_THAT(Indices(*db->ListRecords("", "gpu", 0, 100)), ElementsAre(9u));
}

TEST_F(DatabaseTest, AddRecordsSkipsDuplicates) {
  std::unique_ptr<Database> db = OpenOrDie(DbPath());
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(*db->AddRecords({}), 0);
  EXPECT_EQ(*db->AddRecords({Ok(kMatmul, "cpu", "v1", 1, {1.0}), Ok(kMatmul, "cpu", "v1", 2, {2.0}),
                             Failed(kMatmul, "cpu", "v1", 3, 2)}),
            3);
  // Same key, different payload: the first measurement stays.
  EXPECT_EQ(*db->AddRecords({Ok(kMatmul, "cpu", "v1", 1, {0.5}), Ok(kMatmul, "cpu", "v1", 4, {4.0}),
                             Ok(kMatmul, "cpu", "v1", 4, {0.1})}),
            1);
  // A different device key, template version or workload is a new record.
  EXPECT_EQ(*db->AddRecords({Ok(kMatmul, "gpu", "v1", 1, {1.0}), Ok(kMatmul, "cpu", "v2", 1, {1.0}),
                             Ok(kConv, "cpu", "v1", 1, {1.0})}),
            3);

  absl::StatusOr<Database::Counts> counts = db->CountRecords(kMatmul, "cpu");
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(counts->total, 5);
  EXPECT_EQ(counts->ok, 4);
  std::vector<Record> best = *db->BestRecords(kMatmul, "cpu", 10, "v1");
  ASSERT_EQ(best.size(), 3u);
  EXPECT_EQ(best[0].config_index, 1u);
  EXPECT_DOUBLE_EQ(best[0].mean_cost, 1.0);
  EXPECT_DOUBLE_EQ(best[2].mean_cost, 4.0);
}

TEST_F(DatabaseTest, MergeRecordsFoldsNewMeasurementsIn) {
  std::unique_ptr<Database> db = OpenOrDie(DbPath());
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(*db->AddRecords({Ok(kMatmul, "cpu", "v1", 1, {6.0}), Ok(kMatmul, "cpu", "v1", 2, {2.0}),
                             Ok(kMatmul, "cpu", "v1", 3, {3.0}), Failed(kMatmul, "cpu", "v1", 4, 2)}),
            4);
  RecordRow again = Ok(kMatmul, "cpu", "v1", 1, {4.0, 2.5});
  again.agent_id = "agent-2";
  RecordRow race = Failed(kMatmul, "cpu", "v1", 2, 3);
  race.error = "wrong answer";
  // 1 gains costs, 2 becomes failed, 4 stays failed, 5 is new; 3 untouched.
  EXPECT_EQ(*db->MergeRecords({again, race, Ok(kMatmul, "cpu", "v1", 4, {0.1}), Ok(kMatmul, "cpu", "v1", 5, {5.0})}),
            3);

  std::optional<Record> one = *db->FindRecord(kMatmul, "cpu", "v1", 1);
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(one->costs, (std::vector<double>{6.0, 4.0, 2.5}));
  EXPECT_DOUBLE_EQ(one->mean_cost, 12.5 / 3);
  EXPECT_DOUBLE_EQ(one->min_cost, 2.5);
  EXPECT_EQ(one->status, 0);
  EXPECT_EQ(one->agent_id, "agent-1");  // the first measurement's
  std::optional<Record> two = *db->FindRecord(kMatmul, "cpu", "v1", 2);
  EXPECT_EQ(two->status, 3);
  EXPECT_EQ(two->error, "wrong answer");
  EXPECT_EQ(two->costs, (std::vector<double>{2.0}));
  EXPECT_TRUE(std::isinf(two->mean_cost));
  EXPECT_TRUE(std::isinf(two->min_cost));
  std::optional<Record> four = *db->FindRecord(kMatmul, "cpu", "v1", 4);
  EXPECT_EQ(four->status, 2);
  EXPECT_TRUE(four->costs.empty());
  // The best order follows the least costs, not the means: 1 (2.5, mean
  // 4.17), 3 (3.0), 5 (5.0).
  EXPECT_EQ(Indices(*db->BestRecords(kMatmul, "cpu", 10, "v1")), (std::vector<uint64_t>{1, 3, 5}));
  EXPECT_EQ(db->CountRecords(kMatmul, "cpu")->total, 5);
  // The same validation as AddRecords: a bad row changes nothing.
  RecordRow bad = Ok(kMatmul, "cpu", "v1", 3, {1.0});
  bad.costs = {std::numeric_limits<double>::quiet_NaN()};
  EXPECT_EQ(db->MergeRecords({Ok(kMatmul, "cpu", "v1", 3, {0.5}), bad}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_DOUBLE_EQ((*db->FindRecord(kMatmul, "cpu", "v1", 3))->mean_cost, 3.0);
  EXPECT_EQ(*db->MergeRecords({}), 0);
}

TEST_F(DatabaseTest, RecordRoundTripsEveryField) {
  std::unique_ptr<Database> db = OpenOrDie(DbPath());
  ASSERT_NE(db, nullptr);
  const int64_t job = *db->CreateJob(R"({"workload":"matmul"})");

  RecordRow row = Ok(kMatmul, "epyc-avx2", "abc123", (uint64_t{1} << 63) - 1, {0.25, 0.5, 0.75});
  row.template_name = "matmul_tiled";
  row.compile_time_s = 1.5;
  row.error = "";
  row.agent_id = "agent-7";
  row.timestamp_ms = 1700000000123;
  row.job_id = job;
  RecordRow now_row = Ok(kMatmul, "epyc-avx2", "abc123", 0, {3.0});
  now_row.target_json = "";
  now_row.toolchain = "";

  const int64_t before = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  ASSERT_EQ(*db->AddRecords({row, now_row}), 2);

  std::vector<Record> best = *db->BestRecords(kMatmul, "epyc-avx2", 2);
  ASSERT_EQ(best.size(), 2u);
  const Record& got = best[0];
  EXPECT_GT(got.id, 0);
  EXPECT_EQ(got.workload_key, kMatmul);
  EXPECT_EQ(got.device_key, "epyc-avx2");
  EXPECT_EQ(got.target_json, row.target_json);
  EXPECT_EQ(got.toolchain, row.toolchain);
  EXPECT_EQ(got.template_name, "matmul_tiled");
  EXPECT_EQ(got.template_version, "abc123");
  EXPECT_EQ(got.config_index, (uint64_t{1} << 63) - 1);
  EXPECT_EQ(got.config_json, row.config_json);
  EXPECT_EQ(got.costs, row.costs);
  EXPECT_DOUBLE_EQ(got.mean_cost, 0.5);
  EXPECT_EQ(got.status, 0);
  EXPECT_EQ(got.error, "");
  EXPECT_DOUBLE_EQ(got.compile_time_s, 1.5);
  EXPECT_EQ(got.agent_id, "agent-7");
  EXPECT_EQ(got.timestamp_ms, 1700000000123);
  EXPECT_EQ(got.job_id, std::optional<int64_t>(job));

  const Record& stamped = best[1];
  EXPECT_GE(stamped.timestamp_ms, before);
  EXPECT_LE(stamped.timestamp_ms, before + 60'000);
  EXPECT_EQ(stamped.job_id, std::nullopt);
  EXPECT_EQ(stamped.target_json, "");

  RawDb raw(DbPath());
  EXPECT_EQ(raw.Text("SELECT op FROM workloads"), "matmul");
  EXPECT_EQ(raw.Int("SELECT typeof(config_index) = 'integer' FROM records LIMIT 1"), 1);
}

TEST_F(DatabaseTest, IdenticalTargetsShareOneRow) {
  std::unique_ptr<Database> db = OpenOrDie(DbPath());
  ASSERT_NE(db, nullptr);
  RecordRow other_toolchain = Ok(kMatmul, "cpu", "v1", 3, {1.0});
  other_toolchain.toolchain = "clang 14.0.6";
  ASSERT_EQ(*db->AddRecords({Ok(kMatmul, "cpu", "v1", 1, {1.0}), Ok(kConv, "cpu", "v1", 1, {1.0}),
                             other_toolchain}),
            3);
  ASSERT_EQ(*db->AddRecords({Ok(kMatmul, "cpu", "v1", 2, {1.0})}), 1);
  RawDb raw(DbPath());
  EXPECT_EQ(raw.Int("SELECT count(*) FROM targets"), 2);
  EXPECT_EQ(raw.Int("SELECT count(*) FROM workloads"), 2);
  EXPECT_EQ(raw.Int("SELECT count(DISTINCT target_id) FROM records"), 2);
}

TEST_F(DatabaseTest, BestRecordsOrderingAndFilters) {
  std::unique_ptr<Database> db = OpenOrDie(DbPath());
  ASSERT_NE(db, nullptr);
  ASSERT_EQ(*db->AddRecords({
                Ok(kMatmul, "cpu", "v1", 10, {5.0}),
                Ok(kMatmul, "cpu", "v1", 11, {1.5, 2.5}),  // mean 2
                Ok(kMatmul, "cpu", "v1", 12, {3.0}),
                Ok(kMatmul, "cpu", "v1", 13, {9.0, 2.8}),  // mean 5.9, ranks by 2.8
                Failed(kMatmul, "cpu", "v1", 14, 5),
                Ok(kMatmul, "cpu", "v2", 20, {1.0}),
                Ok(kMatmul, "gpu", "v1", 30, {0.5}),
                Ok(kConv, "cpu", "v1", 40, {0.1}),
            }),
            8);
  // A failure that still reports timings (e.g. a wrong answer) is never best.
  RecordRow wrong = Ok(kMatmul, "cpu", "v1", 15, {0.001});
  wrong.status = 5;
  ASSERT_EQ(*db->AddRecords({wrong}), 1);

  EXPECT_THAT(Indices(*db->BestRecords(kMatmul, "cpu", 3, "v1")), ElementsAre(11u, 13u, 12u));
  EXPECT_THAT(Indices(*db->BestRecords(kMatmul, "cpu", 100, "v1")), ElementsAre(11u, 13u, 12u, 10u));
  EXPECT_THAT(Indices(*db->BestRecords(kMatmul, "cpu", 2)), ElementsAre(20u, 11u));
  EXPECT_THAT(Indices(*db->BestRecords(kMatmul, "", 2)), ElementsAre(30u, 20u));
  EXPECT_THAT(Indices(*db->BestRecords(kMatmul, "", 10, "v1")), ElementsAre(30u, 11u, 13u, 12u, 10u));
  EXPECT_THAT(Indices(*db->BestRecords(kMatmul, "gpu", 10, "v2")), IsEmpty());
  EXPECT_THAT(*db->BestRecords("unknown(x=1)", "cpu", 10), IsEmpty());
  const std::vector<Record> all = *db->BestRecords(kMatmul, "", 100);
  for (const Record& r : all) {
    EXPECT_EQ(r.status, 0);
    EXPECT_TRUE(std::isfinite(r.mean_cost));
  }

  RawDb raw(DbPath());
  EXPECT_EQ(raw.Text("SELECT mean_cost FROM records WHERE config_index = 14"), "<null>");
  EXPECT_EQ(raw.Text("SELECT mean_cost FROM records WHERE config_index = 15"), "<null>");
}

TEST_F(DatabaseTest, BestRecordsForAnyDeviceLeaveOutReplayDevices) {
  std::unique_ptr<Database> db = OpenOrDie(DbPath());
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(db->UpsertDevice({"cpu", "cpu", "x86_64-avx2", "EPYC", "{}", 0}).ok());
  ASSERT_TRUE(
      db->UpsertDevice({"replay-cpu", "replay", "x86_64-avx2", "replay of EPYC", "{}", 0}).ok());
  // "lab" has records but no devices row (e.g. a log merged from elsewhere).
  ASSERT_EQ(*db->AddRecords({
                Ok(kMatmul, "cpu", "v1", 1, {3.0}),
                Ok(kMatmul, "replay-cpu", "v1", 2, {0.5}),
                Ok(kMatmul, "replay-cpu", "v1", 3, {1.5}),
                Ok(kMatmul, "lab", "v1", 4, {2.0}),
            }),
            4);

  EXPECT_THAT(Indices(*db->BestRecords(kMatmul, "", 10)), ElementsAre(4u, 1u));
  EXPECT_THAT(Indices(*db->BestRecords(kMatmul, "", 1, "v1")), ElementsAre(4u));
  // Asking for the replay device by key still finds its records.
  EXPECT_THAT(Indices(*db->BestRecords(kMatmul, "replay-cpu", 10)), ElementsAre(2u, 3u));
  EXPECT_THAT(Indices(*db->BestRecords(kMatmul, "cpu", 10)), ElementsAre(1u));

  // The kind in the devices table decides, not the key's spelling.
  ASSERT_TRUE(db->UpsertDevice({"lab", "replay", "", "", "", 0}).ok());
  EXPECT_THAT(Indices(*db->BestRecords(kMatmul, "", 10)), ElementsAre(1u));
  ASSERT_TRUE(db->UpsertDevice({"replay-cpu", "cpu", "", "", "", 0}).ok());
  EXPECT_THAT(Indices(*db->BestRecords(kMatmul, "", 10)), ElementsAre(2u, 3u, 1u));
}

TEST_F(DatabaseTest, MeasuredConfigsIncludesFailures) {
  std::unique_ptr<Database> db = OpenOrDie(DbPath());
  ASSERT_NE(db, nullptr);
  ASSERT_EQ(*db->AddRecords({Ok(kMatmul, "cpu", "v1", 9, {1.0}), Failed(kMatmul, "cpu", "v1", 3, 7),
                             Ok(kMatmul, "cpu", "v1", 5, {2.0}), Ok(kMatmul, "cpu", "v2", 4, {1.0}),
                             Ok(kMatmul, "gpu", "v1", 6, {1.0}), Ok(kConv, "cpu", "v1", 8, {1.0})}),
            6);
  EXPECT_THAT(*db->MeasuredConfigs(kMatmul, "cpu", "v1"), ElementsAre(3u, 5u, 9u));
  EXPECT_THAT(*db->MeasuredConfigs(kMatmul, "cpu", "v2"), ElementsAre(4u));
  EXPECT_THAT(*db->MeasuredConfigs(kMatmul, "gpu", "v1"), ElementsAre(6u));
  EXPECT_THAT(*db->MeasuredConfigs(kMatmul, "cpu", "v3"), IsEmpty());
}

TEST_F(DatabaseTest, FindRecordReturnsAnyStatus) {
  std::unique_ptr<Database> db = OpenOrDie(DbPath());
  ASSERT_NE(db, nullptr);
  ASSERT_EQ(*db->AddRecords({Ok(kMatmul, "cpu", "v1", 9, {1.0, 3.0}), Failed(kMatmul, "cpu", "v1", 3, 7)}), 2);
  std::optional<Record> ok = *db->FindRecord(kMatmul, "cpu", "v1", 9);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->config_index, 9u);
  EXPECT_DOUBLE_EQ(ok->mean_cost, 2.0);
  std::optional<Record> failed = *db->FindRecord(kMatmul, "cpu", "v1", 3);
  ASSERT_TRUE(failed.has_value());
  EXPECT_EQ(failed->status, 7);
  EXPECT_FALSE(db->FindRecord(kMatmul, "cpu", "v2", 9)->has_value());
  EXPECT_FALSE(db->FindRecord(kMatmul, "gpu", "v1", 9)->has_value());
  EXPECT_FALSE(db->FindRecord(kMatmul, "cpu", "v1", 4)->has_value());
}

TEST_F(DatabaseTest, TemplateRecordsForTransfer) {
  std::unique_ptr<Database> db = OpenOrDie(DbPath());
  ASSERT_NE(db, nullptr);
  ASSERT_EQ(*db->AddRecords({Ok(kMatmul, "cpu", "v1", 1, {1.0}), Ok(kConv, "cpu", "v1", 2, {1.0}),
                             Failed(kConv, "cpu", "v1", 3, 7), Ok(kConv, "gpu", "v1", 4, {1.0})}),
            4);
  std::vector<Record> all = *db->TemplateRecords("matmul", "cpu", "none", 100);
  EXPECT_EQ(all.size(), 3u);
  for (const Record& r : all) EXPECT_EQ(r.device_key, "cpu");
  std::vector<Record> others = *db->TemplateRecords("matmul", "cpu", kMatmul, 100);
  for (const Record& r : others) EXPECT_NE(r.workload_key, kMatmul);
  EXPECT_EQ(all.size(), others.size() + 1);
  ASSERT_GE(all.size(), 2u);
  EXPECT_GT(all[0].id, all[1].id) << "newest first";
  EXPECT_EQ(db->TemplateRecords("matmul", "cpu", kMatmul, 1)->size(), 1u);
  EXPECT_FALSE(db->TemplateRecords("matmul", "cpu", kMatmul, 0).ok());
}

TEST_F(DatabaseTest, ModelsAreStoredAndTheNewestComesBack) {
  std::unique_ptr<Database> db = OpenOrDie(DbPath());
  ASSERT_NE(db, nullptr);
  EXPECT_FALSE(db->LatestModel("matmul", "cpu", 1)->has_value());
  ASSERT_TRUE(db->SaveModel({"matmul", "cpu", kMatmul, 1, 10, 1000, "{\"a\":1}"}).ok());
  ASSERT_TRUE(db->SaveModel({"matmul", "cpu", kConv, 1, 20, 2000, "{\"b\":2}"}).ok());
  ASSERT_TRUE(db->SaveModel({"matmul", "cpu", kMatmul, 1, 30, 500, "{\"a\":3}"}).ok());  // replaces
  std::optional<ModelRow> m = *db->LatestModel("matmul", "cpu", 1);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->workload_key, kConv);
  EXPECT_EQ(m->model, "{\"b\":2}");
  EXPECT_FALSE(db->LatestModel("matmul", "cpu", 2)->has_value()) << "other feature layout";
  EXPECT_FALSE(db->LatestModel("matmul", "gpu", 1)->has_value());
  EXPECT_FALSE(db->SaveModel({"", "cpu", kMatmul, 1, 1, 0, "x"}).ok());
}

// A version-1 log (no models table, no job index, no min_cost) is migrated in place,
// records kept.
TEST_F(DatabaseTest, MigratesVersionOneToCurrent) {
  {
    std::unique_ptr<Database> db = OpenOrDie(DbPath());
    ASSERT_EQ(*db->AddRecords({Ok(kMatmul, "cpu", "v1", 1, {1.0})}), 1);
  }
  {
    RawDb raw(DbPath());
    DowngradeToVersion3(raw);
    raw.Exec("DROP TABLE models");
    raw.Exec("DROP INDEX records_job");
    raw.Exec("PRAGMA user_version = 1");
  }
  std::unique_ptr<Database> db = OpenOrDie(DbPath());
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(*db->SchemaVersion(), Database::kSchemaVersion);
  EXPECT_EQ(db->CountRecords(kMatmul, "cpu")->total, 1);
  EXPECT_TRUE(db->SaveModel({"matmul", "cpu", kMatmul, 1, 1, 0, "{}"}).ok());
}

TEST_F(DatabaseTest, CountRecords) {
  std::unique_ptr<Database> db = OpenOrDie(DbPath());
  ASSERT_NE(db, nullptr);
  Database::Counts empty = *db->CountRecords(kMatmul, "cpu");
  EXPECT_EQ(empty.total, 0);
  EXPECT_EQ(empty.ok, 0);
  ASSERT_EQ(*db->AddRecords({Ok(kMatmul, "cpu", "v1", 1, {1.0}), Failed(kMatmul, "cpu", "v1", 2, 3),
                             Ok(kMatmul, "gpu", "v1", 1, {1.0}), Ok(kConv, "cpu", "v1", 1, {1.0})}),
            4);
  Database::Counts cpu = *db->CountRecords(kMatmul, "cpu");
  EXPECT_EQ(cpu.total, 2);
  EXPECT_EQ(cpu.ok, 1);
  Database::Counts any = *db->CountRecords(kMatmul, "");
  EXPECT_EQ(any.total, 3);
  EXPECT_EQ(any.ok, 2);
}

TEST_F(DatabaseTest, RejectsInvalidInput) {
  std::unique_ptr<Database> db = OpenOrDie(DbPath());
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(db->BestRecords(kMatmul, "cpu", 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(db->BestRecords(kMatmul, "cpu", -3).status().code(),
            absl::StatusCode::kInvalidArgument);

  const RecordRow good = Ok(kMatmul, "cpu", "v1", 1, {1.0});
  std::vector<RecordRow> bad_rows;
  bad_rows.push_back(Ok(kMatmul, "cpu", "v1", uint64_t{1} << 63, {1.0}));
  bad_rows.push_back(Ok(kMatmul, "cpu", "v1", std::numeric_limits<uint64_t>::max(), {1.0}));
  bad_rows.push_back(Ok("", "cpu", "v1", 2, {1.0}));
  bad_rows.push_back(Ok(kMatmul, "", "v1", 2, {1.0}));
  bad_rows.push_back(Ok(kMatmul, "cpu", "v1", 2, {std::nan("")}));
  bad_rows.push_back(Ok(kMatmul, "cpu", "v1", 2, {std::numeric_limits<double>::infinity()}));
  bad_rows.push_back(Ok(kMatmul, "cpu", "v1", 2, {}));  // status ok without costs
  for (const RecordRow& bad : bad_rows) {
    absl::StatusOr<int> added = db->AddRecords({good, bad});
    EXPECT_EQ(added.status().code(), absl::StatusCode::kInvalidArgument) << added.status();
  }
  // A rejected batch writes nothing, not even its valid rows.
  EXPECT_EQ(db->CountRecords(kMatmul, "").value().total, 0);

  EXPECT_EQ(db->UpsertDevice(DeviceRow{}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Database::Open("").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DatabaseTest, UnknownJobIdFailsTheWholeBatch) {
  std::unique_ptr<Database> db = OpenOrDie(DbPath());
  ASSERT_NE(db, nullptr);
  RecordRow orphan = Ok(kMatmul, "cpu", "v1", 2, {1.0});
  orphan.job_id = 12345;
  absl::StatusOr<int> added = db->AddRecords({Ok(kMatmul, "cpu", "v1", 1, {1.0}), orphan});
  EXPECT_EQ(added.status().code(), absl::StatusCode::kFailedPrecondition) << added.status();
  EXPECT_EQ(db->CountRecords(kMatmul, "cpu")->total, 0);
  // The connection is usable again after the rollback.
  EXPECT_EQ(*db->AddRecords({Ok(kMatmul, "cpu", "v1", 1, {1.0})}), 1);
}

TEST_F(DatabaseTest, Jobs) {
  std::unique_ptr<Database> db = OpenOrDie(DbPath());
  ASSERT_NE(db, nullptr);
  absl::StatusOr<int64_t> id = db->CreateJob(R"({"trials":100})");
  ASSERT_TRUE(id.ok()) << id.status();
  absl::StatusOr<int64_t> id2 = db->CreateJob("{}");
  ASSERT_TRUE(id2.ok());
  EXPECT_NE(*id, *id2);

  absl::StatusOr<Job> job = db->GetJob(*id);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->id, *id);
  EXPECT_EQ(job->spec_json, R"({"trials":100})");
  EXPECT_EQ(job->state, "running");
  EXPECT_EQ(job->message, "");
  EXPECT_GT(job->created_ms, 0);
  EXPECT_EQ(job->updated_ms, job->created_ms);

  ASSERT_TRUE(db->UpdateJob(*id, "done", "best 1.2 ms").ok());
  job = db->GetJob(*id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state, "done");
  EXPECT_EQ(job->message, "best 1.2 ms");
  EXPECT_GE(job->updated_ms, job->created_ms);
  EXPECT_EQ(db->GetJob(*id2)->state, "running");

  EXPECT_EQ(db->GetJob(999).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(db->UpdateJob(999, "done", "").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(db->UpdateJob(*id, "", "").code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DatabaseTest, DevicesUpsertAndList) {
  std::unique_ptr<Database> db = OpenOrDie(DbPath());
  ASSERT_NE(db, nullptr);
  EXPECT_THAT(*db->ListDevices(), IsEmpty());
  ASSERT_TRUE(db->UpsertDevice({"h100", "cuda", "sm_90", "NVIDIA H100", "{}", 1000}).ok());
  ASSERT_TRUE(db->UpsertDevice({"epyc-avx2", "cpu", "x86_64-avx2", "EPYC 7763", "{}", 0}).ok());
  ASSERT_TRUE(
      db->UpsertDevice({"h100", "cuda", "sm_90", "NVIDIA H100 80GB HBM3", R"({"a":1})", 2000})
          .ok());

  std::vector<DeviceRow> devices = *db->ListDevices();
  ASSERT_EQ(devices.size(), 2u);
  EXPECT_EQ(devices[0].device_key, "epyc-avx2");
  EXPECT_EQ(devices[0].kind, "cpu");
  EXPECT_GT(devices[0].last_seen_ms, 1'600'000'000'000) << "0 means now";
  EXPECT_EQ(devices[1].device_key, "h100");
  EXPECT_EQ(devices[1].arch, "sm_90");
  EXPECT_EQ(devices[1].model, "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(devices[1].target_json, R"({"a":1})");
  EXPECT_EQ(devices[1].last_seen_ms, 2000);
}

TEST_F(DatabaseTest, HeldWriteLockGivesUnavailable) {
  OpenOptions no_wait;
  no_wait.busy_timeout_ms = 0;
  std::unique_ptr<Database> db = OpenOrDie(DbPath(), no_wait);
  ASSERT_NE(db, nullptr);
  {
    RawDb raw(DbPath());
    raw.Exec("BEGIN IMMEDIATE");
    absl::StatusOr<int> added = db->AddRecords({Ok(kMatmul, "cpu", "v1", 1, {1.0})});
    EXPECT_EQ(added.status().code(), absl::StatusCode::kUnavailable) << added.status();
    // WAL: readers are not blocked by the writer.
    EXPECT_TRUE(db->CountRecords(kMatmul, "cpu").ok());
    raw.Exec("ROLLBACK");
  }
  EXPECT_EQ(*db->AddRecords({Ok(kMatmul, "cpu", "v1", 1, {1.0})}), 1);
}

TEST_F(DatabaseTest, BestQueryUsesIndexWithoutSorting) {
  { ASSERT_NE(OpenOrDie(DbPath()), nullptr); }
  sqlite3* conn = nullptr;
  ASSERT_EQ(sqlite3_open_v2(DbPath().c_str(), &conn, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  // The same filters as BestRecords: one device, or any device but replays.
  for (const char* device_filter :
       {"AND r.device_key = 'cpu' ",
        "AND NOT EXISTS (SELECT 1 FROM devices d "
        "WHERE d.device_key = r.device_key AND d.kind = 'replay') "}) {
    const std::string sql = std::string(
                                "EXPLAIN QUERY PLAN SELECT r.id, t.target_json FROM records r "
                                "JOIN workloads w ON w.id = r.workload_id "
                                "LEFT JOIN targets t ON t.id = r.target_id "
                                "WHERE w.key = 'x' AND r.status = 0 ") +
                            device_filter + "ORDER BY r.min_cost, r.id LIMIT 5";
    sqlite3_stmt* stmt = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(conn, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK);
    std::string plan;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      plan += reinterpret_cast<const char*>(sqlite3_column_text(stmt, 3));
      plan += "\n";
    }
    sqlite3_finalize(stmt);
    EXPECT_THAT(plan, HasSubstr("records_best")) << plan;
    EXPECT_THAT(plan, ::testing::Not(HasSubstr("TEMP B-TREE"))) << plan;
    // The replay check probes the devices primary key, never scans devices.
    EXPECT_THAT(plan, ::testing::Not(HasSubstr("SCAN d"))) << plan;
  }
  sqlite3_close_v2(conn);
}

// Invariants a reader must see while a writer commits batches of kBatch
// records (half of them failures) with ever lower costs: counts only grow,
// always by whole batches, and best-k is consistent with the ok count.
constexpr int kBatch = 8;
constexpr int kBatches = 120;
constexpr int kTopK = 5;

std::vector<RecordRow> Batch(int b) {
  std::vector<RecordRow> rows;
  for (int i = 0; i < kBatch; ++i) {
    const uint64_t index = static_cast<uint64_t>(b * kBatch + i);
    if (i % 2 == 0) {
      rows.push_back(Ok(kMatmul, "cpu", "v1", index, {1e6 - static_cast<double>(index)}));
    } else {
      rows.push_back(Failed(kMatmul, "cpu", "v1", index, 4));
    }
  }
  return rows;
}

// One read round; returns the total seen, or -1 after recording a failure.
int64_t CheckReaderRound(Database& reader, int64_t previous_total) {
  absl::StatusOr<Database::Counts> counts = reader.CountRecords(kMatmul, "cpu");
  EXPECT_TRUE(counts.ok()) << counts.status();
  if (!counts.ok()) return -1;
  EXPECT_EQ(counts->total % kBatch, 0) << counts->total;
  EXPECT_EQ(counts->ok * 2, counts->total);
  EXPECT_GE(counts->total, previous_total);

  absl::StatusOr<std::vector<Record>> best = reader.BestRecords(kMatmul, "cpu", kTopK);
  EXPECT_TRUE(best.ok()) << best.status();
  if (!best.ok()) return -1;
  // The best query runs after the count, so it sees at least as many rows.
  EXPECT_GE(best->size(), std::min<size_t>(kTopK, static_cast<size_t>(counts->ok)));
  EXPECT_LE(best->size(), static_cast<size_t>(kTopK));
  for (size_t i = 0; i < best->size(); ++i) {
    EXPECT_EQ((*best)[i].status, 0);
    if (i > 0) {
      EXPECT_LE((*best)[i - 1].mean_cost, (*best)[i].mean_cost);
    }
  }
  if (::testing::Test::HasFailure()) return -1;
  return counts->total;
}

TEST_F(DatabaseTest, ReaderSeesWholeBatchesWhileAnotherConnectionWrites) {
  std::unique_ptr<Database> writer = OpenOrDie(DbPath());
  std::unique_ptr<Database> reader = OpenOrDie(DbPath());
  ASSERT_NE(writer, nullptr);
  ASSERT_NE(reader, nullptr);

  std::atomic<bool> done{false};
  std::thread writer_thread([&] {
    for (int b = 0; b < kBatches; ++b) {
      absl::StatusOr<int> added = writer->AddRecords(Batch(b));
      EXPECT_TRUE(added.ok()) << added.status();
      EXPECT_EQ(added.value_or(-1), kBatch);
      // The same object is also read from this thread while the main thread
      // reads through the other connection.
      if (b % 10 == 0) {
        EXPECT_TRUE(writer->CountRecords(kMatmul, "cpu").ok());
      }
    }
    done = true;
  });

  int64_t total = 0;
  int rounds = 0;
  while (!done || rounds == 0) {
    total = CheckReaderRound(*reader, total);
    ++rounds;
    if (total < 0) break;
  }
  writer_thread.join();
  EXPECT_EQ(CheckReaderRound(*reader, total), kBatch * kBatches);
  EXPECT_GT(rounds, 1);
}

TEST_F(DatabaseTest, ReaderSeesWholeBatchesWhileAnotherProcessWrites) {
  // Create the schema first, and close it: a connection must not cross fork().
  { ASSERT_NE(OpenOrDie(DbPath()), nullptr); }
  const std::string path = DbPath();

  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int rc = 0;
    absl::StatusOr<std::unique_ptr<Database>> db = Database::Open(path);
    if (!db.ok()) _exit(2);
    for (int b = 0; b < kBatches && rc == 0; ++b) {
      absl::StatusOr<int> added = (*db)->AddRecords(Batch(b));
      if (!added.ok() || *added != kBatch) rc = 3;
    }
    db->reset();
    _exit(rc);
  }

  std::unique_ptr<Database> reader = OpenOrDie(path);
  ASSERT_NE(reader, nullptr);
  int64_t total = 0;
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (true) {
    const pid_t waited = waitpid(child, &status, WNOHANG);
    total = CheckReaderRound(*reader, total);
    if (waited == child || total < 0 || std::chrono::steady_clock::now() > deadline) {
      if (waited != child) {
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
        ADD_FAILURE() << "writer process did not finish, or a reader check failed";
      }
      break;
    }
  }
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(CheckReaderRound(*reader, total), kBatch * kBatches);
}

TEST_F(DatabaseTest, SharedObjectAcrossThreads) {
  std::unique_ptr<Database> db = OpenOrDie(DbPath());
  ASSERT_NE(db, nullptr);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 25;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&db, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const uint64_t index = static_cast<uint64_t>(t * kPerThread + i);
        EXPECT_EQ(db->AddRecords({Ok(kMatmul, "cpu", "v1", index, {1.0 + i})}).value_or(-1), 1);
        EXPECT_TRUE(db->BestRecords(kMatmul, "cpu", 3).ok());
        EXPECT_TRUE(db->MeasuredConfigs(kMatmul, "cpu", "v1").ok());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(db->CountRecords(kMatmul, "cpu")->total, kThreads * kPerThread);
  EXPECT_EQ(db->MeasuredConfigs(kMatmul, "cpu", "v1")->size(),
            static_cast<size_t>(kThreads * kPerThread));
}

// Sets an environment variable for one scope, restoring the old value.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value != nullptr) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(DefaultDatabasePathTest, FollowsEnvironment) {
  ScopedEnv home("HOME", "/home/someone");
  {
    ScopedEnv db("TUNEFARM_DB", "/srv/tunefarm/log.db");
    ScopedEnv xdg("XDG_DATA_HOME", "/xdg");
    EXPECT_EQ(DefaultDatabasePath(), "/srv/tunefarm/log.db");
  }
  {
    ScopedEnv db("TUNEFARM_DB", nullptr);
    ScopedEnv xdg("XDG_DATA_HOME", "/xdg");
    EXPECT_EQ(DefaultDatabasePath(), "/xdg/tunefarm/tunefarm.db");
  }
  {
    ScopedEnv db("TUNEFARM_DB", "");
    ScopedEnv xdg("XDG_DATA_HOME", nullptr);
    EXPECT_EQ(DefaultDatabasePath(), "/home/someone/.local/share/tunefarm/tunefarm.db");
  }
  {
    ScopedEnv db("TUNEFARM_DB", nullptr);
    ScopedEnv xdg("XDG_DATA_HOME", "relative/ignored");
    EXPECT_EQ(DefaultDatabasePath(), "/home/someone/.local/share/tunefarm/tunefarm.db");
  }
}

}  // namespace
}  // namespace tunefarm::database
