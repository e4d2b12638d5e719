// The GPU schedules of matmul and conv2d: a sample of every template's
// configs on awkward shapes (tensor-core ones where the workload allows
// TF32) gives the reference answer when its CUDA source runs on the CPU
// emulator, and compiles with NVRTC for Ampere and Hopper.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <random>
#include <thread>

#include "../kernels/cuda_emulator.h"
#include "tunefarm/device_agents/nvrtc.h"
#include "tunefarm/kernels/codegen_cuda.h"
#include "tunefarm/kernels/template.h"

namespace tunefarm::device_agents {
namespace {

using kernels::Config;
using kernels::ConfigSpace;
using kernels::CudaKernelSource;
using kernels::DeviceClass;
using kernels::Template;
using kernels::TemplateRegistry;
using kernels::Workload;

// Shapes no tile divides, every layout, stride / padding / dilation, the
// epilogues, and shapes where float4 loads apply to one operand or both.
const char* const kWorkloads[] = {
    "matmul(M=77,N=129,K=61)",
    "matmul(M=40,N=96,K=36,trans_b=1,bias=1,relu=1)",
    "matmul(M=33,N=68,K=40)",
    "matmul(M=70,N=72,K=44,bias=1,tf32=1)",
    "matmul(M=64,N=128,K=64,trans_b=1,tf32=1)",
    "matmul(M=72,N=136,K=200,tf32=1)",
    "conv2d(N=2,C=8,H=9,W=7,K=12,R=3,S=3,stride=2,pad=1,layout=NHWC)",
    "conv2d(N=1,C=5,H=8,W=8,K=6,R=3,S=3,stride=1,pad=2,dilation=2,bias=1,relu=1,layout=NCHW)",
    "conv2d(N=2,C=8,H=6,W=6,K=16,R=1,S=1,stride=1,pad=0,layout=NCHW)",
    "conv2d(N=1,C=4,H=5,W=5,K=8,R=1,S=1,stride=1,pad=0,bias=1,layout=NHWC)",
    "conv2d(N=2,C=8,H=7,W=6,K=24,R=3,S=3,stride=1,pad=1,relu=1,tf32=1,layout=NHWC)",
    "conv2d(N=1,C=6,H=9,W=9,K=16,R=3,S=3,stride=2,pad=1,tf32=1,layout=NCHW)",
    // Long k loops over small outputs: split-K.
    "matmul(M=40,N=36,K=300,bias=1,relu=1)",
    "matmul(M=24,N=40,K=264,trans_b=1,tf32=1)",
    "conv2d(N=1,C=32,H=5,W=4,K=12,R=3,S=3,stride=1,pad=1,layout=NHWC)",
};
constexpr int kSampled = 4;

struct Candidate {
  Workload workload;
  const Template* tmpl;
  std::string config;
  CudaKernelSource kernel;
  // The kernel keeps a split-K workspace between launches.
  bool split_k = false;
};

// Whether a knob of `space` offers a value other than its first.
bool Offers(const ConfigSpace& space, const std::string& knob) {
  const kernels::Knob* k = space.FindKnob(knob);
  return k != nullptr && k->values.size() > 1;
}

// The default config and kSampled instantiable random ones per workload;
// kSampled more on the tensor cores where the workload allows TF32, and
// kSampled more with split-K where the space offers it.
std::vector<Candidate> SampledCandidates() {
  std::vector<Candidate> out;
  std::mt19937_64 rng(5);
  for (const char* text : kWorkloads) {
    absl::StatusOr<Workload> w = kernels::ParseWorkload(text);
    EXPECT_TRUE(w.ok()) << text << ": " << w.status();
    if (!w.ok()) continue;
    const Template* t = TemplateRegistry::Global().Find(w->op, DeviceClass::kCuda);
    EXPECT_NE(t, nullptr) << w->op;
    if (t == nullptr) continue;
    absl::StatusOr<ConfigSpace> space = t->Space(*w);
    EXPECT_TRUE(space.ok()) << space.status();
    std::vector<Config> configs = {t->DefaultConfig(*w, *space)};
    int instantiable = 0;
    for (int tries = 0; instantiable < kSampled && tries < 2000; ++tries) {
      Config c = space->FromIndex(space->Sample(rng));
      if (t->Instantiate(*w, *space, c).ok()) {
        configs.push_back(c);
        ++instantiable;
      }
    }
    EXPECT_EQ(instantiable, kSampled) << text << ": too few instantiable configs in 2000 draws";
    // (knob, lowest value, highest value)
    for (const auto& [knob, lo, hi] :
         {std::tuple<std::string, int64_t, int64_t>{"mma", 1, 1}, {"mma", 2, 2}, {"split_k", 2, 99}}) {
      if (!Offers(*space, knob)) continue;
      int found = 0;
      for (int tries = 0; found < kSampled && tries < 20000; ++tries) {
        Config c = space->FromIndex(space->Sample(rng));
        const int64_t v = space->IntValue(c, knob);
        if (v >= lo && v <= hi && t->Instantiate(*w, *space, c).ok()) {
          configs.push_back(c);
          ++found;
        }
      }
      EXPECT_EQ(found, kSampled) << text << ": too few instantiable configs with " << knob << "=" << lo;
    }
    for (const Config& c : configs) {
      absl::StatusOr<kernels::Kernel> k = t->Instantiate(*w, *space, c);
      EXPECT_TRUE(k.ok()) << text << " " << space->ToString(c) << ": " << k.status();
      if (!k.ok()) continue;
      absl::StatusOr<CudaKernelSource> src = kernels::GenerateCuda(k->func);
      EXPECT_TRUE(src.ok()) << text << " " << space->ToString(c) << ": " << src.status();
      if (src.ok()) out.push_back({*w, t, space->ToString(c), std::move(*src), space->IntValue(c, "split_k") > 1});
    }
  }
  return out;
}

TEST(GpuScheduleTest, SampledConfigsGiveTheReferenceAnswer) {
  const std::string dir = testing::TempDir() + "/gpu_schedule_test";
  std::filesystem::create_directories(dir);
  std::vector<Candidate> cands = SampledCandidates();
  ASSERT_GE(cands.size(), std::size(kWorkloads) * (kSampled + 1));
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> u(-1, 1);
  for (const Candidate& c : cands) {
    std::vector<kernels::ir::BufferArg> args = c.tmpl->Buffers(c.workload);
    std::vector<std::vector<float>> data(args.size());
    std::vector<std::span<const float>> inputs;
    std::vector<float*> pointers;
    for (size_t i = 0; i < args.size(); ++i) {
      data[i].resize(args[i].elements);
      for (float& x : data[i]) x = args[i].is_output ? std::numeric_limits<float>::quiet_NaN() : u(rng);
      if (!args[i].is_output) inputs.emplace_back(data[i]);
      pointers.push_back(data[i].data());
    }
    // A split-K kernel launches twice, its output poisoned again before the
    // second: its workspace and arrival counts must be ready for the next
    // launch.
    auto poison = [&] { std::fill(data.back().begin(), data.back().end(), std::numeric_limits<float>::quiet_NaN()); };
    const absl::Status ran = kernels::EmulateCuda(c.kernel, pointers, dir, c.split_k ? 2 : 1, poison);
    ASSERT_TRUE(ran.ok()) << c.workload.Key() << " " << c.config << ": " << ran;
    std::vector<kernels::ReferenceOutput> ref = c.tmpl->Reference(c.workload, inputs);
    const std::vector<float>& out = data.back();
    ASSERT_EQ(out.size(), ref[0].expected.size());
    int wrong = 0;
    for (size_t e = 0; e < out.size(); ++e) {
      if (!(std::abs(out[e] - ref[0].expected[e]) <= ref[0].tolerance[e]) && wrong++ < 3) {
        ADD_FAILURE() << c.workload.Key() << " " << c.config << ": element " << e << " is " << out[e] << ", expected "
                      << ref[0].expected[e];
      }
    }
    EXPECT_EQ(wrong, 0) << c.workload.Key() << " " << c.config << "\n" << c.kernel.source;
  }
}

// A block's shared memory counts every buffer, split-K's flag too: on the
// warpgroup path, four 32-deep stages of 128 rows of A and 256 of B in the
// dynamic pool (1024-byte-aligned parts, the flag one of them), and a
// 256 x 256 tile's four stages exceed the 227 KiB a block may use.
TEST(GpuScheduleTest, SharedMemoryCountsSplitKsFlag) {
  absl::StatusOr<Workload> w = kernels::ParseWorkload("matmul(M=256,N=256,K=512,tf32=1)");
  ASSERT_TRUE(w.ok());
  const Template* t = TemplateRegistry::Global().Find(w->op, DeviceClass::kCuda);
  absl::StatusOr<ConfigSpace> space = t->Space(*w);
  ASSERT_TRUE(space.ok());
  auto config = [&](int64_t bm, int64_t split_k) {
    return space->FromValues({{"bm", bm},
                              {"bn", int64_t{256}},
                              {"bk", int64_t{32}},
                              {"tm", int64_t{8}},
                              {"tn", int64_t{16}},
                              {"warp_x", int64_t{16}},
                              {"split", int64_t{1}},
                              {"stages", int64_t{4}},
                              {"vec", int64_t{4}},
                              {"unroll_k", int64_t{1}},
                              {"mma", int64_t{2}},
                              {"split_k", split_k}});
  };
  for (int64_t split_k : {1, 2}) {
    ASSERT_TRUE(config(128, split_k).ok());
    absl::StatusOr<kernels::Kernel> k = t->Instantiate(*w, *space, *config(128, split_k));
    ASSERT_TRUE(k.ok()) << k.status();
    absl::StatusOr<CudaKernelSource> src = kernels::GenerateCuda(k->func);
    ASSERT_TRUE(src.ok()) << src.status();
    EXPECT_EQ(src->shared_bytes, 4 * (128 + 256) * 32 * 4 + (split_k > 1 ? 1024 : 0));
    EXPECT_EQ(src->dynamic_shared_bytes, src->shared_bytes);
    EXPECT_TRUE(src->arch_specific);
    EXPECT_EQ(src->CompileArch("sm_90"), "sm_90a");
  }
  absl::StatusOr<kernels::Kernel> over = t->Instantiate(*w, *space, *config(256, 1));
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.status().message().find("262144 bytes of shared memory"), std::string::npos) << over.status();
}

// Skipped, saying so, where the CUDA toolkit is not installed.
TEST(GpuScheduleTest, SampledConfigsCompileForSm80AndSm90) {
  absl::StatusOr<std::unique_ptr<Nvrtc>> nvrtc = Nvrtc::Load();
  if (!nvrtc.ok()) GTEST_SKIP() << nvrtc.status().message();
  std::vector<Candidate> cands = SampledCandidates();
  std::vector<std::string> failures(cands.size() * 2);
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < failures.size(); i = next++) {
      const Candidate& c = cands[i / 2];
      // Hopper-only kernels (wgmma) compile for sm_90a, and not for Ampere.
      const std::string arch = c.kernel.CompileArch(i % 2 ? "sm_90" : "sm_80");
      if (c.kernel.arch_specific && arch != "sm_90a") continue;
      absl::StatusOr<std::string> cubin = (*nvrtc)->CompileToCubin(c.kernel.source, "candidate.cu", arch);
      if (!cubin.ok()) failures[i] = absl::StrCat(c.workload.Key(), " ", c.config, " (", arch, "): ", cubin.status().message());
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < std::max(2u, std::thread::hardware_concurrency()); ++t) pool.emplace_back(worker);
  for (std::thread& t : pool) t.join();
  for (const std::string& f : failures) EXPECT_TRUE(f.empty()) << f;
}

}  // namespace
}  // namespace tunefarm::device_agents
