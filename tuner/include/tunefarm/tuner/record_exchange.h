// Moving tuning records between logs: the wire/JSON-lines form
// (tunefarm.v1.TuningRecord) and the tuning log's rows.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tunefarm/database/database.h"
#include "tunefarm/v1/service.pb.h"

namespace tunefarm::tuner {

// Device key -> kind ("cpu", "replay", ...) from the log's devices table.
std::map<std::string, std::string> DeviceKinds(database::Database& db);

// `device_kind` is the kind of the record's device ("cpu", "replay", ...).
tunefarm::v1::TuningRecord ToTuningRecord(const database::Record& record, const std::string& device_kind);

// Seconds of the record's fastest run; a server from before min_cost
// leaves it 0, and the mean stands in.
double FastestSeconds(const tunefarm::v1::TuningRecord& record);

// Calls `sink` for every record matching the filters (empty: any), oldest
// first, reading the log in pages; stops early when `sink` returns false.
absl::Status ExportRecords(database::Database& db, const std::string& workload_key, const std::string& device_key,
                           const std::function<bool(const tunefarm::v1::TuningRecord&)>& sink);

struct ImportCounts {
  int64_t received = 0;
  int64_t inserted = 0;
  int64_t duplicates = 0;
  // (0-based position in the input, reason) of records not imported.
  std::vector<std::pair<size_t, std::string>> rejected;
};

// Imports records, skipping ones the log already has. A record that is
// malformed, or that would put replayed measurements under a real device's
// key (or real ones under a replay key), is rejected with a reason and the
// rest are imported; with `atomic`, any rejection imports nothing.
absl::StatusOr<ImportCounts> ImportRecords(database::Database& db,
                                           const std::vector<tunefarm::v1::TuningRecord>& records, bool atomic);

}  // namespace tunefarm::tuner
