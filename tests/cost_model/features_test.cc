#include "tunefarm/cost_model/features.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tunefarm/kernels/template.h"

namespace tunefarm::cost_model {
namespace {

using namespace kernels::ir;  // NOLINT

kernels::ConfigSpace OneKnob() {
  return *kernels::ConfigSpace::Create({{"tile", kernels::KnobKind::kSplit, {int64_t{4}, int64_t{8}}}});
}

float At(const std::vector<float>& f, int level, int slot) { return f[level * kFeaturesPerLevel + slot]; }
float Global(const std::vector<float>& f, int g) { return f[kFeatureLoopLevels * kFeaturesPerLevel + g]; }

// for i in 0..64: for j in 0..16 (vectorized): C[i*16+j] = A[i*16+j] * B[j]
TEST(FeaturesTest, GoldenOnSmallNest) {
  Expr i = Var::Make("i"), j = Var::Make("j");
  Stmt body = For::Make(
      "i", 0, 64, ForKind::kSerial,
      For::Make("j", 0, 16, ForKind::kVectorized,
                Store::Make("C", Load::Make("A", i * 16 + j) * Load::Make("B", j), i * 16 + j)));
  LoweredFunc f{"k", {}, body};
  kernels::ConfigSpace space = OneKnob();
  std::vector<float> v = ExtractFeatures(f, space, space.FromIndex(1));
  ASSERT_EQ(v.size(), FeatureCount(space));
  ASSERT_EQ(FeatureNames(space).size(), v.size());
  // Level 0 is the innermost loop j.
  EXPECT_FLOAT_EQ(At(v, 0, 0), std::log2(17.0f));
  EXPECT_FLOAT_EQ(At(v, 0, 3), 1.0f);  // vectorized
  EXPECT_FLOAT_EQ(At(v, 0, 5), std::log2(17.0f));
  // Buffers in first-touch order: A, B (loads), then C (store).
  EXPECT_FLOAT_EQ(At(v, 0, 6), 2.0f * 0 + std::log2(5.0f));  // A: 4 bytes along j
  EXPECT_FLOAT_EQ(At(v, 0, 8), std::log2(5.0f));             // B: 4 bytes along j
  EXPECT_FLOAT_EQ(At(v, 0, 10), std::log2(5.0f));            // C: 4 bytes along j
  // Level 1 is i: A and C stride 64 bytes, B is reused.
  EXPECT_FLOAT_EQ(At(v, 1, 0), std::log2(65.0f));
  EXPECT_FLOAT_EQ(At(v, 1, 1), 1.0f);  // serial
  EXPECT_FLOAT_EQ(At(v, 1, 5), std::log2(1.0f + 1024));
  EXPECT_FLOAT_EQ(At(v, 1, 6), std::log2(65.0f));
  EXPECT_FLOAT_EQ(At(v, 1, 9), 1.0f);  // B reuse flag
  EXPECT_FLOAT_EQ(At(v, 1, 10), std::log2(65.0f));
  // Missing levels are zero.
  EXPECT_FLOAT_EQ(At(v, 2, 0), 0.0f);
  // Globals: 1024 multiplies, 8 KiB loaded, 4 KiB stored.
  EXPECT_FLOAT_EQ(Global(v, 0), std::log2(1025.0f));
  EXPECT_FLOAT_EQ(Global(v, 1), std::log2(1.0f + 8192));
  EXPECT_FLOAT_EQ(Global(v, 2), std::log2(1.0f + 4096));
  EXPECT_FLOAT_EQ(Global(v, 6), 2.0f);  // depth
  // The knob: log2(1 + 8).
  EXPECT_FLOAT_EQ(v.back(), std::log2(9.0f));
}

// IfThenElse follows the branch taken at the first iteration; empty loops
// are skipped; Let-bound indices are seen through.
TEST(FeaturesTest, FollowsTakenBranchAndLets) {
  Expr i = Var::Make("i"), base = Var::Make("base");
  Stmt hot = For::Make("i", 0, 32, ForKind::kSerial,
                       LetStmt::Make("base", i * 8, Store::Make("C", Load::Make("A", base), base)));
  Stmt cold = For::Make("i", 0, 1000, ForKind::kSerial, Store::Make("C", Load::Make("A", i), i));
  Stmt empty = For::Make("e", 0, 0, ForKind::kSerial, Store::Make("C", FloatImm::Make(0), 0));
  Stmt body = Block::Make({IfThenElse::Make(Expr(1) < Expr(2), hot, cold), empty});
  kernels::ConfigSpace space = OneKnob();
  std::vector<float> v = ExtractFeatures({"k", {}, body}, space, space.FromIndex(0));
  EXPECT_FLOAT_EQ(At(v, 0, 0), std::log2(33.0f));
  EXPECT_FLOAT_EQ(At(v, 0, 6), std::log2(33.0f));  // A: 8 floats = 32 bytes per i
  EXPECT_FLOAT_EQ(Global(v, 6), 1.0f);
}

// Same template, different shapes: same length, same meaning per position,
// and different configs give different vectors.
TEST(FeaturesTest, MatmulVectorsAreComparableAcrossShapes) {
  const kernels::Template& t = *kernels::TemplateRegistry::Global().Find("matmul");
  auto a = kernels::ParseWorkload("matmul(M=256,N=256,K=256)");
  auto b = kernels::ParseWorkload("matmul(M=77,N=129,K=61)");
  auto sa = t.Space(*a), sb = t.Space(*b);
  ASSERT_EQ(FeatureCount(*sa), FeatureCount(*sb));
  kernels::Config c = t.DefaultConfig(*a, *sa);
  auto ka = t.Instantiate(*a, *sa, c);
  auto fa = ExtractFeatures(ka->func, *sa, c);
  kernels::Config c2 = sa->FromIndex((c.index + 12345) % sa->size());
  auto fa2 = ExtractFeatures(t.Instantiate(*a, *sa, c2)->func, *sa, c2);
  EXPECT_NE(fa, fa2);
  auto fb = ExtractFeatures(t.Instantiate(*b, *sb, c)->func, *sb, c);
  EXPECT_EQ(fa.size(), fb.size());
  // The micro-kernel's innermost levels agree across shapes for one config.
  for (int s = 0; s < kFeaturesPerLevel; ++s) EXPECT_FLOAT_EQ(At(fa, 0, s), At(fb, 0, s)) << s;
  for (float x : fa) EXPECT_TRUE(std::isfinite(x));
}

// The GPU's tensor-core paths do their multiply-adds in intrinsic calls:
// the flops feature counts them, so that a 256^3 matmul has the same
// 2 * 256^3 flops on the CUDA cores, through mma.sync and through wgmma.
TEST(FeaturesTest, TensorCoreCallsCountTheirFlops) {
  const kernels::Template& t = *kernels::TemplateRegistry::Global().Find("matmul", kernels::DeviceClass::kCuda);
  auto w = kernels::ParseWorkload("matmul(M=256,N=256,K=256,tf32=1)");
  auto space = t.Space(*w);
  ASSERT_TRUE(space.ok());
  auto config = [&](int64_t mma, int64_t tm, int64_t tn, int64_t warp_x) {
    return *space->FromValues({{"bm", int64_t{128}},
                               {"bn", int64_t{128}},
                               {"bk", int64_t{mma == 2 ? 32 : 16}},
                               {"tm", tm},
                               {"tn", tn},
                               {"warp_x", warp_x},
                               {"split", int64_t{1}},
                               {"stages", int64_t{mma == 2 ? 4 : 2}},
                               {"vec", int64_t{4}},
                               {"unroll_k", int64_t{1}},
                               {"mma", mma},
                               {"split_k", int64_t{1}}});
  };
  const double expected = std::log2(1 + 2.0 * 256 * 256 * 256);
  for (const kernels::Config& c : {config(0, 8, 8, 8), config(1, 8, 16, 4), config(2, 8, 8, 16)}) {
    auto k = t.Instantiate(*w, *space, c);
    ASSERT_TRUE(k.ok()) << space->ToString(c) << ": " << k.status();
    std::vector<float> f = ExtractFeatures(k->func, *space, c);
    EXPECT_NEAR(Global(f, 0), expected, 0.01) << space->ToString(c);
  }
}

}  // namespace
}  // namespace tunefarm::cost_model
