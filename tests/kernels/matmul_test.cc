#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "tunefarm/kernels/codegen_c.h"
#include "tunefarm/kernels/codegen_cuda.h"
#include "tunefarm/kernels/template.h"
#include "tunefarm/kernels/weights.h"

namespace tunefarm::kernels {
namespace {

const Template& Matmul() { return *TemplateRegistry::Global().Find("matmul"); }

// How many times `what` occurs in `src`.
size_t Occurrences(const std::string& src, const std::string& what) {
  size_t n = 0;
  for (size_t p = src.find(what); p != std::string::npos; p = src.find(what, p + 1)) ++n;
  return n;
}

TEST(MatmulTemplateTest, SpaceIsRichAndDefaultIsInIt) {
  auto w = ParseWorkload("matmul(M=64,N=64,K=64)");
  ASSERT_TRUE(w.ok());
  auto s = Matmul().Space(*w);
  ASSERT_TRUE(s.ok());
  EXPECT_GT(s->size(), 10'000'000u);
  std::set<std::string> names;
  for (const Knob& k : s->knobs()) names.insert(k.name);
  for (const char* k : {"mr", "nv", "vec", "mc", "nc", "kc", "order", "inner", "pack_a", "pack_b", "unroll_k",
                        "parallel", "compiler", "cflags", "threads"}) {
    EXPECT_TRUE(names.count(k)) << k;
  }
  Config d = Matmul().DefaultConfig(*w, *s);
  EXPECT_LT(d.index, s->size());
}

// Every sampled config of several shapes lowers and prints; the printed C
// keeps no unexpanded unrolled loop.
// The GEMM templates' seed configs fit the register tile to the shape
// (M = 49 and 196 output positions: 7 rows, 3 vectors; M = 1024: 8 rows),
// differ from the default and from each other, and instantiate.
TEST(MatmulTemplateTest, SeedConfigsFitTheShape) {
  // Threads split the longer of M and N, unless N's halves are unequal.
  struct Case {
    std::string text;
    int64_t mr, nv;
    std::string parallel;
  };
  const std::vector<Case> cases = {
      {"matmul(M=1024,N=1024,K=1024)", 8, 3, "rows"},
      {"matmul(M=77,N=129,K=61)", 7, 4, "rows"},
      {"conv2d(N=1,C=512,H=7,W=7,K=512,R=3,S=3,stride=1,pad=1,layout=NHWC)", 7, 4, "cols"},
      {"conv2d(N=1,C=1024,H=14,W=14,K=256,R=1,S=1,stride=1,pad=0,layout=NHWC)", 7, 4, "cols"},
      {"conv2d(N=1,C=256,H=14,W=14,K=256,R=3,S=3,stride=1,pad=1,wblock=16,layout=NHWC)", 7, 4, "cols"}};
  for (const auto& [text, mr, nv, parallel] : cases) {
    auto w = ParseWorkload(text);
    ASSERT_TRUE(w.ok());
    const Template& t = *TemplateRegistry::Global().Find(w->op);
    auto s = t.Space(*w);
    ASSERT_TRUE(s.ok());
    const std::vector<Config> seeds = t.SeedConfigs(*w, *s);
    // A 3x3 NHWC convolution at stride 1 also has five Winograd seeds, whose
    // products in chunks of 16 tiles take 8 x 3 tiles or 6 x 4.
    const bool winograd = s->HasKnob("algo");
    EXPECT_EQ(winograd, w->op == "conv2d" && w->param("R") == 3) << text;
    ASSERT_EQ(seeds.size(), winograd ? 10u : 5u) << text;
    std::set<uint64_t> seen = {t.DefaultConfig(*w, *s).index};
    std::multiset<std::pair<int64_t, int64_t>> tiles, winograd_tiles;
    for (const Config& c : seeds) {
      EXPECT_TRUE(seen.insert(c.index).second) << text << ": " << s->ToString(c);
      EXPECT_TRUE(t.Instantiate(*w, *s, c).ok()) << text << ": " << s->ToString(c);
      if (winograd && s->StrValue(c, "algo") == "winograd") {
        EXPECT_EQ(s->IntValue(c, "wtiles"), 16) << text;
        winograd_tiles.insert({s->IntValue(c, "mr"), s->IntValue(c, "nv")});
        continue;
      }
      tiles.insert({s->IntValue(c, "mr"), s->IntValue(c, "nv")});
      EXPECT_EQ(s->IntValue(c, "vec"), 16) << text;
      EXPECT_EQ(s->StrValue(c, "parallel"), parallel) << text;
      // Weights blocked by the caller are read as they are (with the next
      // panel prefetched or not), never packed.
      if (w->param_or("wblock", 0) > 0) {
        const int64_t pack_b = s->IntValue(c, "pack_b");
        EXPECT_TRUE(pack_b == 0 || pack_b == 3) << text << ": " << s->ToString(c);
      }
    }
    if (winograd) {
      EXPECT_EQ(winograd_tiles.count({8, 3}), 3u) << text;
      EXPECT_EQ(winograd_tiles.count({6, 4}), 2u) << text;
    }
    // Three with the tile that fits (MR rows; as many vectors as leave all
    // but one B vector in registers: 8 x 3, 7 x 4), two with 6 x 4.
    EXPECT_EQ(tiles.count({mr, nv}), 3u) << text;
    EXPECT_EQ(tiles.count({6, 4}), 2u) << text;
  }
  auto cuda = ParseWorkload("matmul(M=64,N=64,K=64)");
  const Template& gpu = *TemplateRegistry::Global().Find("matmul", DeviceClass::kCuda);
  EXPECT_TRUE(gpu.SeedConfigs(*cuda, *gpu.Space(*cuda)).empty());
}

TEST(MatmulTemplateTest, SampledConfigsGenerateC) {
  std::mt19937_64 rng(11);
  for (const char* text : {"matmul(M=1,N=1,K=1)", "matmul(M=77,N=129,K=61)", "matmul(M=256,N=64,K=300)"}) {
    auto w = ParseWorkload(text);
    ASSERT_TRUE(w.ok());
    auto s = Matmul().Space(*w);
    ASSERT_TRUE(s.ok());
    for (int t = 0; t < 60; ++t) {
      Config c = s->FromIndex(s->Sample(rng));
      auto k = Matmul().Instantiate(*w, *s, c);
      ASSERT_TRUE(k.ok()) << s->ToString(c);
      auto src = GenerateC(k->func);
      ASSERT_TRUE(src.ok()) << s->ToString(c) << ": " << src.status();
      EXPECT_NE(src->find("void tunefarm_kernel(void* const* args)"), std::string::npos);
      EXPECT_TRUE(k->compile.compiler == "clang" || k->compile.compiler == "gcc");
    }
  }
}

TEST(MatmulTemplateTest, ReferenceAndTolerance) {
  auto w = ParseWorkload("matmul(M=2,N=3,K=4)");
  ASSERT_TRUE(w.ok());
  std::vector<float> a = {1, 2, 3, 4, -1, -2, -3, -4}, b(12, 0.5f);
  std::vector<std::span<const float>> in = {a, b};
  auto out = Matmul().Reference(*w, in);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].expected.size(), 6u);
  EXPECT_FLOAT_EQ(out[0].expected[0], 5.0f);
  EXPECT_FLOAT_EQ(out[0].expected[5], -5.0f);
  // Tolerance scales with sum |a*b| = 5 and is far below one term (0.5).
  EXPECT_GT(out[0].tolerance[0], 0.0f);
  EXPECT_LT(out[0].tolerance[0], 1e-5f);
  EXPECT_DOUBLE_EQ(Matmul().Flops(*w), 48.0);
}

// B^T, bias and ReLU: C = relu(A * B^T + bias).
TEST(MatmulTemplateTest, ReferenceWithTransposedBBiasAndRelu) {
  auto w = ParseWorkload("matmul(M=2,N=2,K=3,trans_b=1,bias=1,relu=1)");
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(Matmul().Buffers(*w).size(), 4u);  // A, B, bias, C
  std::vector<float> a = {1, 2, 3, -1, -2, -3}, bt = {1, 1, 1, 0, 0, 2}, bias = {0.5f, -10.0f};
  std::vector<std::span<const float>> in = {a, bt, bias};
  auto out = Matmul().Reference(*w, in);
  ASSERT_EQ(out[0].expected.size(), 4u);
  EXPECT_FLOAT_EQ(out[0].expected[0], 6.5f);   // 1+2+3 + 0.5
  EXPECT_FLOAT_EQ(out[0].expected[1], 0.0f);   // 6 - 10 -> relu
  EXPECT_FLOAT_EQ(out[0].expected[2], 0.0f);   // -6 + 0.5 -> relu
  EXPECT_FLOAT_EQ(out[0].expected[3], 0.0f);   // -6 - 10 -> relu
  // A transposed B is always packed; the plain workload keeps its space.
  auto plain = ParseWorkload("matmul(M=2,N=2,K=3)");
  EXPECT_LT(Matmul().Space(*w)->size(), Matmul().Space(*plain)->size());
}

// The optional parameters left at their defaults change nothing: not the
// key, not the space, not the generated code, so old records stay valid.
TEST(MatmulTemplateTest, DefaultsKeepTheVersion) {
  auto a = ParseWorkload("matmul(M=8,N=8,K=8)"), b = ParseWorkload("matmul(M=8,N=8,K=8,bias=0,relu=0,trans_b=0)");
  EXPECT_EQ(*TemplateVersion(Matmul(), *a), *TemplateVersion(Matmul(), *b));
  auto fused = ParseWorkload("matmul(M=8,N=8,K=8,relu=1)");
  EXPECT_NE(*TemplateVersion(Matmul(), *a), *TemplateVersion(Matmul(), *fused));
}

// Each batch is its own matmul: the reference of B=2 is the two matmuls'.
TEST(MatmulTemplateTest, BatchMatmulReferenceIsPerBatch) {
  const Template& bm = *TemplateRegistry::Global().Find("batch_matmul");
  auto w = ParseWorkload("batch_matmul(B=2,M=2,N=3,K=4)");
  ASSERT_TRUE(w.ok()) << w.status();
  std::vector<float> a = {1, 2, 3, 4, -1, -2, -3, -4, 0, 0, 0, 1, 0, 0, 0, 2}, b(24, 0.5f);
  for (int i = 12; i < 24; ++i) b[i] = static_cast<float>(i - 12);
  std::vector<std::span<const float>> in = {a, b};
  auto out = bm.Reference(*w, in);
  ASSERT_EQ(out[0].expected.size(), 12u);
  EXPECT_FLOAT_EQ(out[0].expected[0], 5.0f);    // batch 0 as in the matmul test
  EXPECT_FLOAT_EQ(out[0].expected[5], -5.0f);
  EXPECT_FLOAT_EQ(out[0].expected[6], 9.0f);    // batch 1: row (0,0,0,1) picks B[3][0] = 9
  EXPECT_FLOAT_EQ(out[0].expected[11], 22.0f);  // row (0,0,0,2) * B[3][2] = 2 * 11
  EXPECT_DOUBLE_EQ(bm.Flops(*w), 96.0);
  EXPECT_FALSE(ParseWorkload("batch_matmul(B=0,M=2,N=3,K=4)").ok());
  EXPECT_FALSE(ParseWorkload("batch_matmul(B=1048576,M=1024,N=1024,K=1)").ok());
}

// Threads share the outer register-tile loop through OpenMP.
// wblock=16 is the plain layout's weights with the output channel moved
// out in blocks of 16 and innermost within a block (the last block part
// used): the reference of blocked weights built that way, here
// independently of the template, is the plain layout's. GPUs take plain
// weights only.
TEST(MatmulTemplateTest, BlockedConvWeightsGiveThePlainAnswer) {
  const Template& conv = *TemplateRegistry::Global().Find("conv2d");
  const int64_t K = 19, C = 3, R = 3, S = 2, rest = C * R * S;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> data(2 * C * 5 * 6), plain(K * rest);
  for (float& x : data) x = u(rng);
  for (float& x : plain) x = u(rng);
  for (const char* layout : {"NCHW", "NHWC"}) {
    const std::string shape = "conv2d(N=2,C=3,H=5,W=6,K=19,R=3,S=2,stride=1,pad=1";
    auto w = ParseWorkload(shape + ",layout=" + layout + ")");
    auto wb = ParseWorkload(shape + ",wblock=16,layout=" + layout + ")");
    ASSERT_TRUE(w.ok() && wb.ok()) << wb.status();
    const bool nhwc = std::string(layout) == "NHWC";
    std::vector<float> blocked(32 * rest, 0.0f);
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t r = 0; r < R; ++r) {
          for (int64_t q = 0; q < S; ++q) {
            const int64_t t = nhwc ? (r * S + q) * C + c : (c * R + r) * S + q;
            const float v = plain[nhwc ? t * K + k : k * rest + t];
            blocked[((k / 16) * rest + t) * 16 + k % 16] = v;
          }
        }
      }
    }
    EXPECT_EQ(conv.Buffers(*wb)[1].elements, 32 * rest) << layout;
    std::vector<std::span<const float>> in = {data, plain}, in_b = {data, blocked};
    EXPECT_EQ(conv.Reference(*w, in)[0].expected, conv.Reference(*wb, in_b)[0].expected) << layout;
    auto converted = ConvWeightsFor(*wb, plain);
    ASSERT_TRUE(converted.ok()) << converted.status();
    EXPECT_EQ(*converted, blocked) << layout;
    EXPECT_EQ(*ConvWeightsFor(*w, plain), plain) << layout;
    const Template& gpu = *TemplateRegistry::Global().Find("conv2d", DeviceClass::kCuda);
    const absl::Status refused = gpu.Validate(*wb);
    EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(refused.message().find("plain weights"), std::string::npos) << refused;
  }
}

// winograd=1 takes U = G g G^T of each filter g for F(2x2, 3x3),
// [16][C][K], and winograd=2 that for F(4x4, 3x3), [36][C][K]: for weights
// transformed so, its reference (Winograd's algorithm in double) is the
// direct convolution's, within both tolerances; a wrong U (one weight off)
// is not. Its space is Winograd's alone, its buffers are U's size, and
// ConvWeightsFor refuses weights of the wrong size or another operator.
TEST(MatmulTemplateTest, WinogradWeightsGiveTheDirectAnswer) {
  const Template& conv = *TemplateRegistry::Global().Find("conv2d");
  const int64_t N = 2, C = 5, H = 7, W = 6, K = 19;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> data(N * H * W * C), plain(9 * C * K), bias(K);
  for (auto* v : {&data, &plain, &bias}) {
    for (float& x : *v) x = u(rng);
  }
  for (const int64_t form : {1, 2}) {
    const int64_t points = form == 1 ? 16 : 36;
    for (const char* rest : {"pad=1,bias=1,relu=1", "pad=0", "pad=2,bias=1"}) {
      const std::string shape = absl::StrCat("conv2d(N=2,C=5,H=7,W=6,K=19,R=3,S=3,stride=1,", rest);
      auto w = ParseWorkload(shape + ",layout=NHWC)");
      auto wu = ParseWorkload(absl::StrCat(shape, ",winograd=", form, ",layout=NHWC)"));
      ASSERT_TRUE(w.ok() && wu.ok()) << wu.status();
      auto transformed = ConvWeightsFor(*wu, plain);
      ASSERT_TRUE(transformed.ok()) << transformed.status();
      ASSERT_EQ(static_cast<int64_t>(transformed->size()), points * C * K);
      EXPECT_EQ(conv.Buffers(*wu)[1].elements, points * C * K);
      const bool with_bias = w->param_or("bias", 0) != 0;
      std::vector<std::span<const float>> in = {data, plain}, in_u = {data, *transformed};
      if (with_bias) in.push_back(bias), in_u.push_back(bias);
      const ReferenceOutput direct = conv.Reference(*w, in)[0], winograd = conv.Reference(*wu, in_u)[0];
      ASSERT_EQ(direct.expected.size(), winograd.expected.size());
      for (size_t i = 0; i < direct.expected.size(); ++i) {
        EXPECT_NEAR(direct.expected[i], winograd.expected[i], direct.tolerance[i] + winograd.tolerance[i])
            << wu->Key() << " at " << i;
      }
      // One weight off by 0.5: the outputs of its filter at the positions
      // that read it move by about 0.5 * |data|.
      std::vector<float> wrong = *transformed;
      wrong[(5 * C + 2) * K + 3] += 0.5f;
      in_u[1] = wrong;
      const ReferenceOutput off = conv.Reference(*wu, in_u)[0];
      size_t moved = 0;
      for (size_t i = 0; i < off.expected.size(); ++i) {
        moved += std::abs(off.expected[i] - winograd.expected[i]) > winograd.tolerance[i] + off.tolerance[i];
      }
      EXPECT_GT(moved, 0u) << wu->Key();
      auto space = conv.Space(*wu);
      ASSERT_TRUE(space.ok());
      EXPECT_FALSE(space->HasKnob("algo"));
      EXPECT_TRUE(space->HasKnob("wtiles"));
      for (const Config& c : conv.SeedConfigs(*wu, *space)) EXPECT_EQ(space->IntValue(c, "wtiles"), 16);
    }
  }
  auto w = ParseWorkload("conv2d(N=1,C=5,H=7,W=6,K=19,R=3,S=3,stride=1,pad=1,winograd=1,layout=NHWC)");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(ConvWeightsFor(*w, std::span<const float>(plain).first(10)).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto dw = ParseWorkload("depthwise_conv2d(N=1,C=5,H=7,W=6,R=3,S=3,stride=1,pad=1,layout=NHWC)");
  ASSERT_TRUE(dw.ok());
  EXPECT_EQ(ConvWeightsFor(*dw, plain).status().code(), absl::StatusCode::kInvalidArgument);
  const Template& gpu = *TemplateRegistry::Global().Find("conv2d", DeviceClass::kCuda);
  EXPECT_EQ(gpu.Validate(*w).code(), absl::StatusCode::kInvalidArgument);
}

TEST(MatmulTemplateTest, ThreadedConfigsPrintAParallelLoop) {
  auto w = ParseWorkload("matmul(M=64,N=64,K=64)");
  auto space = Matmul().Space(*w);
  Config c = Matmul().DefaultConfig(*w, *space);
  auto k1 = Matmul().Instantiate(*w, *space, c);
  ASSERT_TRUE(k1.ok());
  EXPECT_EQ(k1->func.threads, 1);
  EXPECT_EQ(GenerateC(k1->func)->find("omp parallel"), std::string::npos);
  EXPECT_EQ(k1->compile.flags.find("-fopenmp"), std::string::npos);
  // Without packing, tiles: one team of threads, the register-tile loop of
  // each block shared among them; rows / cols: one loop over the threads'
  // parts of M / N, around the whole product.
  for (const auto& [parallel, loop] : std::vector<std::pair<std::string, std::string>>{
           {"tiles", "for (int64_t jr_o = 0;"}, {"rows", "for (int64_t tp = 0; tp < 4;"},
           {"cols", "for (int64_t tp = 0; tp < 4;"}}) {
    Config c4 = *space->FromValues({{"threads", int64_t{4}}, {"mr", int64_t{4}}, {"nv", int64_t{2}}, {"vec", int64_t{8}},
                                    {"mc", int64_t{64}}, {"nc", int64_t{256}}, {"kc", int64_t{256}},
                                    {"order", std::string("jc,pc,ic")}, {"inner", std::string("jr,ir")},
                                    {"pack_a", int64_t{0}}, {"pack_b", int64_t{0}}, {"unroll_k", int64_t{1}},
                                    {"parallel", parallel}, {"compiler", std::string("clang")},
                                    {"cflags", std::string("-O3")}});
    auto k4 = Matmul().Instantiate(*w, *space, c4);
    ASSERT_TRUE(k4.ok());
    EXPECT_EQ(k4->func.threads, 4);
    const std::string src = *GenerateC(k4->func);
    const bool team = parallel == "tiles";
    const size_t pragma = src.find(team ? "#pragma omp for" : "#pragma omp parallel for num_threads(4)");
    ASSERT_NE(pragma, std::string::npos) << parallel;
    EXPECT_EQ(src.find("#pragma omp parallel num_threads(4)") < pragma, team) << src;
    EXPECT_EQ(src.find("#pragma omp", pragma + 1), std::string::npos) << parallel;
    EXPECT_EQ(src.find("for (int64_t", pragma), src.find(loop, pragma)) << parallel;
    EXPECT_NE(k4->compile.flags.find("-fopenmp"), std::string::npos);
  }
  // With packing, the tiles team shares out each block's packing too: B's
  // panels, then A's, then the tiles, each a work-sharing loop that ends in
  // a barrier. The panels are shared: declared outside the team.
  auto decl = [](const std::string& src, const std::string& name) {
    return std::min(src.find("float " + name + "["), src.find("float* restrict " + name + " "));
  };
  for (int64_t pack_a : {1, 2}) {
    Config c4 = *space->FromValues({{"threads", int64_t{4}}, {"parallel", std::string("tiles")}, {"pack_a", pack_a},
                                    {"pack_b", int64_t{1}}, {"order", std::string("jc,pc,ic")}});
    const std::string src = *GenerateC(Matmul().Instantiate(*w, *space, c4)->func);
    std::vector<size_t> at;
    for (size_t p = src.find("#pragma omp"); p != std::string::npos; p = src.find("#pragma omp", p + 1)) {
      if (src.compare(p, 16, "#pragma omp simd") != 0) at.push_back(p);
    }
    ASSERT_EQ(at.size(), 4u) << src;
    EXPECT_EQ(src.compare(at[0], 36, "#pragma omp parallel num_threads(4)\n"), 0) << src;
    EXPECT_LT(decl(src, "Bp"), at[0]);
    EXPECT_LT(decl(src, "Ap"), at[0]);
    // Statically scheduled, so a thread multiplies by the panels it packed.
    for (size_t i = 1; i < 4; ++i) EXPECT_EQ(src.compare(at[i], 33, "#pragma omp for schedule(static)\n"), 0) << src;
    EXPECT_LT(src.find("Bp[", at[1]), at[2]);
    EXPECT_LT(src.find("Ap[", at[2]), at[3]);
    EXPECT_NE(src.find("acc_0", at[3]), std::string::npos);
  }
}

// A batch split into rows or columns forks once: one loop over the
// threads' parts, around the batch (each part of every product); with
// columns left over for dot products (N % vec, under the split), the
// batch stays outside and each product forks.
TEST(MatmulTemplateTest, BatchesSplitIntoPartsForkOnce) {
  const Template& bm = *TemplateRegistry::Global().Find("batch_matmul");
  for (const auto& [text, outside] : std::vector<std::pair<std::string, bool>>{
           {"batch_matmul(B=16,M=64,N=64,K=64)", true}, {"batch_matmul(B=16,M=64,N=70,K=64)", false}}) {
    auto w = ParseWorkload(text);
    ASSERT_TRUE(w.ok());
    auto space = bm.Space(*w);
    ASSERT_TRUE(space.ok());
    for (const char* parallel : {"rows", "cols"}) {
      auto c = space->FromValues({{"threads", int64_t{2}},
                                  {"parallel", std::string(parallel)},
                                  {"vec", int64_t{16}},
                                  {"nv", int64_t{1}},
                                  {"mr", int64_t{4}}});
      ASSERT_TRUE(c.ok()) << c.status();
      auto k = bm.Instantiate(*w, *space, *c);
      ASSERT_TRUE(k.ok()) << k.status();
      const std::string src = *GenerateC(k->func);
      const size_t pragma = src.find("#pragma omp parallel for num_threads(2)"),
                   batch = src.find("for (int64_t bi = 0;");
      ASSERT_NE(pragma, std::string::npos) << text << " " << parallel;
      ASSERT_NE(batch, std::string::npos);
      EXPECT_EQ(pragma < batch, outside) << text << " " << parallel << "\n" << src;
    }
  }
}

// With pack_b=2, the tile that packs a panel brings each row of B it will
// read into L1 a few k steps ahead (the last row of the block at the end),
// which no other tile does, nor pack_b=1; and every tile brings its share
// of the next panel's rows into L2 as its k loop goes (also with
// pack_b=3, which reads B in place).
TEST(MatmulTemplateTest, FusedPackingPrefetchesBRowsAhead) {
  auto w = ParseWorkload("matmul(M=60,N=96,K=40)");
  auto space = Matmul().Space(*w);
  auto source = [&](int64_t pack_b) {
    Config c = *space->With(Matmul().DefaultConfig(*w, *space), {{"mr", int64_t{8}},
                                                                 {"nv", int64_t{3}},
                                                                 {"vec", int64_t{16}},
                                                                 {"kc", int64_t{32}},
                                                                 {"pack_b", pack_b},
                                                                 {"inner", std::string("jr,ir")}});
    auto k = Matmul().Instantiate(*w, *space, c);
    EXPECT_TRUE(k.ok()) << k.status();
    return k.ok() ? *GenerateC(k->func) : std::string();
  };
  const std::string fused = source(2);
  const std::string ahead = "tf_prefetch_l1(B[(((pc + tf_min((kk + 8), (kb - 1))) * 96) + ((jc + jr) + 16))]);";
  const size_t at = fused.find(ahead);
  ASSERT_NE(at, std::string::npos) << fused;
  // In the packing tile's k loop, before the step stores its row of B.
  EXPECT_LT(fused.rfind("for (int64_t kk = 0; kk < kb; ++kk)", at), at);
  EXPECT_LT(at, fused.find("*(tf_f32x16_u*)(Bp + ", at));
  EXPECT_NE(fused.find("#define tf_prefetch_l1(x_) __builtin_prefetch(&(x_), 0, 3)"), std::string::npos);
  // One per line of the 48-column panel, in each copy of the packing tile
  // (whole rows, rows short): 3 x 2, none elsewhere.
  EXPECT_EQ(Occurrences(fused, "tf_prefetch_l1(B["), 6u) << fused;
  EXPECT_EQ(source(1).find("tf_prefetch_l1"), std::string::npos);
  // Every tile brings its share of the next panel's rows into L2 one row a
  // step, in its k loop: each prefetch sits under a test of the step
  // against the tile's count of such rows.
  size_t l2 = 0;
  for (size_t p = fused.find("tf_prefetch(B["); p != std::string::npos; p = fused.find("tf_prefetch(B[", p + 1)) {
    ++l2;
    const size_t test = fused.rfind("if ((", p);
    ASSERT_NE(test, std::string::npos);
    EXPECT_TRUE(fused.compare(test, 20, "if ((kk < pf_panel))") == 0 ||
                fused.compare(test, 20, "if ((kk < pf_block))") == 0)
        << fused.substr(test, p - test);
    EXPECT_LT(fused.rfind("for (int64_t kk = 0; kk < kb; ++kk)", p), test);
  }
  EXPECT_GE(l2, 12u) << fused;  // 3 lines x (next panel, next block) x 4 copies of the tile's k loop
  // pack_b=3 reads B as it is, with the same prefetches into L2 (3 lines x
  // 2 x the k loops of whole and short rows) and none into L1; 0 has none.
  const std::string in_place = source(3);
  EXPECT_EQ(in_place.find("Bp"), std::string::npos) << in_place;
  EXPECT_EQ(in_place.find("tf_prefetch_l1"), std::string::npos);
  EXPECT_EQ(Occurrences(in_place, "tf_prefetch(B["), 12u) << in_place;
  EXPECT_EQ(Occurrences(in_place, "if ((kk < pf_panel))"), Occurrences(in_place, "if ((kk < pf_block))"));
  EXPECT_EQ(source(0).find("tf_prefetch"), std::string::npos);
}

// With pack_b=2 and jr outer, when no later row block reads a B block
// again, its panels take turns in one panel's room (kc x 48 floats), and
// the last columns' panel, short of columns, has a room of its own; with
// several row blocks per B block, or a team, every panel of the block
// keeps its room (kc x nc).
TEST(MatmulTemplateTest, FusedPackingPanelsTakeTurnsInOneRoom) {
  auto source = [&](const char* text, int64_t mc, int64_t threads, const char* parallel) {
    auto w = ParseWorkload(text);
    auto space = Matmul().Space(*w);
    Config c = *space->With(Matmul().DefaultConfig(*w, *space), {{"mr", int64_t{8}},
                                                                 {"nv", int64_t{3}},
                                                                 {"vec", int64_t{16}},
                                                                 {"mc", mc},
                                                                 {"nc", int64_t{1024}},
                                                                 {"kc", int64_t{32}},
                                                                 {"order", std::string("jc,pc,ic")},
                                                                 {"pack_b", int64_t{2}},
                                                                 {"inner", std::string("jr,ir")},
                                                                 {"threads", threads},
                                                                 {"parallel", std::string(parallel)}});
    auto k = Matmul().Instantiate(*w, *space, c);
    EXPECT_TRUE(k.ok()) << k.status();
    return k.ok() ? *GenerateC(k->func) : std::string();
  };
  EXPECT_NE(source("matmul(M=60,N=96,K=40)", 64, 1, "rows").find("float Bp[1536]"), std::string::npos);
  // N = 112: two whole panels and one of 16 columns.
  EXPECT_NE(source("matmul(M=60,N=112,K=40)", 64, 1, "rows").find("float Bp[3072]"), std::string::npos);
  // Two row blocks of 32: the second reads the panels the first packed.
  EXPECT_NE(source("matmul(M=60,N=96,K=40)", 32, 1, "rows").find("float Bp[3072]"), std::string::npos);
  // Each thread's part of the rows is one block, with its own room.
  EXPECT_NE(source("matmul(M=60,N=96,K=40)", 32, 2, "rows").find("float Bp[1536]"), std::string::npos);
  EXPECT_NE(source("matmul(M=60,N=96,K=40)", 64, 2, "tiles").find("float Bp[3072]"), std::string::npos);
}

// The last row tile of M, short of rows, computes only its M % MR rows;
// with M a multiple of MR no tile tests for it.
TEST(MatmulTemplateTest, ShortRowTilesComputeOnlyTheirRows) {
  for (int64_t M : {77, 80}) {
    auto w = ParseWorkload(absl::StrCat("matmul(M=", M, ",N=96,K=40)"));
    auto space = Matmul().Space(*w);
    Config c = *space->With(Matmul().DefaultConfig(*w, *space),
                            {{"mr", int64_t{8}}, {"nv", int64_t{3}}, {"vec", int64_t{16}}, {"pack_b", int64_t{1}}});
    auto k = Matmul().Instantiate(*w, *space, c);
    ASSERT_TRUE(k.ok()) << k.status();
    const std::string src = *GenerateC(k->func);
    // Rows 0-4 of an 8 x 3 tile update acc_0 .. acc_14, rows 5-7 acc_15 on.
    const size_t first_rows = Occurrences(src, "acc_14 = (acc_14 + "),
                 last_rows = Occurrences(src, "acc_15 = (acc_15 + ");
    EXPECT_GT(last_rows, 0u) << src;
    EXPECT_EQ(first_rows > last_rows, M == 77) << src;
    EXPECT_EQ(src.find("((ir + 8) <= mb)") != std::string::npos, M == 77) << src;
  }
}

// Golden text of one generated kernel per template: the template's default
// config on a small awkward shape (edge tiles on every side), and for matmul
// also the fused, transposed, two-thread variant. TUNEFARM_UPDATE_GOLDEN=1
// rewrites the files instead; read the diff before committing them.
void ExpectGolden(const std::string& name, const std::string& text) {
  const std::string path = std::string(TUNEFARM_GOLDEN_DIR) + "/" + name;
  if (std::getenv("TUNEFARM_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(path) << text;
    return;
  }
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(text, ss.str()) << "golden " << path;
}

std::string Generated(const std::string& workload, const std::vector<std::pair<std::string, KnobValue>>& values = {},
                      DeviceClass device = DeviceClass::kCpu) {
  auto w = ParseWorkload(workload);
  const Template& t = *TemplateRegistry::Global().Find(w->op, device);
  auto space = t.Space(*w);
  Config c = t.DefaultConfig(*w, *space);
  if (!values.empty()) c = *space->With(c, values);
  auto k = t.Instantiate(*w, *space, c);
  EXPECT_TRUE(k.ok()) << k.status();
  if (!k.ok()) return "";
  if (device == DeviceClass::kCuda) {
    auto cuda = GenerateCuda(k->func);
    EXPECT_TRUE(cuda.ok()) << cuda.status();
    return cuda.ok() ? cuda->source : "";
  }
  auto src = GenerateC(k->func);
  EXPECT_TRUE(src.ok()) << src.status();
  return src.ok() ? *src : "";
}

TEST(MatmulTemplateTest, GoldenKernels) {
  ExpectGolden("matmul_5x19x3.c", Generated("matmul(M=5,N=19,K=3)"));
  ExpectGolden("matmul_5x19x3_tb_bias_relu_t2.c",
               Generated("matmul(M=5,N=19,K=3,trans_b=1,bias=1,relu=1)", {{"threads", int64_t{2}}}));
  ExpectGolden("batch_matmul_2x5x19x3.c", Generated("batch_matmul(B=2,M=5,N=19,K=3)"));
  ExpectGolden("conv2d_nchw_3x7x5_k5.c",
               Generated("conv2d(N=1,C=3,H=7,W=5,K=5,R=3,S=3,stride=1,pad=1,bias=1,relu=1,layout=NCHW)"));
  ExpectGolden("conv2d_nhwc_3x7x5_k5_s2.c",
               Generated("conv2d(N=2,C=3,H=7,W=5,K=5,R=3,S=3,stride=2,pad=1,layout=NHWC)"));
  ExpectGolden("depthwise_conv2d_nchw_13x9x11_s2.c",
               Generated("depthwise_conv2d(N=1,C=13,H=9,W=11,R=3,S=3,stride=2,pad=1,bias=1,relu=1,layout=NCHW)"));
  ExpectGolden("depthwise_conv2d_nhwc_19x9x11.c",
               Generated("depthwise_conv2d(N=1,C=19,H=9,W=11,R=3,S=3,stride=1,pad=1,layout=NHWC)",
                         {{"threads", int64_t{2}}}));
}

// The CUDA templates' default configs: bounds-checked tiles with scalar
// loads, float4 loads with the tensor-core path, and an implicit-GEMM
// convolution with its padding checks.
TEST(MatmulTemplateTest, GoldenCudaKernels) {
  ExpectGolden("cuda_matmul_77x129x61.cu", Generated("matmul(M=77,N=129,K=61)", {}, DeviceClass::kCuda));
  ExpectGolden("cuda_matmul_64x72x40_bias_tf32.cu",
               Generated("matmul(M=64,N=72,K=40,bias=1,tf32=1)", {}, DeviceClass::kCuda));
  ExpectGolden("cuda_conv2d_nhwc_8x7x7_k16.cu",
               Generated("conv2d(N=1,C=8,H=7,W=7,K=16,R=3,S=3,stride=1,pad=1,relu=1,layout=NHWC)", {},
                         DeviceClass::kCuda));
}

// A copy whose knob `scale` multiplies by 1 (the default) or by `factor`;
// its ParamNames/Validate accept matmul's workloads.
class ScaledCopy : public Template {
 public:
  explicit ScaledCopy(float factor) : factor_(factor) {}
  std::string_view op() const override { return "matmul"; }
  std::vector<std::string> ParamNames() const override { return {"M", "N", "K"}; }
  absl::Status Validate(const Workload&) const override { return absl::OkStatus(); }
  std::string_view declared_version() const override { return "scaled-copy-1"; }
  absl::StatusOr<ConfigSpace> Space(const Workload&) const override {
    return ConfigSpace::Create({{"scale", KnobKind::kChoice, {int64_t{0}, int64_t{1}}}});
  }
  Config DefaultConfig(const Workload&, const ConfigSpace& s) const override { return s.FromIndex(0); }
  std::vector<ir::BufferArg> Buffers(const Workload& w) const override {
    return {{"A", ir::Type::Float(), w.param("M"), false}, {"C", ir::Type::Float(), w.param("M"), true}};
  }
  double Flops(const Workload& w) const override { return static_cast<double>(w.param("M")); }
  std::vector<ReferenceOutput> Reference(const Workload&, std::span<const std::span<const float>>) const override {
    return {};
  }
  absl::StatusOr<Kernel> Instantiate(const Workload& w, const ConfigSpace& s, const Config& c) const override {
    using namespace ir;  // NOLINT
    const Expr i = Var::Make("i");
    const Expr scale = FloatImm::Make(s.IntValue(c, "scale") == 0 ? 1.0f : factor_);
    return Kernel{{"tunefarm_kernel", Buffers(w),
                   For::Make("i", 0, w.param("M"), ForKind::kSerial, Store::Make("C", Load::Make("A", i) * scale, i))},
                  {"gcc", "-O2"}};
  }

 private:
  float factor_;
};

// The version covers the code of every knob value, not only the default
// config's: two templates whose kernels differ only at a non-default value
// have different versions.
TEST(MatmulTemplateTest, VersionCoversTheCodeOfEveryKnobValue) {
  auto w = ParseWorkload("matmul(M=8,N=8,K=8)");
  ASSERT_TRUE(w.ok());
  ScaledCopy two(2), two_again(2), three(3);
  auto v2 = TemplateVersion(two, *w), v2_again = TemplateVersion(two_again, *w), v3 = TemplateVersion(three, *w);
  ASSERT_TRUE(v2.ok() && v2_again.ok() && v3.ok());
  EXPECT_EQ(*v2, *v2_again);
  EXPECT_NE(*v2, *v3);
  absl::StatusOr<ConfigSpace> space = two.Space(*w);
  ASSERT_TRUE(space.ok());
  auto code = [&](const Template& t, int64_t scale) {
    return GenerateC(t.Instantiate(*w, *space, *space->FromValues({{"scale", scale}}))->func);
  };
  EXPECT_EQ(*code(two, 0), *code(three, 0));
  EXPECT_NE(*code(two, 1), *code(three, 1));
}

TEST(MatmulTemplateTest, VersionIsStableAndShapeSpecific) {
  auto a = ParseWorkload("matmul(M=8,N=8,K=8)");
  auto b = ParseWorkload("matmul(M=8,N=8,K=9)");
  auto va = TemplateVersion(Matmul(), *a), va2 = TemplateVersion(Matmul(), *a), vb = TemplateVersion(Matmul(), *b);
  ASSERT_TRUE(va.ok() && vb.ok());
  EXPECT_EQ(*va, *va2);
  EXPECT_EQ(va->size(), 16u);
  EXPECT_NE(*va, *vb);
}

}  // namespace
}  // namespace tunefarm::kernels
