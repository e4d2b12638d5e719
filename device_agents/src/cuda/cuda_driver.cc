#include "tunefarm/device_agents/cuda_driver.h"

#include <dlfcn.h>

#include <chrono>
#include <thread>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tunefarm::device_agents {
namespace {

// The slice of cuda.h used here. CUDA 13 renamed some entry points by
// macro (cuMemAlloc is cuMemAlloc_v2, ...): the versioned names are asked
// for by name.
using CUresult = int;
using CUdevice = int;
using CUcontext = void*;
using CUmodule = void*;
using CUfunction = void*;
using CUevent = void*;
using CUstream = void*;
using CUdeviceptr = unsigned long long;
constexpr CUresult kSuccess = 0;
constexpr CUresult kNotReady = 600;

// CUdevice_attribute values.
enum : int {
  kMaxThreadsPerBlock = 1,
  kMaxSharedMemoryPerBlock = 8,
  kMaxRegistersPerBlock = 12,
  kClockRate = 13,
  kMultiprocessorCount = 16,
  kMemoryClockRate = 36,
  kL2CacheSize = 38,
  kComputeCapabilityMajor = 75,
  kComputeCapabilityMinor = 76,
  kMaxSharedMemoryPerBlockOptin = 97,
};
// CUfunction_attribute values.
enum : int { kFuncMaxThreadsPerBlock = 0, kFuncNumRegs = 4, kFuncMaxDynamicSharedSizeBytes = 8 };

}  // namespace

struct CudaDriver::Api {
  void* lib = nullptr;
  CUresult (*Init)(unsigned) = nullptr;
  CUresult (*DriverGetVersion)(int*) = nullptr;
  CUresult (*GetErrorName)(CUresult, const char**) = nullptr;
  CUresult (*GetErrorString)(CUresult, const char**) = nullptr;
  CUresult (*DeviceGetCount)(int*) = nullptr;
  CUresult (*DeviceGet)(CUdevice*, int) = nullptr;
  CUresult (*DeviceGetName)(char*, int, CUdevice) = nullptr;
  CUresult (*DeviceGetAttribute)(int*, int, CUdevice) = nullptr;
  CUresult (*DeviceTotalMem)(size_t*, CUdevice) = nullptr;
  CUresult (*PrimaryCtxRetain)(CUcontext*, CUdevice) = nullptr;
  CUresult (*PrimaryCtxRelease)(CUdevice) = nullptr;
  CUresult (*CtxSetCurrent)(CUcontext) = nullptr;
  CUresult (*CtxSynchronize)() = nullptr;
  CUresult (*MemAlloc)(CUdeviceptr*, size_t) = nullptr;
  CUresult (*MemFree)(CUdeviceptr) = nullptr;
  CUresult (*MemcpyHtoD)(CUdeviceptr, const void*, size_t) = nullptr;
  CUresult (*MemcpyDtoH)(void*, CUdeviceptr, size_t) = nullptr;
  CUresult (*MemsetD32)(CUdeviceptr, unsigned, size_t) = nullptr;
  CUresult (*ModuleLoadData)(CUmodule*, const void*) = nullptr;
  CUresult (*ModuleUnload)(CUmodule) = nullptr;
  CUresult (*ModuleGetFunction)(CUfunction*, CUmodule, const char*) = nullptr;
  CUresult (*FuncGetAttribute)(int*, int, CUfunction) = nullptr;
  CUresult (*FuncSetAttribute)(CUfunction, int, int) = nullptr;
  CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream,
                           void**, void**) = nullptr;
  CUresult (*EventCreate)(CUevent*, unsigned) = nullptr;
  CUresult (*EventRecord)(CUevent, CUstream) = nullptr;
  CUresult (*EventQuery)(CUevent) = nullptr;
  CUresult (*EventElapsedTime)(float*, CUevent, CUevent) = nullptr;
  CUresult (*EventDestroy)(CUevent) = nullptr;
};

struct CudaDriver::Module {
  CudaDriver* owner = nullptr;
  CUmodule module = nullptr;
  CUfunction function = nullptr;
  ~Module() {
    if (owner != nullptr && module != nullptr && owner->Current().ok()) owner->api_->ModuleUnload(module);
  }
};

absl::StatusOr<std::unique_ptr<CudaDriver>> CudaDriver::Open(int ordinal) {
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) lib = dlopen("libcuda.so", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    return absl::UnavailableError("no CUDA driver on this machine (libcuda.so.1 does not load)");
  }
  auto api = std::make_unique<Api>();
  api->lib = lib;
  std::string missing;
  auto get = [&](auto& fn, std::initializer_list<const char*> names) {
    for (const char* n : names) {
      if ((fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, n))) != nullptr) return;
    }
    absl::StrAppend(&missing, missing.empty() ? "" : ", ", *names.begin());
  };
  get(api->Init, {"cuInit"});
  get(api->DriverGetVersion, {"cuDriverGetVersion"});
  get(api->GetErrorName, {"cuGetErrorName"});
  get(api->GetErrorString, {"cuGetErrorString"});
  get(api->DeviceGetCount, {"cuDeviceGetCount"});
  get(api->DeviceGet, {"cuDeviceGet"});
  get(api->DeviceGetName, {"cuDeviceGetName"});
  get(api->DeviceGetAttribute, {"cuDeviceGetAttribute"});
  get(api->DeviceTotalMem, {"cuDeviceTotalMem_v2"});
  get(api->PrimaryCtxRetain, {"cuDevicePrimaryCtxRetain"});
  get(api->PrimaryCtxRelease, {"cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease"});
  get(api->CtxSetCurrent, {"cuCtxSetCurrent"});
  get(api->CtxSynchronize, {"cuCtxSynchronize"});
  get(api->MemAlloc, {"cuMemAlloc_v2"});
  get(api->MemFree, {"cuMemFree_v2"});
  get(api->MemcpyHtoD, {"cuMemcpyHtoD_v2"});
  get(api->MemcpyDtoH, {"cuMemcpyDtoH_v2"});
  get(api->MemsetD32, {"cuMemsetD32_v2"});
  get(api->ModuleLoadData, {"cuModuleLoadData"});
  get(api->ModuleUnload, {"cuModuleUnload"});
  get(api->ModuleGetFunction, {"cuModuleGetFunction"});
  get(api->FuncGetAttribute, {"cuFuncGetAttribute"});
  get(api->FuncSetAttribute, {"cuFuncSetAttribute"});
  get(api->LaunchKernel, {"cuLaunchKernel"});
  get(api->EventCreate, {"cuEventCreate"});
  get(api->EventRecord, {"cuEventRecord"});
  get(api->EventQuery, {"cuEventQuery"});
  get(api->EventElapsedTime, {"cuEventElapsedTime_v2", "cuEventElapsedTime"});
  get(api->EventDestroy, {"cuEventDestroy_v2", "cuEventDestroy"});
  if (!missing.empty()) {
    dlclose(lib);
    return absl::UnavailableError(absl::StrCat("the CUDA driver lacks entry points this build needs: ", missing));
  }
  std::unique_ptr<CudaDriver> d(new CudaDriver(std::move(api), 0));
  if (absl::Status s = d->Check(d->api_->Init(0), "cuInit"); !s.ok()) {
    return absl::UnavailableError(absl::StrCat("the CUDA driver does not start: ", s.message()));
  }
  int count = 0;
  if (absl::Status s = d->Check(d->api_->DeviceGetCount(&count), "cuDeviceGetCount"); !s.ok()) return s;
  if (ordinal < 0 || ordinal >= count) {
    return absl::UnavailableError(absl::StrCat("CUDA device ", ordinal, " does not exist (", count, " found)"));
  }
  if (absl::Status s = d->Check(d->api_->DeviceGet(&d->device_, ordinal), "cuDeviceGet"); !s.ok()) return s;

  Api& a = *d->api_;
  CudaDeviceInfo& info = d->info_;
  char name[256] = {};
  a.DeviceGetName(name, sizeof name - 1, d->device_);
  info.name = name;
  auto attr = [&](int which) {
    int v = 0;
    a.DeviceGetAttribute(&v, which, d->device_);
    return v;
  };
  info.cc_major = attr(kComputeCapabilityMajor);
  info.cc_minor = attr(kComputeCapabilityMinor);
  info.sm_count = attr(kMultiprocessorCount);
  info.max_threads_per_block = attr(kMaxThreadsPerBlock);
  info.shared_bytes_per_block = attr(kMaxSharedMemoryPerBlock);
  info.shared_bytes_per_block_optin = attr(kMaxSharedMemoryPerBlockOptin);
  info.registers_per_block = attr(kMaxRegistersPerBlock);
  info.clock_khz = attr(kClockRate);
  info.memory_clock_khz = attr(kMemoryClockRate);
  info.l2_bytes = attr(kL2CacheSize);
  size_t total = 0;
  a.DeviceTotalMem(&total, d->device_);
  info.memory_bytes = static_cast<int64_t>(total);
  a.DriverGetVersion(&info.driver_version);
  if (absl::Status s = d->Check(a.PrimaryCtxRetain(&d->context_, d->device_), "cuDevicePrimaryCtxRetain"); !s.ok()) {
    d->context_ = nullptr;
    return s;
  }
  if (absl::Status s = d->Current(); !s.ok()) return s;
  return d;
}

CudaDriver::CudaDriver(std::unique_ptr<Api> api, int device) : api_(std::move(api)), device_(device) {}

CudaDriver::~CudaDriver() {
  if (context_ != nullptr) api_->PrimaryCtxRelease(device_);
  // The library stays loaded: a driver cannot be unloaded safely.
}

absl::Status CudaDriver::Check(int result, const char* what) const {
  if (result == kSuccess) return absl::OkStatus();
  const char* name = nullptr;
  const char* text = nullptr;
  api_->GetErrorName(result, &name);
  api_->GetErrorString(result, &text);
  return absl::InternalError(
      absl::StrCat(what, ": ", name ? name : "CUDA error", " (", result, ")", text ? absl::StrCat(": ", text) : ""));
}

absl::Status CudaDriver::Current() { return Check(api_->CtxSetCurrent(context_), "cuCtxSetCurrent"); }

absl::StatusOr<CudaDriver::DevicePtr> CudaDriver::Alloc(size_t bytes) {
  if (absl::Status s = Current(); !s.ok()) return s;
  CUdeviceptr p = 0;
  if (absl::Status s = Check(api_->MemAlloc(&p, bytes == 0 ? 4 : bytes), "cuMemAlloc"); !s.ok()) return s;
  return p;
}

void CudaDriver::Free(DevicePtr p) {
  if (p != 0 && Current().ok()) api_->MemFree(p);
}

absl::Status CudaDriver::CopyToDevice(DevicePtr dst, const void* src, size_t bytes) {
  if (absl::Status s = Current(); !s.ok()) return s;
  return Check(api_->MemcpyHtoD(dst, src, bytes), "cuMemcpyHtoD");
}

absl::Status CudaDriver::CopyFromDevice(void* dst, DevicePtr src, size_t bytes) {
  if (absl::Status s = Current(); !s.ok()) return s;
  return Check(api_->MemcpyDtoH(dst, src, bytes), "cuMemcpyDtoH");
}

absl::Status CudaDriver::Fill32(DevicePtr dst, uint32_t word, size_t count) {
  if (absl::Status s = Current(); !s.ok()) return s;
  return Check(api_->MemsetD32(dst, word, count), "cuMemsetD32");
}

absl::StatusOr<std::shared_ptr<CudaDriver::Module>> CudaDriver::LoadModule(const std::string& image,
                                                                           const std::string& entry) {
  if (absl::Status s = Current(); !s.ok()) return s;
  auto m = std::make_shared<Module>();
  if (absl::Status s = Check(api_->ModuleLoadData(&m->module, image.data()), "cuModuleLoadData"); !s.ok()) return s;
  m->owner = this;
  if (absl::Status s = Check(api_->ModuleGetFunction(&m->function, m->module, entry.c_str()), "cuModuleGetFunction");
      !s.ok()) {
    return s;
  }
  return m;
}

int CudaDriver::Registers(const Module& m) const {
  int v = 0;
  api_->FuncGetAttribute(&v, kFuncNumRegs, m.function);
  return v;
}

int CudaDriver::MaxThreadsPerBlock(const Module& m) const {
  int v = 0;
  api_->FuncGetAttribute(&v, kFuncMaxThreadsPerBlock, m.function);
  return v;
}

absl::Status CudaDriver::AllowDynamicShared(const Module& m, int64_t bytes) {
  if (absl::Status s = Current(); !s.ok()) return s;
  return Check(api_->FuncSetAttribute(m.function, kFuncMaxDynamicSharedSizeBytes, static_cast<int>(bytes)),
               "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)");
}

absl::Status CudaDriver::Launch(const Module& m, std::array<int64_t, 3> grid, std::array<int64_t, 3> block,
                                const std::vector<DevicePtr>& args, int64_t dynamic_shared_bytes) {
  std::vector<CUdeviceptr> values(args.begin(), args.end());
  std::vector<void*> params;
  for (CUdeviceptr& v : values) params.push_back(&v);
  auto u = [](int64_t v) { return static_cast<unsigned>(v); };
  return Check(api_->LaunchKernel(m.function, u(grid[0]), u(grid[1]), u(grid[2]), u(block[0]), u(block[1]), u(block[2]),
                                  u(dynamic_shared_bytes), nullptr, params.data(), nullptr),
               "cuLaunchKernel");
}

absl::StatusOr<double> CudaDriver::Time(const std::function<absl::Status()>& run, double timeout_s) {
  if (absl::Status s = Current(); !s.ok()) return s;
  CUevent start = nullptr, stop = nullptr;
  if (absl::Status s = Check(api_->EventCreate(&start, 0), "cuEventCreate"); !s.ok()) return s;
  if (absl::Status s = Check(api_->EventCreate(&stop, 0), "cuEventCreate"); !s.ok()) {
    api_->EventDestroy(start);
    return s;
  }
  absl::StatusOr<double> out;
  absl::Status s = Check(api_->EventRecord(start, nullptr), "cuEventRecord");
  if (s.ok()) s = run();
  if (s.ok()) s = Check(api_->EventRecord(stop, nullptr), "cuEventRecord");
  if (s.ok()) {
    // Polled, so that a kernel that never ends cannot hang the caller.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    CUresult q;
    while ((q = api_->EventQuery(stop)) == kNotReady && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    if (q == kNotReady) {
      s = absl::DeadlineExceededError(absl::StrCat("the kernel ran past ", timeout_s, " s"));
    } else {
      s = Check(q, "the kernel");
    }
  }
  if (s.ok()) {
    float ms = 0;
    s = Check(api_->EventElapsedTime(&ms, start, stop), "cuEventElapsedTime");
    if (s.ok()) out = ms / 1000.0;
  }
  if (!s.ok()) out = s;
  api_->EventDestroy(start);
  api_->EventDestroy(stop);
  return out;
}

absl::Status CudaDriver::Synchronize() {
  if (absl::Status s = Current(); !s.ok()) return s;
  return Check(api_->CtxSynchronize(), "cuCtxSynchronize");
}

}  // namespace tunefarm::device_agents
