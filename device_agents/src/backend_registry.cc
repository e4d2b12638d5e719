#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cpu/cpu_backend.h"
#include "tunefarm/device_agents/backend.h"

namespace tunefarm::device_agents {
namespace {

struct Entry {
  const char* name;
  absl::StatusOr<std::unique_ptr<DeviceBackend>> (*make)(const BackendOptions&);
};

// One line per device class.
constexpr Entry kBackends[] = {
    {"cpu", &NewCpuBackend},
};

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceBackend>> NewBackend(std::string_view device_class,
                                                          const BackendOptions& options) {
  for (const Entry& e : kBackends) {
    if (device_class == e.name) return e.make(options);
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
