#include "tunefarm/kernels/ir.h"

#include <gtest/gtest.h>

namespace tunefarm::kernels::ir {
namespace {

TEST(IrTest, SimplifyFoldsConstants) {
  Expr x = Var::Make("x");
  EXPECT_EQ(ToString(Simplify((Expr(2) + Expr(3)) * x)), "(5 * x)");
  EXPECT_EQ(ToString(Simplify(x * Expr(1) + Expr(0))), "x");
  EXPECT_EQ(ToString(Simplify((x + Expr(2)) + Expr(3))), "(x + 5)");
  EXPECT_EQ(ToString(Simplify(min(Expr(4), Expr(9)) - Expr(1))), "3");
}

TEST(IrTest, MutatorReturnsSameNodeWhenNothingChanges) {
  Stmt s = For::Make("i", 0, 8, ForKind::kSerial, Store::Make("C", Load::Make("A", Var::Make("i")), Var::Make("i")));
  EXPECT_TRUE(Simplify(s).same_as(s));
  EXPECT_TRUE(Substitute(s, "unused", Expr(3)).same_as(s));
}

TEST(IrTest, UnrollLoopsExpandsWithConstantIndices) {
  Stmt s = For::Make("i", 1, 3, ForKind::kUnrolled, Store::Make("C", Load::Make("A", Var::Make("i") * 2), Var::Make("i")));
  EXPECT_EQ(ToString(UnrollLoops(s)), "C[1] = A[2]\nC[2] = A[4]\nC[3] = A[6]\n");
}

TEST(IrTest, NestedUnrollAndSerialLoops) {
  Stmt inner = For::Make("j", 0, 2, ForKind::kUnrolled, Store::Make("C", FloatImm::Make(0), Var::Make("i") * 2 + Var::Make("j")));
  Stmt s = For::Make("i", 0, Var::Make("n"), ForKind::kSerial, inner);
  EXPECT_EQ(ToString(UnrollLoops(s)),
            "serial for (i, 0, n) {\n"
            "  C[(i * 2)] = 0f\n"
            "  C[((i * 2) + 1)] = 0f\n"
            "}\n");
}

TEST(IrTest, BlockFlattens) {
  Stmt a = Barrier::Make();
  Stmt b = Block::Make({a, Block::Make({a, Stmt()}), a});
  ASSERT_NE(b.as<Block>(), nullptr);
  EXPECT_EQ(b.as<Block>()->stmts.size(), 3u);
  EXPECT_TRUE(Block::Make({Stmt(), a}).same_as(a));
}

TEST(IrTest, VisitorSeesEveryNode) {
  struct Counter : Visitor {
    int loads = 0, stores = 0;
    void VisitLoad(const Load* op) override {
      ++loads;
      Visitor::VisitLoad(op);
    }
    void VisitStore(const Store* op) override {
      ++stores;
      Visitor::VisitStore(op);
    }
  } c;
  Stmt s = IfThenElse::Make(Var::Make("i") < Expr(3), Store::Make("C", Load::Make("A", Load::Make("I", 0, Type::Int())), 0),
                            Store::Make("C", Load::Make("B", 0), 1));
  c.Visit(s);
  EXPECT_EQ(c.loads, 3);
  EXPECT_EQ(c.stores, 2);
}

}  // namespace
}  // namespace tunefarm::kernels::ir
