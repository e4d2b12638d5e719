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

TEST(StrategyTest, UnknownName) { EXPECT_FALSE(NewStrategy("annealing", Space(2, 2), 0).ok()); }

TEST(StrategyTest, RandomIsDeterministicDistinctAndSkipsVisited) {
  kernels::ConfigSpace s = Space(100, 100);
  auto a = NewStrategy("random", s, 5), b = NewStrategy("random", s, 5);
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
  auto r = NewStrategy("random", s, 1);
  std::unordered_set<uint64_t> visited;
  for (int round = 0; round < 10; ++round) {
    for (uint64_t i : (*r)->Propose(5, visited)) EXPECT_TRUE(visited.insert(i).second);
  }
  EXPECT_EQ(visited.size(), 12u);
  EXPECT_TRUE((*r)->Propose(5, visited).empty());
}

TEST(StrategyTest, GridWalksInIndexOrder) {
  kernels::ConfigSpace s = Space(2, 3);
  auto g = NewStrategy("grid", s, 0);
  EXPECT_EQ((*g)->Propose(3, {1}), (std::vector<uint64_t>{0, 2, 3}));
  EXPECT_EQ((*g)->Propose(3, {1}), (std::vector<uint64_t>{4, 5}));
  EXPECT_TRUE((*g)->Propose(3, {1}).empty());
}

}  // namespace
}  // namespace tunefarm::tuner
