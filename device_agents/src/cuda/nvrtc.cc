#include "tunefarm/device_agents/nvrtc.h"

#include <dlfcn.h>

#include <cstdlib>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tunefarm::device_agents {
namespace {

// The slice of nvrtc.h used here (the ABI is stable across releases).
using nvrtcResult = int;
using nvrtcProgram = struct _nvrtcProgram*;
constexpr nvrtcResult kNvrtcSuccess = 0;

}  // namespace

struct Nvrtc::Api {
  void* lib = nullptr;
  const char* (*GetErrorString)(nvrtcResult) = nullptr;
  nvrtcResult (*Version)(int*, int*) = nullptr;
  nvrtcResult (*CreateProgram)(nvrtcProgram*, const char*, const char*, int, const char* const*,
                               const char* const*) = nullptr;
  nvrtcResult (*DestroyProgram)(nvrtcProgram*) = nullptr;
  nvrtcResult (*CompileProgram)(nvrtcProgram, int, const char* const*) = nullptr;
  nvrtcResult (*GetProgramLogSize)(nvrtcProgram, size_t*) = nullptr;
  nvrtcResult (*GetProgramLog)(nvrtcProgram, char*) = nullptr;
  nvrtcResult (*GetPTXSize)(nvrtcProgram, size_t*) = nullptr;
  nvrtcResult (*GetPTX)(nvrtcProgram, char*) = nullptr;
  nvrtcResult (*GetCUBINSize)(nvrtcProgram, size_t*) = nullptr;
  nvrtcResult (*GetCUBIN)(nvrtcProgram, char*) = nullptr;
};

absl::StatusOr<std::unique_ptr<Nvrtc>> Nvrtc::Load() {
  std::vector<std::string> names = {"libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"};
  std::vector<std::string> dirs;
  if (const char* home = std::getenv("CUDA_HOME"); home != nullptr && *home != '\0') dirs.push_back(std::string(home) + "/lib64");
  dirs.push_back("/usr/local/cuda/lib64");
  std::vector<std::string> tried;
  for (const std::string& n : names) tried.push_back(n);
  for (const std::string& d : dirs) {
    for (const std::string& n : names) tried.push_back(d + "/" + n);
  }
  void* lib = nullptr;
  for (const std::string& path : tried) {
    if ((lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL)) != nullptr) break;
  }
  if (lib == nullptr) {
    return absl::UnavailableError(absl::StrCat("NVRTC is not installed (tried ", absl::StrJoin(tried, ", "), ")"));
  }
  auto api = std::make_unique<Api>();
  api->lib = lib;
  bool missing = false;
  auto get = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
    missing = missing || fn == nullptr;
  };
  get(api->GetErrorString, "nvrtcGetErrorString");
  get(api->Version, "nvrtcVersion");
  get(api->CreateProgram, "nvrtcCreateProgram");
  get(api->DestroyProgram, "nvrtcDestroyProgram");
  get(api->CompileProgram, "nvrtcCompileProgram");
  get(api->GetProgramLogSize, "nvrtcGetProgramLogSize");
  get(api->GetProgramLog, "nvrtcGetProgramLog");
  get(api->GetPTXSize, "nvrtcGetPTXSize");
  get(api->GetPTX, "nvrtcGetPTX");
  get(api->GetCUBINSize, "nvrtcGetCUBINSize");
  get(api->GetCUBIN, "nvrtcGetCUBIN");
  if (missing) {
    dlclose(lib);
    return absl::UnavailableError("the NVRTC library found lacks an entry point this build needs");
  }
  return std::unique_ptr<Nvrtc>(new Nvrtc(std::move(api)));
}

Nvrtc::Nvrtc(std::unique_ptr<Api> api) : api_(std::move(api)) {}

Nvrtc::~Nvrtc() {
  if (api_ && api_->lib) dlclose(api_->lib);
}

std::string Nvrtc::version() const {
  int major = 0, minor = 0;
  if (api_->Version(&major, &minor) != kNvrtcSuccess) return "unknown";
  return absl::StrCat(major, ".", minor);
}

absl::StatusOr<std::string> Nvrtc::CompileToPtx(const std::string& source, const std::string& name,
                                                const std::string& arch) const {
  return Compile(source, name, arch, false);
}

absl::StatusOr<std::string> Nvrtc::CompileToCubin(const std::string& source, const std::string& name,
                                                  const std::string& arch) const {
  return Compile(source, name, arch, true);
}

absl::StatusOr<std::string> Nvrtc::Compile(const std::string& source, const std::string& name,
                                           const std::string& arch, bool cubin) const {
  nvrtcProgram prog = nullptr;
  if (nvrtcResult r = api_->CreateProgram(&prog, source.c_str(), name.c_str(), 0, nullptr, nullptr);
      r != kNvrtcSuccess) {
    return absl::InternalError(absl::StrCat("nvrtcCreateProgram: ", api_->GetErrorString(r)));
  }
  const std::string arch_flag = "--gpu-architecture=" + arch;
  const char* options[] = {arch_flag.c_str(), "--std=c++17"};
  const nvrtcResult compiled = api_->CompileProgram(prog, 2, options);
  std::string log;
  if (size_t n = 0; api_->GetProgramLogSize(prog, &n) == kNvrtcSuccess && n > 1) {
    log.resize(n);
    api_->GetProgramLog(prog, log.data());
    log.resize(n - 1);
  }
  auto size_of = cubin ? api_->GetCUBINSize : api_->GetPTXSize;
  auto get = cubin ? api_->GetCUBIN : api_->GetPTX;
  absl::StatusOr<std::string> out;
  if (compiled != kNvrtcSuccess) {
    out = absl::InvalidArgumentError(absl::StrCat("NVRTC (", arch, "): ", api_->GetErrorString(compiled), "\n", log));
  } else if (size_t n = 0; size_of(prog, &n) != kNvrtcSuccess || n == 0) {
    out = absl::InternalError(absl::StrCat("NVRTC produced no ", cubin ? "CUBIN" : "PTX", " for ", arch));
  } else {
    std::string image(n, '\0');
    get(prog, image.data());
    if (!cubin) image.resize(n - 1);  // PTX ends in a NUL
    out = std::move(image);
  }
  api_->DestroyProgram(&prog);
  return out;
}

}  // namespace tunefarm::device_agents
