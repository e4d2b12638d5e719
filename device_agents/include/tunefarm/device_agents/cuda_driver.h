// The CUDA driver API, loaded with dlopen (libcuda.so.1), so that every
// program of the project builds and runs on machines without a GPU or a
// driver; there Load() says why the CUDA device is unavailable.
//
// One object drives one device through its primary context. Calls that
// touch the device make that context current on the calling thread first,
// so any one thread at a time may use it. A kernel that faults (an illegal
// address, say) leaves every context of the process unusable until the
// process ends: measure untrusted kernels in a process of their own
// (tunefarm-measure --cuda).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tunefarm::device_agents {

struct CudaDeviceInfo {
  std::string name;  // "NVIDIA H100 80GB HBM3"
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  int max_threads_per_block = 0;
  int shared_bytes_per_block = 0;        // static + dynamic without opting in
  int shared_bytes_per_block_optin = 0;  // with the function's attribute raised
  int registers_per_block = 0;
  int clock_khz = 0, memory_clock_khz = 0;
  int l2_bytes = 0;
  int64_t memory_bytes = 0;
  int driver_version = 0;  // 13000 for CUDA 13.0
};

class CudaDriver {
 public:
  using DevicePtr = uint64_t;
  struct Module;  // a loaded CUBIN or PTX image
  using Function = void*;

  // Loads the driver, initialises it and retains device `ordinal`'s primary
  // context. Unavailable, with the reason, without a driver or a device.
  static absl::StatusOr<std::unique_ptr<CudaDriver>> Open(int ordinal = 0);
  ~CudaDriver();
  CudaDriver(const CudaDriver&) = delete;
  CudaDriver& operator=(const CudaDriver&) = delete;

  const CudaDeviceInfo& info() const { return info_; }

  absl::StatusOr<DevicePtr> Alloc(size_t bytes);
  void Free(DevicePtr p);
  absl::Status CopyToDevice(DevicePtr dst, const void* src, size_t bytes);
  absl::Status CopyFromDevice(void* dst, DevicePtr src, size_t bytes);
  // Sets `count` 32-bit words from `dst` to `word` (0x7fc00000 is a NaN).
  absl::Status Fill32(DevicePtr dst, uint32_t word, size_t count);

  // Loads a CUBIN (or PTX) image and finds `entry` in it.
  absl::StatusOr<std::shared_ptr<Module>> LoadModule(const std::string& image, const std::string& entry);
  // The module's function: registers per thread and the most threads per
  // block it can be launched with (fewer than the device's when it uses
  // many registers).
  int Registers(const Module& m) const;
  int MaxThreadsPerBlock(const Module& m) const;

  // Lets the function be launched with up to `bytes` of dynamic shared
  // memory (above 48 KiB it must be asked for; at most
  // shared_bytes_per_block_optin).
  absl::Status AllowDynamicShared(const Module& m, int64_t bytes);
  // Launches the function over pointer arguments `args`, asynchronously,
  // with `dynamic_shared_bytes` of dynamic shared memory.
  absl::Status Launch(const Module& m, std::array<int64_t, 3> grid, std::array<int64_t, 3> block,
                      const std::vector<DevicePtr>& args, int64_t dynamic_shared_bytes = 0);
  // Seconds the launches `run` enqueues take on the device, by CUDA events;
  // waits at most `timeout_s` (DeadlineExceeded past it).
  absl::StatusOr<double> Time(const std::function<absl::Status()>& run, double timeout_s);
  // Waits for all work; a fault of an earlier launch surfaces here.
  absl::Status Synchronize();

 private:
  struct Api;
  CudaDriver(std::unique_ptr<Api> api, int device);
  absl::Status Current();
  absl::Status Check(int result, const char* what) const;

  std::unique_ptr<Api> api_;
  int device_ = 0;
  void* context_ = nullptr;
  CudaDeviceInfo info_;
};

}  // namespace tunefarm::device_agents
