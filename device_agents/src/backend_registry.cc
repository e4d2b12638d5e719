#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "cpu/cpu_backend.h"
#include "cuda/cuda_backend.h"
#include "replay/replay_backend.h"
#include "tunefarm/device_agents/backend.h"

namespace tunefarm::device_agents {
namespace {

absl::StatusOr<std::unique_ptr<DeviceBackend>> MakeCpu(const BackendOptions& o, std::string_view arg) {
  if (!arg.empty()) return absl::InvalidArgumentError("device class 'cpu' takes no argument");
  return NewCpuBackend(o);
}

absl::StatusOr<std::unique_ptr<DeviceBackend>> MakeReplay(const BackendOptions& o, std::string_view arg) {
  return NewReplayBackend(o, arg);
}

// "cuda" or "cuda:ORDINAL".
absl::StatusOr<std::unique_ptr<DeviceBackend>> MakeCuda(const BackendOptions& o, std::string_view arg) {
  int ordinal = 0;
  if (!arg.empty() && !absl::SimpleAtoi(absl::string_view(arg.data(), arg.size()), &ordinal)) {
    return absl::InvalidArgumentError(absl::StrCat("device class 'cuda:", std::string(arg), "': the argument is a GPU number"));
  }
  return NewCudaBackend(o, ordinal);
}

struct Entry {
  const char* name;
  // `arg` is what follows "name:" in the device class string, if anything.
  absl::StatusOr<std::unique_ptr<DeviceBackend>> (*make)(const BackendOptions&, std::string_view arg);
};

// One line per device class.
constexpr Entry kBackends[] = {
    {"cpu", &MakeCpu},
    {"cuda", &MakeCuda},
    {"replay", &MakeReplay},
};

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceBackend>> NewBackend(std::string_view device_class,
                                                          const BackendOptions& options) {
  std::string_view name = device_class.substr(0, device_class.find(':'));
  std::string_view arg = name.size() < device_class.size() ? device_class.substr(name.size() + 1) : "";
  for (const Entry& e : kBackends) {
    if (name == e.name) return e.make(options, arg);
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown device class '", std::string(device_class),
                                                 "' (available: ", absl::StrJoin(BackendNames(), ", "), ")"));
}

std::vector<std::string> BackendNames() {
  std::vector<std::string> out;
  for (const Entry& e : kBackends) out.emplace_back(e.name);
  return out;
}

}  // namespace tunefarm::device_agents
