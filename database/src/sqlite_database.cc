// SQLite implementation of tunefarm::database::Database.

#include <pwd.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/cord.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"
#include "sqlite_handles.h"
#include "tunefarm/database/database.h"

// Local to this file; abseil 20220623 has no public ASSIGN_OR_RETURN.
#define TF_DB_RETURN_IF_ERROR(expr)                \
  do {                                             \
    absl::Status tf_db_status_ = (expr);           \
    if (!tf_db_status_.ok()) return tf_db_status_; \
  } while (0)

#define TF_DB_CONCAT_INNER(a, b) a##b
#define TF_DB_CONCAT(a, b) TF_DB_CONCAT_INNER(a, b)
#define TF_DB_ASSIGN_OR_RETURN(lhs, expr) \
  TF_DB_ASSIGN_OR_RETURN_IMPL(TF_DB_CONCAT(tf_db_statusor_, __LINE__), lhs, expr)
#define TF_DB_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return std::move(tmp).status();    \
  lhs = std::move(tmp).value()

namespace tunefarm::database {
namespace {

using internal::ConnectionPtr;
using internal::SqliteStatus;
using internal::Statement;
using internal::StatementPtr;

// Migration i (0-based) takes the schema from version i to i + 1. Append
// only: a released migration never changes, because databases already past
// it will not run it again.
constexpr std::array<std::string_view, 4> kMigrations = {
    // Version 1: the initial schema.
    R"sql(
CREATE TABLE workloads (
  id INTEGER PRIMARY KEY,
  key TEXT UNIQUE NOT NULL,
  op TEXT NOT NULL
);
CREATE TABLE devices (
  device_key TEXT PRIMARY KEY,
  kind TEXT NOT NULL DEFAULT '',
  arch TEXT NOT NULL DEFAULT '',
  model TEXT NOT NULL DEFAULT '',
  target_json TEXT NOT NULL DEFAULT '',
  last_seen_ms INTEGER NOT NULL DEFAULT 0
);
-- Provenance: identical targets (same device key, target JSON and
-- toolchain) share one row, found by fingerprint.
CREATE TABLE targets (
  id INTEGER PRIMARY KEY,
  device_key TEXT NOT NULL,
  fingerprint TEXT UNIQUE NOT NULL,
  target_json TEXT NOT NULL,
  toolchain TEXT NOT NULL
);
CREATE TABLE jobs (
  id INTEGER PRIMARY KEY,
  spec_json TEXT NOT NULL,
  state TEXT NOT NULL,
  message TEXT NOT NULL DEFAULT '',
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
);
-- mean_cost is NULL for failed measurements; the API reports +inf.
CREATE TABLE records (
  id INTEGER PRIMARY KEY,
  workload_id INTEGER NOT NULL REFERENCES workloads(id),
  device_key TEXT NOT NULL,
  target_id INTEGER REFERENCES targets(id),
  template_name TEXT NOT NULL,
  template_version TEXT NOT NULL,
  config_index INTEGER NOT NULL CHECK (config_index >= 0),
  config_json TEXT NOT NULL,
  costs_json TEXT NOT NULL,
  mean_cost REAL,
  status INTEGER NOT NULL,
  error TEXT NOT NULL,
  compile_time_s REAL NOT NULL,
  agent_id TEXT NOT NULL,
  timestamp_ms INTEGER NOT NULL,
  job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
  UNIQUE (workload_id, device_key, template_version, config_index)
);
-- Best-k on one device walks this index in mean_cost order and stops after
-- k rows; the second serves best-k across all devices the same way.
CREATE INDEX records_best ON records(workload_id, device_key, status, mean_cost);
CREATE INDEX records_best_any ON records(workload_id, status, mean_cost);
)sql",
    // Version 2: trained cost models, so a later run can reuse them.
    R"sql(
CREATE TABLE models (
  id INTEGER PRIMARY KEY,
  template_name TEXT NOT NULL,
  device_key TEXT NOT NULL,
  workload_key TEXT NOT NULL,
  feature_version INTEGER NOT NULL,
  rows INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  model TEXT NOT NULL,
  UNIQUE (template_name, device_key, workload_key)
);
CREATE INDEX models_latest ON models(template_name, device_key, feature_version, created_ms);
)sql",
    // Version 3: a job's progress is counted from its records.
    R"sql(
CREATE INDEX records_job ON records(job_id, workload_id);
)sql",
    // Version 4: records rank by their fastest measurement (min_cost), NULL
    // for failures as mean_cost is; the best-k indexes follow it.
    R"sql(
ALTER TABLE records ADD COLUMN min_cost REAL;
UPDATE records SET min_cost = (SELECT MIN(value) FROM json_each(records.costs_json))
  WHERE mean_cost IS NOT NULL;
DROP INDEX records_best;
DROP INDEX records_best_any;
CREATE INDEX records_best ON records(workload_id, device_key, status, min_cost);
CREATE INDEX records_best_any ON records(workload_id, status, min_cost);
)sql",
};
// Marks the FAILED_PRECONDITION of a read-only open of a file too old to
// read (OpenOptions::migrate_older).
constexpr char kOlderSchemaPayload[] = "tunefarm.database/older-schema";
// A read-only connection can use a file at this schema version or later:
// the migrations after it only add indexes, which queries do not need.
constexpr int kOldestReadableSchema = 4;

static_assert(kMigrations.size() == Database::kSchemaVersion,
              "every schema version needs exactly one migration");

constexpr int64_t kMaxConfigIndex = std::numeric_limits<int64_t>::max();

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The op of a workload key: the text before '(' ("matmul" for
// "matmul(M=1,...)"), or the whole key when it has no arguments.
std::string_view WorkloadOp(std::string_view key) { return key.substr(0, key.find('(')); }

// FNV-1a over length-prefixed fields, so ("ab", "c") and ("a", "bc") differ.
// Stable across builds and platforms, unlike std::hash; collisions are caught
// when the row is looked up (see TargetIdLocked).
std::string TargetFingerprint(std::string_view device_key, std::string_view target_json,
                              std::string_view toolchain) {
  uint64_t hash = 14695981039346656037ULL;
  auto mix_byte = [&hash](unsigned char byte) {
    hash ^= byte;
    hash *= 1099511628211ULL;
  };
  for (std::string_view field : {device_key, target_json, toolchain}) {
    uint64_t size = field.size();
    for (int i = 0; i < 8; ++i) mix_byte(static_cast<unsigned char>(size >> (8 * i)));
    for (char c : field) mix_byte(static_cast<unsigned char>(c));
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, hash >>= 4) out[static_cast<size_t>(i)] = kHex[hash & 0xf];
  return out;
}

absl::Status ValidateRow(const RecordRow& row, size_t index) {
  auto invalid = [index](std::string_view what) {
    return absl::InvalidArgumentError("record " + std::to_string(index) + ": " + std::string(what));
  };
  if (row.workload_key.empty()) return invalid("empty workload_key");
  if (row.device_key.empty()) return invalid("empty device_key");
  if (row.config_index > static_cast<uint64_t>(kMaxConfigIndex)) {
    return invalid("config_index " + std::to_string(row.config_index) + " is >= 2^63");
  }
  for (double cost : row.costs) {
    if (!std::isfinite(cost)) return invalid("non-finite cost");
  }
  if (row.status == 0 && row.costs.empty()) return invalid("status ok but no costs");
  if (row.timestamp_ms < 0) return invalid("negative timestamp_ms");
  return absl::OkStatus();
}

// Columns and joins shared by every query that returns Record; ReadRecord
// decodes the columns in this order.
constexpr std::string_view kRecordSelect =
    "r.id, w.key, r.device_key, t.target_json, t.toolchain, r.template_name, "
    "r.template_version, r.config_index, r.config_json, r.costs_json, r.mean_cost, "
    "r.status, r.error, r.compile_time_s, r.agent_id, r.timestamp_ms, r.job_id, r.min_cost "
    "FROM records r JOIN workloads w ON w.id = r.workload_id "
    "LEFT JOIN targets t ON t.id = r.target_id ";

// The costs_json column of record `id`.
absl::StatusOr<std::vector<double>> ParseCosts(int64_t id, const std::string& text) {
  nlohmann::json costs = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!costs.is_array()) {
    return absl::DataLossError("record " + std::to_string(id) + ": costs_json is not a JSON array: " + text);
  }
  std::vector<double> out;
  out.reserve(costs.size());
  for (const nlohmann::json& cost : costs) {
    if (!cost.is_number()) {
      return absl::DataLossError("record " + std::to_string(id) + ": non-numeric cost in costs_json: " + text);
    }
    out.push_back(cost.get<double>());
  }
  return out;
}

// The mean_cost and min_cost columns of a successful record.
double MeanCost(const std::vector<double>& costs) {
  double sum = 0;
  for (double cost : costs) sum += cost;
  return sum / static_cast<double>(costs.size());
}
double MinCost(const std::vector<double>& costs) { return *std::min_element(costs.begin(), costs.end()); }

absl::StatusOr<Record> ReadRecord(const Statement& stmt) {
  Record rec;
  rec.id = stmt.Int64(0);
  rec.workload_key = stmt.Text(1);
  rec.device_key = stmt.Text(2);
  rec.target_json = stmt.Text(3);
  rec.toolchain = stmt.Text(4);
  rec.template_name = stmt.Text(5);
  rec.template_version = stmt.Text(6);
  rec.config_index = static_cast<uint64_t>(stmt.Int64(7));
  rec.config_json = stmt.Text(8);
  TF_DB_ASSIGN_OR_RETURN(rec.costs, ParseCosts(rec.id, stmt.Text(9)));
  rec.mean_cost = stmt.IsNull(10) ? std::numeric_limits<double>::infinity() : stmt.Double(10);
  rec.status = static_cast<int>(stmt.Int64(11));
  rec.error = stmt.Text(12);
  rec.compile_time_s = stmt.Double(13);
  rec.agent_id = stmt.Text(14);
  rec.timestamp_ms = stmt.Int64(15);
  if (!stmt.IsNull(16)) rec.job_id = stmt.Int64(16);
  rec.min_cost = stmt.IsNull(17) ? std::numeric_limits<double>::infinity() : stmt.Double(17);
  return rec;
}

// Columns of every query that returns Job, in this order.
constexpr std::string_view kJobSelect = "SELECT id, spec_json, state, created_ms, updated_ms, message FROM jobs";

Job ReadJob(const Statement& stmt) {
  Job job;
  job.id = stmt.Int64(0);
  job.spec_json = stmt.Text(1);
  job.state = stmt.Text(2);
  job.created_ms = stmt.Int64(3);
  job.updated_ms = stmt.Int64(4);
  job.message = stmt.Text(5);
  return job;
}

// Every remaining row of a query built on kRecordSelect.
absl::StatusOr<std::vector<Record>> ReadRecords(Statement& stmt) {
  std::vector<Record> out;
  while (true) {
    TF_DB_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
    if (!has_row) break;
    TF_DB_ASSIGN_OR_RETURN(Record rec, ReadRecord(stmt));
    out.push_back(std::move(rec));
  }
  return out;
}

// An explicit transaction that rolls back unless committed.
class Transaction {
 public:
  // BEGIN IMMEDIATE takes the write lock up front (waiting out the busy
  // timeout). A deferred transaction that reads and then writes can instead
  // fail at once with SQLITE_BUSY_SNAPSHOT when another writer commits in
  // between, and the busy handler cannot help it.
  static absl::StatusOr<Transaction> BeginImmediate(sqlite3* db) {
    const int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return SqliteStatus(db, rc, "BEGIN IMMEDIATE");
    return Transaction(db);
  }
  Transaction(Transaction&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction() {
    // An error such as SQLITE_FULL may already have rolled SQLite back.
    if (db_ != nullptr && sqlite3_get_autocommit(db_) == 0) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }

  absl::Status Commit() {
    sqlite3* db = std::exchange(db_, nullptr);
    const int rc = sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) return absl::OkStatus();
    absl::Status status = SqliteStatus(db, rc, "COMMIT");
    if (sqlite3_get_autocommit(db) == 0) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return status;
  }

 private:
  explicit Transaction(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

class SqliteDatabase final : public Database {
 public:
  SqliteDatabase(ConnectionPtr db, std::string path, bool read_only)
      : path_(std::move(path)), read_only_(read_only), db_(std::move(db)) {}

  // Applies connection settings, then migrates (read-write) or checks the
  // schema version (read-only). Called once, before the object is shared.
  absl::Status Init(const OpenOptions& options, bool in_memory);

  absl::StatusOr<int> SchemaVersion() override {
    std::lock_guard<std::mutex> lock(mu_);
    return UserVersionLocked();
  }

  absl::StatusOr<int> AddRecords(const std::vector<RecordRow>& rows) override { return AddRecords(rows, false); }
  absl::StatusOr<int> MergeRecords(const std::vector<RecordRow>& rows) override { return AddRecords(rows, true); }
  absl::StatusOr<std::vector<Record>> BestRecords(std::string_view workload_key,
                                                  std::string_view device_key, int k,
                                                  std::string_view template_version) override;
  absl::StatusOr<std::vector<Record>> TemplateRecords(std::string_view template_name,
                                                      std::string_view device_key,
                                                      std::string_view exclude_workload_key,
                                                      int limit) override;
  absl::StatusOr<std::optional<Record>> FindRecord(std::string_view workload_key,
                                                   std::string_view device_key,
                                                   std::string_view template_version,
                                                   uint64_t config_index) override;
  absl::StatusOr<std::vector<uint64_t>> MeasuredConfigs(std::string_view workload_key,
                                                        std::string_view device_key,
                                                        std::string_view template_version) override;
  absl::StatusOr<Counts> CountRecords(std::string_view workload_key,
                                      std::string_view device_key) override;
  absl::Status SaveModel(const ModelRow& model) override;
  absl::StatusOr<std::optional<ModelRow>> LatestModel(std::string_view template_name, std::string_view device_key,
                                                      int feature_version) override;
  absl::Status UpsertDevice(const DeviceRow& device) override;
  absl::StatusOr<std::vector<DeviceRow>> ListDevices() override;
  absl::StatusOr<int64_t> CreateJob(std::string_view spec_json) override;
  absl::Status UpdateJob(int64_t id, std::string_view state, std::string_view message) override;
  absl::StatusOr<Job> GetJob(int64_t id) override;
  absl::StatusOr<std::vector<Job>> ListJobs(bool include_finished, int limit) override;
  absl::StatusOr<std::vector<Record>> ListRecords(std::string_view workload_key, std::string_view device_key,
                                                  int64_t after_id, int limit) override;
  absl::StatusOr<std::vector<JobTaskCount>> JobRecordCounts(int64_t job_id) override;

 private:
  // All *Locked methods require mu_ held.
  absl::StatusOr<Statement> PrepareLocked(const std::string& sql);
  absl::Status ExecLocked(std::string_view sql, std::string_view context);
  absl::StatusOr<int> UserVersionLocked();
  absl::Status MigrateLocked();
  absl::StatusOr<int64_t> WorkloadIdLocked(std::string_view key);
  // AddRecords, or with `merge` MergeRecords.
  absl::StatusOr<int> AddRecords(const std::vector<RecordRow>& rows, bool merge);
  // MergeRecords for one row: nullopt when its record is absent, else
  // whether the record changed (a failed record stays as it is).
  absl::StatusOr<std::optional<bool>> MergeLocked(int64_t workload_id, const RecordRow& row);
  absl::StatusOr<int64_t> TargetIdLocked(const RecordRow& row);

  absl::Status CheckWritable() const {
    if (read_only_) {
      return absl::FailedPreconditionError("database " + path_ + " is open read-only");
    }
    return absl::OkStatus();
  }

  const std::string path_;
  const bool read_only_;

  std::mutex mu_;
  // Guarded by mu_: the connection is opened without SQLite's own mutex, so
  // every use of db_ and of the statements in stmt_cache_ holds mu_.
  // Declared before stmt_cache_ so the statements are finalized first.
  ConnectionPtr db_;
  // Prepared statements by SQL text; guarded by mu_.
  std::unordered_map<std::string, StatementPtr> stmt_cache_;
};

absl::StatusOr<Statement> SqliteDatabase::PrepareLocked(const std::string& sql) {
  auto it = stmt_cache_.find(sql);
  if (it == stmt_cache_.end()) {
    sqlite3_stmt* raw = nullptr;
    const int rc = sqlite3_prepare_v3(db_.get(), sql.data(), static_cast<int>(sql.size()),
                                      SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    StatementPtr stmt(raw);
    if (rc != SQLITE_OK) return SqliteStatus(db_.get(), rc, "preparing: " + sql);
    it = stmt_cache_.emplace(sql, std::move(stmt)).first;
  }
  // A statement is lent to one Statement at a time; a nested loan of the
  // same SQL would reset the outer one mid-iteration.
  assert(!sqlite3_stmt_busy(it->second.get()));
  return Statement(db_.get(), it->second.get());
}

absl::Status SqliteDatabase::ExecLocked(std::string_view sql, std::string_view context) {
  const std::string text(sql);
  const int rc = sqlite3_exec(db_.get(), text.c_str(), nullptr, nullptr, nullptr);
  return SqliteStatus(db_.get(), rc, context);
}

absl::StatusOr<int> SqliteDatabase::UserVersionLocked() {
  TF_DB_ASSIGN_OR_RETURN(Statement stmt, PrepareLocked("PRAGMA user_version"));
  TF_DB_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
  if (!has_row) return absl::InternalError("PRAGMA user_version returned no row");
  return static_cast<int>(stmt.Int64(0));
}

absl::Status NewerSchemaError(const std::string& path, int version) {
  return absl::FailedPreconditionError(
      "database " + path + " has schema version " + std::to_string(version) +
      ", newer than this build of tunefarm supports (" + std::to_string(Database::kSchemaVersion) +
      "); upgrade tunefarm or use another database file");
}

absl::Status SqliteDatabase::MigrateLocked() {
  TF_DB_ASSIGN_OR_RETURN(int version, UserVersionLocked());
  if (version > kSchemaVersion) return NewerSchemaError(path_, version);
  if (version == kSchemaVersion) return absl::OkStatus();

  TF_DB_ASSIGN_OR_RETURN(Transaction tx, Transaction::BeginImmediate(db_.get()));
  // Another process may have migrated between the read above and the lock.
  TF_DB_ASSIGN_OR_RETURN(version, UserVersionLocked());
  if (version > kSchemaVersion) return NewerSchemaError(path_, version);
  if (version == kSchemaVersion) return absl::OkStatus();
  if (version < 0) {
    return absl::FailedPreconditionError("database " + path_ + " has invalid schema version " +
                                         std::to_string(version));
  }
  const int from = version;
  for (int v = from; v < kSchemaVersion; ++v) {
    TF_DB_RETURN_IF_ERROR(
        ExecLocked(kMigrations[static_cast<size_t>(v)],
                   "migrating " + path_ + " to schema version " + std::to_string(v + 1)));
  }
  // PRAGMA takes no bound parameters; the value is our own integer.
  TF_DB_RETURN_IF_ERROR(ExecLocked("PRAGMA user_version = " + std::to_string(kSchemaVersion),
                                   "setting user_version"));
  TF_DB_RETURN_IF_ERROR(tx.Commit());
  spdlog::info("database {}: migrated schema from version {} to {}", path_, from, kSchemaVersion);
  return absl::OkStatus();
}

absl::Status SqliteDatabase::Init(const OpenOptions& options, bool in_memory) {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_extended_result_codes(db_.get(), 1);
  sqlite3_busy_timeout(db_.get(), options.busy_timeout_ms);
  if (!in_memory && !read_only_) {
    // journal_mode is persistent in the file, so a read-only connection gets
    // WAL from whoever created the file; changing it needs write access.
    TF_DB_ASSIGN_OR_RETURN(Statement stmt, PrepareLocked("PRAGMA journal_mode=WAL"));
    TF_DB_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
    const std::string mode = has_row ? stmt.Text(0) : "";
    if (mode != "wal") {
      return absl::FailedPreconditionError("database " + path_ +
                                           ": cannot enable WAL journal mode (got '" + mode +
                                           "'); is the file on a network filesystem?");
    }
  }
  // Per-connection settings. synchronous=NORMAL is durable across process
  // crashes in WAL mode; only an OS crash can lose the last commits.
  TF_DB_RETURN_IF_ERROR(ExecLocked("PRAGMA synchronous=NORMAL", "PRAGMA synchronous"));
  TF_DB_RETURN_IF_ERROR(ExecLocked("PRAGMA foreign_keys=ON", "PRAGMA foreign_keys"));

  if (!read_only_) return MigrateLocked();
  TF_DB_ASSIGN_OR_RETURN(int version, UserVersionLocked());
  if (version > kSchemaVersion) return NewerSchemaError(path_, version);
  if (version < kOldestReadableSchema) {
    absl::Status older = absl::FailedPreconditionError(
        "database " + path_ + " has schema version " + std::to_string(version) + ", older than this build's " +
        std::to_string(kSchemaVersion) + "; open it read-write once to migrate it");
    older.SetPayload(kOlderSchemaPayload, absl::Cord(std::to_string(version)));
    return older;
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> SqliteDatabase::WorkloadIdLocked(std::string_view key) {
  {
    TF_DB_ASSIGN_OR_RETURN(
        Statement insert,
        PrepareLocked("INSERT INTO workloads(key, op) VALUES(?1, ?2) ON CONFLICT(key) DO NOTHING"));
    insert.Bind(1, key);
    insert.Bind(2, WorkloadOp(key));
    TF_DB_RETURN_IF_ERROR(insert.Run());
  }
  TF_DB_ASSIGN_OR_RETURN(Statement select,
                         PrepareLocked("SELECT id FROM workloads WHERE key = ?1"));
  select.Bind(1, key);
  TF_DB_ASSIGN_OR_RETURN(bool has_row, select.Step());
  if (!has_row) return absl::InternalError("workload row vanished inside a transaction");
  return select.Int64(0);
}

absl::StatusOr<int64_t> SqliteDatabase::TargetIdLocked(const RecordRow& row) {
  const std::string fingerprint = TargetFingerprint(row.device_key, row.target_json, row.toolchain);
  {
    TF_DB_ASSIGN_OR_RETURN(
        Statement insert, PrepareLocked("INSERT INTO targets(device_key, fingerprint, target_json, "
                                        "toolchain) VALUES(?1, ?2, ?3, ?4) "
                                        "ON CONFLICT(fingerprint) DO NOTHING"));
    insert.Bind(1, row.device_key);
    insert.Bind(2, fingerprint);
    insert.Bind(3, row.target_json);
    insert.Bind(4, row.toolchain);
    TF_DB_RETURN_IF_ERROR(insert.Run());
  }
  TF_DB_ASSIGN_OR_RETURN(
      Statement select,
      PrepareLocked(
          "SELECT id, device_key, target_json, toolchain FROM targets WHERE fingerprint = ?1"));
  select.Bind(1, fingerprint);
  TF_DB_ASSIGN_OR_RETURN(bool has_row, select.Step());
  if (!has_row) return absl::InternalError("target row vanished inside a transaction");
  if (select.Text(1) != row.device_key || select.Text(2) != row.target_json ||
      select.Text(3) != row.toolchain) {
    // Never attach a record to someone else's target.
    return absl::InternalError("target fingerprint collision on " + fingerprint);
  }
  return select.Int64(0);
}

absl::StatusOr<std::optional<bool>> SqliteDatabase::MergeLocked(int64_t workload_id, const RecordRow& row) {
  TF_DB_ASSIGN_OR_RETURN(Statement select,
                         PrepareLocked("SELECT id, costs_json, status FROM records WHERE workload_id = ?1 AND "
                                       "device_key = ?2 AND template_version = ?3 AND config_index = ?4"));
  select.Bind(1, workload_id);
  select.Bind(2, row.device_key);
  select.Bind(3, row.template_version);
  select.Bind(4, static_cast<int64_t>(row.config_index));
  TF_DB_ASSIGN_OR_RETURN(bool found, select.Step());
  if (!found) return std::nullopt;
  if (select.Int64(2) != 0) return std::optional<bool>(false);
  const int64_t id = select.Int64(0);
  TF_DB_ASSIGN_OR_RETURN(std::vector<double> costs, ParseCosts(id, select.Text(1)));
  TF_DB_ASSIGN_OR_RETURN(Statement update,
                         PrepareLocked("UPDATE records SET costs_json = ?2, mean_cost = ?3, status = ?4, "
                                       "error = ?5, min_cost = ?6 WHERE id = ?1"));
  update.Bind(1, id);
  if (row.status == 0) costs.insert(costs.end(), row.costs.begin(), row.costs.end());
  update.Bind(2, nlohmann::json(costs).dump());
  if (row.status == 0) {
    update.Bind(3, MeanCost(costs));
    update.Bind(6, MinCost(costs));
  } else {
    update.BindNull(3);
    update.BindNull(6);
  }
  update.Bind(4, static_cast<int64_t>(row.status));
  update.Bind(5, row.status == 0 ? std::string() : row.error);
  TF_DB_RETURN_IF_ERROR(update.Run());
  return std::optional<bool>(true);
}

absl::StatusOr<int> SqliteDatabase::AddRecords(const std::vector<RecordRow>& rows, bool merge) {
  TF_DB_RETURN_IF_ERROR(CheckWritable());
  // Validate everything first: a bad row rejects the batch before any write.
  for (size_t i = 0; i < rows.size(); ++i) TF_DB_RETURN_IF_ERROR(ValidateRow(rows[i], i));
  if (rows.empty()) return 0;
  const int64_t now = NowMs();

  std::lock_guard<std::mutex> lock(mu_);
  TF_DB_ASSIGN_OR_RETURN(Transaction tx, Transaction::BeginImmediate(db_.get()));
  // Batches usually share one workload and one target; skip the lookups.
  std::unordered_map<std::string_view, int64_t> workload_ids;
  const RecordRow* last_target_row = nullptr;
  int64_t last_target_id = 0;
  int inserted = 0;
  for (const RecordRow& row : rows) {
    int64_t workload_id = 0;
    if (auto it = workload_ids.find(row.workload_key); it != workload_ids.end()) {
      workload_id = it->second;
    } else {
      TF_DB_ASSIGN_OR_RETURN(workload_id, WorkloadIdLocked(row.workload_key));
      workload_ids.emplace(row.workload_key, workload_id);
    }
    if (merge) {
      TF_DB_ASSIGN_OR_RETURN(std::optional<bool> changed, MergeLocked(workload_id, row));
      if (changed.has_value()) {
        inserted += *changed ? 1 : 0;
        continue;
      }
    }
    int64_t target_id = 0;
    if (last_target_row != nullptr && last_target_row->device_key == row.device_key &&
        last_target_row->target_json == row.target_json &&
        last_target_row->toolchain == row.toolchain) {
      target_id = last_target_id;
    } else {
      TF_DB_ASSIGN_OR_RETURN(target_id, TargetIdLocked(row));
      last_target_row = &row;
      last_target_id = target_id;
    }

    TF_DB_ASSIGN_OR_RETURN(
        Statement insert,
        PrepareLocked("INSERT INTO records(workload_id, device_key, target_id, template_name, "
                      "template_version, config_index, config_json, costs_json, mean_cost, status, error, "
                      "compile_time_s, agent_id, timestamp_ms, job_id, min_cost) "
                      "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) "
                      // Only the duplicate-record constraint is skipped; a missing job
                      // or any other violation still fails the batch.
                      "ON CONFLICT(workload_id, device_key, template_version, config_index) DO NOTHING"));
    insert.Bind(1, workload_id);
    insert.Bind(2, row.device_key);
    insert.Bind(3, target_id);
    insert.Bind(4, row.template_name);
    insert.Bind(5, row.template_version);
    insert.Bind(6, static_cast<int64_t>(row.config_index));
    insert.Bind(7, row.config_json);
    insert.Bind(8, nlohmann::json(row.costs).dump());
    if (row.status == 0) {
      insert.Bind(9, MeanCost(row.costs));
      insert.Bind(16, MinCost(row.costs));
    } else {
      insert.BindNull(9);
      insert.BindNull(16);
    }
    insert.Bind(10, static_cast<int64_t>(row.status));
    insert.Bind(11, row.error);
    insert.Bind(12, row.compile_time_s);
    insert.Bind(13, row.agent_id);
    insert.Bind(14, row.timestamp_ms == 0 ? now : row.timestamp_ms);
    if (row.job_id.has_value()) {
      insert.Bind(15, *row.job_id);
    } else {
      insert.BindNull(15);
    }
    TF_DB_RETURN_IF_ERROR(insert.Run());
    inserted += sqlite3_changes(db_.get());
  }
  TF_DB_RETURN_IF_ERROR(tx.Commit());
  return inserted;
}

absl::StatusOr<std::vector<Record>> SqliteDatabase::BestRecords(std::string_view workload_key,
                                                                std::string_view device_key, int k,
                                                                std::string_view template_version) {
  if (k <= 0) return absl::InvalidArgumentError("k must be positive, got " + std::to_string(k));
  // One SQL text per filter combination rather than "(?2 = '' OR ...)": the
  // planner can only use records_best when device_key is a plain equality.
  std::string sql = "SELECT ";
  sql += kRecordSelect;
  sql += "WHERE w.key = ?1 AND r.status = 0 ";
  if (!device_key.empty()) {
    sql += "AND r.device_key = ?2 ";
  } else {
    // Replayed results copy another device's records; counting them as "any
    // device" would report the source's timings twice, under a device that
    // never ran them. A per-row primary-key probe keeps the walk of
    // records_best_any in min_cost order, with no sort.
    sql += "AND NOT EXISTS (SELECT 1 FROM devices d "
           "WHERE d.device_key = r.device_key AND d.kind = 'replay') ";
  }
  if (!template_version.empty()) sql += "AND r.template_version = ?3 ";
  sql += "ORDER BY r.min_cost, r.id LIMIT ?4";

  std::lock_guard<std::mutex> lock(mu_);
  TF_DB_ASSIGN_OR_RETURN(Statement stmt, PrepareLocked(sql));
  stmt.Bind(1, workload_key);
  if (!device_key.empty()) stmt.Bind(2, device_key);
  if (!template_version.empty()) stmt.Bind(3, template_version);
  stmt.Bind(4, static_cast<int64_t>(k));
  return ReadRecords(stmt);
}

absl::StatusOr<std::vector<Record>> SqliteDatabase::TemplateRecords(
    std::string_view template_name, std::string_view device_key,
    std::string_view exclude_workload_key, int limit) {
  if (limit <= 0) return absl::InvalidArgumentError("limit must be positive");
  std::string sql = "SELECT ";
  sql += kRecordSelect;
  sql += "WHERE r.template_name = ?1 AND r.device_key = ?2 AND w.key <> ?3 ORDER BY r.id DESC LIMIT ?4";
  std::lock_guard<std::mutex> lock(mu_);
  TF_DB_ASSIGN_OR_RETURN(Statement stmt, PrepareLocked(sql));
  stmt.Bind(1, template_name);
  stmt.Bind(2, device_key);
  stmt.Bind(3, exclude_workload_key);
  stmt.Bind(4, static_cast<int64_t>(limit));
  return ReadRecords(stmt);
}

absl::StatusOr<std::optional<Record>> SqliteDatabase::FindRecord(std::string_view workload_key,
                                                                 std::string_view device_key,
                                                                 std::string_view template_version,
                                                                 uint64_t config_index) {
  if (config_index >= (uint64_t{1} << 63)) return std::optional<Record>();
  std::string sql = "SELECT ";
  sql += kRecordSelect;
  sql += "WHERE w.key = ?1 AND r.device_key = ?2 AND r.template_version = ?3 AND r.config_index = ?4";
  std::lock_guard<std::mutex> lock(mu_);
  TF_DB_ASSIGN_OR_RETURN(Statement stmt, PrepareLocked(sql));
  stmt.Bind(1, workload_key);
  stmt.Bind(2, device_key);
  stmt.Bind(3, template_version);
  stmt.Bind(4, static_cast<int64_t>(config_index));
  TF_DB_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
  if (!has_row) return std::optional<Record>();
  TF_DB_ASSIGN_OR_RETURN(Record rec, ReadRecord(stmt));
  return std::optional<Record>(std::move(rec));
}

absl::StatusOr<std::vector<uint64_t>> SqliteDatabase::MeasuredConfigs(
    std::string_view workload_key, std::string_view device_key, std::string_view template_version) {
  std::lock_guard<std::mutex> lock(mu_);
  TF_DB_ASSIGN_OR_RETURN(
      Statement stmt,
      PrepareLocked("SELECT r.config_index FROM records r JOIN workloads w ON w.id = r.workload_id "
                    "WHERE w.key = ?1 AND r.device_key = ?2 AND r.template_version = ?3 "
                    "ORDER BY r.config_index"));
  stmt.Bind(1, workload_key);
  stmt.Bind(2, device_key);
  stmt.Bind(3, template_version);
  std::vector<uint64_t> out;
  while (true) {
    TF_DB_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
    if (!has_row) break;
    out.push_back(static_cast<uint64_t>(stmt.Int64(0)));
  }
  return out;
}

absl::StatusOr<Database::Counts> SqliteDatabase::CountRecords(std::string_view workload_key,
                                                              std::string_view device_key) {
  // One statement, so total and ok come from the same snapshot.
  std::string sql =
      "SELECT COUNT(*), COALESCE(SUM(r.status = 0), 0) FROM records r "
      "JOIN workloads w ON w.id = r.workload_id WHERE w.key = ?1";
  if (!device_key.empty()) sql += " AND r.device_key = ?2";

  std::lock_guard<std::mutex> lock(mu_);
  TF_DB_ASSIGN_OR_RETURN(Statement stmt, PrepareLocked(sql));
  stmt.Bind(1, workload_key);
  if (!device_key.empty()) stmt.Bind(2, device_key);
  TF_DB_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
  if (!has_row) return absl::InternalError("COUNT returned no row");
  Counts counts;
  counts.total = stmt.Int64(0);
  counts.ok = stmt.Int64(1);
  return counts;
}

absl::Status SqliteDatabase::SaveModel(const ModelRow& model) {
  TF_DB_RETURN_IF_ERROR(CheckWritable());
  if (model.template_name.empty() || model.device_key.empty() || model.model.empty()) {
    return absl::InvalidArgumentError("a model needs a template name, a device key and its bytes");
  }
  std::lock_guard<std::mutex> lock(mu_);
  TF_DB_ASSIGN_OR_RETURN(
      Statement stmt,
      PrepareLocked("INSERT INTO models(template_name, device_key, workload_key, feature_version, rows, "
                    "created_ms, model) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) "
                    "ON CONFLICT(template_name, device_key, workload_key) DO UPDATE SET "
                    "feature_version = excluded.feature_version, rows = excluded.rows, "
                    "created_ms = excluded.created_ms, model = excluded.model"));
  stmt.Bind(1, model.template_name);
  stmt.Bind(2, model.device_key);
  stmt.Bind(3, model.workload_key);
  stmt.Bind(4, static_cast<int64_t>(model.feature_version));
  stmt.Bind(5, model.rows);
  stmt.Bind(6, model.created_ms > 0 ? model.created_ms : NowMs());
  stmt.Bind(7, model.model);
  TF_DB_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
  (void)has_row;
  return absl::OkStatus();
}

absl::StatusOr<std::optional<ModelRow>> SqliteDatabase::LatestModel(std::string_view template_name,
                                                                    std::string_view device_key,
                                                                    int feature_version) {
  std::lock_guard<std::mutex> lock(mu_);
  TF_DB_ASSIGN_OR_RETURN(
      Statement stmt,
      PrepareLocked("SELECT template_name, device_key, workload_key, feature_version, rows, created_ms, model "
                    "FROM models WHERE template_name = ?1 AND device_key = ?2 AND feature_version = ?3 "
                    "ORDER BY created_ms DESC, id DESC LIMIT 1"));
  stmt.Bind(1, template_name);
  stmt.Bind(2, device_key);
  stmt.Bind(3, static_cast<int64_t>(feature_version));
  TF_DB_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
  if (!has_row) return std::optional<ModelRow>();
  ModelRow m;
  m.template_name = stmt.Text(0);
  m.device_key = stmt.Text(1);
  m.workload_key = stmt.Text(2);
  m.feature_version = static_cast<int>(stmt.Int64(3));
  m.rows = stmt.Int64(4);
  m.created_ms = stmt.Int64(5);
  m.model = stmt.Text(6);
  return std::optional<ModelRow>(std::move(m));
}

absl::Status SqliteDatabase::UpsertDevice(const DeviceRow& device) {
  TF_DB_RETURN_IF_ERROR(CheckWritable());
  if (device.device_key.empty()) return absl::InvalidArgumentError("empty device_key");
  std::lock_guard<std::mutex> lock(mu_);
  TF_DB_ASSIGN_OR_RETURN(
      Statement stmt,
      PrepareLocked("INSERT INTO devices(device_key, kind, arch, model, target_json, last_seen_ms) "
                    "VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(device_key) DO UPDATE SET "
                    "kind = excluded.kind, arch = excluded.arch, model = excluded.model, "
                    "target_json = excluded.target_json, last_seen_ms = excluded.last_seen_ms"));
  stmt.Bind(1, device.device_key);
  stmt.Bind(2, device.kind);
  stmt.Bind(3, device.arch);
  stmt.Bind(4, device.model);
  stmt.Bind(5, device.target_json);
  stmt.Bind(6, device.last_seen_ms == 0 ? NowMs() : device.last_seen_ms);
  return stmt.Run();
}

absl::StatusOr<std::vector<DeviceRow>> SqliteDatabase::ListDevices() {
  std::lock_guard<std::mutex> lock(mu_);
  TF_DB_ASSIGN_OR_RETURN(Statement stmt,
                         PrepareLocked("SELECT device_key, kind, arch, model, target_json, "
                                       "last_seen_ms FROM devices ORDER BY device_key"));
  std::vector<DeviceRow> out;
  while (true) {
    TF_DB_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
    if (!has_row) break;
    DeviceRow row;
    row.device_key = stmt.Text(0);
    row.kind = stmt.Text(1);
    row.arch = stmt.Text(2);
    row.model = stmt.Text(3);
    row.target_json = stmt.Text(4);
    row.last_seen_ms = stmt.Int64(5);
    out.push_back(std::move(row));
  }
  return out;
}

absl::StatusOr<int64_t> SqliteDatabase::CreateJob(std::string_view spec_json) {
  TF_DB_RETURN_IF_ERROR(CheckWritable());
  const int64_t now = NowMs();
  std::lock_guard<std::mutex> lock(mu_);
  TF_DB_ASSIGN_OR_RETURN(
      Statement stmt,
      PrepareLocked("INSERT INTO jobs(spec_json, state, message, created_ms, updated_ms) "
                    "VALUES(?1, 'running', '', ?2, ?2)"));
  stmt.Bind(1, spec_json);
  stmt.Bind(2, now);
  TF_DB_RETURN_IF_ERROR(stmt.Run());
  return static_cast<int64_t>(sqlite3_last_insert_rowid(db_.get()));
}

absl::Status SqliteDatabase::UpdateJob(int64_t id, std::string_view state,
                                       std::string_view message) {
  TF_DB_RETURN_IF_ERROR(CheckWritable());
  if (state.empty()) return absl::InvalidArgumentError("empty job state");
  const int64_t now = NowMs();
  std::lock_guard<std::mutex> lock(mu_);
  TF_DB_ASSIGN_OR_RETURN(
      Statement stmt,
      // max(): updated_ms never goes backwards, even if the clock does.
      PrepareLocked("UPDATE jobs SET state = ?2, message = ?3, updated_ms = max(updated_ms, ?4) "
                    "WHERE id = ?1"));
  stmt.Bind(1, id);
  stmt.Bind(2, state);
  stmt.Bind(3, message);
  stmt.Bind(4, now);
  TF_DB_RETURN_IF_ERROR(stmt.Run());
  if (sqlite3_changes(db_.get()) == 0) {
    return absl::NotFoundError("no job with id " + std::to_string(id));
  }
  return absl::OkStatus();
}

absl::StatusOr<Job> SqliteDatabase::GetJob(int64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  TF_DB_ASSIGN_OR_RETURN(Statement stmt,
                         PrepareLocked(std::string(kJobSelect) + " WHERE id = ?1"));
  stmt.Bind(1, id);
  TF_DB_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
  if (!has_row) return absl::NotFoundError("no job with id " + std::to_string(id));
  return ReadJob(stmt);
}

absl::StatusOr<std::vector<Job>> SqliteDatabase::ListJobs(bool include_finished, int limit) {
  if (limit <= 0) return absl::InvalidArgumentError("limit must be > 0");
  std::lock_guard<std::mutex> lock(mu_);
  std::string sql(kJobSelect);
  if (!include_finished) sql += " WHERE state IN ('queued', 'running')";
  sql += " ORDER BY id DESC LIMIT ?1";
  TF_DB_ASSIGN_OR_RETURN(Statement stmt, PrepareLocked(sql));
  stmt.Bind(1, static_cast<int64_t>(limit));
  std::vector<Job> out;
  for (;;) {
    TF_DB_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
    if (!has_row) break;
    out.push_back(ReadJob(stmt));
  }
  return out;
}

absl::StatusOr<std::vector<Record>> SqliteDatabase::ListRecords(std::string_view workload_key,
                                                                std::string_view device_key, int64_t after_id,
                                                                int limit) {
  if (limit <= 0) return absl::InvalidArgumentError("limit must be > 0");
  std::lock_guard<std::mutex> lock(mu_);
  std::string sql = "SELECT ";
  sql += kRecordSelect;
  sql += "WHERE r.id > ?1";
  if (!workload_key.empty()) sql += " AND w.key = ?2";
  if (!device_key.empty()) sql += " AND r.device_key = ?3";
  sql += " ORDER BY r.id LIMIT ?4";
  TF_DB_ASSIGN_OR_RETURN(Statement stmt, PrepareLocked(sql));
  stmt.Bind(1, after_id);
  if (!workload_key.empty()) stmt.Bind(2, workload_key);
  if (!device_key.empty()) stmt.Bind(3, device_key);
  stmt.Bind(4, static_cast<int64_t>(limit));
  return ReadRecords(stmt);
}

absl::StatusOr<std::vector<JobTaskCount>> SqliteDatabase::JobRecordCounts(int64_t job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  TF_DB_ASSIGN_OR_RETURN(Statement stmt,
                         PrepareLocked("SELECT w.key, COUNT(*), COALESCE(SUM(r.status != 0), 0) FROM records r "
                                       "JOIN workloads w ON w.id = r.workload_id WHERE r.job_id = ?1 "
                                       "GROUP BY w.key ORDER BY w.key"));
  stmt.Bind(1, job_id);
  std::vector<JobTaskCount> out;
  for (;;) {
    TF_DB_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
    if (!has_row) break;
    out.push_back({stmt.Text(0), stmt.Int64(1), stmt.Int64(2)});
  }
  return out;
}

std::string EnvOrEmpty(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::string(value) : std::string();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Database>> Database::Open(const std::string& path,
                                                         const OpenOptions& options) {
  if (options.read_only && options.migrate_older) {
    OpenOptions read = options;
    read.migrate_older = false;
    absl::StatusOr<std::unique_ptr<Database>> db = Open(path, read);
    if (db.ok() || !db.status().GetPayload(kOlderSchemaPayload).has_value()) return db;
    OpenOptions write = read;
    write.read_only = false;
    if (absl::StatusOr<std::unique_ptr<Database>> migrated = Open(path, write); !migrated.ok()) {
      return absl::FailedPreconditionError(std::string(db.status().message()) +
                                           "; migrating it failed: " + std::string(migrated.status().message()));
    }
    return Open(path, read);
  }
  if (path.empty()) return absl::InvalidArgumentError("empty database path");
  if (options.busy_timeout_ms < 0) {
    return absl::InvalidArgumentError("busy_timeout_ms must be >= 0");
  }
  const bool in_memory = path == ":memory:";
  if (!in_memory) {
    std::error_code ec;
    const std::filesystem::path fs_path(path);
    if (options.read_only) {
      // Without SQLITE_OPEN_CREATE SQLite reports only "unable to open".
      if (!std::filesystem::exists(fs_path, ec)) {
        return absl::NotFoundError("database " + path + " does not exist");
      }
    } else if (fs_path.has_parent_path()) {
      std::filesystem::create_directories(fs_path.parent_path(), ec);
      if (ec) {
        return absl::FailedPreconditionError("cannot create directory " +
                                             fs_path.parent_path().string() + ": " + ec.message());
      }
    }
  }

  // NOMUTEX: SqliteDatabase serialises all use of the connection itself.
  int flags = SQLITE_OPEN_NOMUTEX;
  flags |= options.read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  // SQLite hands back a handle even when the open fails; it must be closed.
  ConnectionPtr db(raw);
  if (rc != SQLITE_OK) return SqliteStatus(db.get(), rc, "opening database " + path);

  auto database = std::make_unique<SqliteDatabase>(std::move(db), path, options.read_only);
  TF_DB_RETURN_IF_ERROR(database->Init(options, in_memory));
  return std::unique_ptr<Database>(std::move(database));
}

std::string DefaultDatabasePath() {
  if (std::string env = EnvOrEmpty("TUNEFARM_DB"); !env.empty()) return env;
  // The XDG spec says a relative XDG_DATA_HOME is invalid and must be ignored.
  if (std::string xdg = EnvOrEmpty("XDG_DATA_HOME"); !xdg.empty() && xdg.front() == '/') {
    return (std::filesystem::path(xdg) / "tunefarm" / "tunefarm.db").string();
  }
  std::string home = EnvOrEmpty("HOME");
  if (home.empty()) {
    if (const passwd* pw = getpwuid(getuid()); pw != nullptr && pw->pw_dir != nullptr) {
      home = pw->pw_dir;
    }
  }
  if (home.empty()) return "tunefarm.db";
  return (std::filesystem::path(home) / ".local" / "share" / "tunefarm" / "tunefarm.db").string();
}

}  // namespace tunefarm::database
