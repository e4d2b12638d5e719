// The CUDA measurement server, run as `tunefarm-measure --cuda ORDINAL`: it
// holds the only CUDA context that untrusted kernels touch, so that a kernel
// that faults (which leaves every context of its process unusable) costs a
// process restart, not the agent.
//
// Protocol, one JSON object per line. First it prints
//   {"status":"ready","info":{name, cc_major, cc_minor, sm_count, ...}}
// or {"status":"unavailable","error":...} and exits 3. Then, per request
//   {"cubin":PATH,"entry":NAME,"grid":[x,y,z],"block":[x,y,z],
//    "dynamic_shared":BYTES (optional, 0),"data":PATH,
//    "number":N,"repeat":R,"min_repeat_ms":MS,"cutoff_s":S,"timeout_s":T}
// (data: a MeasureData file), it answers
//   {"status":"ok","costs":[...]} | {"status":"wrong_answer","error":...}
//   | {"status":"instantiation_error","error":...}  (too many registers)
//   | {"status":"runtime_error","error":...,"fatal":B}
//   | {"status":"timeout","error":...,"fatal":true}
// and exits 4 right after an answer with "fatal": true.
#pragma once

#include "nlohmann/json.hpp"
#include "tunefarm/device_agents/cuda_driver.h"

namespace tunefarm::device_agents {

int ServeCuda(int ordinal);

// The "info" object of the ready line, both ways; missing fields read as
// their defaults.
nlohmann::json CudaInfoToJson(const CudaDeviceInfo& info);
CudaDeviceInfo CudaInfoFromJson(const nlohmann::json& j);

}  // namespace tunefarm::device_agents
