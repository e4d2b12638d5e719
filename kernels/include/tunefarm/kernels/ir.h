// The loop-nest IR: immutable expression and statement nodes built through
// checking Make() factories. One node list (TUNEFARM_FOR_EACH_*) drives the
// node-kind enum, the visitor and the mutator, so a node that nobody handles
// fails to compile.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tunefarm::kernels::ir {

struct Type {
  enum class Code : uint8_t { kInt, kFloat, kBool };
  Code code = Code::kInt;
  uint8_t bits = 64;
  uint16_t lanes = 1;

  static Type Int(int bits = 64) { return {Code::kInt, static_cast<uint8_t>(bits), 1}; }
  static Type Float(int bits = 32, int lanes = 1) {
    return {Code::kFloat, static_cast<uint8_t>(bits), static_cast<uint16_t>(lanes)};
  }
  static Type Bool() { return {Code::kBool, 1, 1}; }
  Type WithLanes(int n) const { return {code, bits, static_cast<uint16_t>(n)}; }
  Type Element() const { return WithLanes(1); }
  bool is_int() const { return code == Code::kInt; }
  bool is_float() const { return code == Code::kFloat; }
  bool is_bool() const { return code == Code::kBool; }
  bool is_vector() const { return lanes > 1; }
  bool operator==(const Type&) const = default;
};

#define TUNEFARM_FOR_EACH_EXPR(X) \
  X(IntImm)                       \
  X(FloatImm)                     \
  X(Var)                          \
  X(Add)                          \
  X(Sub)                          \
  X(Mul)                          \
  X(Div)                          \
  X(Mod)                          \
  X(Min)                          \
  X(Max)                          \
  X(LT)                           \
  X(LE)                           \
  X(EQ)                           \
  X(And)                          \
  X(Select)                       \
  X(Load)                         \
  X(Broadcast)                    \
  X(Call)

#define TUNEFARM_FOR_EACH_STMT(X) \
  X(LetStmt)                      \
  X(For)                          \
  X(Store)                        \
  X(Allocate)                     \
  X(IfThenElse)                   \
  X(Block)                        \
  X(Barrier)                      \
  X(Evaluate)

enum class NodeKind : uint8_t {
#define TUNEFARM_ENUM(N) k##N,
  TUNEFARM_FOR_EACH_EXPR(TUNEFARM_ENUM) TUNEFARM_FOR_EACH_STMT(TUNEFARM_ENUM)
#undef TUNEFARM_ENUM
};

struct ExprNode;
struct StmtNode;
#define TUNEFARM_FWD(N) struct N;
TUNEFARM_FOR_EACH_EXPR(TUNEFARM_FWD)
TUNEFARM_FOR_EACH_STMT(TUNEFARM_FWD)
#undef TUNEFARM_FWD

// Shared, immutable handles. A null handle is "no node" (e.g. no else branch).
class Expr {
 public:
  Expr() = default;
  explicit Expr(std::shared_ptr<const ExprNode> n) : node_(std::move(n)) {}
  Expr(int64_t v);  // NOLINT: integer literals are IntImm
  Expr(int v) : Expr(static_cast<int64_t>(v)) {}  // NOLINT
  const ExprNode* get() const { return node_.get(); }
  const ExprNode* operator->() const { return node_.get(); }
  bool defined() const { return node_ != nullptr; }
  bool same_as(const Expr& o) const { return node_ == o.node_; }
  Type type() const;
  template <typename T>
  const T* as() const;

 private:
  std::shared_ptr<const ExprNode> node_;
};

class Stmt {
 public:
  Stmt() = default;
  explicit Stmt(std::shared_ptr<const StmtNode> n) : node_(std::move(n)) {}
  const StmtNode* get() const { return node_.get(); }
  const StmtNode* operator->() const { return node_.get(); }
  bool defined() const { return node_ != nullptr; }
  bool same_as(const Stmt& o) const { return node_ == o.node_; }
  template <typename T>
  const T* as() const;

 private:
  std::shared_ptr<const StmtNode> node_;
};

struct ExprNode {
  ExprNode(NodeKind k, Type t) : kind(k), type(t) {}
  virtual ~ExprNode() = default;
  const NodeKind kind;
  const Type type;
};

struct StmtNode {
  explicit StmtNode(NodeKind k) : kind(k) {}
  virtual ~StmtNode() = default;
  const NodeKind kind;
};

template <typename T>
const T* Expr::as() const {
  return node_ && node_->kind == T::kKind ? static_cast<const T*>(node_.get()) : nullptr;
}
template <typename T>
const T* Stmt::as() const {
  return node_ && node_->kind == T::kKind ? static_cast<const T*>(node_.get()) : nullptr;
}
inline Type Expr::type() const { return node_->type; }

// ---- expressions ----

struct IntImm : ExprNode {
  static constexpr NodeKind kKind = NodeKind::kIntImm;
  IntImm(int64_t v) : ExprNode(kKind, Type::Int()), value(v) {}
  static Expr Make(int64_t v);
  const int64_t value;
};

struct FloatImm : ExprNode {
  static constexpr NodeKind kKind = NodeKind::kFloatImm;
  FloatImm(double v, Type t) : ExprNode(kKind, t), value(v) {}
  static Expr Make(double v, Type t = Type::Float());
  const double value;
};

// Variables are compared by name; names are unique within a function.
struct Var : ExprNode {
  static constexpr NodeKind kKind = NodeKind::kVar;
  Var(std::string n, Type t) : ExprNode(kKind, t), name(std::move(n)) {}
  static Expr Make(std::string name, Type t = Type::Int());
  const std::string name;
};

// Binary arithmetic and comparisons. Operands have the same type except that
// a scalar operand of a vector operation must first be Broadcast.
#define TUNEFARM_DECLARE_BINARY(N)                                          \
  struct N : ExprNode {                                                     \
    static constexpr NodeKind kKind = NodeKind::k##N;                       \
    N(Expr x, Expr y, Type t) : ExprNode(kKind, t), a(std::move(x)), b(std::move(y)) {} \
    static Expr Make(Expr a, Expr b);                                       \
    const Expr a, b;                                                        \
  };
TUNEFARM_DECLARE_BINARY(Add)
TUNEFARM_DECLARE_BINARY(Sub)
TUNEFARM_DECLARE_BINARY(Mul)
TUNEFARM_DECLARE_BINARY(Div)  // integer division rounds toward zero, as in C
TUNEFARM_DECLARE_BINARY(Mod)
TUNEFARM_DECLARE_BINARY(Min)
TUNEFARM_DECLARE_BINARY(Max)
TUNEFARM_DECLARE_BINARY(LT)
TUNEFARM_DECLARE_BINARY(LE)
TUNEFARM_DECLARE_BINARY(EQ)
TUNEFARM_DECLARE_BINARY(And)
#undef TUNEFARM_DECLARE_BINARY

struct Select : ExprNode {
  static constexpr NodeKind kKind = NodeKind::kSelect;
  Select(Expr c, Expr t, Expr f)
      : ExprNode(kKind, t.type()), cond(std::move(c)), true_value(std::move(t)), false_value(std::move(f)) {}
  static Expr Make(Expr cond, Expr true_value, Expr false_value);
  const Expr cond, true_value, false_value;
};

// Reads `type.lanes` consecutive elements of `buffer` starting at element
// `index` (no alignment is assumed).
struct Load : ExprNode {
  static constexpr NodeKind kKind = NodeKind::kLoad;
  Load(std::string buf, Expr i, Type t) : ExprNode(kKind, t), buffer(std::move(buf)), index(std::move(i)) {}
  static Expr Make(std::string buffer, Expr index, Type t = Type::Float());
  const std::string buffer;
  const Expr index;
};

struct Broadcast : ExprNode {
  static constexpr NodeKind kKind = NodeKind::kBroadcast;
  Broadcast(Expr v, int lanes) : ExprNode(kKind, v.type().WithLanes(lanes)), value(std::move(v)) {}
  static Expr Make(Expr value, int lanes);
  const Expr value;
};

// A device intrinsic, e.g. "tf_round_tf32": a function each code
// generator that supports it defines (the others reject it). Its arguments
// are passed by value, except that a Load of a register-buffer element is
// the variable itself, which an intrinsic called through Evaluate may write
// (e.g. the accumulators of a tensor-core multiply-accumulate). C has
// "tf_fma_mem"(acc, a, b) = acc + a * b, where b, a Load from memory, is
// read by the multiply-add instruction itself rather than into a register,
// and "tf_prefetch"(x) / "tf_prefetch_l1"(x), x a Load from memory, which
// bring x's cache line into L2 / L1 and are called for that effect alone.
struct Call : ExprNode {
  static constexpr NodeKind kKind = NodeKind::kCall;
  Call(std::string n, std::vector<Expr> a, Type t) : ExprNode(kKind, t), name(std::move(n)), args(std::move(a)) {}
  static Expr Make(std::string name, std::vector<Expr> args, Type t = Type::Float());
  const std::string name;
  const std::vector<Expr> args;
};

// The floating-point operations one call of an intrinsic stands for, per
// thread making it (a multiply-add counts two): tf_fma_mem twice its lanes;
// the tensor-core ones per thread of their warp (mma.sync m16n8k8: 64) or
// warpgroup (wgmma m64nNk8, tf_wgmma_tf32_n<N>: 8N); 0 for any other call.
int64_t IntrinsicFlops(const Call& call);
// The name of the wgmma m64n<n>k8 TF32 intrinsic, and the n of such a name
// (nullopt for any other name, or an n that is not a multiple of 8 in
// 8 .. 256).
std::string WgmmaIntrinsic(int64_t n);
std::optional<int64_t> WgmmaWidth(std::string_view name);

// ---- statements ----

// Binds an immutable scalar for the body.
struct LetStmt : StmtNode {
  static constexpr NodeKind kKind = NodeKind::kLetStmt;
  LetStmt(std::string n, Expr v, Stmt b) : StmtNode(kKind), name(std::move(n)), value(std::move(v)), body(std::move(b)) {}
  static Stmt Make(std::string name, Expr value, Stmt body);
  const std::string name;
  const Expr value;
  const Stmt body;
};

// kTeam: a team of up to `extent` CPU threads each runs the body once (the
// loop variable is not bound): kParallel loops inside share their
// iterations among the team and end with a barrier, so one phase of a
// computation (packing a panel) is done before the next (reading it)
// starts; anything else in the body runs on every thread and must write
// only buffers allocated inside it (private to each thread). The
// iterations of a kParallel loop outside a team run at once, each on some
// thread.
enum class ForKind : uint8_t { kSerial, kParallel, kVectorized, kUnrolled, kGpuBlock, kGpuThread, kTeam };
const char* ForKindName(ForKind k);

// for (var = min; var < min + extent; ++var). An unrolled loop must have a
// constant extent; UnrollLoops() expands it.
struct For : StmtNode {
  static constexpr NodeKind kKind = NodeKind::kFor;
  For(std::string v, Expr mn, Expr ext, ForKind k, Stmt b)
      : StmtNode(kKind), var(std::move(v)), min(std::move(mn)), extent(std::move(ext)), for_kind(k), body(std::move(b)) {}
  static Stmt Make(std::string var, Expr min, Expr extent, ForKind kind, Stmt body);
  const std::string var;
  const Expr min, extent;
  const ForKind for_kind;
  const Stmt body;
};

// Writes value.type().lanes consecutive elements at element `index`.
struct Store : StmtNode {
  static constexpr NodeKind kKind = NodeKind::kStore;
  Store(std::string buf, Expr v, Expr i) : StmtNode(kKind), buffer(std::move(buf)), value(std::move(v)), index(std::move(i)) {}
  static Stmt Make(std::string buffer, Expr value, Expr index);
  const std::string buffer;
  const Expr value, index;
};

// Where an allocation lives. kRegister buffers must have a constant extent
// and only constant indices once loops are unrolled; the C printer turns each
// element into its own variable so the compiler keeps them in registers.
// kModule (GPU only) is device memory that lives as long as the loaded
// kernel, zero when it is loaded and shared by every block and launch.
enum class MemoryScope : uint8_t { kHeap, kStack, kRegister, kShared, kLocal, kModule };
const char* MemoryScopeName(MemoryScope s);

// `extent` elements of `type` (a vector type allocates extent vectors),
// visible in `body`. Heap memory is 64-byte aligned.
struct Allocate : StmtNode {
  static constexpr NodeKind kKind = NodeKind::kAllocate;
  Allocate(std::string n, Type t, Expr e, MemoryScope s, Stmt b)
      : StmtNode(kKind), name(std::move(n)), type(t), extent(std::move(e)), scope(s), body(std::move(b)) {}
  static Stmt Make(std::string name, Type type, Expr extent, MemoryScope scope, Stmt body);
  const std::string name;
  const Type type;
  const Expr extent;
  const MemoryScope scope;
  const Stmt body;
};

struct IfThenElse : StmtNode {
  static constexpr NodeKind kKind = NodeKind::kIfThenElse;
  IfThenElse(Expr c, Stmt t, Stmt e) : StmtNode(kKind), cond(std::move(c)), then_case(std::move(t)), else_case(std::move(e)) {}
  static Stmt Make(Expr cond, Stmt then_case, Stmt else_case = Stmt());
  const Expr cond;
  const Stmt then_case, else_case;  // else_case may be undefined
};

struct Block : StmtNode {
  static constexpr NodeKind kKind = NodeKind::kBlock;
  explicit Block(std::vector<Stmt> s) : StmtNode(kKind), stmts(std::move(s)) {}
  // Flattens nested blocks and drops undefined statements; a single statement
  // comes back as itself.
  static Stmt Make(std::vector<Stmt> stmts);
  const std::vector<Stmt> stmts;
};

// A barrier across the threads of a GPU block; CPU code generators reject it.
struct Barrier : StmtNode {
  static constexpr NodeKind kKind = NodeKind::kBarrier;
  Barrier() : StmtNode(kKind) {}
  static Stmt Make();
};

// Evaluates a Call for its effect.
struct Evaluate : StmtNode {
  static constexpr NodeKind kKind = NodeKind::kEvaluate;
  explicit Evaluate(Expr c) : StmtNode(kKind), call(std::move(c)) {}
  static Stmt Make(Expr call);
  const Expr call;
};

// ---- building helpers ----
Expr operator+(Expr a, Expr b);
Expr operator-(Expr a, Expr b);
Expr operator*(Expr a, Expr b);
Expr operator/(Expr a, Expr b);
Expr operator%(Expr a, Expr b);
Expr operator<(Expr a, Expr b);
Expr operator<=(Expr a, Expr b);
Expr operator&&(Expr a, Expr b);
Expr min(Expr a, Expr b);
Expr max(Expr a, Expr b);

// A buffer argument of a lowered function: `elements` scalars of `type`.
struct BufferArg {
  std::string name;
  Type type;
  int64_t elements = 0;
  bool is_output = false;
};

// A kernel ready for code generation. Its C ABI is
// `void <name>(void* const* args)`, args in the order of `args`.
struct LoweredFunc {
  std::string name;
  std::vector<BufferArg> args;
  Stmt body;
  // Threads that each parallel loop runs on (OpenMP on CPUs).
  int threads = 1;
};

// ---- traversal ----

class Visitor {
 public:
  virtual ~Visitor() = default;
  void Visit(const Expr& e);
  void Visit(const Stmt& s);

 protected:
  // Defaults visit the children.
#define TUNEFARM_VISIT(N) virtual void Visit##N(const N* op);
  TUNEFARM_FOR_EACH_EXPR(TUNEFARM_VISIT)
  TUNEFARM_FOR_EACH_STMT(TUNEFARM_VISIT)
#undef TUNEFARM_VISIT
};

// Rebuilds the tree bottom-up; returns the same node when no child changed.
class Mutator {
 public:
  virtual ~Mutator() = default;
  Expr Mutate(const Expr& e);
  Stmt Mutate(const Stmt& s);

 protected:
#define TUNEFARM_MUTATE(N) virtual Expr Mutate##N(const N* op, const Expr& self);
  TUNEFARM_FOR_EACH_EXPR(TUNEFARM_MUTATE)
#undef TUNEFARM_MUTATE
#define TUNEFARM_MUTATE(N) virtual Stmt Mutate##N(const N* op, const Stmt& self);
  TUNEFARM_FOR_EACH_STMT(TUNEFARM_MUTATE)
#undef TUNEFARM_MUTATE
};

// ---- passes ----

// Replaces every use of variable `name` by `value`.
Stmt Substitute(const Stmt& s, const std::string& name, const Expr& value);
Expr Substitute(const Expr& e, const std::string& name, const Expr& value);
// Folds constant integer arithmetic (and x+0, x*1, x*0, min/max of constants).
Expr Simplify(const Expr& e);
Stmt Simplify(const Stmt& s);
// Expands every kUnrolled loop; its extent must fold to a constant.
Stmt UnrollLoops(const Stmt& s);

// Human-readable dump, for tests and debugging.
std::string ToString(const Expr& e);
std::string ToString(const Stmt& s);

}  // namespace tunefarm::kernels::ir
