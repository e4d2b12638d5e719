// The CPU backend end to end: real compilers, real measurement processes.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <mutex>
#include <random>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "tunefarm/device_agents/backend.h"
#include "tunefarm/device_agents/cpu_build.h"
#include "tunefarm/device_agents/process.h"
#include "tunefarm/kernels/codegen_c.h"
#include "tunefarm/kernels/template.h"

namespace tunefarm::device_agents {
namespace {

namespace v1 = tunefarm::v1;
using namespace kernels::ir;  // NOLINT

// A test-only template whose `mode` knob makes candidates that crash, hang,
// compute the wrong answer or fail to compile. Its reference is C = A.
class FaultyTemplate : public kernels::Template {
 public:
  std::string_view op() const override { return "faulty_copy"; }
  std::vector<std::string> ParamNames() const override { return {"N"}; }
  absl::Status Validate(const kernels::Workload&) const override { return absl::OkStatus(); }
  std::string_view declared_version() const override { return "faulty-1"; }
  absl::StatusOr<kernels::ConfigSpace> Space(const kernels::Workload&) const override {
    std::vector<kernels::KnobValue> modes;
    for (const char* m : {"ok", "crash", "hang", "wrong", "compile_error"}) modes.emplace_back(std::string(m));
    return kernels::ConfigSpace::Create({{"mode", kernels::KnobKind::kChoice, modes}});
  }
  kernels::Config DefaultConfig(const kernels::Workload&, const kernels::ConfigSpace& s) const override {
    return s.FromIndex(0);
  }
  std::vector<BufferArg> Buffers(const kernels::Workload& w) const override {
    return {{"A", Type::Float(), w.param("N"), false}, {"C", Type::Float(), w.param("N"), true}};
  }
  double Flops(const kernels::Workload& w) const override { return static_cast<double>(w.param("N")); }
  std::vector<kernels::ReferenceOutput> Reference(const kernels::Workload&,
                                                  std::span<const std::span<const float>> in) const override {
    kernels::ReferenceOutput r;
    r.expected.assign(in[0].begin(), in[0].end());
    r.tolerance.assign(in[0].size(), 0.0f);
    return {r};
  }
  absl::StatusOr<kernels::Kernel> Instantiate(const kernels::Workload& w, const kernels::ConfigSpace& s,
                                              const kernels::Config& c) const override {
    const std::string& mode = s.StrValue(c, "mode");
    Expr i = Var::Make("i");
    Stmt body = For::Make("i", 0, w.param("N"), ForKind::kSerial, Store::Make("C", Load::Make("A", i), i));
    if (mode == "crash") {
      body = Block::Make({body, Store::Make("C", FloatImm::Make(1), Expr(int64_t{1} << 44))});
    } else if (mode == "hang") {
      // A float recurrence over 2^62 steps: no compiler can fold it away.
      Expr two = Expr(2);
      body = Block::Make({For::Make("h", 0, Expr(int64_t{1} << 62), ForKind::kSerial,
                                    Store::Make("C", Load::Make("C", (Var::Make("h") + 1) % two) + FloatImm::Make(1),
                                                Var::Make("h") % two)),
                          body});
    } else if (mode == "wrong") {
      body = For::Make("i", 0, w.param("N"), ForKind::kSerial,
                       Store::Make("C", Load::Make("A", i) + FloatImm::Make(1), i));
    }
    kernels::Kernel k;
    k.func = {"tunefarm_kernel", Buffers(w), body};
    k.compile = {"gcc", mode == "compile_error" ? "-O2 -fno-such-flag-exists" : "-O2"};
    return k;
  }
};

// The CPU template's space of the workload `text`.
absl::StatusOr<kernels::ConfigSpace> SpaceOf(const std::string& text) {
  absl::StatusOr<kernels::Workload> w = kernels::ParseWorkload(text);
  if (!w.ok()) return w.status();
  return kernels::TemplateRegistry::Global().Find(w->op)->Space(*w);
}

class CpuBackendTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    static bool registered = [] {
      kernels::TemplateRegistry::Global().Add(std::make_unique<FaultyTemplate>());
      return true;
    }();
    (void)registered;
  }
  void SetUp() override {
    BackendOptions o;
    o.measure_program = TUNEFARM_MEASURE_PROGRAM;
    auto b = NewBackend("cpu", o);
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = std::move(*b);
  }

  v1::MeasureRequest Request(const std::string& workload, uint64_t index, double run_timeout = 10) {
    v1::MeasureRequest r;
    r.mutable_workload()->set_key(workload);
    r.mutable_config()->set_index(index);
    r.mutable_options()->set_number(1);
    r.mutable_options()->set_repeat(2);
    r.mutable_options()->set_min_repeat_ms(0);
    r.mutable_options()->set_build_timeout_s(60);
    r.mutable_options()->set_run_timeout_s(run_timeout);
    r.mutable_options()->set_seed(3);
    return r;
  }

  // Measures the default config and `samples` random single-threaded ones
  // of `text` (ThreadedKernelsGiveTheReferenceAnswerEveryTime covers
  // threads); each must compile, run and match the reference.
  void ExpectSampledConfigsMatchReference(const std::string& text, int samples, std::mt19937_64& rng) {
    auto w = kernels::ParseWorkload(text);
    ASSERT_TRUE(w.ok()) << text << ": " << w.status();
    const kernels::Template& t = *kernels::TemplateRegistry::Global().Find(w->op);
    auto space = t.Space(*w);
    ASSERT_TRUE(space.ok());
    std::vector<v1::MeasureRequest> batch;
    batch.push_back(Request(text, t.DefaultConfig(*w, *space).index));
    auto serial = space->Pin({{"threads", int64_t{1}}});
    for (int i = 0; i < samples; ++i) batch.push_back(Request(text, serial->ToParentIndex(serial->Sample(rng))));
    auto results = backend_->Measure(batch);
    ASSERT_TRUE(results.ok()) << results.status();
    for (size_t i = 0; i < batch.size(); ++i) {
      const v1::MeasureResult& r = (*results)[i];
      EXPECT_EQ(r.status(), v1::MEASURE_STATUS_OK)
          << text << " " << space->ToString(space->FromIndex(batch[i].config().index())) << ": " << r.error();
      EXPECT_EQ(r.costs_size(), 2);
      EXPECT_EQ(r.config_index(), batch[i].config().index());
      EXPECT_GT(r.compile_time_s(), 0);
    }
  }

  // Measures `batch`, configs of `text` in `space`: each must compile, run
  // and match the reference.
  void ExpectEachMatchesReference(const std::string& text, const kernels::ConfigSpace& space,
                                  const std::vector<v1::MeasureRequest>& batch) {
    auto results = backend_->Measure(batch);
    ASSERT_TRUE(results.ok()) << results.status();
    for (size_t i = 0; i < batch.size(); ++i) {
      EXPECT_EQ((*results)[i].status(), v1::MEASURE_STATUS_OK)
          << text << " " << space.ToString(space.FromIndex(batch[i].config().index())) << ": " << (*results)[i].error();
    }
  }

  std::unique_ptr<DeviceBackend> backend_;
};

TEST_F(CpuBackendTest, TargetIsDetected) {
  const v1::Target& t = backend_->target();
  EXPECT_EQ(t.kind(), v1::DEVICE_KIND_CPU);
  EXPECT_FALSE(t.device_key().empty());
  EXPECT_FALSE(t.toolchain().empty());
  EXPECT_GE(t.limits().at("cores"), 1);
}

// The acceptance property of the matmul template: a random sample of its
// space compiles, runs and matches the reference on awkward shapes.
TEST_F(CpuBackendTest, SampledMatmulConfigsMatchReference) {
  std::mt19937_64 rng(2024);
  for (const char* text : {"matmul(M=1,N=1,K=1)", "matmul(M=77,N=129,K=61)", "matmul(M=64,N=48,K=96)",
                           "matmul(M=3,N=257,K=5)", "matmul(M=77,N=129,K=61,trans_b=1,bias=1,relu=1)",
                           "matmul(M=1,N=1,K=1,bias=1)", "matmul(M=33,N=40,K=7,relu=1)",
                           "matmul(M=16,N=17,K=300,trans_b=1)", "batch_matmul(B=3,M=33,N=40,K=17)",
                           "batch_matmul(B=1,M=1,N=1,K=1)", "batch_matmul(B=2,M=7,N=129,K=61)"}) {
    ExpectSampledConfigsMatchReference(text, 11, rng);
  }
}

// The same property for the convolution templates: both layouts, strides,
// dilation, padding, 1x1 (a plain matrix product), 1-sized and prime
// dimensions, batches, the fused epilogue, weights blocked by output
// channel (the last block part used).
TEST_F(CpuBackendTest, SampledConvolutionConfigsMatchReference) {
  std::mt19937_64 rng(2025);
  std::vector<std::string> workloads;
  for (const char* layout : {"NCHW", "NHWC"}) {
    for (const char* shape : {"N=1,C=3,H=7,W=5,K=5,R=3,S=3,stride=1,pad=1",
                              "N=2,C=5,H=11,W=13,K=7,R=3,S=2,stride=2,pad=1,dilation=2,bias=1,relu=1",
                              "N=1,C=17,H=6,W=6,K=19,R=1,S=1,stride=1,pad=0,bias=1",
                              "N=1,C=1,H=1,W=1,K=1,R=1,S=1,stride=1,pad=0",
                              "N=1,C=4,H=9,W=9,K=3,R=1,S=1,stride=2,pad=0,relu=1",
                              "N=1,C=2,H=5,W=31,K=2,R=5,S=5,stride=3,pad=2",
                              "N=1,C=40,H=6,W=7,K=9,R=3,S=3,stride=1,pad=1,bias=1",
                              "N=2,C=5,H=11,W=13,K=19,R=3,S=3,stride=1,pad=1,bias=1,relu=1,wblock=16",
                              "N=1,C=17,H=6,W=6,K=33,R=1,S=1,stride=1,pad=0,wblock=32"}) {
      workloads.push_back(absl::StrCat("conv2d(", shape, ",layout=", layout, ")"));
    }
    for (const char* shape : {"N=1,C=13,H=9,W=11,R=3,S=3,stride=2,pad=1,bias=1,relu=1",
                              "N=2,C=19,H=9,W=11,R=3,S=3,stride=1,pad=1",
                              "N=1,C=1,H=1,W=1,R=1,S=1,stride=1,pad=0",
                              "N=1,C=37,H=8,W=40,R=5,S=3,stride=1,pad=2,dilation=2,relu=1",
                              "N=1,C=8,H=7,W=7,R=3,S=3,stride=3,pad=0,bias=1"}) {
      workloads.push_back(absl::StrCat("depthwise_conv2d(", shape, ",layout=", layout, ")"));
    }
  }
  for (const std::string& text : workloads) ExpectSampledConfigsMatchReference(text, 7, rng);
}

// Every kind of tile of the GEMM schedule (full, short of rows, short of
// columns, both), with and without each packed operand (A in k-major and
// in row-major panels), with K blocks
// inside a filter tap and over several taps, on shapes no tile divides;
// conv2d NHWC at stride 1 also drops the padded-width rows in place, and
// with 7-row tiles (one output row each) skips the taps of the first and
// last rows that read only padding, and leaves a tile's first or last
// position out of the taps that read only its padding column; and reads
// blocked weights unpacked.
TEST_F(CpuBackendTest, EveryKindOfEdgeTileMatchesReference) {
  // N=40: the last columns are one whole vector of 8, a tile run on the
  // output; matmul's N=37 leaves 5 columns short of a vector, dot products
  // along k (one vector of 8 and one k more); the convolutions' K=19 leaves
  // a part of a vector, a tile run on a copy.
  for (const char* text : {"matmul(M=13,N=37,K=9,bias=1,relu=1)", "matmul(M=13,N=40,K=9,bias=1,relu=1)",
                           "conv2d(N=2,C=40,H=5,W=7,K=19,R=3,S=3,stride=1,pad=1,bias=1,relu=1,layout=NHWC)",
                           "conv2d(N=1,C=40,H=5,W=7,K=19,R=3,S=3,stride=2,pad=1,layout=NCHW)",
                           "conv2d(N=1,C=40,H=5,W=7,K=19,R=3,S=3,stride=1,pad=1,wblock=16,layout=NHWC)"}) {
    auto space = SpaceOf(text);
    ASSERT_TRUE(space.ok()) << text << ": " << space.status();
    std::vector<v1::MeasureRequest> batch;
    for (int64_t pack_a : {0, 1, 2}) {
      for (int64_t pack_b : {0, 1}) {
        for (int64_t mr : {4, 7}) {
          for (int64_t kc : {16, 128}) {
            auto c = space->FromValues({{"mr", mr}, {"nv", int64_t{2}}, {"vec", int64_t{8}}, {"mc", int64_t{8}},
                                        {"nc", int64_t{32}}, {"kc", kc}, {"pack_a", pack_a}, {"pack_b", pack_b},
                                        {"unroll_k", int64_t{2}}});
            ASSERT_TRUE(c.ok()) << c.status();
            batch.push_back(Request(text, c->index));
          }
        }
      }
    }
    ExpectEachMatchesReference(text, *space, batch);
  }
}

// pack_b=2: the first row tile of each B panel packs it as it multiplies,
// the others read the panel. Several row blocks per B block (mc < M: only
// the first packs) or one (mc >= M, or B packed for each row block: with
// jr outer the panels then take turns in one panel's room), several K
// blocks, a last panel short of columns (packed first, zero-padded) alone
// in its column block or after whole panels, tiles short of rows; jr or
// ir outer; one thread, two splitting rows or columns, and a team sharing
// out the panels (jr outer) or the row tiles (ir outer: the block is
// packed first). Run several times: a tile reading a panel before it is
// packed would show. pack_b=3 walks B the same way, reading it in place
// while the tiles prefetch the next panel as with 2; the convolution's
// weights are in panels already and its K blocks walk taps (units) whose
// runs of zero rows of A are skipped.
TEST_F(CpuBackendTest, PanelsPackedOrPrefetchedByTheTilesMatchReference) {
  for (const char* text : {"matmul(M=45,N=44,K=70,bias=1,relu=1)", "batch_matmul(B=2,M=21,N=40,K=33)",
                           "conv2d(N=1,C=12,H=5,W=6,K=40,R=3,S=3,stride=1,pad=1,wblock=16,layout=NHWC)"}) {
    auto space = SpaceOf(text);
    ASSERT_TRUE(space.ok()) << text << ": " << space.status();
    std::vector<v1::MeasureRequest> batch;
    for (int64_t pack_b : {2, 3}) {
      for (const char* order : {"jc,pc,ic", "ic,pc,jc"}) {
        for (const char* inner : {"jr,ir", "ir,jr"}) {
          for (const auto& [threads, parallel, mc, nc] :
               std::vector<std::tuple<int64_t, std::string, int64_t, int64_t>>{{1, "rows", 16, 32},
                                                                               {1, "rows", 48, 64},
                                                                               {2, "rows", 16, 32},
                                                                               {2, "rows", 32, 64},
                                                                               {2, "cols", 48, 64},
                                                                               {2, "tiles", 16, 32}}) {
            auto c = space->FromValues({{"mr", int64_t{4}},
                                        {"nv", int64_t{2}},
                                        {"vec", int64_t{8}},
                                        {"mc", mc},
                                        {"nc", nc},
                                        {"kc", int64_t{32}},
                                        {"order", std::string(order)},
                                        {"inner", std::string(inner)},
                                        {"pack_a", int64_t{1}},
                                        {"pack_b", pack_b},
                                        {"threads", threads},
                                        {"parallel", parallel}});
            ASSERT_TRUE(c.ok()) << c.status();
            batch.push_back(Request(text, c->index));
            batch.back().mutable_options()->set_repeat(5);
          }
        }
      }
    }
    ExpectEachMatchesReference(text, *space, batch);
  }
}

// The last N % vec columns, short of a whole vector, are dot products
// along k, eight rows at a time: K below one vector (scalar chains), a
// multiple of it, and with a part of a vector left (the row's last vector,
// its counted lanes zeroed); fewer rows than a group and a part-used last
// group; every vector width (the lane sums fold differently for each);
// bias, ReLU, B transposed, batches; one thread, and two threads splitting
// rows (each part does its rows' dot products) or as a team (after it).
TEST_F(CpuBackendTest, DotProductColumnsMatchReference) {
  for (const char* text : {"matmul(M=13,N=21,K=3)", "matmul(M=5,N=37,K=32,bias=1,relu=1)",
                           "matmul(M=19,N=37,K=45,trans_b=1,bias=1)", "batch_matmul(B=2,M=9,N=23,K=20)"}) {
    auto space = SpaceOf(text);
    ASSERT_TRUE(space.ok()) << text << ": " << space.status();
    std::vector<v1::MeasureRequest> batch;
    for (int64_t vec : {4, 8, 16}) {
      for (const auto& [threads, parallel] :
           std::vector<std::pair<int64_t, std::string>>{{1, "rows"}, {2, "rows"}, {2, "tiles"}}) {
        auto c = space->FromValues({{"mr", int64_t{4}},
                                    {"nv", int64_t{1}},
                                    {"vec", vec},
                                    {"mc", int64_t{8}},
                                    {"kc", int64_t{16}},
                                    {"threads", threads},
                                    {"parallel", parallel}});
        ASSERT_TRUE(c.ok()) << c.status();
        batch.push_back(Request(text, c->index));
        batch.back().mutable_options()->set_repeat(5);
      }
    }
    ExpectEachMatchesReference(text, *space, batch);
  }
}

// An infinity of A among the k that the last part of a vector reads again
// (the lanes zeroed) gives an infinite dot product, never NaN from
// infinity times the zeros there.
TEST_F(CpuBackendTest, DotProductColumnsKeepInfinities) {
  auto w = kernels::ParseWorkload("matmul(M=2,N=17,K=20)");
  ASSERT_TRUE(w.ok());
  const kernels::Template& t = *kernels::TemplateRegistry::Global().Find(w->op);
  auto space = t.Space(*w);
  ASSERT_TRUE(space.ok());
  auto c = space->FromValues({{"vec", int64_t{16}}, {"threads", int64_t{1}}});
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string so = (std::filesystem::temp_directory_path() / absl::StrCat("tf-inf-", getpid(), ".so")).string();
  ASSERT_TRUE(BuildCpuKernel(*w, c->index, so).ok());
  void* lib = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(lib, nullptr) << dlerror();
  auto fn = reinterpret_cast<void (*)(void* const*)>(dlsym(lib, "tunefarm_kernel"));
  ASSERT_NE(fn, nullptr);
  // Column 16 is the dot product; the last vector of k is 4 .. 19, of which
  // 4 .. 15 were counted already.
  std::vector<float> a(2 * 20, 1.0f), b(20 * 17, 1.0f), out(2 * 17, 0.0f);
  a[5] = std::numeric_limits<float>::infinity();
  void* args[] = {a.data(), b.data(), out.data()};
  fn(args);
  EXPECT_EQ(out[16], std::numeric_limits<float>::infinity());
  EXPECT_EQ(out[17 + 16], 20.0f);
  dlclose(lib);
  std::filesystem::remove(so);
  std::filesystem::remove(so + ".c");
}

// A 7 x 4 tile of 16-float vectors is one vector register short (28
// accumulators, 4 B vectors, the broadcast): each row's multiply-add reads
// the last B vector from memory (tf_fma_mem) instead, whether B is the
// packed panel, B itself, blocked weights or the last columns' copy (57
// columns: 4 vectors, the last part used).
TEST_F(CpuBackendTest, TilesOneRegisterShortReadTheLastBVectorFromMemory) {
  for (const char* text :
       {"matmul(M=13,N=121,K=9,bias=1)", "conv2d(N=1,C=20,H=5,W=7,K=121,R=3,S=3,stride=1,pad=1,layout=NHWC)",
        "conv2d(N=1,C=20,H=5,W=7,K=121,R=3,S=3,stride=1,pad=1,wblock=64,layout=NHWC)"}) {
    auto w = kernels::ParseWorkload(text);
    ASSERT_TRUE(w.ok());
    const kernels::Template& t = *kernels::TemplateRegistry::Global().Find(w->op);
    auto space = t.Space(*w);
    ASSERT_TRUE(space.ok());
    std::vector<v1::MeasureRequest> batch;
    for (int64_t pack_b : {0, 1}) {
      auto c = space->FromValues({{"mr", int64_t{7}},
                                  {"nv", int64_t{4}},
                                  {"vec", int64_t{16}},
                                  {"mc", int64_t{16}},
                                  {"kc", int64_t{64}},
                                  {"pack_b", pack_b},
                                  {"unroll_k", int64_t{2}}});
      ASSERT_TRUE(c.ok()) << c.status();
      auto k = t.Instantiate(*w, *space, *c);
      ASSERT_TRUE(k.ok()) << k.status();
      auto src = kernels::GenerateC(k->func);
      ASSERT_TRUE(src.ok()) << src.status();
      EXPECT_NE(src->find("tf_fma_mem(acc_"), std::string::npos) << text << " " << space->ToString(*c);
      batch.push_back(Request(text, c->index));
    }
    ExpectEachMatchesReference(text, *space, batch);
  }
}

// A stride-1 convolution padded by one reads its input in place, with no
// padded copy, when its tiles are whole rows of output positions (MR
// divides OW) and A is not packed: the tiles then skip every tap that
// would read the padding. Packed A keeps the copy. With dilation and a
// 5-row filter; with blocked weights and 7 x 4 tiles; and with the rows
// shared by two threads.
TEST_F(CpuBackendTest, PaddedConvolutionsReadTheirInputInPlace) {
  const int64_t cores = backend_->target().limits().at("cores");
  struct Case {
    const char* text;
    int64_t mr, nv, vec, threads;
  };
  for (const Case& k :
       {Case{"conv2d(N=2,C=40,H=5,W=7,K=40,R=3,S=3,stride=1,pad=1,bias=1,relu=1,layout=NHWC)", 7, 2, 8, 1},
        Case{"conv2d(N=1,C=8,H=9,W=10,K=16,R=5,S=3,stride=1,pad=1,dilation=2,layout=NHWC)", 4, 2, 8, 1},
        Case{"conv2d(N=1,C=20,H=5,W=7,K=64,R=3,S=3,stride=1,pad=1,wblock=64,layout=NHWC)", 7, 4, 16, 1},
        Case{"conv2d(N=1,C=20,H=9,W=14,K=48,R=3,S=3,stride=1,pad=1,layout=NHWC)", 7, 3, 16, 2}}) {
    if (k.threads > cores) continue;
    auto w = kernels::ParseWorkload(k.text);
    ASSERT_TRUE(w.ok());
    const kernels::Template& t = *kernels::TemplateRegistry::Global().Find(w->op);
    auto space = t.Space(*w);
    ASSERT_TRUE(space.ok());
    std::vector<v1::MeasureRequest> batch;
    for (int64_t pack_a : {0, 1}) {
      for (int64_t kc : {16, 128}) {
        auto c = space->FromValues({{"mr", k.mr},
                                    {"nv", k.nv},
                                    {"vec", k.vec},
                                    {"mc", int64_t{16}},
                                    {"kc", kc},
                                    {"pack_a", pack_a},
                                    {"pack_b", int64_t{0}},
                                    {"unroll_k", int64_t{2}},
                                    {"threads", k.threads},
                                    {"parallel", std::string("rows")}});
        ASSERT_TRUE(c.ok()) << c.status();
        auto kernel = t.Instantiate(*w, *space, *c);
        ASSERT_TRUE(kernel.ok()) << kernel.status();
        auto src = kernels::GenerateC(kernel->func);
        ASSERT_TRUE(src.ok()) << src.status();
        EXPECT_EQ(src->find("dpad") == std::string::npos, pack_a == 0) << k.text << " " << space->ToString(*c);
        batch.push_back(Request(k.text, c->index));
        batch.back().mutable_options()->set_repeat(5);
      }
    }
    ExpectEachMatchesReference(k.text, *space, batch);
  }
}

// Winograd F(2x2, 3x3) is in the space of exactly the NHWC 3x3
// convolutions at stride 1 with 16 or more input channels, and its kernels
// give the reference answer: odd output sizes (a tile past the edge), the
// last chunk of tiles part used, padding 0 to 2, blocked weights with the
// last block part used, a batch, the fused epilogue, each packing, and
// two threads (run repeatedly) sharing out each chunk's steps or, with
// four chunks or more, taking whole chunks each. Weights given transformed
// (winograd=1, or winograd=2 for F(4x4, 3x3): output sizes 1 to 3 past a
// multiple of 4) are read in place, with no "algo" to choose, on any
// number of input channels.
TEST_F(CpuBackendTest, WinogradConvolutionsMatchReference) {
  for (const char* text : {"conv2d(N=1,C=16,H=9,W=9,K=16,R=3,S=3,stride=1,pad=1,layout=NCHW)",
                           "conv2d(N=1,C=16,H=9,W=9,K=16,R=3,S=3,stride=2,pad=1,layout=NHWC)",
                           "conv2d(N=1,C=16,H=9,W=9,K=16,R=3,S=3,stride=1,pad=2,dilation=2,layout=NHWC)",
                           "conv2d(N=1,C=15,H=9,W=9,K=16,R=3,S=3,stride=1,pad=1,layout=NHWC)",
                           "conv2d(N=1,C=16,H=9,W=9,K=16,R=3,S=2,stride=1,pad=1,layout=NHWC)",
                           "conv2d(N=1,C=16,H=9,W=9,K=16,R=3,S=3,stride=1,pad=1,tf32=1,layout=NHWC)"}) {
    auto space = SpaceOf(text);
    ASSERT_TRUE(space.ok()) << text << ": " << space.status();
    EXPECT_FALSE(space->HasKnob("algo")) << text;
  }
  const int64_t cores = backend_->target().limits().at("cores");
  struct Case {
    int64_t wtiles, mr, nv, pack_a, pack_b, kc, threads;
    const char* parallel;
  };
  const std::vector<Case> cases = {{8, 6, 4, 0, 0, 256, 1, "rows"},  {16, 7, 4, 0, 1, 16, 1, "rows"},
                                   {64, 4, 2, 2, 1, 64, 1, "rows"},  {16, 6, 4, 0, 1, 256, 2, "rows"},
                                   {8, 8, 3, 1, 0, 128, 2, "tiles"}, {32, 5, 2, 0, 0, 32, 2, "cols"}};
  for (const char* text : {"conv2d(N=2,C=16,H=9,W=7,K=20,R=3,S=3,stride=1,pad=1,bias=1,relu=1,layout=NHWC)",
                           "conv2d(N=1,C=64,H=14,W=14,K=64,R=3,S=3,stride=1,pad=1,wblock=64,layout=NHWC)",
                           "conv2d(N=1,C=17,H=5,W=6,K=33,R=3,S=3,stride=1,pad=2,wblock=32,relu=1,layout=NHWC)",
                           "conv2d(N=1,C=32,H=3,W=3,K=8,R=3,S=3,stride=1,pad=0,layout=NHWC)",
                           "conv2d(N=2,C=5,H=9,W=7,K=20,R=3,S=3,stride=1,pad=1,bias=1,relu=1,winograd=1,layout=NHWC)",
                           "conv2d(N=1,C=17,H=6,W=5,K=33,R=3,S=3,stride=1,pad=2,winograd=1,layout=NHWC)",
                           "conv2d(N=2,C=5,H=9,W=7,K=20,R=3,S=3,stride=1,pad=1,bias=1,relu=1,winograd=2,layout=NHWC)",
                           "conv2d(N=1,C=17,H=18,W=21,K=33,R=3,S=3,stride=1,pad=2,winograd=2,layout=NHWC)"}) {
    auto w = kernels::ParseWorkload(text);
    ASSERT_TRUE(w.ok()) << text;
    const kernels::Template& t = *kernels::TemplateRegistry::Global().Find(w->op);
    auto space = t.Space(*w);
    ASSERT_TRUE(space.ok());
    const bool given = w->param_or("winograd", 0) != 0;
    ASSERT_EQ(space->HasKnob("algo"), !given) << text;
    std::vector<v1::MeasureRequest> batch;
    for (const Case& k : cases) {
      if (k.threads > cores) continue;
      std::vector<std::pair<std::string, kernels::KnobValue>> values = {
          {"wtiles", k.wtiles},   {"mr", k.mr},
          {"nv", k.nv},           {"vec", int64_t{16}},
          {"mc", int64_t{16}},    {"kc", k.kc},
          {"pack_a", k.pack_a},   {"pack_b", k.pack_b},
          {"threads", k.threads}, {"parallel", std::string(k.parallel)}};
      if (!given) values.emplace_back("algo", std::string("winograd"));
      auto c = space->FromValues(values);
      ASSERT_TRUE(c.ok()) << c.status();
      auto kernel = t.Instantiate(*w, *space, *c);
      ASSERT_TRUE(kernel.ok()) << kernel.status();
      auto src = kernels::GenerateC(kernel->func);
      ASSERT_TRUE(src.ok()) << src.status();
      // The transformed weights (unless given), input and products.
      for (const char* buffer : {"wv[", "wm["}) EXPECT_NE(src->find(buffer), std::string::npos) << buffer;
      EXPECT_EQ(src->find("wu[") != std::string::npos, !given) << text;
      batch.push_back(Request(text, c->index));
      batch.back().mutable_options()->set_repeat(k.threads > 1 ? 10 : 2);
    }
    ExpectEachMatchesReference(text, *space, batch);
  }
}

// Threaded kernels are run many times (warm-up plus repeats), and the
// measurement process checks the output after the first and the last run, so
// a race shows up as a wrong answer; every way of sharing the work
// (`parallel`, where the space has it) is among them, and the GEMM
// schedule's team of threads. More threads than cores is refused before
// compiling.
TEST_F(CpuBackendTest, ThreadedKernelsGiveTheReferenceAnswerEveryTime) {
  const int64_t cores = backend_->target().limits().at("cores");
  std::mt19937_64 rng(7);
  for (const char* text : {"matmul(M=77,N=129,K=61)", "matmul(M=128,N=96,K=64,bias=1,relu=1)",
                           "batch_matmul(B=2,M=33,N=40,K=17)", "matmul(M=5,N=3,K=200,trans_b=1)",
                           "conv2d(N=2,C=5,H=11,W=13,K=7,R=3,S=3,stride=1,pad=1,bias=1,relu=1,layout=NCHW)",
                           "conv2d(N=1,C=5,H=11,W=13,K=33,R=3,S=3,stride=2,pad=1,layout=NHWC)",
                           "conv2d(N=2,C=6,H=9,W=10,K=20,R=3,S=3,stride=1,pad=1,bias=1,relu=1,layout=NHWC)",
                           "depthwise_conv2d(N=2,C=13,H=17,W=19,R=3,S=3,stride=1,pad=1,relu=1,layout=NCHW)",
                           "depthwise_conv2d(N=1,C=40,H=17,W=19,R=3,S=3,stride=2,pad=1,bias=1,layout=NHWC)"}) {
    auto space = SpaceOf(text);
    ASSERT_TRUE(space.ok()) << text << ": " << space.status();
    auto two = space->Pin({{"threads", int64_t{2}}});
    ASSERT_TRUE(two.ok());
    std::vector<uint64_t> configs;
    for (int i = 0; i < 2; ++i) configs.push_back(two->ToParentIndex(two->Sample(rng)));
    for (const char* parallel : {"tiles", "rows", "cols"}) {
      auto split = space->Pin({{"threads", int64_t{2}}, {"parallel", std::string(parallel)}});
      if (split.ok()) configs.push_back(split->ToParentIndex(split->Sample(rng)));
    }
    // The GEMM schedule's team (tiles), whose threads pack each block's
    // panels together and meet at barriers, over several K blocks.
    auto team = space->Pin({{"threads", int64_t{2}}, {"parallel", std::string("tiles")}, {"pack_b", int64_t{1}},
                            {"pack_a", int64_t{2}}, {"kc", int64_t{16}}});
    if (team.ok()) configs.push_back(team->ToParentIndex(team->Sample(rng)));
    std::vector<v1::MeasureRequest> batch;
    for (uint64_t c : configs) {
      batch.push_back(Request(text, c));
      batch.back().mutable_options()->set_repeat(10);
    }
    auto too_many = space->Pin({{"threads", int64_t{64}}});
    batch.push_back(Request(text, too_many->ToParentIndex(0)));
    auto results = backend_->Measure(batch);
    ASSERT_TRUE(results.ok()) << results.status();
    for (size_t i = 0; i + 1 < batch.size(); ++i) {
      const v1::MeasureResult& r = (*results)[i];
      if (cores < 2) {
        EXPECT_EQ(r.status(), v1::MEASURE_STATUS_INSTANTIATION_ERROR);
        continue;
      }
      EXPECT_EQ(r.status(), v1::MEASURE_STATUS_OK)
          << text << " " << space->ToString(space->FromIndex(batch[i].config().index())) << ": " << r.error();
      EXPECT_EQ(r.costs_size(), 10);
    }
    if (cores < 64) {
      EXPECT_EQ(results->back().status(), v1::MEASURE_STATUS_INSTANTIATION_ERROR);
      EXPECT_NE(results->back().error().find("cores"), std::string::npos) << results->back().error();
    }
  }
}

// A candidate slower than the cutoff is timed once, by its checked run; one
// under it gets every repeat.
TEST_F(CpuBackendTest, TimingCutoffTimesHopelessCandidatesOnce) {
  const char* text = "matmul(M=64,N=64,K=64)";
  const kernels::Template& t = *kernels::TemplateRegistry::Global().Find("matmul");
  auto w = kernels::ParseWorkload(text);
  uint64_t def = t.DefaultConfig(*w, *t.Space(*w)).index;
  v1::MeasureRequest slow = Request(text, def), fast = Request(text, def);
  slow.mutable_options()->set_repeat(5);
  slow.mutable_options()->set_timing_cutoff_s(1e-9);  // every kernel is slower than that
  fast.mutable_options()->set_repeat(5);
  fast.mutable_options()->set_timing_cutoff_s(100);
  auto results = backend_->Measure({slow, fast});
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ((*results)[0].status(), v1::MEASURE_STATUS_OK) << (*results)[0].error();
  EXPECT_EQ((*results)[0].costs_size(), 1);
  EXPECT_GT((*results)[0].costs(0), 0);
  EXPECT_EQ((*results)[1].costs_size(), 5);
}

// Crashes, hangs, wrong answers and compile errors each cost one result with
// the matching status; the candidates around them are still measured.
TEST_F(CpuBackendTest, FaultyCandidatesAreIsolated) {
  const std::string w = "faulty_copy(N=1000)";
  // mode: 0 ok, 1 crash, 2 hang, 3 wrong, 4 compile_error
  std::vector<v1::MeasureRequest> batch = {Request(w, 1, 2), Request(w, 0, 2), Request(w, 2, 1), Request(w, 3, 2),
                                           Request(w, 4, 2), Request(w, 0, 2)};
  std::vector<size_t> seen;
  auto results = backend_->Measure(batch, [&](size_t i, const v1::MeasureResult&) { seen.push_back(i); });
  ASSERT_TRUE(results.ok()) << results.status();
  const auto& r = *results;
  EXPECT_EQ(r[0].status(), v1::MEASURE_STATUS_RUNTIME_DEVICE) << r[0].error();
  EXPECT_NE(r[0].error().find("signal"), std::string::npos) << r[0].error();
  EXPECT_EQ(r[1].status(), v1::MEASURE_STATUS_OK) << r[1].error();
  EXPECT_EQ(r[2].status(), v1::MEASURE_STATUS_RUN_TIMEOUT) << r[2].error();
  EXPECT_EQ(r[3].status(), v1::MEASURE_STATUS_WRONG_ANSWER) << r[3].error();
  EXPECT_NE(r[3].error().find("C[0]"), std::string::npos) << r[3].error();
  EXPECT_EQ(r[4].status(), v1::MEASURE_STATUS_COMPILE_HOST) << r[4].error();
  EXPECT_EQ(r[5].status(), v1::MEASURE_STATUS_OK) << r[5].error();
  for (size_t i = 0; i < r.size(); ++i) {
    if (r[i].status() != v1::MEASURE_STATUS_OK) {
      EXPECT_EQ(r[i].costs_size(), 0);
    }
  }
  EXPECT_EQ(seen, (std::vector<size_t>{0, 1, 2, 3, 4, 5}));
}

// Requests for one kernel in a batch (a config measured in several rounds)
// build it once; each is measured on its own, and a build error is each
// one's result.
TEST_F(CpuBackendTest, RepeatedRequestsShareOneBuild) {
  struct Counting : ProcessLauncher {
    absl::StatusOr<ProcessResult> Run(const std::vector<std::string>& argv, const ProcessOptions& o) override {
      std::lock_guard<std::mutex> lock(mu);
      ++(argv.at(0) == TUNEFARM_MEASURE_PROGRAM ? runs : builds);
      return posix->Run(argv, o);
    }
    std::shared_ptr<ProcessLauncher> posix = NewPosixProcessLauncher();
    std::mutex mu;
    int builds = 0, runs = 0;
  };
  auto counting = std::make_shared<Counting>();
  BackendOptions o;
  o.measure_program = TUNEFARM_MEASURE_PROGRAM;
  o.launcher = counting;
  auto backend = NewBackend("cpu", o);
  ASSERT_TRUE(backend.ok()) << backend.status();
  const int probes = counting->builds;  // toolchain detection
  const std::string w = "faulty_copy(N=100)";
  // mode: 0 ok, 3 wrong, 4 compile_error
  std::vector<v1::MeasureRequest> batch = {Request(w, 0), Request(w, 4), Request(w, 3),
                                           Request(w, 0), Request(w, 4), Request(w, 3)};
  auto results = (*backend)->Measure(batch);
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ(counting->builds - probes, 3);
  EXPECT_EQ(counting->runs, 4);
  for (size_t i : {0, 3}) {
    EXPECT_EQ((*results)[i].status(), v1::MEASURE_STATUS_OK) << (*results)[i].error();
    EXPECT_EQ((*results)[i].costs_size(), 2);
  }
  for (size_t i : {1, 4}) EXPECT_EQ((*results)[i].status(), v1::MEASURE_STATUS_COMPILE_HOST);
  EXPECT_EQ((*results)[1].error(), (*results)[4].error());
  for (size_t i : {2, 5}) EXPECT_EQ((*results)[i].status(), v1::MEASURE_STATUS_WRONG_ANSWER);
}

TEST_F(CpuBackendTest, BadRequestsAreInstantiationErrors) {
  v1::MeasureRequest out_of_space = Request("faulty_copy(N=4)", 99);
  v1::MeasureRequest bad_version = Request("faulty_copy(N=4)", 0);
  bad_version.set_template_version("0000000000000000");
  v1::MeasureRequest bad_workload = Request("matmul(M=0,N=1,K=1)", 0);
  auto results = backend_->Measure({out_of_space, bad_version, bad_workload});
  ASSERT_TRUE(results.ok());
  for (const auto& r : *results) EXPECT_EQ(r.status(), v1::MEASURE_STATUS_INSTANTIATION_ERROR) << r.error();
  EXPECT_NE((*results)[1].error().find("template version mismatch"), std::string::npos);
}

TEST(BackendRegistryTest, UnknownDeviceClass) {
  auto b = NewBackend("tpu");
  ASSERT_FALSE(b.ok());
  EXPECT_NE(std::string(b.status().message()).find("cpu"), std::string::npos);
}

}  // namespace
}  // namespace tunefarm::device_agents
