// The CUDA backend. Without a GPU (CI) it must refuse to start with a
// reason; on a GPU every template's candidates are checked against the
// reference, and a kernel that faults is a runtime error after which the
// backend keeps measuring.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "tunefarm/device_agents/backend.h"
#include "tunefarm/device_agents/cuda_target.h"
#include "tunefarm/kernels/template.h"

namespace tunefarm::device_agents {
namespace {

namespace v1 = tunefarm::v1;
using kernels::DeviceClass;

TEST(CudaTargetTest, DeviceKeysNameTheModel) {
  EXPECT_EQ(CudaDeviceKey("NVIDIA H100 80GB HBM3"), "h100");
  EXPECT_EQ(CudaDeviceKey("NVIDIA H200"), "h200");
  EXPECT_EQ(CudaDeviceKey("NVIDIA A100-SXM4-80GB"), "a100");
  EXPECT_EQ(CudaDeviceKey("NVIDIA GeForce RTX 4090"), "rtx-4090");
  EXPECT_EQ(CudaDeviceKey(""), "cuda-gpu");
  CudaDeviceInfo info;
  info.name = "NVIDIA H100 80GB HBM3";
  info.cc_major = 9;
  info.sm_count = 132;
  info.driver_version = 13000;
  v1::Target t = CudaTarget(info, "13.0");
  EXPECT_EQ(t.kind(), v1::DEVICE_KIND_CUDA);
  EXPECT_EQ(t.arch(), "sm_90");
  EXPECT_EQ(t.device_key(), "h100");
  EXPECT_EQ(t.limits().at("sm_count"), 132);
  EXPECT_EQ(t.toolchain(), "NVRTC 13.0; CUDA driver 13.0");
  // Hopper's warpgroup tensor cores (sm_90a) exist on compute capability
  // 9.0 alone.
  auto has_wgmma = [](const v1::Target& x) {
    return std::find(x.features().begin(), x.features().end(), "wgmma") != x.features().end();
  };
  EXPECT_TRUE(has_wgmma(t));
  info.cc_major = 8;
  EXPECT_FALSE(has_wgmma(CudaTarget(info, "13.0")));
  info.cc_major = 12;
  EXPECT_FALSE(has_wgmma(CudaTarget(info, "13.0")));
}

// The backend, or a skip that says why there is none here.
std::unique_ptr<DeviceBackend> CudaOrSkip(std::string* why) {
  absl::StatusOr<std::unique_ptr<DeviceBackend>> b = NewBackend("cuda");
  if (!b.ok()) {
    *why = std::string(b.status().message());
    return nullptr;
  }
  return std::move(*b);
}

TEST(CudaBackendTest, WithoutAGpuItSaysWhy) {
  absl::StatusOr<std::unique_ptr<DeviceBackend>> b = NewBackend("cuda");
  if (b.ok()) GTEST_SKIP() << "this machine has a GPU: " << (*b)->target().model();
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition) << b.status();
  EXPECT_FALSE(b.status().message().empty());
  EXPECT_EQ(NewBackend("cuda:x").status().code(), absl::StatusCode::kInvalidArgument);
}

v1::MeasureRequest Request(const std::string& key, uint64_t index) {
  v1::MeasureRequest r;
  r.mutable_workload()->set_key(key);
  r.mutable_config()->set_index(index);
  r.mutable_options()->set_number(1);
  r.mutable_options()->set_repeat(2);
  r.mutable_options()->set_min_repeat_ms(1);
  r.mutable_options()->set_seed(3);
  return r;
}

TEST(CudaBackendTest, SampledConfigsGiveTheReferenceAnswerOnTheGpu) {
  std::string why;
  std::unique_ptr<DeviceBackend> b = CudaOrSkip(&why);
  if (!b) GTEST_SKIP() << why;
  EXPECT_EQ(b->target().kind(), v1::DEVICE_KIND_CUDA);
  std::mt19937_64 rng(9);
  std::vector<v1::MeasureRequest> batch;
  for (const char* text :
       {"matmul(M=77,N=129,K=61)", "matmul(M=1024,N=512,K=256,bias=1,relu=1)", "matmul(M=256,N=192,K=100,trans_b=1)",
        "conv2d(N=2,C=32,H=14,W=14,K=64,R=3,S=3,stride=1,pad=1,layout=NHWC)",
        "conv2d(N=1,C=16,H=15,W=13,K=24,R=3,S=3,stride=2,pad=1,dilation=1,bias=1,layout=NCHW)",
        "conv2d(N=1,C=64,H=28,W=28,K=32,R=1,S=1,stride=1,pad=0,layout=NCHW)", "matmul(M=200,N=136,K=72,bias=1,tf32=1)",
        "matmul(M=512,N=256,K=128,tf32=1)", "matmul(M=128,N=768,K=768,tf32=1)",
        "conv2d(N=1,C=64,H=7,W=7,K=64,R=3,S=3,stride=1,pad=1,relu=1,layout=NHWC)",
        "conv2d(N=2,C=32,H=14,W=14,K=64,R=3,S=3,stride=1,pad=1,tf32=1,layout=NHWC)",
        "conv2d(N=1,C=24,H=15,W=15,K=40,R=3,S=3,stride=2,pad=1,bias=1,relu=1,tf32=1,layout=NCHW)"}) {
    absl::StatusOr<kernels::Workload> w = kernels::ParseWorkload(text);
    ASSERT_TRUE(w.ok()) << w.status();
    const kernels::Template* t = kernels::TemplateRegistry::Global().Find(w->op, DeviceClass::kCuda);
    absl::StatusOr<kernels::ConfigSpace> space = t->Space(*w);
    ASSERT_TRUE(space.ok());
    batch.push_back(Request(w->Key(), t->DefaultConfig(*w, *space).index));
    // Six sampled configs; six more on each kind of tensor cores where the
    // space offers them (warp mma.sync, warpgroup wgmma), and six more with
    // split-K (whose kernels run several times per measurement, checked
    // after the timed runs). (knob, lowest value, highest value)
    for (const auto& [knob, lo, hi] :
         {std::tuple<std::string, int64_t, int64_t>{"", 0, 0}, {"mma", 1, 1}, {"mma", 2, 2}, {"split_k", 2, 99}}) {
      const kernels::Knob* k = space->FindKnob(knob);
      if (!knob.empty() && (k == nullptr || k->values.size() < 2)) continue;
      for (int n = 0, tries = 0; n < 6 && tries < 20000; ++tries) {
        uint64_t i = space->Sample(rng);
        const kernels::Config c = space->FromIndex(i);
        if (!knob.empty() && (space->IntValue(c, knob) < lo || space->IntValue(c, knob) > hi)) continue;
        if (!t->Instantiate(*w, *space, c).ok()) continue;
        batch.push_back(Request(w->Key(), i));
        ++n;
      }
    }
  }
  absl::StatusOr<std::vector<v1::MeasureResult>> results = b->Measure(batch);
  ASSERT_TRUE(results.ok()) << results.status();
  int ok = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    const v1::MeasureResult& r = (*results)[i];
    // A config may need more registers than a block of its size can have;
    // nothing else may fail.
    if (r.status() == v1::MEASURE_STATUS_INSTANTIATION_ERROR) {
      EXPECT_NE(r.error().find("registers"), std::string::npos) << r.error();
      continue;
    }
    EXPECT_EQ(r.status(), v1::MEASURE_STATUS_OK) << batch[i].workload().key() << " #" << batch[i].config().index()
                                                 << ": " << r.error();
    if (r.status() == v1::MEASURE_STATUS_OK) {
      ++ok;
      EXPECT_EQ(r.costs_size(), 2);
      for (double c : r.costs()) EXPECT_GT(c, 0);
    }
  }
  EXPECT_GE(ok, static_cast<int>(batch.size()) * 3 / 4);
}

// A CUDA template whose only kernel writes 4 GiB before its output.
class FaultingTemplate : public kernels::Template {
 public:
  std::string_view op() const override { return "cuda_fault_test"; }
  DeviceClass device() const override { return DeviceClass::kCuda; }
  std::vector<std::string> ParamNames() const override { return {"N"}; }
  absl::Status Validate(const kernels::Workload&) const override { return absl::OkStatus(); }
  std::string_view declared_version() const override { return "cuda-fault-test-1"; }
  absl::StatusOr<kernels::ConfigSpace> Space(const kernels::Workload&) const override {
    return kernels::ConfigSpace::Create({{"x", kernels::KnobKind::kChoice, {int64_t{0}}}});
  }
  kernels::Config DefaultConfig(const kernels::Workload&, const kernels::ConfigSpace& s) const override {
    return s.FromIndex(0);
  }
  absl::StatusOr<kernels::Kernel> Instantiate(const kernels::Workload& w, const kernels::ConfigSpace&,
                                              const kernels::Config&) const override {
    using namespace kernels::ir;  // NOLINT
    kernels::Kernel k;
    k.func.name = "fault";
    k.func.args = Buffers(w);
    k.func.body = For::Make("t", 0, 32, ForKind::kGpuThread,
                            Store::Make("out", FloatImm::Make(1), Var::Make("t") - Expr(int64_t{1} << 30)));
    return k;
  }
  std::vector<kernels::ir::BufferArg> Buffers(const kernels::Workload& w) const override {
    return {{"out", kernels::ir::Type::Float(), w.param("N"), true}};
  }
  std::vector<kernels::ReferenceOutput> Reference(const kernels::Workload& w,
                                                  std::span<const std::span<const float>>) const override {
    const size_t n = static_cast<size_t>(w.param("N"));
    return {{std::vector<float>(n, 0.0f), std::vector<float>(n, 0.0f)}};
  }
  double Flops(const kernels::Workload&) const override { return 1; }
};

TEST(CudaBackendTest, AFaultingKernelIsARuntimeErrorAndTheBackendGoesOn) {
  std::string why;
  std::unique_ptr<DeviceBackend> b = CudaOrSkip(&why);
  if (!b) GTEST_SKIP() << why;
  kernels::TemplateRegistry::Global().Add(std::make_unique<FaultingTemplate>());
  const std::string good = "matmul(M=64,N=64,K=64)";
  absl::StatusOr<std::vector<v1::MeasureResult>> r =
      b->Measure({Request(good, 0), Request("cuda_fault_test(N=32)", 0), Request(good, 0)});
  ASSERT_TRUE(r.ok()) << r.status();
  // Config 0 may not instantiate; either way it is not a runtime error.
  EXPECT_NE((*r)[0].status(), v1::MEASURE_STATUS_RUNTIME_DEVICE) << (*r)[0].error();
  EXPECT_EQ((*r)[1].status(), v1::MEASURE_STATUS_RUNTIME_DEVICE) << (*r)[1].error();
  EXPECT_EQ((*r)[2].status(), (*r)[0].status()) << (*r)[2].error();
  // And the next batch runs on the rebuilt context.
  absl::StatusOr<kernels::Workload> w = kernels::ParseWorkload(good);
  const kernels::Template* t = kernels::TemplateRegistry::Global().Find("matmul", DeviceClass::kCuda);
  absl::StatusOr<kernels::ConfigSpace> space = t->Space(*w);
  r = b->Measure({Request(good, t->DefaultConfig(*w, *space).index)});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)[0].status(), v1::MEASURE_STATUS_OK) << (*r)[0].error();
}

}  // namespace
}  // namespace tunefarm::device_agents
