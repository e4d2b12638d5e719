#include "tunefarm/kernels/config_space.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

namespace tunefarm::kernels {
namespace {

Knob IntKnob(std::string name, int n) {
  Knob k{std::move(name), KnobKind::kSplit, {}};
  for (int i = 0; i < n; ++i) k.values.emplace_back(int64_t{i + 1});
  return k;
}

TEST(ConfigSpaceTest, RejectsBadKnobs) {
  EXPECT_FALSE(ConfigSpace::Create({{"a", KnobKind::kChoice, {}}}).ok());
  EXPECT_FALSE(ConfigSpace::Create({IntKnob("a", 2), IntKnob("a", 3)}).ok());
  std::vector<Knob> huge;
  for (int i = 0; i < 8; ++i) huge.push_back(IntKnob("k" + std::to_string(i), 1 << 8));
  EXPECT_FALSE(ConfigSpace::Create(huge).ok()) << "2^64 points must be refused";
}

TEST(ConfigSpaceTest, IndexRoundTripExhaustiveOnSmallSpace) {
  auto s = ConfigSpace::Create({IntKnob("a", 3), IntKnob("b", 1), IntKnob("c", 4)});
  ASSERT_TRUE(s.ok());
  ASSERT_EQ(s->size(), 12u);
  std::set<std::vector<uint32_t>> seen;
  for (uint64_t i = 0; i < s->size(); ++i) {
    Config c = s->FromIndex(i);
    EXPECT_EQ(c.index, i);
    EXPECT_TRUE(seen.insert(c.choices).second);
    auto back = s->FromChoices(c.choices);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(back->index, i);
  }
}

// A space of ~1.2e12 points: sampled and walked by index, never enumerated.
TEST(ConfigSpaceTest, HugeSpaceSampleRoundTripAndNeighbors) {
  std::vector<Knob> knobs;
  for (int i = 0; i < 12; ++i) knobs.push_back(IntKnob("k" + std::to_string(i), 10));
  auto s = ConfigSpace::Create(knobs);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->size(), 1000000000000ull);
  std::mt19937_64 rng(7);
  for (int t = 0; t < 2000; ++t) {
    uint64_t idx = s->Sample(rng);
    ASSERT_LT(idx, s->size());
    Config c = s->FromIndex(idx);
    for (size_t k = 0; k < knobs.size(); ++k) ASSERT_LT(c.choices[k], 10u);
    EXPECT_EQ(s->FromChoices(c.choices)->index, idx);
    for (uint64_t n : s->Neighbors(c)) {
      Config nc = s->FromIndex(n);
      int diff = 0;
      for (size_t k = 0; k < knobs.size(); ++k) diff += nc.choices[k] != c.choices[k];
      EXPECT_EQ(diff, 1);
    }
  }
}

TEST(ConfigSpaceTest, ValuesAndJson) {
  auto s = ConfigSpace::Create({IntKnob("tile", 4), {"order", KnobKind::kReorder, {std::string("ij"), std::string("ji")}}});
  ASSERT_TRUE(s.ok());
  auto c = s->FromValues({{"tile", int64_t{3}}, {"order", std::string("ji")}});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(s->IntValue(*c, "tile"), 3);
  EXPECT_EQ(s->StrValue(*c, "order"), "ji");
  EXPECT_EQ(s->ToJson(*c), R"({"tile":3,"order":"ji"})");
  EXPECT_EQ(s->ToString(*c), "tile=3 order=ji");
  EXPECT_FALSE(s->FromValues({{"tile", int64_t{9}}}).ok());
  EXPECT_FALSE(s->FromValues({{"nope", int64_t{1}}}).ok());
  // With changes only the named knobs.
  auto d = s->With(*c, {{"tile", int64_t{1}}});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(s->ToString(*d), "tile=1 order=ji");
  EXPECT_EQ(d->index, s->FromValues({{"tile", int64_t{1}}, {"order", std::string("ji")}})->index);
  EXPECT_FALSE(s->With(*c, {{"tile", int64_t{9}}}).ok());
}

}  // namespace
}  // namespace tunefarm::kernels

namespace tunefarm::kernels {
namespace {

TEST(ConfigSpaceTest, PinnedSubSpaceMapsToParent) {
  auto s = ConfigSpace::Create({IntKnob("a", 3), {"c", KnobKind::kChoice, {std::string("x"), std::string("y")}},
                                IntKnob("b", 4)});
  ASSERT_TRUE(s.ok());
  auto p = s->Pin({{"c", std::string("y")}, {"b", int64_t{3}}});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->size(), 3u);
  for (uint64_t i = 0; i < p->size(); ++i) {
    Config c = p->FromIndex(i);
    uint64_t parent = p->ToParentIndex(i);
    Config pc = s->FromIndex(parent);
    EXPECT_EQ(s->StrValue(pc, "c"), "y");
    EXPECT_EQ(s->IntValue(pc, "b"), 3);
    EXPECT_EQ(s->IntValue(pc, "a"), p->IntValue(c, "a"));
    EXPECT_EQ(p->ParentChoice(c, 1), 1u);
    EXPECT_EQ(p->FromParentIndex(parent), i);
  }
  EXPECT_FALSE(p->FromParentIndex(0).has_value());  // c=x is outside
  EXPECT_FALSE(s->Pin({{"c", std::string("z")}}).ok());
  EXPECT_FALSE(s->Pin({{"nope", int64_t{1}}}).ok());
  // Pinning again is relative to the original space.
  auto q = p->Pin({{"a", int64_t{2}}});
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->size(), 8u);
}

// Restrict keeps a subset of a knob's values, in the knob's own order.
TEST(ConfigSpaceTest, RestrictedSubSpaceMapsToParent) {
  auto s = ConfigSpace::Create({IntKnob("a", 3), IntKnob("b", 4)});  // a: 1..3, b: 1..4
  ASSERT_TRUE(s.ok());
  auto r = s->Restrict({{"b", {int64_t{4}, int64_t{2}}}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->size(), 6u);
  std::set<int64_t> seen;
  for (uint64_t i = 0; i < r->size(); ++i) {
    const uint64_t parent = r->ToParentIndex(i);
    const int64_t b = s->IntValue(s->FromIndex(parent), "b");
    EXPECT_TRUE(b == 2 || b == 4);
    seen.insert(b);
    EXPECT_EQ(r->FromParentIndex(parent), i);
    EXPECT_EQ(r->IntValue(r->FromIndex(i), "b"), b);
  }
  EXPECT_EQ(seen, (std::set<int64_t>{2, 4}));
  EXPECT_EQ(r->knobs()[1].values, (std::vector<KnobValue>{int64_t{2}, int64_t{4}}));
  EXPECT_FALSE(r->FromParentIndex(s->FromValues({{"a", int64_t{1}}, {"b", int64_t{1}}})->index).has_value());
  EXPECT_FALSE(s->Restrict({{"b", {int64_t{9}}}}).ok());
  EXPECT_FALSE(s->Restrict({{"b", {}}}).ok());
}

}  // namespace
}  // namespace tunefarm::kernels
