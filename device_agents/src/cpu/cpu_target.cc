#include "tunefarm/device_agents/cpu_target.h"

#include <sched.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace tunefarm::device_agents {
namespace {

// Enough words to tell "intel-xeon-e5-2680-v4" from its v3 sibling without
// carrying a marketing sentence into every record key.
constexpr size_t kMaxKeyWords = 6;

struct CpuInfo {
  std::map<std::string, std::string> fields;  // first occurrence (cpu0) wins
  std::set<std::string> flags;  // "flags" (x86) or "Features" (arm)
  int processors = 0;

  const std::string* Get(const std::string& key) const {
    auto it = fields.find(key);
    return it == fields.end() || it->second.empty() ? nullptr : &it->second;
  }
  bool Has(const std::string& flag) const { return flags.count(flag) > 0; }
};

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

CpuInfo ParseCpuInfo(const std::string& text) {
  CpuInfo info;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    std::string key(absl::StripAsciiWhitespace(line.substr(0, colon)));
    std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    if (key == "processor") ++info.processors;
    if (info.fields.count(key) > 0) continue;
    if (key == "flags" || key == "Features") {
      for (absl::string_view f :
           absl::StrSplit(value, ' ', absl::SkipEmpty())) {
        info.flags.emplace(f);
      }
    }
    info.fields.emplace(std::move(key), std::move(value));
  }
  return info;
}

std::string NormalizeMachine(std::string machine) {
  if (machine == "amd64") return "x86_64";
  if (machine == "arm64") return "aarch64";
  return machine;
}

std::string UnameMachine() {
  struct utsname u;
  if (::uname(&u) != 0) return "unknown";
  return NormalizeMachine(u.machine);
}

// The running kernel knows best; a fake tree under `root` only has its
// cpuinfo to say what it is.
std::string DetectMachine(const std::string& root, const CpuInfo& info) {
  if (!root.empty()) {
    if (info.Get("flags") != nullptr || info.Get("vendor_id") != nullptr) {
      return "x86_64";
    }
    const std::string* arch = info.Get("CPU architecture");
    if (arch != nullptr && *arch == "8") return "aarch64";
    if (info.Get("CPU implementer") != nullptr && info.Has("asimd")) {
      return "aarch64";
    }
  }
  return UnameMachine();
}

bool IsX86(const std::string& machine) {
  return machine == "x86_64" || machine == "i686" || machine == "i386";
}

// The ISA level code generation targets, the part after the '-' in `arch`.
std::string IsaSuffix(const std::string& machine, const CpuInfo& info) {
  if (IsX86(machine)) {
    if (info.Has("avx512f")) return "avx512";
    if (info.Has("avx2") && info.Has("fma")) return "avx2";
    if (info.Has("sse4_2")) return "sse4";
    return "sse2";
  }
  if (machine == "aarch64") return info.Has("sve") ? "sve" : "neon";
  if (absl::StartsWith(machine, "arm") && info.Has("neon")) return "neon";
  return "";
}

// cpuinfo flag -> feature name reported in the Target, in reporting order.
struct FeatureName {
  const char* flag;
  const char* feature;
};
constexpr FeatureName kX86Features[] = {
    {"sse2", "sse2"},
    {"pni", "sse3"},
    {"ssse3", "ssse3"},
    {"sse4_1", "sse4_1"},
    {"sse4_2", "sse4_2"},
    {"avx", "avx"},
    {"f16c", "f16c"},
    {"fma", "fma"},
    {"bmi1", "bmi1"},
    {"bmi2", "bmi2"},
    {"avx2", "avx2"},
    {"avx_vnni", "avx_vnni"},
    {"avx512f", "avx512f"},
    {"avx512cd", "avx512cd"},
    {"avx512dq", "avx512dq"},
    {"avx512bw", "avx512bw"},
    {"avx512vl", "avx512vl"},
    {"avx512ifma", "avx512ifma"},
    {"avx512vbmi", "avx512vbmi"},
    {"avx512_vbmi2", "avx512_vbmi2"},
    {"avx512_vnni", "avx512_vnni"},
    {"avx512_bf16", "avx512_bf16"},
    {"avx512_fp16", "avx512_fp16"},
    {"amx_tile", "amx_tile"},
    {"amx_int8", "amx_int8"},
    {"amx_bf16", "amx_bf16"},
};
constexpr FeatureName kArmFeatures[] = {
    {"asimd", "neon"},      {"neon", "neon"}, {"asimdhp", "fp16"},
    {"asimddp", "dotprod"}, {"i8mm", "i8mm"}, {"bf16", "bf16"},
    {"sve", "sve"},         {"sve2", "sve2"}, {"sme", "sme"},
};

std::vector<std::string> RelevantFeatures(const std::string& machine,
                                          const CpuInfo& info) {
  std::vector<std::string> out;
  auto add = [&](const auto& table) {
    for (const FeatureName& f : table) {
      if (!info.Has(f.flag)) continue;
      if (std::find(out.begin(), out.end(), f.feature) == out.end()) {
        out.emplace_back(f.feature);
      }
    }
  };
  if (IsX86(machine)) {
    add(kX86Features);
  } else {
    add(kArmFeatures);
  }
  return out;
}

// aarch64 kernels print no model name, only the implementer and part ids.
std::string ArmModelName(const CpuInfo& info) {
  const std::string* implementer = info.Get("CPU implementer");
  const std::string* part = info.Get("CPU part");
  unsigned impl_id = 0, part_id = 0;
  if (implementer == nullptr ||
      !absl::SimpleHexAtoi(absl::StripPrefix(*implementer, "0x"), &impl_id)) {
    return "";
  }
  static const std::map<unsigned, std::string> kVendors = {
      {0x41, "ARM"},     {0x42, "Broadcom"},  {0x43, "Cavium"},
      {0x46, "Fujitsu"}, {0x48, "HiSilicon"}, {0x4e, "NVIDIA"},
      {0x50, "APM"},     {0x51, "Qualcomm"},  {0x61, "Apple"},
      {0xc0, "Ampere"},
  };
  static const std::map<std::pair<unsigned, unsigned>, std::string> kParts = {
      {{0x41, 0xd03}, "Cortex-A53"},  {{0x41, 0xd05}, "Cortex-A55"},
      {{0x41, 0xd07}, "Cortex-A57"},  {{0x41, 0xd08}, "Cortex-A72"},
      {{0x41, 0xd09}, "Cortex-A73"},  {{0x41, 0xd0a}, "Cortex-A75"},
      {{0x41, 0xd0b}, "Cortex-A76"},  {{0x41, 0xd0c}, "Neoverse-N1"},
      {{0x41, 0xd0d}, "Cortex-A77"},  {{0x41, 0xd40}, "Neoverse-V1"},
      {{0x41, 0xd41}, "Cortex-A78"},  {{0x41, 0xd44}, "Cortex-X1"},
      {{0x41, 0xd46}, "Cortex-A510"}, {{0x41, 0xd47}, "Cortex-A710"},
      {{0x41, 0xd48}, "Cortex-X2"},   {{0x41, 0xd49}, "Neoverse-N2"},
      {{0x41, 0xd4f}, "Neoverse-V2"}, {{0x41, 0xd84}, "Neoverse-V3"},
      {{0x41, 0xd8e}, "Neoverse-N3"}, {{0x46, 0x001}, "A64FX"},
      {{0x48, 0xd01}, "Kunpeng-920"}, {{0x4e, 0x004}, "Carmel"},
      {{0xc0, 0xac3}, "Ampere-1"},    {{0xc0, 0xac4}, "Ampere-1a"},
  };
  auto vendor = kVendors.find(impl_id);
  std::string vendor_name =
      vendor != kVendors.end()
          ? vendor->second
          : absl::StrCat("implementer 0x", absl::Hex(impl_id));
  if (part == nullptr ||
      !absl::SimpleHexAtoi(absl::StripPrefix(*part, "0x"), &part_id)) {
    return vendor_name;
  }
  auto it = kParts.find({impl_id, part_id});
  if (it != kParts.end()) return absl::StrCat(vendor_name, " ", it->second);
  return absl::StrCat(vendor_name, " part 0x",
                      absl::Hex(part_id, absl::kZeroPad3));
}

std::string ModelName(const CpuInfo& info) {
  for (const char* key : {"model name", "Model", "Hardware"}) {
    if (const std::string* v = info.Get(key)) return *v;
  }
  return ArmModelName(info);
}

bool IsFrequency(absl::string_view t) {
  for (absl::string_view unit : {"ghz", "mhz"}) {
    if (!absl::EndsWith(t, unit)) continue;
    absl::string_view number = t.substr(0, t.size() - unit.size());
    double value;
    return !number.empty() && absl::SimpleAtod(number, &value);
  }
  return false;
}

// "96-core", "quad-core", "64-cores"
bool IsCoreCount(absl::string_view t) {
  return absl::EndsWith(t, "-core") || absl::EndsWith(t, "-cores");
}

bool IsNoiseWord(absl::string_view w) {
  static const std::set<absl::string_view> kNoise = {
      "cpu", "processor", "core", "radeon", "graphics",
  };
  return kNoise.count(w) > 0;
}

std::vector<std::string> AlnumWords(absl::string_view token) {
  std::vector<std::string> words(1);
  for (char c : token) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c))) {
      words.back().push_back(c);
    } else if (!words.back().empty()) {
      words.emplace_back();
    }
  }
  if (words.back().empty()) words.pop_back();
  return words;
}

std::string KeyFromModel(const std::string& model) {
  std::string text =
      absl::StrReplaceAll(absl::AsciiStrToLower(model),
                          {{"(r)", " "}, {"(tm)", " "}, {"(c)", " "}});
  std::vector<std::string> words;
  for (absl::string_view token :
       absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty())) {
    // What follows is the clock ("@ 2.50GHz") or the integrated GPU
    // ("with Radeon Graphics"), neither of which names the CPU.
    if (token == "@" || token == "with") break;
    if (IsFrequency(token) || IsCoreCount(token)) continue;
    for (const std::string& w : AlnumWords(token)) {
      if (IsNoiseWord(w)) continue;
      if (!words.empty() && words.back() == w) continue;
      words.push_back(w);
    }
  }
  if (words.size() > kMaxKeyWords) words.resize(kMaxKeyWords);
  return absl::StrJoin(words, "-");
}

// "48K", "2048K", "32M", or plain bytes.
std::optional<int64_t> ParseCacheSize(absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  int64_t scale = 1;
  if (!text.empty()) {
    switch (absl::ascii_toupper(text.back())) {
      case 'K':
        scale = int64_t{1} << 10;
        break;
      case 'M':
        scale = int64_t{1} << 20;
        break;
      case 'G':
        scale = int64_t{1} << 30;
        break;
      default:
        break;
    }
    if (scale != 1) text.remove_suffix(1);
  }
  int64_t value = 0;
  if (!absl::SimpleAtoi(text, &value) || value <= 0) return std::nullopt;
  return value * scale;
}

std::map<std::string, int64_t> CacheSizes(const std::string& root) {
  std::map<std::string, int64_t> sizes;
  std::filesystem::path dir =
      std::filesystem::path(root + "/sys/devices/system/cpu/cpu0/cache");
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (!absl::StartsWith(entry.path().filename().string(), "index")) continue;
    std::string base = entry.path().string();
    std::optional<std::string> level = ReadFile(base + "/level");
    std::optional<std::string> type = ReadFile(base + "/type");
    std::optional<std::string> size_text = ReadFile(base + "/size");
    if (!level || !type || !size_text) continue;
    std::optional<int64_t> size = ParseCacheSize(*size_text);
    std::string kind(absl::StripAsciiWhitespace(*type));
    if (!size || kind == "Instruction") continue;
    std::string lvl(absl::StripAsciiWhitespace(*level));
    std::string name =
        lvl == "1" ? "l1d_bytes" : absl::StrCat("l", lvl, "_bytes");
    if (lvl == "1" || lvl == "2" || lvl == "3") sizes[name] = *size;
  }
  if (root.empty()) {
    // Some kernels (VMs, older arm boards) expose no cache directory.
    for (auto [name, param] : {std::pair{"l1d_bytes", _SC_LEVEL1_DCACHE_SIZE},
                               std::pair{"l2_bytes", _SC_LEVEL2_CACHE_SIZE},
                               std::pair{"l3_bytes", _SC_LEVEL3_CACHE_SIZE}}) {
      long value = ::sysconf(param);
      if (sizes.count(name) == 0 && value > 0) sizes[name] = value;
    }
  }
  return sizes;
}

int AffinityCpuCount() {
  for (int n = 1024; n <= (1 << 20); n *= 4) {
    cpu_set_t* set = CPU_ALLOC(n);
    if (set == nullptr) return 0;
    size_t bytes = CPU_ALLOC_SIZE(n);
    CPU_ZERO_S(bytes, set);
    int count = 0;
    bool ok = ::sched_getaffinity(0, bytes, set) == 0;
    if (ok) count = CPU_COUNT_S(bytes, set);
    int err = errno;
    CPU_FREE(set);
    if (ok) return count;
    if (err != EINVAL) return 0;
  }
  return 0;
}

}  // namespace

tunefarm::v1::Target DetectCpuTarget(const std::string& root) {
  CpuInfo info = ParseCpuInfo(ReadFile(root + "/proc/cpuinfo").value_or(""));
  std::string machine = DetectMachine(root, info);
  std::string suffix = IsaSuffix(machine, info);

  tunefarm::v1::Target target;
  target.set_kind(tunefarm::v1::DEVICE_KIND_CPU);
  target.set_arch(suffix.empty() ? machine
                                 : absl::StrCat(machine, "-", suffix));
  std::string model = ModelName(info);
  target.set_model(model);
  std::string words = KeyFromModel(model);
  if (words.empty()) {
    target.set_device_key(absl::StrCat("cpu-", target.arch()));
  } else {
    target.set_device_key(
        absl::StrCat(words, "-", suffix.empty() ? machine : suffix));
  }
  for (std::string& f : RelevantFeatures(machine, info)) {
    target.add_features(std::move(f));
  }

  auto& limits = *target.mutable_limits();
  int cores = root.empty() ? AffinityCpuCount() : 0;
  if (cores <= 0) cores = info.processors;
  if (cores <= 0 && root.empty()) {
    cores = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
  }
  if (cores > 0) limits["cores"] = cores;
  for (const auto& [name, bytes] : CacheSizes(root)) limits[name] = bytes;
  return target;
}

}  // namespace tunefarm::device_agents
