#include "c_like_printer.h"

#include <cinttypes>
#include <cstdio>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "check.h"

namespace tunefarm::kernels {

using namespace ir;  // NOLINT: this file is the IR's printer

absl::StatusOr<std::string> CLikePrinter::Print(const LoweredFunc& f) {
  Stmt body = Simplify(UnrollLoops(f.body));
  std::ostringstream fn;
  out_ = &fn;
  indent_ = 0;
  PrintSignature(f);
  indent_ = 1;
  Visitor::Visit(body);
  fn << "}\n";
  if (!error_.ok()) return error_;
  std::ostringstream os;
  PrintPrelude(os);
  os << "\n" << fn.str();
  return os.str();
}

void CLikePrinter::Fail(std::string msg) {
  if (error_.ok()) error_ = absl::InvalidArgumentError(std::move(msg));
}

std::string CLikePrinter::ScalarType(const Type& t) {
  switch (t.code) {
    case Type::Code::kFloat: return t.bits == 64 ? "double" : "float";
    case Type::Code::kInt: return "int" + std::to_string(t.bits) + "_t";
    case Type::Code::kBool: return "int";
  }
  return "?";
}

// Register buffers: element variables, indexed by a constant.
std::string CLikePrinter::RegisterElement(const std::string& buffer, const Expr& index) {
  const IntImm* i = index.as<IntImm>();
  if (i == nullptr) {
    Fail(absl::StrCat("register buffer '", buffer, "' indexed by a non-constant: ", ToString(index)));
    return "0";
  }
  return absl::StrCat(buffer, "_", i->value);
}

void CLikePrinter::VisitIntImm(const IntImm* op) {
  if (op->value >= INT32_MIN && op->value <= INT32_MAX) {
    *out_ << op->value;
  } else {
    *out_ << "INT64_C(" << op->value << ")";
  }
}

void CLikePrinter::VisitFloatImm(const FloatImm* op) {
  char buf[64];
  std::snprintf(buf, sizeof buf, op->type.bits == 32 ? "%.9g" : "%.17g", op->value);
  std::string text = buf;
  if (text.find_first_of(".eni") == std::string::npos) text += ".0";  // "0" -> "0.0"
  *out_ << text << (op->type.bits == 32 ? "f" : "");
}

void CLikePrinter::Binary(const Expr& a, const char* sym, const Expr& b) {
  *out_ << "(";
  Visitor::Visit(a);
  *out_ << " " << sym << " ";
  Visitor::Visit(b);
  *out_ << ")";
}

void CLikePrinter::MinMax(const char* fn, const Expr& a, const Expr& b) {
  if (!a.type().is_int() || a.type().is_vector()) {
    Fail("min/max of non-integers is not supported by the C printer");
    return;
  }
  *out_ << fn << "(";
  Visitor::Visit(a);
  *out_ << ", ";
  Visitor::Visit(b);
  *out_ << ")";
}

void CLikePrinter::VisitSelect(const Select* op) {
  if (op->type.is_vector()) {
    Fail("vector select is not supported by the C printer");
    return;
  }
  *out_ << "(";
  Visitor::Visit(op->cond);
  *out_ << " ? ";
  Visitor::Visit(op->true_value);
  *out_ << " : ";
  Visitor::Visit(op->false_value);
  *out_ << ")";
}

void CLikePrinter::VisitLoad(const Load* op) {
  if (registers_.count(op->buffer)) {
    *out_ << RegisterElement(op->buffer, op->index);
    return;
  }
  if (op->type.is_vector()) {
    *out_ << "(*(const " << TypeName(op->type) << "_u*)(" << op->buffer << " + ";
    Visitor::Visit(op->index);
    *out_ << "))";
    return;
  }
  *out_ << op->buffer << "[";
  Visitor::Visit(op->index);
  *out_ << "]";
}

void CLikePrinter::VisitBroadcast(const Broadcast* op) {
  *out_ << TypeName(op->type) << "_splat(";
  Visitor::Visit(op->value);
  *out_ << ")";
}

void CLikePrinter::VisitLetStmt(const LetStmt* op) {
  // Braces give each binding its own scope: unrolled copies reuse names.
  Line() << "{\n";
  ++indent_;
  Line() << "const " << TypeName(op->value.type()) << " " << op->name << " = ";
  Visitor::Visit(op->value);
  *out_ << ";\n";
  Visitor::Visit(op->body);
  --indent_;
  Line() << "}\n";
}

void CLikePrinter::VisitFor(const For* op) {
  if (op->for_kind == ForKind::kUnrolled) {
    TF_CHECK(false, "unrolled loop survived UnrollLoops");
    return;
  }
  if (op->for_kind == ForKind::kSerial) {
    PrintLoop(op, false);
  } else {
    PrintSpecialLoop(op);
  }
}

void CLikePrinter::PrintLoop(const For* op, bool canonical) {
  const std::string& v = op->var;
  Line() << "for (int64_t " << v << " = ";
  Visitor::Visit(op->min);
  if (const IntImm* m = op->min.as<IntImm>(); m && m->value == 0) {
    *out_ << "; " << v << " < ";
    Visitor::Visit(op->extent);
    *out_ << "; ++" << v << ") {\n";
  } else if (canonical) {
    *out_ << "; " << v << " < ";
    Visitor::Visit(op->min);
    *out_ << " + ";
    Visitor::Visit(op->extent);
    *out_ << "; ++" << v << ") {\n";
  } else {
    *out_ << ", " << v << "_end = " << v << " + ";
    Visitor::Visit(op->extent);
    *out_ << "; " << v << " < " << v << "_end; ++" << v << ") {\n";
  }
  ++indent_;
  Visitor::Visit(op->body);
  --indent_;
  Line() << "}\n";
}

void CLikePrinter::VisitStore(const Store* op) {
  if (auto reg = registers_.find(op->buffer);
      reg != registers_.end() && !reg->second.is_vector() && op->value.type().is_vector()) {
    // A vector into consecutive scalar register elements, lane by lane.
    const IntImm* first = op->index.as<IntImm>();
    if (first == nullptr) {
      Fail(absl::StrCat("register buffer '", op->buffer, "' indexed by a non-constant: ", ToString(op->index)));
      return;
    }
    Line() << "{\n";
    ++indent_;
    Line() << "const " << TypeName(op->value.type()) << " tf_lanes = ";
    Visitor::Visit(op->value);
    *out_ << ";\n";
    for (int lane = 0; lane < op->value.type().lanes; ++lane) {
      Line() << op->buffer << "_" << first->value + lane << " = " << Lane("tf_lanes", lane) << ";\n";
    }
    --indent_;
    Line() << "}\n";
    return;
  }
  if (registers_.count(op->buffer)) {
    Line() << RegisterElement(op->buffer, op->index) << " = ";
  } else if (op->value.type().is_vector()) {
    Line() << "*(" << TypeName(op->value.type()) << "_u*)(" << op->buffer << " + ";
    Visitor::Visit(op->index);
    *out_ << ") = ";
  } else {
    Line() << op->buffer << "[";
    Visitor::Visit(op->index);
    *out_ << "] = ";
  }
  Visitor::Visit(op->value);
  *out_ << ";\n";
}

void CLikePrinter::VisitAllocate(const Allocate* op) {
  std::string type = TypeName(op->type);
  Line() << "{\n";
  ++indent_;
  if (op->scope == MemoryScope::kRegister) {
    const IntImm* n = Simplify(op->extent).as<IntImm>();
    TF_CHECK(n != nullptr, "register buffer extent");
    Line() << type;
    for (int64_t i = 0; i < n->value; ++i) *out_ << (i ? ", " : " ") << op->name << "_" << i;
    *out_ << ";\n";
    registers_[op->name] = op->type;
    Visitor::Visit(op->body);
    registers_.erase(op->name);
  } else {
    PrintAllocate(op, type);
  }
  --indent_;
  Line() << "}\n";
}

void CLikePrinter::VisitIfThenElse(const IfThenElse* op) {
  Line() << "if (";
  Visitor::Visit(op->cond);
  *out_ << ") {\n";
  ++indent_;
  Visitor::Visit(op->then_case);
  --indent_;
  if (op->else_case.defined()) {
    Line() << "} else {\n";
    ++indent_;
    Visitor::Visit(op->else_case);
    --indent_;
  }
  Line() << "}\n";
}

void CLikePrinter::VisitCall(const Call* op) {
  if (!HasIntrinsic(op->name)) {
    Fail(absl::StrCat("intrinsic '", op->name, "' is not available in this dialect"));
    return;
  }
  *out_ << op->name << "(";
  for (size_t i = 0; i < op->args.size(); ++i) {
    if (i) *out_ << ", ";
    Visitor::Visit(op->args[i]);
  }
  *out_ << ")";
}

void CLikePrinter::VisitEvaluate(const Evaluate* op) {
  Line();
  Visitor::Visit(op->call);
  *out_ << ";\n";
}

}  // namespace tunefarm::kernels
