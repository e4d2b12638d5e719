#include "replay/replay_backend.h"

#include <google/protobuf/util/json_util.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "spdlog/spdlog.h"
#include "tunefarm/database/database.h"

namespace tunefarm::device_agents {
namespace {

namespace v1 = tunefarm::v1;

// The devices.kind text the tuner writes for DEVICE_KIND_REPLAY.
constexpr char kReplayKind[] = "replay";
constexpr char kUsage[] = "replay:PATH or replay:PATH#SOURCE_KEY";

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class ReplayBackend : public DeviceBackend {
 public:
  ReplayBackend(std::unique_ptr<database::Database> db, std::string path, std::string source_key, v1::Target target,
                int latency_ms)
      : db_(std::move(db)),
        path_(std::move(path)),
        source_key_(std::move(source_key)),
        target_(std::move(target)),
        latency_(latency_ms) {}

  const v1::Target& target() const override { return target_; }

  // A lookup that fails (as opposed to finding nothing) fails the batch: an
  // answer made up from a read error would not replay anything.
  absl::StatusOr<std::vector<v1::MeasureResult>> Measure(const std::vector<v1::MeasureRequest>& batch,
                                                         const MeasureCallback& on_result) override {
    std::vector<v1::MeasureResult> results;
    results.reserve(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      const v1::MeasureRequest& req = batch[i];
      if (latency_.count() > 0) std::this_thread::sleep_for(latency_);
      absl::StatusOr<std::optional<database::Record>> rec =
          db_->FindRecord(req.workload().key(), source_key_, req.template_version(), req.config().index());
      if (!rec.ok()) {
        return absl::Status(rec.status().code(),
                            absl::StrCat("replay: reading ", path_, ": ", std::string(rec.status().message())));
      }
      v1::MeasureResult& r = results.emplace_back();
      r.set_config_index(req.config().index());
      r.set_agent_id("replay");
      if (rec->has_value()) {
        Fill(**rec, r);
      } else {
        r.set_status(v1::MEASURE_STATUS_NOT_RECORDED);
        r.set_error(absl::StrCat("config ", req.config().index(), " of ", req.workload().key(), " (template version ",
                                 req.template_version(), ") was not recorded on ", source_key_, " in ", path_));
      }
      r.set_timestamp_ms(NowMs());
      if (on_result) on_result(i, r);
    }
    return results;
  }

 private:
  static void Fill(const database::Record& rec, v1::MeasureResult& r) {
    for (double cost : rec.costs) r.add_costs(cost);
    if (v1::MeasureStatus_IsValid(rec.status)) {
      r.set_status(static_cast<v1::MeasureStatus>(rec.status));
      r.set_error(rec.error);
    } else {
      // Written by a newer build; still a failure, never a success.
      r.set_status(v1::MEASURE_STATUS_UNKNOWN_ERROR);
      r.set_error(absl::StrCat("recorded status ", rec.status, " is unknown to this build",
                               rec.error.empty() ? "" : ": ", rec.error));
    }
    r.set_compile_time_s(rec.compile_time_s);
  }

  const std::unique_ptr<database::Database> db_;  // read-only
  const std::string path_;
  const std::string source_key_;
  const v1::Target target_;
  const std::chrono::milliseconds latency_;
};

std::string DeviceList(const std::vector<database::DeviceRow>& devices) {
  std::vector<std::string> keys;
  for (const database::DeviceRow& d : devices) {
    keys.push_back(d.kind.empty() ? d.device_key : absl::StrCat(d.device_key, " (", d.kind, ")"));
  }
  return keys.empty() ? std::string("none") : absl::StrJoin(keys, ", ");
}

// The device row to replay: `key` if given, else the file's only device that
// is not a replay device.
absl::StatusOr<database::DeviceRow> PickSource(const std::vector<database::DeviceRow>& devices, const std::string& path,
                                               const std::string& key) {
  if (!key.empty()) {
    for (const database::DeviceRow& d : devices) {
      if (d.device_key != key) continue;
      if (d.kind == kReplayKind) {
        return absl::FailedPreconditionError(
            absl::StrCat("replay: device '", key, "' in ", path,
                         " is itself a replay device; replay the device it was recorded from instead"));
      }
      return d;
    }
    return absl::FailedPreconditionError(
        absl::StrCat("replay: tuning log ", path, " has no device '", key, "' (devices: ", DeviceList(devices), ")"));
  }
  std::vector<database::DeviceRow> sources;
  for (const database::DeviceRow& d : devices) {
    if (d.kind != kReplayKind) sources.push_back(d);
  }
  if (sources.size() == 1) return sources.front();
  if (sources.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "replay: tuning log ", path, " has no recorded device to replay (devices: ", DeviceList(devices), ")"));
  }
  return absl::FailedPreconditionError(absl::StrCat("replay: tuning log ", path, " has ", sources.size(),
                                                    " recorded devices; choose one with replay:", path,
                                                    "#SOURCE_KEY, SOURCE_KEY one of: ", DeviceList(sources)));
}

absl::StatusOr<v1::Target> ReplayTarget(const database::DeviceRow& source, const std::string& path) {
  v1::Target target;
  if (!source.target_json.empty()) {
    google::protobuf::util::JsonParseOptions options;
    // A log written by a newer build may carry fields this one lacks.
    options.ignore_unknown_fields = true;
    auto status = google::protobuf::util::JsonStringToMessage(source.target_json, &target, options);
    if (!status.ok()) {
      return absl::FailedPreconditionError(absl::StrCat("replay: device '", source.device_key, "' in ", path,
                                                        " has an unreadable target: ", status.ToString()));
    }
  } else {
    target.set_arch(source.arch);
    target.set_model(source.model);
  }
  const std::string model = target.model().empty() ? source.device_key : target.model();
  target.set_kind(v1::DEVICE_KIND_REPLAY);
  target.set_device_key(absl::StrCat("replay-", source.device_key));
  target.set_model(absl::StrCat("replay of ", model));
  return target;
}

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceBackend>> NewReplayBackend(const BackendOptions& options, std::string_view arg) {
  if (arg.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("device class 'replay' needs a tuning log: ", kUsage));
  }
  if (options.replay_latency_ms < 0) {
    return absl::InvalidArgumentError(absl::StrCat("replay latency must be >= 0 ms, got ", options.replay_latency_ms));
  }
  // The last '#': a source key has none, a path might.
  const size_t hash = arg.rfind('#');
  const std::string path(arg.substr(0, hash));
  const std::string key(hash == std::string_view::npos ? std::string_view() : arg.substr(hash + 1));
  if (path.empty() || (hash != std::string_view::npos && key.empty())) {
    return absl::InvalidArgumentError(absl::StrCat("bad replay device '", std::string(arg), "': expected ", kUsage));
  }

  database::OpenOptions open;
  open.read_only = true;
  open.migrate_older = true;
  absl::StatusOr<std::unique_ptr<database::Database>> db = database::Database::Open(path, open);
  if (!db.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("replay: cannot read tuning log ", path, ": ", std::string(db.status().message())));
  }
  absl::StatusOr<std::vector<database::DeviceRow>> devices = (*db)->ListDevices();
  if (!devices.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("replay: ", path, " is not a readable tuning log: ", std::string(devices.status().message())));
  }
  absl::StatusOr<database::DeviceRow> source = PickSource(*devices, path, key);
  if (!source.ok()) return source.status();
  absl::StatusOr<v1::Target> target = ReplayTarget(*source, path);
  if (!target.ok()) return target.status();
  if (!options.device_key.empty() && options.device_key != target->device_key()) {
    return absl::InvalidArgumentError(absl::StrCat("the replay device's key is ", target->device_key(),
                                                   "; it cannot be overridden with '", options.device_key,
                                                   "' (choose the source with ", kUsage, ")"));
  }
  spdlog::info("replay backend: {} from {} (latency {} ms)", target->device_key(), path, options.replay_latency_ms);
  return std::make_unique<ReplayBackend>(std::move(db).value(), path, source->device_key, std::move(target).value(),
                                         options.replay_latency_ms);
}

}  // namespace tunefarm::device_agents
