// The device info of the CUDA measurement server's ready line
// (cuda_measure.h), shared by the server and the backend that reads it.
#include "cuda/cuda_measure.h"

namespace tunefarm::device_agents {

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(CudaDeviceInfo, name, cc_major, cc_minor, sm_count,
                                                max_threads_per_block, shared_bytes_per_block,
                                                shared_bytes_per_block_optin, registers_per_block, clock_khz,
                                                memory_clock_khz, l2_bytes, memory_bytes, driver_version)

nlohmann::json CudaInfoToJson(const CudaDeviceInfo& info) { return info; }
CudaDeviceInfo CudaInfoFromJson(const nlohmann::json& j) { return j.get<CudaDeviceInfo>(); }

}  // namespace tunefarm::device_agents
