#include "tunefarm/device_agents/cpu_target.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tunefarm::device_agents {
namespace {

namespace fs = std::filesystem;
using ::testing::Contains;
using ::testing::Not;

struct Cache {
  int level;
  std::string type;
  std::string size;
};

// A fake `/` holding just the files DetectCpuTarget reads.
class FakeRoot {
 public:
  FakeRoot() {
    std::string pattern = ::testing::TempDir() + "/cpu_target_test_XXXXXX";
    EXPECT_NE(::mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
  }
  ~FakeRoot() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  std::string path() const { return root_.string(); }

  void Write(const std::string& relative, const std::string& text) {
    fs::path file = root_ / relative;
    fs::create_directories(file.parent_path());
    std::ofstream(file) << text;
  }

  // One "processor" block per CPU, like the kernel prints it.
  void WriteCpuInfo(int cpus, const std::string& block) {
    std::string text;
    for (int i = 0; i < cpus; ++i) {
      absl::StrAppend(&text, "processor\t: ", i, "\n", block, "\n");
    }
    Write("proc/cpuinfo", text);
  }

  void WriteCaches(const std::vector<Cache>& caches) {
    for (size_t i = 0; i < caches.size(); ++i) {
      std::string dir =
          absl::StrCat("sys/devices/system/cpu/cpu0/cache/index", i);
      Write(dir + "/level", absl::StrCat(caches[i].level, "\n"));
      Write(dir + "/type", caches[i].type + "\n");
      Write(dir + "/size", caches[i].size + "\n");
    }
  }

 private:
  fs::path root_;
};

std::vector<std::string> Features(const tunefarm::v1::Target& t) {
  return {t.features().begin(), t.features().end()};
}

int64_t Limit(const tunefarm::v1::Target& t, const std::string& name) {
  auto it = t.limits().find(name);
  return it == t.limits().end() ? -1 : it->second;
}

constexpr char kEpycFlags[] =
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat sse "
    "sse2 ht syscall nx lm pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 movbe "
    "popcnt aes xsave avx f16c rdrand hypervisor bmi1 avx2 bmi2 avx512f "
    "avx512dq avx512ifma avx512cd avx512bw avx512vl avx512_bf16 avx512vbmi "
    "avx512_vbmi2 avx512_vnni avx512_bitalg rdpid";

TEST(CpuTargetTest, AvxFiveTwelveEpyc) {
  FakeRoot root;
  root.WriteCpuInfo(
      4, absl::StrCat("vendor_id\t: AuthenticAMD\n"
                      "cpu family\t: 25\n"
                      "model\t\t: 17\n"
                      "model name\t: AMD EPYC 9654 96-Core Processor\n"
                      "flags\t\t: ",
                      kEpycFlags, "\n"));
  root.WriteCaches({{1, "Data", "32K"},
                    {1, "Instruction", "32K"},
                    {2, "Unified", "1024K"},
                    {3, "Unified", "32768K"}});

  tunefarm::v1::Target t = DetectCpuTarget(root.path());
  EXPECT_EQ(t.kind(), tunefarm::v1::DEVICE_KIND_CPU);
  EXPECT_EQ(t.arch(), "x86_64-avx512");
  EXPECT_EQ(t.model(), "AMD EPYC 9654 96-Core Processor");
  EXPECT_EQ(t.device_key(), "amd-epyc-9654-avx512");
  EXPECT_EQ(t.toolchain(), "");
  EXPECT_EQ(Limit(t, "cores"), 4);
  EXPECT_EQ(Limit(t, "l1d_bytes"), 32 * 1024);
  EXPECT_EQ(Limit(t, "l2_bytes"), 1024 * 1024);
  EXPECT_EQ(Limit(t, "l3_bytes"), 32 * 1024 * 1024);
  std::vector<std::string> features = Features(t);
  for (const char* f :
       {"sse2", "sse3", "ssse3", "sse4_1", "sse4_2", "avx", "avx2", "fma",
        "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_vnni"}) {
    EXPECT_THAT(features, Contains(f));
  }
  // Flags that do not matter to code generation stay out.
  EXPECT_THAT(features, Not(Contains("fpu")));
  EXPECT_THAT(features, Not(Contains("hypervisor")));
}

TEST(CpuTargetTest, AvxTwoIntelDesktop) {
  FakeRoot root;
  root.WriteCpuInfo(12,
                    "vendor_id\t: GenuineIntel\n"
                    "model name\t: Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz\n"
                    "flags\t\t: fpu sse sse2 pni ssse3 fma sse4_1 sse4_2 avx "
                    "f16c bmi1 avx2 bmi2\n");
  root.WriteCaches({{1, "Data", "32K"},
                    {1, "Instruction", "32K"},
                    {2, "Unified", "256K"},
                    {3, "Unified", "12M"}});

  tunefarm::v1::Target t = DetectCpuTarget(root.path());
  EXPECT_EQ(t.arch(), "x86_64-avx2");
  EXPECT_EQ(t.model(), "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz");
  EXPECT_EQ(t.device_key(), "intel-i7-8700-avx2");
  EXPECT_EQ(Limit(t, "cores"), 12);
  EXPECT_EQ(Limit(t, "l1d_bytes"), 32 * 1024);
  EXPECT_EQ(Limit(t, "l2_bytes"), 256 * 1024);
  EXPECT_EQ(Limit(t, "l3_bytes"), 12 * 1024 * 1024);
  EXPECT_THAT(Features(t), Contains("avx2"));
  EXPECT_THAT(Features(t), Not(Contains("avx512f")));
}

// Device keys for model names seen in the wild.
TEST(CpuTargetTest, DeviceKeys) {
  struct Case {
    std::string model;
    std::string flags;
    std::string key;
  };
  const std::string avx512 = "sse2 sse4_2 avx avx2 fma avx512f";
  const std::string avx2 = "sse2 sse4_2 avx avx2 fma";
  const std::vector<Case> cases = {
      {"AMD EPYC", avx512, "amd-epyc-avx512"},
      {"AMD EPYC 9654 96-Core Processor", avx512, "amd-epyc-9654-avx512"},
      {"Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", avx512,
       "intel-xeon-gold-6248-avx512"},
      {"Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz", avx2,
       "intel-xeon-e5-2680-v4-avx2"},
      {"AMD Ryzen 7 5800H with Radeon Graphics", avx2,
       "amd-ryzen-7-5800h-avx2"},
      {"12th Gen Intel(R) Core(TM) i7-1260P", avx2,
       "12th-gen-intel-i7-1260p-avx2"},
      {"Quad-Core AMD Opteron(tm) Processor 2356", "sse2 pni",
       "amd-opteron-2356-sse2"},
      {"Intel(R) Core(TM)2 Duo CPU     E8400  @ 3.00GHz", "sse2 sse4_1",
       "intel-2-duo-e8400-sse2"},
      {"  ", avx2, "cpu-x86_64-avx2"},
      {"Intel Intel Xeon 2.2GHz", "sse2 sse4_2", "intel-xeon-sse4"},
  };
  for (const Case& c : cases) {
    FakeRoot root;
    root.WriteCpuInfo(1, absl::StrCat("model name\t: ", c.model,
                                      "\nflags\t\t: ", c.flags, "\n"));
    tunefarm::v1::Target t = DetectCpuTarget(root.path());
    EXPECT_EQ(t.device_key(), c.key) << "model \"" << c.model << "\"";
  }
}

TEST(CpuTargetTest, AarchSixtyFourNeoverse) {
  FakeRoot root;
  root.WriteCpuInfo(
      2,
      "BogoMIPS\t: 243.75\n"
      "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 "
      "atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs\n"
      "CPU implementer\t: 0x41\n"
      "CPU architecture: 8\n"
      "CPU variant\t: 0x3\n"
      "CPU part\t: 0xd0c\n"
      "CPU revision\t: 1\n");
  root.WriteCaches({{1, "Data", "64K"},
                    {1, "Instruction", "64K"},
                    {2, "Unified", "1024K"},
                    {3, "Unified", "32768K"}});

  tunefarm::v1::Target t = DetectCpuTarget(root.path());
  EXPECT_EQ(t.arch(), "aarch64-neon");
  EXPECT_EQ(t.model(), "ARM Neoverse-N1");
  EXPECT_EQ(t.device_key(), "arm-neoverse-n1-neon");
  EXPECT_EQ(Limit(t, "cores"), 2);
  EXPECT_EQ(Limit(t, "l1d_bytes"), 64 * 1024);
  EXPECT_THAT(Features(t), Contains("neon"));
  EXPECT_THAT(Features(t), Contains("dotprod"));
  EXPECT_THAT(Features(t), Not(Contains("sve")));
}

TEST(CpuTargetTest, AarchSixtyFourWithSve) {
  FakeRoot root;
  root.WriteCpuInfo(1,
                    "Features\t: fp asimd asimddp sve i8mm bf16\n"
                    "CPU implementer\t: 0x41\n"
                    "CPU architecture: 8\n"
                    "CPU part\t: 0xd40\n");
  tunefarm::v1::Target t = DetectCpuTarget(root.path());
  EXPECT_EQ(t.arch(), "aarch64-sve");
  EXPECT_EQ(t.device_key(), "arm-neoverse-v1-sve");
  EXPECT_THAT(Features(t), Contains("sve"));
  EXPECT_THAT(Features(t), Contains("i8mm"));
}

TEST(CpuTargetTest, MissingFilesStillGiveACpuTarget) {
  FakeRoot root;
  tunefarm::v1::Target t = DetectCpuTarget(root.path());
  EXPECT_EQ(t.kind(), tunefarm::v1::DEVICE_KIND_CPU);
  EXPECT_FALSE(t.arch().empty());
  EXPECT_EQ(t.device_key().rfind("cpu-", 0), 0u) << t.device_key();
  EXPECT_EQ(t.limits().count("l1d_bytes"), 0u);
}

TEST(CpuTargetTest, RealMachineIsStable) {
  tunefarm::v1::Target first = DetectCpuTarget();
  tunefarm::v1::Target second = DetectCpuTarget();
  EXPECT_EQ(first.kind(), tunefarm::v1::DEVICE_KIND_CPU);
  EXPECT_FALSE(first.device_key().empty());
  EXPECT_FALSE(first.arch().empty());
  EXPECT_EQ(first.device_key(), second.device_key());
  EXPECT_EQ(first.arch(), second.arch());
  EXPECT_GE(Limit(first, "cores"), 1);
  for (char c : first.device_key()) {
    EXPECT_TRUE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                c == '_')
        << first.device_key();
  }
}

}  // namespace
}  // namespace tunefarm::device_agents
