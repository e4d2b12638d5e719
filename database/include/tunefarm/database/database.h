// The tuning log: a SQLite file (WAL mode) holding workloads, devices, jobs and
// one record per measured candidate. Schema changes go through numbered
// migrations; PRAGMA user_version holds the schema version.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tunefarm::database {

// One measured candidate as the tuner writes it.
struct RecordRow {
  std::string workload_key;      // canonical workload text
  std::string device_key;        // groups identical devices
  std::string target_json;       // full tunefarm.v1.Target as JSON
  std::string toolchain;         // compiler fingerprint
  std::string template_name;     // e.g. "matmul"
  std::string template_version;  // hash of the template's code generator
  uint64_t config_index = 0;     // must be < 2^63 (stored as INTEGER)
  std::string config_json;       // knob values, JSON object
  std::vector<double> costs;     // seconds per run, one per repeat; empty on failure
  int status = 0;                // tunefarm.v1.MeasureStatus value; 0 = ok
  std::string error;
  double compile_time_s = 0;
  std::string agent_id;
  int64_t timestamp_ms = 0;      // Unix epoch; 0 = now
  std::optional<int64_t> job_id;
};

// A record ranks by min_cost, its fastest run. Other work on a shared
// machine only ever adds time to a run, in spells from milliseconds to
// minutes long, so a mean mixes quiet and busy spells in proportions that
// differ from config to config; the fastest run is the one nearest what the
// kernel itself costs.
struct Record : RecordRow {
  int64_t id = 0;
  double mean_cost = 0;  // mean of costs; +inf for failures
  double min_cost = 0;   // least of costs; +inf for failures
};

struct Job {
  int64_t id = 0;
  std::string spec_json;
  std::string state;  // "running", "done", "failed", "cancelled"
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  std::string message;
};

// How many records a job wrote for one workload, and how many failed.
struct JobTaskCount {
  std::string workload_key;
  int64_t records = 0;
  int64_t errors = 0;
};

struct DeviceRow {
  std::string device_key;
  std::string kind;
  std::string arch;
  std::string model;
  std::string target_json;
  int64_t last_seen_ms = 0;
};

// A trained cost model (XGBoost JSON), kept so a later run can start from it.
struct ModelRow {
  std::string template_name;
  std::string device_key;
  std::string workload_key;  // the task it was trained for
  int feature_version = 0;   // layout of the features it expects
  int64_t rows = 0;          // training rows
  int64_t created_ms = 0;    // 0 = now
  std::string model;
};

struct OpenOptions {
  // Milliseconds a statement waits on a lock held by another connection
  // before failing with UNAVAILABLE.
  int busy_timeout_ms = 10000;
  // Opens an existing file without migrating it: fails with NOT_FOUND when
  // the file is missing and FAILED_PRECONDITION when its schema is too old
  // to read (older than version 4, which added min_cost; later migrations
  // would only add indexes). Writes then fail with FAILED_PRECONDITION.
  bool read_only = false;
  // With read_only: a file too old to read is migrated first, by a
  // read-write open (which fails where the file cannot be written), then
  // opened read-only. For readers of a log an older build wrote, such as
  // `tunefarm best`.
  bool migrate_older = false;
};

// Thread safety: a Database may be used from several threads; calls are
// serialised on its one connection. Several processes may open the same file:
// WAL mode lets readers run while one writer commits.
class Database {
 public:
  virtual ~Database() = default;

  // Opens (creating parent directories and the file if needed) and migrates
  // to the latest schema. ":memory:" gives a private in-memory database.
  // A file whose schema is newer than kSchemaVersion is refused with
  // FAILED_PRECONDITION in either mode.
  static absl::StatusOr<std::unique_ptr<Database>> Open(const std::string& path,
                                                        const OpenOptions& options = {});

  static constexpr int kSchemaVersion = 4;
  virtual absl::StatusOr<int> SchemaVersion() = 0;

  // Inserts records in one transaction. A record whose (workload, device key,
  // template version, config index) is already present is skipped, not an
  // error; returns how many were inserted. An invalid row (empty workload or
  // device key, config_index >= 2^63, a non-finite cost, status 0 without
  // costs) rejects the whole batch with INVALID_ARGUMENT; an unknown job_id
  // rejects it with FAILED_PRECONDITION. Either way nothing is written.
  virtual absl::StatusOr<int> AddRecords(const std::vector<RecordRow>& rows) = 0;

  // New measurements of configs that may already be in the log (e.g. the
  // best configs measured again to confirm them). A row without a record
  // is inserted as AddRecords would. For a record that measured fine, a
  // successful row's costs are appended to its costs and its mean and
  // min costs recomputed over all of them; a failed row marks the record failed with
  // the row's status and error (a kernel that failed once, e.g. with a
  // race, cannot be trusted), keeping its earlier costs. A failed record
  // stays as it is. The other columns keep their first values. Same
  // validation and transaction as AddRecords; returns how many records were
  // inserted or changed.
  virtual absl::StatusOr<int> MergeRecords(const std::vector<RecordRow>& rows) = 0;

  // Best `k` successful records (status 0) for a workload, least min_cost
  // first. Empty `device_key` means any real device: records of a device
  // whose devices row has kind "replay" are left out (they copy another
  // device's measurements), records of keys without a devices row are kept;
  // naming a replay device's key returns its records. Empty
  // `template_version` means any version. k <= 0 is INVALID_ARGUMENT.
  virtual absl::StatusOr<std::vector<Record>> BestRecords(std::string_view workload_key,
                                                          std::string_view device_key, int k,
                                                          std::string_view template_version = {}) = 0;

  // Config indices already measured (any status) for a workload on a device
  // key with one template version, ascending. Empty strings match literally.
  virtual absl::StatusOr<std::vector<uint64_t>> MeasuredConfigs(
      std::string_view workload_key, std::string_view device_key,
      std::string_view template_version) = 0;

  // The record of one config (any status), if it was measured.
  virtual absl::StatusOr<std::optional<Record>> FindRecord(std::string_view workload_key,
                                                           std::string_view device_key,
                                                           std::string_view template_version,
                                                           uint64_t config_index) = 0;

  // Records (any status) of one template on one device key for workloads
  // other than `exclude_workload_key`, newest first, at most `limit`: the
  // cost model's transfer-learning data.
  virtual absl::StatusOr<std::vector<Record>> TemplateRecords(std::string_view template_name,
                                                              std::string_view device_key,
                                                              std::string_view exclude_workload_key,
                                                              int limit) = 0;

  // Records (any status) with id > after_id, by id, at most `limit` (> 0):
  // pages for export. Empty strings match any workload or device key.
  virtual absl::StatusOr<std::vector<Record>> ListRecords(std::string_view workload_key,
                                                          std::string_view device_key, int64_t after_id,
                                                          int limit) = 0;

  // Record counts for a workload/device: total and successful. Empty
  // `device_key` means any device.
  struct Counts {
    int64_t total = 0;
    int64_t ok = 0;
  };
  virtual absl::StatusOr<Counts> CountRecords(std::string_view workload_key,
                                              std::string_view device_key) = 0;

  // Stores a model, replacing the one of the same template, device key and
  // workload.
  virtual absl::Status SaveModel(const ModelRow& model) = 0;
  // The newest model of a template on a device key with this feature layout.
  virtual absl::StatusOr<std::optional<ModelRow>> LatestModel(std::string_view template_name,
                                                              std::string_view device_key,
                                                              int feature_version) = 0;

  // Inserts or replaces the device row; last_seen_ms 0 means now.
  virtual absl::Status UpsertDevice(const DeviceRow& device) = 0;
  // Ordered by device key.
  virtual absl::StatusOr<std::vector<DeviceRow>> ListDevices() = 0;

  // New jobs start in state "running" with created_ms = updated_ms = now.
  // UpdateJob and GetJob return NOT_FOUND for an unknown id.
  virtual absl::StatusOr<int64_t> CreateJob(std::string_view spec_json) = 0;
  virtual absl::Status UpdateJob(int64_t id, std::string_view state, std::string_view message) = 0;
  virtual absl::StatusOr<Job> GetJob(int64_t id) = 0;
  // Newest first, at most `limit` (> 0); without finished ones, only jobs in
  // state "queued" or "running".
  virtual absl::StatusOr<std::vector<Job>> ListJobs(bool include_finished, int limit) = 0;
  // Records written by a job, per workload (by key).
  virtual absl::StatusOr<std::vector<JobTaskCount>> JobRecordCounts(int64_t job_id) = 0;
};

// The default database path: $TUNEFARM_DB, else
// $XDG_DATA_HOME/tunefarm/tunefarm.db, else ~/.local/share/tunefarm/tunefarm.db.
std::string DefaultDatabasePath();

}  // namespace tunefarm::database
