#include "record_row.h"

#include <google/protobuf/util/json_util.h>

#include <nlohmann/json.hpp>

namespace tunefarm::tuner {
namespace v1 = tunefarm::v1;

const char* DeviceKindName(v1::DeviceKind k) {
  switch (k) {
    case v1::DEVICE_KIND_CPU: return "cpu";
    case v1::DEVICE_KIND_CUDA: return "cuda";
    case v1::DEVICE_KIND_OPENCL: return "opencl";
    case v1::DEVICE_KIND_REMOTE: return "remote";
    case v1::DEVICE_KIND_FPGA: return "fpga";
    case v1::DEVICE_KIND_REPLAY: return "replay";
    default: return "unknown";
  }
}

std::string TargetJson(const v1::Target& target) {
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(target, &json);
  return json;
}

database::RecordRow MakeRecordRow(const v1::MeasureRequest& req, const v1::MeasureResult& res,
                                  const v1::Target& target, const std::string& target_json,
                                  std::optional<int64_t> job_id) {
  database::RecordRow row;
  row.workload_key = req.workload().key();
  row.device_key = target.device_key();
  row.target_json = target_json;
  row.toolchain = target.toolchain();
  row.template_name = req.template_name();
  row.template_version = req.template_version();
  row.config_index = req.config().index();
  // Same text as ConfigSpace::ToJson: knob names in space order.
  nlohmann::ordered_json knobs = nlohmann::ordered_json::object();
  for (const v1::KnobValue& k : req.config().knobs()) {
    if (k.value_case() == v1::KnobValue::kIntValue) {
      knobs[k.name()] = k.int_value();
    } else {
      knobs[k.name()] = k.str_value();
    }
  }
  row.config_json = knobs.dump();
  row.costs.assign(res.costs().begin(), res.costs().end());
  row.status = res.status();
  row.error = res.error();
  row.compile_time_s = res.compile_time_s();
  row.agent_id = res.agent_id();
  row.timestamp_ms = res.timestamp_ms();
  row.job_id = job_id;
  return row;
}

}  // namespace tunefarm::tuner
