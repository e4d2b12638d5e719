#include "tunefarm/cost_model/features.h"

#include <cmath>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

namespace tunefarm::cost_model {
namespace {

using namespace kernels::ir;  // NOLINT: this file reads IR

float Log2p(double x) { return static_cast<float>(std::log2(1.0 + std::max(0.0, x))); }

struct Loop {
  int id;
  std::string var;
  int64_t min;
  int64_t extent;
  ForKind kind;
};

struct Access {
  std::string buffer;
  Expr index;  // Let-free: only loop variables remain
  int bytes;   // per element
  std::vector<Loop> loops;
};

// Evaluates integer expressions with every loop variable at a chosen value.
std::optional<int64_t> Eval(const Expr& e, const std::unordered_map<std::string, int64_t>& vars) {
  if (!e.defined()) return std::nullopt;
  if (const IntImm* i = e.as<IntImm>()) return i->value;
  if (const Var* v = e.as<Var>()) {
    auto it = vars.find(v->name);
    return it == vars.end() ? std::nullopt : std::optional<int64_t>(it->second);
  }
  auto bin = [&](const Expr& a, const Expr& b, auto op) -> std::optional<int64_t> {
    auto x = Eval(a, vars), y = Eval(b, vars);
    if (!x || !y) return std::nullopt;
    return op(*x, *y);
  };
  switch (e->kind) {
    case NodeKind::kAdd: return bin(e.as<Add>()->a, e.as<Add>()->b, [](int64_t x, int64_t y) { return x + y; });
    case NodeKind::kSub: return bin(e.as<Sub>()->a, e.as<Sub>()->b, [](int64_t x, int64_t y) { return x - y; });
    case NodeKind::kMul: return bin(e.as<Mul>()->a, e.as<Mul>()->b, [](int64_t x, int64_t y) { return x * y; });
    case NodeKind::kDiv:
      return bin(e.as<Div>()->a, e.as<Div>()->b, [](int64_t x, int64_t y) { return y == 0 ? 0 : x / y; });
    case NodeKind::kMod:
      return bin(e.as<Mod>()->a, e.as<Mod>()->b, [](int64_t x, int64_t y) { return y == 0 ? 0 : x % y; });
    case NodeKind::kMin: return bin(e.as<Min>()->a, e.as<Min>()->b, [](int64_t x, int64_t y) { return std::min(x, y); });
    case NodeKind::kMax: return bin(e.as<Max>()->a, e.as<Max>()->b, [](int64_t x, int64_t y) { return std::max(x, y); });
    case NodeKind::kLT: return bin(e.as<LT>()->a, e.as<LT>()->b, [](int64_t x, int64_t y) { return int64_t{x < y}; });
    case NodeKind::kLE: return bin(e.as<LE>()->a, e.as<LE>()->b, [](int64_t x, int64_t y) { return int64_t{x <= y}; });
    case NodeKind::kEQ: return bin(e.as<EQ>()->a, e.as<EQ>()->b, [](int64_t x, int64_t y) { return int64_t{x == y}; });
    case NodeKind::kAnd:
      return bin(e.as<And>()->a, e.as<And>()->b, [](int64_t x, int64_t y) { return int64_t{x && y}; });
    case NodeKind::kSelect: {
      const Select* s = e.as<Select>();
      auto c = Eval(s->cond, vars);
      if (!c) return std::nullopt;
      return Eval(*c ? s->true_value : s->false_value, vars);
    }
    default: return std::nullopt;
  }
}

// Replaces Let-bound names by their (already Let-free) values.
class Inliner : public Mutator {
 public:
  explicit Inliner(const std::unordered_map<std::string, Expr>& lets) : lets_(lets) {}

 protected:
  Expr MutateVar(const Var* op, const Expr& self) override {
    auto it = lets_.find(op->name);
    return it == lets_.end() ? self : it->second;
  }

 private:
  const std::unordered_map<std::string, Expr>& lets_;
};

int FloatOps(const Expr& e) {
  struct Counter : Visitor {
    int ops = 0;
    void Count(const ExprNode* n) {
      if (n->type.is_float()) ops += n->type.lanes;
    }
    void VisitAdd(const Add* op) override { Count(op), Visitor::VisitAdd(op); }
    void VisitSub(const Sub* op) override { Count(op), Visitor::VisitSub(op); }
    void VisitMul(const Mul* op) override { Count(op), Visitor::VisitMul(op); }
    void VisitDiv(const Div* op) override { Count(op), Visitor::VisitDiv(op); }
    void VisitMin(const Min* op) override { Count(op), Visitor::VisitMin(op); }
    void VisitMax(const Max* op) override { Count(op), Visitor::VisitMax(op); }
    void VisitCall(const Call* op) override {
      ops += static_cast<int>(IntrinsicFlops(*op));
      Visitor::VisitCall(op);
    }
  } c;
  c.Visit(e);
  return c.ops;
}

// Walks the nest once, following the branch each IfThenElse takes at the
// first iteration, and remembers the statement doing the most work.
class Walker : public Visitor {
 public:
  struct Hot {
    double work = -1;
    double count = 0;
    int lanes = 1;
    std::vector<Loop> loops;
  } hot;
  std::vector<Access> accesses;
  double flops = 0, bytes_loaded = 0, bytes_stored = 0, heap_bytes = 0;
  double register_elements = 0;
  int heap_allocs = 0;

 protected:
  double Count() const {
    double n = 1;
    for (const Loop& l : loops_) n *= static_cast<double>(l.extent);
    return n;
  }
  std::unordered_map<std::string, int64_t> LoopValues() const {
    std::unordered_map<std::string, int64_t> v;
    for (const Loop& l : loops_) v[l.var] = l.min;
    return v;
  }
  // Records memory reads in `e` (register buffers are not memory).
  void Reads(const Expr& e) {
    struct Loads : Visitor {
      std::vector<const Load*> found;
      void VisitLoad(const Load* op) override {
        found.push_back(op);
        Visitor::VisitLoad(op);
      }
    } loads;
    loads.Visit(e);
    for (const Load* l : loads.found) {
      if (registers_.count(l->buffer)) continue;
      bytes_loaded += Count() * l->type.lanes * l->type.bits / 8;
      Touch(l->buffer, l->index, l->type.bits / 8);
    }
  }
  void Touch(const std::string& buffer, const Expr& index, int bytes) {
    accesses.push_back({buffer, Inliner(lets_).Mutate(index), bytes, loops_});
  }

  void VisitLetStmt(const LetStmt* op) override {
    Reads(op->value);
    Expr saved = lets_.count(op->name) ? lets_[op->name] : Expr();
    lets_[op->name] = Inliner(lets_).Mutate(op->value);
    Visitor::Visit(op->body);
    if (saved.defined()) {
      lets_[op->name] = saved;
    } else {
      lets_.erase(op->name);
    }
  }
  void VisitFor(const For* op) override {
    auto values = LoopValues();
    auto inline_eval = [&](const Expr& e) { return Eval(Inliner(lets_).Mutate(e), values); };
    int64_t mn = inline_eval(op->min).value_or(0);
    int64_t ext = inline_eval(op->extent).value_or(1);
    if (ext <= 0) return;  // a loop that does not run at its first visit (e.g. an empty tail)
    loops_.push_back({next_loop_id_++, op->var, mn, ext, op->for_kind});
    Visitor::Visit(op->body);
    loops_.pop_back();
  }
  void VisitIfThenElse(const IfThenElse* op) override {
    auto c = Eval(Inliner(lets_).Mutate(op->cond), LoopValues());
    if (!c || *c) Visitor::Visit(op->then_case);
    if (!c || !*c) Visitor::Visit(op->else_case);
  }
  void VisitAllocate(const Allocate* op) override {
    double n = static_cast<double>(Eval(op->extent, LoopValues()).value_or(0)) * op->type.lanes;
    if (op->scope == MemoryScope::kRegister) {
      registers_.insert(op->name);
      register_elements += n;
    } else if (op->scope == MemoryScope::kHeap) {
      heap_bytes += n * op->type.bits / 8;
      ++heap_allocs;
    }
    Visitor::Visit(op->body);
  }
  void VisitStore(const Store* op) override {
    const double count = Count();
    const int lanes = op->value.type().lanes;
    Reads(op->value);
    flops += count * FloatOps(op->value);
    if (!registers_.count(op->buffer)) {
      bytes_stored += count * lanes * op->value.type().bits / 8;
      Touch(op->buffer, op->index, op->value.type().bits / 8);
    }
    double work = count * lanes * std::max(1, FloatOps(op->value));
    if (work > hot.work) hot = {work, count, lanes, loops_};
  }
  // A call for its effect: a tensor-core operation's work and reads.
  void VisitEvaluate(const Evaluate* op) override {
    const double count = Count();
    Reads(op->call);
    const int ops = FloatOps(op->call);
    flops += count * ops;
    const double work = count * std::max(1, ops);
    if (work > hot.work) hot = {work, count, 1, loops_};
  }

 private:
  std::vector<Loop> loops_;
  std::unordered_map<std::string, Expr> lets_;
  std::unordered_set<std::string> registers_;
  int next_loop_id_ = 0;
};

}  // namespace

size_t FeatureCount(const kernels::ConfigSpace& space) {
  return kFeatureLoopLevels * kFeaturesPerLevel + kFeatureGlobals + space.knobs().size();
}

std::vector<std::string> FeatureNames(const kernels::ConfigSpace& space) {
  std::vector<std::string> names;
  for (int l = 0; l < kFeatureLoopLevels; ++l) {
    std::string p = "L" + std::to_string(l) + ".";
    for (const char* n : {"log_extent", "serial", "parallel", "vectorized", "unrolled", "log_iterations"}) {
      names.push_back(p + n);
    }
    for (int b = 0; b < kFeatureBuffers; ++b) {
      names.push_back(p + "buf" + std::to_string(b) + ".log_stride");
      names.push_back(p + "buf" + std::to_string(b) + ".reuse");
    }
  }
  for (const char* n : {"log_flops", "log_bytes_loaded", "log_bytes_stored", "log_intensity", "log_hot_count",
                        "hot_lanes", "hot_depth", "register_elements", "log_heap_bytes", "heap_allocs",
                        "unrolled_statements"}) {
    names.push_back(n);
  }
  for (const kernels::Knob& k : space.knobs()) names.push_back("knob." + k.name);
  return names;
}

std::vector<float> ExtractFeatures(const LoweredFunc& f, const kernels::ConfigSpace& space,
                                   const kernels::Config& c) {
  Walker w;
  w.Visit(f.body);
  std::vector<float> out(FeatureCount(space), 0.0f);

  // Buffers touched inside the innermost non-unrolled loop of the hot nest.
  const std::vector<Loop>& path = w.hot.loops;
  int anchor = -1;
  for (int i = static_cast<int>(path.size()) - 1; i >= 0; --i) {
    if (path[i].kind != ForKind::kUnrolled) {
      anchor = path[i].id;
      break;
    }
  }
  std::vector<const Access*> slots;
  std::set<std::string> seen;
  for (const Access& a : w.accesses) {
    if (static_cast<int>(slots.size()) == kFeatureBuffers) break;
    bool inside = anchor < 0;
    for (const Loop& l : a.loops) inside |= l.id == anchor;
    if (inside && seen.insert(a.buffer).second) slots.push_back(&a);
  }

  const int depth = static_cast<int>(path.size());
  double iterations = 1;
  for (int level = 0; level < std::min(depth, kFeatureLoopLevels); ++level) {
    const Loop& loop = path[depth - 1 - level];  // innermost first
    iterations *= static_cast<double>(loop.extent);
    float* p = &out[level * kFeaturesPerLevel];
    p[0] = Log2p(static_cast<double>(loop.extent));
    p[1] = loop.kind == ForKind::kSerial;
    p[2] = loop.kind == ForKind::kParallel;
    p[3] = loop.kind == ForKind::kVectorized;
    p[4] = loop.kind == ForKind::kUnrolled;
    p[5] = Log2p(iterations);
    for (size_t b = 0; b < slots.size(); ++b) {
      std::unordered_map<std::string, int64_t> vars;
      for (const Loop& l : slots[b]->loops) vars[l.var] = l.min;
      for (const Loop& l : path) vars.emplace(l.var, l.min);
      vars[loop.var] = loop.min;
      auto at0 = Eval(slots[b]->index, vars);
      vars[loop.var] = loop.min + 1;
      auto at1 = Eval(slots[b]->index, vars);
      double stride = at0 && at1 ? static_cast<double>(std::llabs(*at1 - *at0)) * slots[b]->bytes : 0;
      p[6 + 2 * b] = Log2p(stride);
      p[7 + 2 * b] = stride == 0;
    }
  }
  double unrolled = 1;
  for (const Loop& l : path) {
    if (l.kind == ForKind::kUnrolled) unrolled *= static_cast<double>(l.extent);
  }
  float* g = &out[kFeatureLoopLevels * kFeaturesPerLevel];
  g[0] = Log2p(w.flops);
  g[1] = Log2p(w.bytes_loaded);
  g[2] = Log2p(w.bytes_stored);
  g[3] = Log2p(w.flops / std::max(1.0, w.bytes_loaded + w.bytes_stored));
  g[4] = Log2p(w.hot.count);
  g[5] = static_cast<float>(w.hot.lanes);
  g[6] = static_cast<float>(depth);
  g[7] = static_cast<float>(w.register_elements);
  g[8] = Log2p(w.heap_bytes);
  g[9] = static_cast<float>(w.heap_allocs);
  g[10] = static_cast<float>(unrolled);

  float* k = g + kFeatureGlobals;
  for (size_t i = 0; i < space.knobs().size(); ++i) {
    const kernels::KnobValue& v = space.knobs()[i].values[c.choices[i]];
    if (const int64_t* x = std::get_if<int64_t>(&v)) {
      k[i] = Log2p(static_cast<double>(*x));
    } else {
      k[i] = static_cast<float>(space.ParentChoice(c, i));
    }
  }
  return out;
}

}  // namespace tunefarm::cost_model
