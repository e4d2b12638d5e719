#include "tunefarm/tuner/strategy.h"

#include <gtest/gtest.h>

#include <set>

namespace tunefarm::tuner {
namespace {

kernels::ConfigSpace Space(int a, int b) {
  kernels::Knob ka{"a", kernels::KnobKind::kSplit, {}}, kb{"b", kernels::KnobKind::kSplit, {}};
  for (int i = 0; i < a; ++i) ka.values.emplace_back(int64_t{i});
  for (int i = 0; i < b; ++i) kb.values.emplace_back(int64_t{i});
  return *kernels::ConfigSpace::Create({ka, kb});
}

StrategyContext Ctx(const kernels::ConfigSpace& s, uint64_t seed) {
  StrategyContext c;
  c.space = &s;
  c.seed = seed;
  return c;
}

TEST(StrategyTest, UnknownName) {
  kernels::ConfigSpace s = Space(2, 2);
  EXPECT_FALSE(NewStrategy("annealing", Ctx(s, 0)).ok());
  EXPECT_FALSE(NewStrategy("xgb", Ctx(s, 0)).ok()) << "xgb needs a template and a workload";
}

TEST(StrategyTest, RandomIsDeterministicDistinctAndSkipsVisited) {
  kernels::ConfigSpace s = Space(100, 100);
  auto a = NewStrategy("random", Ctx(s, 5)), b = NewStrategy("random", Ctx(s, 5));
  std::unordered_set<uint64_t> visited = {1, 2, 3};
  auto pa = (*a)->Propose(64, visited), pb = (*b)->Propose(64, visited);
  EXPECT_EQ(pa, pb);
  std::set<uint64_t> unique(pa.begin(), pa.end());
  EXPECT_EQ(unique.size(), 64u);
  for (uint64_t i : pa) {
    EXPECT_LT(i, s.size());
    EXPECT_FALSE(visited.count(i));
  }
}

TEST(StrategyTest, RandomExhaustsSmallSpace) {
  kernels::ConfigSpace s = Space(3, 4);
  auto r = NewStrategy("random", Ctx(s, 1));
  std::unordered_set<uint64_t> visited;
  for (int round = 0; round < 10; ++round) {
    for (uint64_t i : (*r)->Propose(5, visited)) EXPECT_TRUE(visited.insert(i).second);
  }
  EXPECT_EQ(visited.size(), 12u);
  EXPECT_TRUE((*r)->Propose(5, visited).empty());
}

TEST(StrategyTest, GridWalksInIndexOrder) {
  kernels::ConfigSpace s = Space(2, 3);
  auto g = NewStrategy("grid", Ctx(s, 0));
  EXPECT_EQ((*g)->Propose(3, {1}), (std::vector<uint64_t>{0, 2, 3}));
  EXPECT_EQ((*g)->Propose(3, {1}), (std::vector<uint64_t>{4, 5}));
  EXPECT_TRUE((*g)->Propose(3, {1}).empty());
}

TEST(StrategyTest, GaBreedsFromTheFittest) {
  kernels::ConfigSpace s = Space(50, 50);
  auto ga = NewStrategy("ga", Ctx(s, 3));
  ASSERT_TRUE(ga.ok());
  std::unordered_set<uint64_t> visited;
  // Fitness peaks at a = b = 40; within a few generations proposals cluster
  // there (random proposals average about 0.015).
  auto fitness = [&](uint64_t i) {
    kernels::Config c = s.FromIndex(i);
    double da = static_cast<double>(c.choices[0]) - 40, db = static_cast<double>(c.choices[1]) - 40;
    return 1.0 / (1.0 + da * da + db * db);
  };
  double first_mean = 0, later_mean = 0;
  for (int gen = 0; gen < 6; ++gen) {
    std::vector<uint64_t> batch = (*ga)->Propose(32, visited);
    ASSERT_EQ(batch.size(), 32u);
    std::vector<std::pair<uint64_t, double>> scores;
    double mean = 0;
    for (uint64_t i : batch) {
      EXPECT_TRUE(visited.insert(i).second);
      scores.emplace_back(i, fitness(i));
      mean += fitness(i) / 32;
    }
    if (gen == 0) first_mean = mean;
    if (gen >= 3) later_mean += mean / 3;
    (*ga)->Update(scores);
  }
  EXPECT_GT(later_mean, 3 * first_mean);
}

}  // namespace
}  // namespace tunefarm::tuner
