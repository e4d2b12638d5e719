#include "tunefarm/kernels/ir.h"

#include <charconv>
#include <sstream>
#include <unordered_map>

#include "check.h"

namespace tunefarm::kernels::ir {

const char* ForKindName(ForKind k) {
  switch (k) {
    case ForKind::kSerial: return "serial";
    case ForKind::kParallel: return "parallel";
    case ForKind::kVectorized: return "vectorized";
    case ForKind::kUnrolled: return "unrolled";
    case ForKind::kGpuBlock: return "gpu_block";
    case ForKind::kGpuThread: return "gpu_thread";
    case ForKind::kTeam: return "team";
  }
  return "?";
}

const char* MemoryScopeName(MemoryScope s) {
  switch (s) {
    case MemoryScope::kHeap: return "heap";
    case MemoryScope::kStack: return "stack";
    case MemoryScope::kRegister: return "register";
    case MemoryScope::kShared: return "shared";
    case MemoryScope::kLocal: return "local";
    case MemoryScope::kModule:
      return "module";
  }
  return "?";
}

Expr::Expr(int64_t v) : node_(std::make_shared<IntImm>(v)) {}

Expr IntImm::Make(int64_t v) { return Expr(std::make_shared<IntImm>(v)); }

Expr FloatImm::Make(double v, Type t) {
  TF_CHECK(t.is_float() && !t.is_vector(), "FloatImm needs a scalar float type");
  return Expr(std::make_shared<FloatImm>(v, t));
}

Expr Var::Make(std::string name, Type t) {
  TF_CHECK(!name.empty(), "variable without a name");
  return Expr(std::make_shared<Var>(std::move(name), t));
}

namespace {
Type CheckBinary(const Expr& a, const Expr& b, bool comparison) {
  TF_CHECK(a.defined() && b.defined(), "binary operand undefined");
  TF_CHECK(a.type() == b.type(), "binary operands differ in type");
  return comparison ? Type::Bool().WithLanes(a.type().lanes) : a.type();
}
}  // namespace

#define TUNEFARM_DEFINE_BINARY(N, CMP)                               \
  Expr N::Make(Expr a, Expr b) {                                     \
    Type t = CheckBinary(a, b, CMP);                                 \
    return Expr(std::make_shared<N>(std::move(a), std::move(b), t)); \
  }
TUNEFARM_DEFINE_BINARY(Add, false)
TUNEFARM_DEFINE_BINARY(Sub, false)
TUNEFARM_DEFINE_BINARY(Mul, false)
TUNEFARM_DEFINE_BINARY(Div, false)
TUNEFARM_DEFINE_BINARY(Mod, false)
TUNEFARM_DEFINE_BINARY(Min, false)
TUNEFARM_DEFINE_BINARY(Max, false)
TUNEFARM_DEFINE_BINARY(LT, true)
TUNEFARM_DEFINE_BINARY(LE, true)
TUNEFARM_DEFINE_BINARY(EQ, true)
#undef TUNEFARM_DEFINE_BINARY

Expr And::Make(Expr a, Expr b) {
  Type t = CheckBinary(a, b, false);
  TF_CHECK(t.is_bool(), "And needs boolean operands");
  return Expr(std::make_shared<And>(std::move(a), std::move(b), t));
}

Expr Select::Make(Expr cond, Expr t, Expr f) {
  TF_CHECK(cond.defined() && cond.type().is_bool(), "Select condition must be boolean");
  TF_CHECK(t.type() == f.type(), "Select branches differ in type");
  return Expr(std::make_shared<Select>(std::move(cond), std::move(t), std::move(f)));
}

Expr Load::Make(std::string buffer, Expr index, Type t) {
  TF_CHECK(!buffer.empty(), "Load from unnamed buffer");
  TF_CHECK(index.defined() && index.type().is_int() && !index.type().is_vector(), "Load index must be a scalar int");
  return Expr(std::make_shared<Load>(std::move(buffer), std::move(index), t));
}

Expr Broadcast::Make(Expr value, int lanes) {
  TF_CHECK(value.defined() && !value.type().is_vector(), "Broadcast of a vector");
  TF_CHECK(lanes >= 1, "Broadcast lanes");
  if (lanes == 1) return value;
  return Expr(std::make_shared<Broadcast>(std::move(value), lanes));
}

Stmt LetStmt::Make(std::string name, Expr value, Stmt body) {
  TF_CHECK(value.defined() && body.defined(), "LetStmt needs a value and a body");
  return Stmt(std::make_shared<LetStmt>(std::move(name), std::move(value), std::move(body)));
}

Stmt For::Make(std::string var, Expr min, Expr extent, ForKind kind, Stmt body) {
  TF_CHECK(min.defined() && extent.defined() && body.defined(), "For needs min, extent and body");
  TF_CHECK(min.type().is_int() && extent.type().is_int(), "For bounds must be integers");
  return Stmt(std::make_shared<For>(std::move(var), std::move(min), std::move(extent), kind, std::move(body)));
}

Stmt Store::Make(std::string buffer, Expr value, Expr index) {
  TF_CHECK(value.defined() && index.defined(), "Store needs value and index");
  TF_CHECK(index.type().is_int() && !index.type().is_vector(), "Store index must be a scalar int");
  return Stmt(std::make_shared<Store>(std::move(buffer), std::move(value), std::move(index)));
}

Stmt Allocate::Make(std::string name, Type type, Expr extent, MemoryScope scope, Stmt body) {
  TF_CHECK(extent.defined() && body.defined(), "Allocate needs extent and body");
  if (scope == MemoryScope::kRegister) {
    TF_CHECK(Simplify(extent).as<IntImm>() != nullptr, "register allocations need a constant extent");
  }
  return Stmt(std::make_shared<Allocate>(std::move(name), type, std::move(extent), scope, std::move(body)));
}

Stmt IfThenElse::Make(Expr cond, Stmt then_case, Stmt else_case) {
  TF_CHECK(cond.defined() && cond.type().is_bool() && then_case.defined(), "IfThenElse needs cond and then");
  return Stmt(std::make_shared<IfThenElse>(std::move(cond), std::move(then_case), std::move(else_case)));
}

Stmt Block::Make(std::vector<Stmt> stmts) {
  std::vector<Stmt> flat;
  for (auto& s : stmts) {
    if (!s.defined()) continue;
    if (const Block* b = s.as<Block>()) {
      flat.insert(flat.end(), b->stmts.begin(), b->stmts.end());
    } else {
      flat.push_back(std::move(s));
    }
  }
  if (flat.size() == 1) return flat[0];
  return Stmt(std::make_shared<Block>(std::move(flat)));
}

Stmt Barrier::Make() { return Stmt(std::make_shared<Barrier>()); }

Expr Call::Make(std::string name, std::vector<Expr> args, Type t) {
  TF_CHECK(!name.empty(), "Call of an unnamed intrinsic");
  for (const Expr& a : args) TF_CHECK(a.defined(), "Call argument");
  return Expr(std::make_shared<Call>(std::move(name), std::move(args), t));
}

int64_t IntrinsicFlops(const Call& call) {
  if (call.name == "tf_fma_mem") return 2 * call.type.lanes;
  if (call.name == "tf_mma_tf32_m16n8k8") return 2 * 16 * 8 * 8 / 32;
  if (std::optional<int64_t> n = WgmmaWidth(call.name)) return 2 * 64 * 8 * *n / 128;
  return 0;
}

namespace {
constexpr std::string_view kWgmmaPrefix = "tf_wgmma_tf32_n";
}  // namespace

std::string WgmmaIntrinsic(int64_t n) { return std::string(kWgmmaPrefix) + std::to_string(n); }

std::optional<int64_t> WgmmaWidth(std::string_view name) {
  if (name.substr(0, kWgmmaPrefix.size()) != kWgmmaPrefix) return std::nullopt;
  const std::string_view digits = name.substr(kWgmmaPrefix.size());
  int64_t n = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (error != std::errc() || end != digits.data() + digits.size() || n < 8 || n > 256 || n % 8 != 0) {
    return std::nullopt;
  }
  return n;
}

Stmt Evaluate::Make(Expr call) {
  TF_CHECK(call.as<Call>() != nullptr, "Evaluate of something other than a Call");
  return Stmt(std::make_shared<Evaluate>(std::move(call)));
}

Expr operator+(Expr a, Expr b) { return Add::Make(std::move(a), std::move(b)); }
Expr operator-(Expr a, Expr b) { return Sub::Make(std::move(a), std::move(b)); }
Expr operator*(Expr a, Expr b) { return Mul::Make(std::move(a), std::move(b)); }
Expr operator/(Expr a, Expr b) { return Div::Make(std::move(a), std::move(b)); }
Expr operator%(Expr a, Expr b) { return Mod::Make(std::move(a), std::move(b)); }
Expr operator<(Expr a, Expr b) { return LT::Make(std::move(a), std::move(b)); }
Expr operator<=(Expr a, Expr b) { return LE::Make(std::move(a), std::move(b)); }
Expr operator&&(Expr a, Expr b) { return And::Make(std::move(a), std::move(b)); }
Expr min(Expr a, Expr b) { return Min::Make(std::move(a), std::move(b)); }
Expr max(Expr a, Expr b) { return Max::Make(std::move(a), std::move(b)); }

// ---- Visitor ----

void Visitor::Visit(const Expr& e) {
  if (!e.defined()) return;
  switch (e->kind) {
#define TUNEFARM_CASE(N) \
  case NodeKind::k##N: return Visit##N(static_cast<const N*>(e.get()));
    TUNEFARM_FOR_EACH_EXPR(TUNEFARM_CASE)
#undef TUNEFARM_CASE
    default: TF_CHECK(false, "statement kind in an expression");
  }
}

void Visitor::Visit(const Stmt& s) {
  if (!s.defined()) return;
  switch (s->kind) {
#define TUNEFARM_CASE(N) \
  case NodeKind::k##N: return Visit##N(static_cast<const N*>(s.get()));
    TUNEFARM_FOR_EACH_STMT(TUNEFARM_CASE)
#undef TUNEFARM_CASE
    default: TF_CHECK(false, "expression kind in a statement");
  }
}

void Visitor::VisitIntImm(const IntImm*) {}
void Visitor::VisitFloatImm(const FloatImm*) {}
void Visitor::VisitVar(const Var*) {}
#define TUNEFARM_VISIT_BINARY(N) \
  void Visitor::Visit##N(const N* op) { Visit(op->a); Visit(op->b); }
TUNEFARM_VISIT_BINARY(Add)
TUNEFARM_VISIT_BINARY(Sub)
TUNEFARM_VISIT_BINARY(Mul)
TUNEFARM_VISIT_BINARY(Div)
TUNEFARM_VISIT_BINARY(Mod)
TUNEFARM_VISIT_BINARY(Min)
TUNEFARM_VISIT_BINARY(Max)
TUNEFARM_VISIT_BINARY(LT)
TUNEFARM_VISIT_BINARY(LE)
TUNEFARM_VISIT_BINARY(EQ)
TUNEFARM_VISIT_BINARY(And)
#undef TUNEFARM_VISIT_BINARY
void Visitor::VisitSelect(const Select* op) {
  Visit(op->cond);
  Visit(op->true_value);
  Visit(op->false_value);
}
void Visitor::VisitLoad(const Load* op) { Visit(op->index); }
void Visitor::VisitBroadcast(const Broadcast* op) { Visit(op->value); }
void Visitor::VisitLetStmt(const LetStmt* op) {
  Visit(op->value);
  Visit(op->body);
}
void Visitor::VisitFor(const For* op) {
  Visit(op->min);
  Visit(op->extent);
  Visit(op->body);
}
void Visitor::VisitStore(const Store* op) {
  Visit(op->value);
  Visit(op->index);
}
void Visitor::VisitAllocate(const Allocate* op) {
  Visit(op->extent);
  Visit(op->body);
}
void Visitor::VisitIfThenElse(const IfThenElse* op) {
  Visit(op->cond);
  Visit(op->then_case);
  Visit(op->else_case);
}
void Visitor::VisitBlock(const Block* op) {
  for (const Stmt& s : op->stmts) Visit(s);
}
void Visitor::VisitBarrier(const Barrier*) {}
void Visitor::VisitCall(const Call* op) {
  for (const Expr& a : op->args) Visit(a);
}
void Visitor::VisitEvaluate(const Evaluate* op) { Visit(op->call); }

// ---- Mutator ----

Expr Mutator::Mutate(const Expr& e) {
  if (!e.defined()) return e;
  switch (e->kind) {
#define TUNEFARM_CASE(N) \
  case NodeKind::k##N: return Mutate##N(static_cast<const N*>(e.get()), e);
    TUNEFARM_FOR_EACH_EXPR(TUNEFARM_CASE)
#undef TUNEFARM_CASE
    default: TF_CHECK(false, "statement kind in an expression");
  }
  return e;
}

Stmt Mutator::Mutate(const Stmt& s) {
  if (!s.defined()) return s;
  switch (s->kind) {
#define TUNEFARM_CASE(N) \
  case NodeKind::k##N: return Mutate##N(static_cast<const N*>(s.get()), s);
    TUNEFARM_FOR_EACH_STMT(TUNEFARM_CASE)
#undef TUNEFARM_CASE
    default: TF_CHECK(false, "expression kind in a statement");
  }
  return s;
}

Expr Mutator::MutateIntImm(const IntImm*, const Expr& self) { return self; }
Expr Mutator::MutateFloatImm(const FloatImm*, const Expr& self) { return self; }
Expr Mutator::MutateVar(const Var*, const Expr& self) { return self; }
#define TUNEFARM_MUTATE_BINARY(N)                                 \
  Expr Mutator::Mutate##N(const N* op, const Expr& self) {        \
    Expr a = Mutate(op->a), b = Mutate(op->b);                    \
    if (a.same_as(op->a) && b.same_as(op->b)) return self;        \
    return N::Make(std::move(a), std::move(b));                   \
  }
TUNEFARM_MUTATE_BINARY(Add)
TUNEFARM_MUTATE_BINARY(Sub)
TUNEFARM_MUTATE_BINARY(Mul)
TUNEFARM_MUTATE_BINARY(Div)
TUNEFARM_MUTATE_BINARY(Mod)
TUNEFARM_MUTATE_BINARY(Min)
TUNEFARM_MUTATE_BINARY(Max)
TUNEFARM_MUTATE_BINARY(LT)
TUNEFARM_MUTATE_BINARY(LE)
TUNEFARM_MUTATE_BINARY(EQ)
TUNEFARM_MUTATE_BINARY(And)
#undef TUNEFARM_MUTATE_BINARY
Expr Mutator::MutateSelect(const Select* op, const Expr& self) {
  Expr c = Mutate(op->cond), t = Mutate(op->true_value), f = Mutate(op->false_value);
  if (c.same_as(op->cond) && t.same_as(op->true_value) && f.same_as(op->false_value)) return self;
  return Select::Make(c, t, f);
}
Expr Mutator::MutateLoad(const Load* op, const Expr& self) {
  Expr i = Mutate(op->index);
  if (i.same_as(op->index)) return self;
  return Load::Make(op->buffer, i, op->type);
}
Expr Mutator::MutateBroadcast(const Broadcast* op, const Expr& self) {
  Expr v = Mutate(op->value);
  if (v.same_as(op->value)) return self;
  return Broadcast::Make(v, op->type.lanes);
}
Stmt Mutator::MutateLetStmt(const LetStmt* op, const Stmt& self) {
  Expr v = Mutate(op->value);
  Stmt b = Mutate(op->body);
  if (v.same_as(op->value) && b.same_as(op->body)) return self;
  return LetStmt::Make(op->name, v, b);
}
Stmt Mutator::MutateFor(const For* op, const Stmt& self) {
  Expr mn = Mutate(op->min), ext = Mutate(op->extent);
  Stmt b = Mutate(op->body);
  if (mn.same_as(op->min) && ext.same_as(op->extent) && b.same_as(op->body)) return self;
  return For::Make(op->var, mn, ext, op->for_kind, b);
}
Stmt Mutator::MutateStore(const Store* op, const Stmt& self) {
  Expr v = Mutate(op->value), i = Mutate(op->index);
  if (v.same_as(op->value) && i.same_as(op->index)) return self;
  return Store::Make(op->buffer, v, i);
}
Stmt Mutator::MutateAllocate(const Allocate* op, const Stmt& self) {
  Expr e = Mutate(op->extent);
  Stmt b = Mutate(op->body);
  if (e.same_as(op->extent) && b.same_as(op->body)) return self;
  return Allocate::Make(op->name, op->type, e, op->scope, b);
}
Stmt Mutator::MutateIfThenElse(const IfThenElse* op, const Stmt& self) {
  Expr c = Mutate(op->cond);
  Stmt t = Mutate(op->then_case), e = Mutate(op->else_case);
  if (c.same_as(op->cond) && t.same_as(op->then_case) && e.same_as(op->else_case)) return self;
  return IfThenElse::Make(c, t, e);
}
Stmt Mutator::MutateBlock(const Block* op, const Stmt& self) {
  std::vector<Stmt> out;
  bool changed = false;
  for (const Stmt& s : op->stmts) {
    out.push_back(Mutate(s));
    changed |= !out.back().same_as(s);
  }
  if (!changed) return self;
  return Block::Make(std::move(out));
}
Stmt Mutator::MutateBarrier(const Barrier*, const Stmt& self) { return self; }
Expr Mutator::MutateCall(const Call* op, const Expr& self) {
  std::vector<Expr> args;
  bool changed = false;
  for (const Expr& a : op->args) {
    args.push_back(Mutate(a));
    changed |= !args.back().same_as(a);
  }
  if (!changed) return self;
  return Call::Make(op->name, std::move(args), op->type);
}
Stmt Mutator::MutateEvaluate(const Evaluate* op, const Stmt& self) {
  Expr c = Mutate(op->call);
  if (c.same_as(op->call)) return self;
  return Evaluate::Make(c);
}

// ---- passes ----

namespace {

class Substituter : public Mutator {
 public:
  Substituter(const std::string& name, const Expr& value) : name_(name), value_(value) {}

 protected:
  Expr MutateVar(const Var* op, const Expr& self) override { return op->name == name_ ? value_ : self; }

 private:
  const std::string& name_;
  const Expr& value_;
};

const int64_t* AsConst(const Expr& e) {
  const IntImm* imm = e.as<IntImm>();
  return imm ? &imm->value : nullptr;
}

class Simplifier : public Mutator {
 protected:
  Expr MutateAdd(const Add* op, const Expr& self) override {
    Expr a = Mutate(op->a), b = Mutate(op->b);
    const int64_t *ca = AsConst(a), *cb = AsConst(b);
    if (ca && cb) return IntImm::Make(*ca + *cb);
    if (ca && *ca == 0) return b;
    if (cb && *cb == 0) return a;
    // (x + c1) + c2 -> x + (c1 + c2): keeps unrolled indices compact.
    if (cb) {
      if (const Add* inner = a.as<Add>()) {
        if (const int64_t* c1 = AsConst(inner->b)) return inner->a + IntImm::Make(*c1 + *cb);
      }
    }
    return Rebuild<Add>(op, self, a, b);
  }
  Expr MutateSub(const Sub* op, const Expr& self) override {
    Expr a = Mutate(op->a), b = Mutate(op->b);
    const int64_t *ca = AsConst(a), *cb = AsConst(b);
    if (ca && cb) return IntImm::Make(*ca - *cb);
    if (cb && *cb == 0) return a;
    return Rebuild<Sub>(op, self, a, b);
  }
  Expr MutateMul(const Mul* op, const Expr& self) override {
    Expr a = Mutate(op->a), b = Mutate(op->b);
    const int64_t *ca = AsConst(a), *cb = AsConst(b);
    if (ca && cb) return IntImm::Make(*ca * *cb);
    if ((ca && *ca == 0) || (cb && *cb == 0)) {
      if (a.type().is_int()) return IntImm::Make(0);
    }
    if (ca && *ca == 1) return b;
    if (cb && *cb == 1) return a;
    return Rebuild<Mul>(op, self, a, b);
  }
  Expr MutateDiv(const Div* op, const Expr& self) override {
    Expr a = Mutate(op->a), b = Mutate(op->b);
    const int64_t *ca = AsConst(a), *cb = AsConst(b);
    if (ca && cb && *cb != 0) return IntImm::Make(*ca / *cb);
    if (cb && *cb == 1) return a;
    return Rebuild<Div>(op, self, a, b);
  }
  Expr MutateMod(const Mod* op, const Expr& self) override {
    Expr a = Mutate(op->a), b = Mutate(op->b);
    const int64_t *ca = AsConst(a), *cb = AsConst(b);
    if (ca && cb && *cb != 0) return IntImm::Make(*ca % *cb);
    if (cb && *cb == 1 && a.type().is_int()) return IntImm::Make(0);
    return Rebuild<Mod>(op, self, a, b);
  }
  Expr MutateMin(const Min* op, const Expr& self) override {
    Expr a = Mutate(op->a), b = Mutate(op->b);
    const int64_t *ca = AsConst(a), *cb = AsConst(b);
    if (ca && cb) return IntImm::Make(std::min(*ca, *cb));
    return Rebuild<Min>(op, self, a, b);
  }
  Expr MutateMax(const Max* op, const Expr& self) override {
    Expr a = Mutate(op->a), b = Mutate(op->b);
    const int64_t *ca = AsConst(a), *cb = AsConst(b);
    if (ca && cb) return IntImm::Make(std::max(*ca, *cb));
    return Rebuild<Max>(op, self, a, b);
  }

 private:
  template <typename N>
  static Expr Rebuild(const N* op, const Expr& self, const Expr& a, const Expr& b) {
    if (a.same_as(op->a) && b.same_as(op->b)) return self;
    return N::Make(a, b);
  }
};

class Unroller : public Mutator {
 protected:
  Stmt MutateFor(const For* op, const Stmt& self) override {
    Stmt body = Mutate(op->body);
    if (op->for_kind != ForKind::kUnrolled) {
      if (body.same_as(op->body)) return self;
      return For::Make(op->var, op->min, op->extent, op->for_kind, body);
    }
    Expr ext = Simplify(op->extent);
    const IntImm* n = ext.as<IntImm>();
    TF_CHECK(n != nullptr, "unrolled loop with a non-constant extent");
    std::vector<Stmt> copies;
    for (int64_t i = 0; i < n->value; ++i) {
      copies.push_back(Simplify(Substitute(body, op->var, Simplify(op->min + IntImm::Make(i)))));
    }
    return Block::Make(std::move(copies));
  }
};

class Printer : public Visitor {
 public:
  std::ostringstream os;
  int indent = 0;

 protected:
  void Line() { os << std::string(indent * 2, ' '); }
  void VisitIntImm(const IntImm* op) override { os << op->value; }
  void VisitFloatImm(const FloatImm* op) override { os << op->value << "f"; }
  void VisitVar(const Var* op) override { os << op->name; }
#define TUNEFARM_PRINT_BINARY(N, S)                   \
  void Visit##N(const N* op) override {               \
    os << "(";                                        \
    Visitor::Visit(op->a);                            \
    os << " " S " ";                                  \
    Visitor::Visit(op->b);                            \
    os << ")";                                        \
  }
  TUNEFARM_PRINT_BINARY(Add, "+")
  TUNEFARM_PRINT_BINARY(Sub, "-")
  TUNEFARM_PRINT_BINARY(Mul, "*")
  TUNEFARM_PRINT_BINARY(Div, "/")
  TUNEFARM_PRINT_BINARY(Mod, "%")
  TUNEFARM_PRINT_BINARY(LT, "<")
  TUNEFARM_PRINT_BINARY(LE, "<=")
  TUNEFARM_PRINT_BINARY(EQ, "==")
  TUNEFARM_PRINT_BINARY(And, "&&")
#undef TUNEFARM_PRINT_BINARY
  void VisitMin(const Min* op) override {
    os << "min(";
    Visitor::Visit(op->a);
    os << ", ";
    Visitor::Visit(op->b);
    os << ")";
  }
  void VisitMax(const Max* op) override {
    os << "max(";
    Visitor::Visit(op->a);
    os << ", ";
    Visitor::Visit(op->b);
    os << ")";
  }
  void VisitSelect(const Select* op) override {
    os << "select(";
    Visitor::Visit(op->cond);
    os << ", ";
    Visitor::Visit(op->true_value);
    os << ", ";
    Visitor::Visit(op->false_value);
    os << ")";
  }
  void VisitLoad(const Load* op) override {
    os << op->buffer << "[";
    Visitor::Visit(op->index);
    if (op->type.lanes > 1) os << " x" << op->type.lanes;
    os << "]";
  }
  void VisitBroadcast(const Broadcast* op) override {
    os << "x" << op->type.lanes << "(";
    Visitor::Visit(op->value);
    os << ")";
  }
  void VisitLetStmt(const LetStmt* op) override {
    Line();
    os << "let " << op->name << " = ";
    Visitor::Visit(op->value);
    os << "\n";
    Visitor::Visit(op->body);
  }
  void VisitFor(const For* op) override {
    Line();
    os << ForKindName(op->for_kind) << " for (" << op->var << ", ";
    Visitor::Visit(op->min);
    os << ", ";
    Visitor::Visit(op->extent);
    os << ") {\n";
    ++indent;
    Visitor::Visit(op->body);
    --indent;
    Line();
    os << "}\n";
  }
  void VisitStore(const Store* op) override {
    Line();
    os << op->buffer << "[";
    Visitor::Visit(op->index);
    if (op->value.type().lanes > 1) os << " x" << op->value.type().lanes;
    os << "] = ";
    Visitor::Visit(op->value);
    os << "\n";
  }
  void VisitAllocate(const Allocate* op) override {
    Line();
    os << "allocate " << op->name << "[";
    Visitor::Visit(op->extent);
    os << "] in " << MemoryScopeName(op->scope) << "\n";
    Visitor::Visit(op->body);
  }
  void VisitIfThenElse(const IfThenElse* op) override {
    Line();
    os << "if (";
    Visitor::Visit(op->cond);
    os << ") {\n";
    ++indent;
    Visitor::Visit(op->then_case);
    --indent;
    if (op->else_case.defined()) {
      Line();
      os << "} else {\n";
      ++indent;
      Visitor::Visit(op->else_case);
      --indent;
    }
    Line();
    os << "}\n";
  }
  void VisitBarrier(const Barrier*) override {
    Line();
    os << "barrier\n";
  }
  void VisitCall(const Call* op) override {
    os << op->name << "(";
    for (size_t i = 0; i < op->args.size(); ++i) {
      if (i) os << ", ";
      Visitor::Visit(op->args[i]);
    }
    os << ")";
  }
  void VisitEvaluate(const Evaluate* op) override {
    Line();
    Visitor::Visit(op->call);
    os << "\n";
  }
};

}  // namespace

Stmt Substitute(const Stmt& s, const std::string& name, const Expr& value) {
  return Substituter(name, value).Mutate(s);
}
Expr Substitute(const Expr& e, const std::string& name, const Expr& value) {
  return Substituter(name, value).Mutate(e);
}
Expr Simplify(const Expr& e) { return Simplifier().Mutate(e); }
Stmt Simplify(const Stmt& s) { return Simplifier().Mutate(s); }
Stmt UnrollLoops(const Stmt& s) { return Unroller().Mutate(s); }

std::string ToString(const Expr& e) {
  Printer p;
  p.Visit(e);
  return p.os.str();
}
std::string ToString(const Stmt& s) {
  Printer p;
  p.Visit(s);
  return p.os.str();
}

}  // namespace tunefarm::kernels::ir
