// What the C and CUDA C++ printers share: expressions, scalar and vector
// loads and stores, register buffers (one variable per element, which is
// why unrolled loops are expanded first), lets, ifs and serial loops. A
// dialect prints the rest: the prelude, the function's signature, its
// vector types, vectorized / parallel / GPU loops, memory scopes other than
// registers, and barriers.
#pragma once

#include <ostream>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "tunefarm/kernels/ir.h"

namespace tunefarm::kernels {

class CLikePrinter : public ir::Visitor {
 public:
  // The prelude, then `f` (unrolled and simplified) as one function.
  absl::StatusOr<std::string> Print(const ir::LoweredFunc& f);

 protected:
  // Declarations the function needs (written after the body is printed, so
  // it may list what the body used).
  virtual void PrintPrelude(std::ostream& os) = 0;
  // The function's header line and opening brace (at indent 0), and any
  // lines that bind its buffers.
  virtual void PrintSignature(const ir::LoweredFunc& f) = 0;
  // The name of a vector type; its unaligned variant is the name + "_u" and
  // a broadcast is <name>_splat(x).
  virtual std::string VectorType(const ir::Type& t) = 0;
  // Element `lane` of the vector variable `var`.
  virtual std::string Lane(const std::string& var, int lane) { return absl::StrCat(var, "[", lane, "]"); }
  // Loops other than serial ones (unrolled ones are gone by now).
  virtual void PrintSpecialLoop(const ir::For* op) = 0;
  // Buffers of any scope but registers; `type` is the element type's name.
  virtual void PrintAllocate(const ir::Allocate* op, const std::string& type) = 0;
  void VisitBarrier(const ir::Barrier*) override { Fail("barriers cannot be printed as C"); }
  // Checks that the dialect defines intrinsic `name` (and notes that the
  // prelude needs it); the call itself is printed here.
  virtual bool HasIntrinsic(const std::string& name) {
    (void)name;
    return false;
  }

  std::ostream& Line() { return *out_ << std::string(indent_ * 2, ' '); }
  void Fail(std::string msg);
  static std::string ScalarType(const ir::Type& t);
  std::string TypeName(const ir::Type& t) { return t.is_vector() ? VectorType(t) : ScalarType(t); }
  // `for (int64_t v = min; ...) { body }`; `canonical`: the bound is an
  // expression of `min`, as OpenMP's loop form wants.
  void PrintLoop(const ir::For* op, bool canonical);

  std::ostream* out_ = nullptr;
  int indent_ = 0;

 private:
  std::string RegisterElement(const std::string& buffer, const ir::Expr& index);
  void Binary(const ir::Expr& a, const char* sym, const ir::Expr& b);
  void MinMax(const char* fn, const ir::Expr& a, const ir::Expr& b);

  void VisitIntImm(const ir::IntImm* op) override;
  void VisitFloatImm(const ir::FloatImm* op) override;
  void VisitVar(const ir::Var* op) override { *out_ << op->name; }
  void VisitAdd(const ir::Add* op) override { Binary(op->a, "+", op->b); }
  void VisitSub(const ir::Sub* op) override { Binary(op->a, "-", op->b); }
  void VisitMul(const ir::Mul* op) override { Binary(op->a, "*", op->b); }
  void VisitDiv(const ir::Div* op) override { Binary(op->a, "/", op->b); }
  void VisitMod(const ir::Mod* op) override { Binary(op->a, "%", op->b); }
  void VisitLT(const ir::LT* op) override { Binary(op->a, "<", op->b); }
  void VisitLE(const ir::LE* op) override { Binary(op->a, "<=", op->b); }
  void VisitEQ(const ir::EQ* op) override { Binary(op->a, "==", op->b); }
  void VisitAnd(const ir::And* op) override { Binary(op->a, "&&", op->b); }
  void VisitMin(const ir::Min* op) override { MinMax("tf_min", op->a, op->b); }
  void VisitMax(const ir::Max* op) override { MinMax("tf_max", op->a, op->b); }
  void VisitSelect(const ir::Select* op) override;
  void VisitLoad(const ir::Load* op) override;
  void VisitBroadcast(const ir::Broadcast* op) override;
  void VisitLetStmt(const ir::LetStmt* op) override;
  void VisitFor(const ir::For* op) override;
  void VisitStore(const ir::Store* op) override;
  void VisitAllocate(const ir::Allocate* op) override;
  void VisitIfThenElse(const ir::IfThenElse* op) override;
  void VisitCall(const ir::Call* op) override;
  void VisitEvaluate(const ir::Evaluate* op) override;

  std::map<std::string, ir::Type> registers_;  // register buffers in scope: element type
  absl::Status error_;
};

}  // namespace tunefarm::kernels
