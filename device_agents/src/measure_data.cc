#include "measure_data.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tunefarm::device_agents {
namespace {

constexpr char kMagic[8] = {'T', 'F', 'M', 'D', '0', '0', '0', '1'};
// Guards against absurd sizes in a corrupt file.
constexpr uint64_t kMaxElements = uint64_t{1} << 30;

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<FILE, FileCloser>;

bool Put(FILE* f, const void* p, size_t n) { return std::fwrite(p, 1, n, f) == n; }
bool Get(FILE* f, void* p, size_t n) { return std::fread(p, 1, n, f) == n; }

}  // namespace

void FillRandom(std::vector<float>& out, uint64_t seed) {
  // splitmix64: tiny, fast and identical everywhere.
  uint64_t s = seed;
  for (float& v : out) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    v = static_cast<float>(static_cast<double>(z >> 40) / static_cast<double>(uint64_t{1} << 23) - 1.0);
  }
}

absl::Status WriteMeasureData(const std::string& path, const MeasureData& data) {
  std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  {
    File f(std::fopen(tmp.c_str(), "wb"));
    if (!f) return absl::InternalError(absl::StrCat("cannot write ", tmp, ": ", std::strerror(errno)));
    bool ok = Put(f.get(), kMagic, sizeof kMagic);
    uint32_t n = static_cast<uint32_t>(data.buffers.size());
    ok = ok && Put(f.get(), &n, sizeof n);
    for (const MeasureBuffer& b : data.buffers) {
      uint32_t len = static_cast<uint32_t>(b.name.size());
      uint8_t out = b.is_output ? 1 : 0;
      ok = ok && Put(f.get(), &len, sizeof len) && Put(f.get(), b.name.data(), len) && Put(f.get(), &out, 1) &&
           Put(f.get(), &b.elements, sizeof b.elements);
    }
    for (const MeasureBuffer& b : data.buffers) {
      if (b.is_output) {
        ok = ok && Put(f.get(), b.expected.data(), b.elements * 4) && Put(f.get(), b.tolerance.data(), b.elements * 4);
      } else {
        ok = ok && Put(f.get(), b.input.data(), b.elements * 4);
      }
    }
    ok = ok && std::fflush(f.get()) == 0;
    if (!ok) {
      std::filesystem::remove(tmp);
      return absl::InternalError(absl::StrCat("short write to ", tmp));
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot rename ", tmp, ": ", ec.message()));
  return absl::OkStatus();
}

absl::StatusOr<MeasureData> ReadMeasureData(const std::string& path) {
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  auto corrupt = [&] { return absl::DataLossError(absl::StrCat(path, " is not a measurement data file")); };
  char magic[8];
  uint32_t n = 0;
  if (!Get(f.get(), magic, 8) || std::memcmp(magic, kMagic, 8) != 0 || !Get(f.get(), &n, sizeof n) || n > 64) {
    return corrupt();
  }
  MeasureData d;
  d.buffers.resize(n);
  for (MeasureBuffer& b : d.buffers) {
    uint32_t len = 0;
    uint8_t out = 0;
    if (!Get(f.get(), &len, sizeof len) || len > 256) return corrupt();
    b.name.resize(len);
    if (!Get(f.get(), b.name.data(), len) || !Get(f.get(), &out, 1) || !Get(f.get(), &b.elements, sizeof b.elements) ||
        b.elements > kMaxElements) {
      return corrupt();
    }
    b.is_output = out != 0;
  }
  for (MeasureBuffer& b : d.buffers) {
    if (b.is_output) {
      b.expected.resize(b.elements);
      b.tolerance.resize(b.elements);
      if (!Get(f.get(), b.expected.data(), b.elements * 4) || !Get(f.get(), b.tolerance.data(), b.elements * 4)) {
        return corrupt();
      }
    } else {
      b.input.resize(b.elements);
      if (!Get(f.get(), b.input.data(), b.elements * 4)) return corrupt();
    }
  }
  return d;
}

std::string CheckOutput(const MeasureBuffer& b, const float* out) {
  uint64_t bad = 0, first = 0;
  for (uint64_t e = 0; e < b.elements; ++e) {
    // Written so that NaN fails.
    if (!(std::fabs(out[e] - b.expected[e]) <= b.tolerance[e])) {
      if (bad++ == 0) first = e;
    }
  }
  if (bad == 0) return {};
  char msg[256];
  std::snprintf(msg, sizeof msg, "%s[%llu] = %.9g, expected %.9g (tolerance %.3g); %llu of %llu elements wrong",
                b.name.c_str(), static_cast<unsigned long long>(first), out[first], b.expected[first], b.tolerance[first],
                static_cast<unsigned long long>(bad), static_cast<unsigned long long>(b.elements));
  return msg;
}

}  // namespace tunefarm::device_agents
