#include "tunefarm/tuner/record_exchange.h"

#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "tunefarm/kernels/template.h"
#include "tunefarm/kernels/workload.h"

namespace tunefarm::tuner {
namespace v1 = tunefarm::v1;

double FastestSeconds(const v1::TuningRecord& record) {
  return record.min_cost() > 0 ? record.min_cost() : record.mean_cost();
}

v1::TuningRecord ToTuningRecord(const database::Record& r, const std::string& kind) {
  v1::TuningRecord p;
  p.set_id(r.id);
  p.set_workload(r.workload_key);
  p.set_device_key(r.device_key);
  p.set_target_json(r.target_json);
  p.set_toolchain(r.toolchain);
  p.set_template_name(r.template_name);
  p.set_template_version(r.template_version);
  p.set_config_index(r.config_index);
  p.set_config_json(r.config_json);
  for (double c : r.costs) p.add_costs(c);
  p.set_status(static_cast<v1::MeasureStatus>(r.status));
  p.set_error(r.error);
  p.set_compile_time_s(r.compile_time_s);
  p.set_agent_id(r.agent_id);
  p.set_timestamp_ms(r.timestamp_ms);
  p.set_job_id(r.job_id.value_or(0));
  if (std::isfinite(r.mean_cost)) p.set_mean_cost(r.mean_cost);
  if (std::isfinite(r.min_cost)) p.set_min_cost(r.min_cost);
  if (r.status == 0 && r.min_cost > 0) {
    if (absl::StatusOr<kernels::Workload> w = kernels::ParseWorkload(r.workload_key); w.ok()) {
      if (const kernels::Template* t = kernels::TemplateRegistry::Global().Find(w->op)) {
        p.set_gflops(t->Flops(*w) / r.min_cost / 1e9);
      }
    }
  }
  p.set_device_kind(kind);
  return p;
}

std::map<std::string, std::string> DeviceKinds(database::Database& db) {
  std::map<std::string, std::string> kinds;
  if (auto devices = db.ListDevices(); devices.ok()) {
    for (const auto& d : *devices) kinds[d.device_key] = d.kind;
  }
  return kinds;
}

namespace {

absl::StatusOr<database::RecordRow> ToRow(const v1::TuningRecord& r) {
  absl::StatusOr<kernels::Workload> w = kernels::ParseWorkload(r.workload());
  if (!w.ok()) return absl::InvalidArgumentError(absl::StrCat("workload: ", w.status().message()));
  if (r.device_key().empty() || r.device_key().size() > 128) return absl::InvalidArgumentError("device_key must be 1..128 characters");
  if (r.template_name().empty() || r.template_version().empty()) {
    return absl::InvalidArgumentError("template_name and template_version are required");
  }
  if (r.config_index() >= (uint64_t{1} << 63)) return absl::InvalidArgumentError("config_index out of range");
  if (!v1::MeasureStatus_IsValid(r.status())) return absl::InvalidArgumentError("unknown status");
  if (r.status() == v1::MEASURE_STATUS_OK && r.costs().empty()) return absl::InvalidArgumentError("status OK without costs");
  for (double c : r.costs()) {
    if (!std::isfinite(c) || c <= 0) return absl::InvalidArgumentError("costs must be finite and > 0");
  }
  database::RecordRow row;
  row.workload_key = w->Key();
  row.device_key = r.device_key();
  row.target_json = r.target_json();
  row.toolchain = r.toolchain();
  row.template_name = r.template_name();
  row.template_version = r.template_version();
  row.config_index = r.config_index();
  row.config_json = r.config_json().empty() ? "{}" : r.config_json();
  row.costs.assign(r.costs().begin(), r.costs().end());
  row.status = r.status();
  row.error = r.error();
  row.compile_time_s = r.compile_time_s();
  row.agent_id = r.agent_id();
  row.timestamp_ms = r.timestamp_ms();
  // Job ids name jobs of the exporting log; they mean nothing here.
  return row;
}

}  // namespace

absl::Status ExportRecords(database::Database& db, const std::string& workload_key, const std::string& device_key,
                           const std::function<bool(const v1::TuningRecord&)>& sink) {
  std::string key;
  if (!workload_key.empty()) {
    absl::StatusOr<kernels::Workload> w = kernels::ParseWorkload(workload_key);
    if (!w.ok()) return absl::InvalidArgumentError(absl::StrCat("workload: ", w.status().message()));
    key = w->Key();
  }
  const std::map<std::string, std::string> kinds = DeviceKinds(db);
  int64_t after = 0;
  for (;;) {
    absl::StatusOr<std::vector<database::Record>> page = db.ListRecords(key, device_key, after, 1000);
    if (!page.ok()) return page.status();
    if (page->empty()) return absl::OkStatus();
    for (const database::Record& r : *page) {
      auto kind = kinds.find(r.device_key);
      if (!sink(ToTuningRecord(r, kind == kinds.end() ? "" : kind->second))) return absl::OkStatus();
      after = r.id;
    }
  }
}

absl::StatusOr<ImportCounts> ImportRecords(database::Database& db, const std::vector<v1::TuningRecord>& records,
                                           bool atomic) {
  ImportCounts counts;
  counts.received = static_cast<int64_t>(records.size());
  std::map<std::string, std::string> kinds = DeviceKinds(db);
  std::map<std::string, database::DeviceRow> new_devices;
  std::vector<database::RecordRow> rows;
  for (size_t i = 0; i < records.size(); ++i) {
    const v1::TuningRecord& r = records[i];
    absl::StatusOr<database::RecordRow> row = ToRow(r);
    if (!row.ok()) {
      counts.rejected.emplace_back(i, std::string(row.status().message()));
      continue;
    }
    const bool replay = r.device_kind() == "replay";
    auto known = kinds.find(r.device_key());
    if (known != kinds.end() && !known->second.empty() && (known->second == "replay") != replay) {
      counts.rejected.emplace_back(i, absl::StrCat("device key ", r.device_key(), " is a ",
                                                   known->second == "replay" ? "replay" : "real",
                                                   " device here; replayed and real measurements never mix"));
      continue;
    }
    if (known == kinds.end()) {
      kinds[r.device_key()] = r.device_kind();
      new_devices[r.device_key()] = {r.device_key(), r.device_kind(), "", "", r.target_json(), 0};
    }
    rows.push_back(std::move(*row));
  }
  if (atomic && !counts.rejected.empty()) return counts;
  for (const auto& [key, device] : new_devices) {
    if (device.kind.empty()) continue;
    if (absl::Status s = db.UpsertDevice(device); !s.ok()) return s;
  }
  absl::StatusOr<int> added = db.AddRecords(rows);
  if (!added.ok()) return added.status();
  counts.inserted = *added;
  counts.duplicates = static_cast<int64_t>(rows.size()) - *added;
  return counts;
}

}  // namespace tunefarm::tuner
