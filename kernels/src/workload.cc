#include <algorithm>
#include "tunefarm/kernels/workload.h"

#include <cctype>
#include <charconv>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "check.h"
#include "hash.h"
#include "tunefarm/kernels/template.h"

namespace tunefarm::kernels {

int64_t Workload::param(std::string_view name) const {
  for (const auto& [k, v] : params) {
    if (k == name) return v;
  }
  TF_CHECK(false, "workload parameter missing");
  return 0;
}

int64_t Workload::param_or(std::string_view name, int64_t default_value) const {
  for (const auto& [k, v] : params) {
    if (k == name) return v;
  }
  return default_value;
}

const std::string& Workload::text(std::string_view name) const {
  for (const auto& [k, v] : text_params) {
    if (k == name) return v;
  }
  TF_CHECK(false, "workload text parameter missing");
  static const std::string kEmpty;
  return kEmpty;
}

std::string Workload::Key() const {
  std::string s = op + "(";
  for (const auto& [k, v] : params) absl::StrAppend(&s, k, "=", v, ",");
  for (const auto& [k, v] : text_params) absl::StrAppend(&s, k, "=", v, ",");
  absl::StrAppend(&s, "dtype=", dtype, ")");
  return s;
}

uint64_t Workload::Hash() const { return Fnv1a64(Key()); }

namespace {

class Lexer {
 public:
  explicit Lexer(std::string_view s) : s_(s) {}
  void SkipSpace() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  bool Eat(char c) {
    SkipSpace();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  std::string_view Ident() {
    SkipSpace();
    size_t b = pos_;
    while (pos_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '_')) ++pos_;
    return s_.substr(b, pos_ - b);
  }
  // A signed decimal; returns the text so errors can quote it.
  std::string_view Number() {
    SkipSpace();
    size_t b = pos_;
    if (pos_ < s_.size() && (s_[pos_] == '-' || s_[pos_] == '+')) ++pos_;
    while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    return s_.substr(b, pos_ - b);
  }
  bool AtEnd() {
    SkipSpace();
    return pos_ == s_.size();
  }
  size_t pos() const { return pos_; }

 private:
  std::string_view s_;
  size_t pos_ = 0;
};

}  // namespace

absl::StatusOr<Workload> ParseWorkload(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("malformed workload '", std::string(text), "': ", std::string(why),
                                                   " (expected e.g. matmul(M=512,N=512,K=512))"));
  };
  if (text.size() > 1024) return absl::InvalidArgumentError("workload text longer than 1024 characters");
  Lexer lex(text);
  Workload w;
  w.op = std::string(lex.Ident());
  if (w.op.empty()) return bad("missing operator name");
  // Every device class's template of an operator takes the same parameters.
  const Template* t = TemplateRegistry::Global().Find(w.op);
  if (t == nullptr) t = TemplateRegistry::Global().Find(w.op, DeviceClass::kCuda);
  if (t == nullptr) {
    std::vector<std::string> known;
    for (const Template* k : TemplateRegistry::Global().All()) {
      if (std::find(known.begin(), known.end(), k->op()) == known.end()) known.emplace_back(std::string(k->op()));
    }
    return absl::NotFoundError(
        absl::StrCat("unknown operator '", w.op, "' (known: ", absl::StrJoin(known, ", "), ")"));
  }
  if (!lex.Eat('(')) return bad("expected '(' after the operator");
  std::vector<std::pair<std::string, int64_t>> given;
  std::vector<std::pair<std::string, std::string>> given_text;
  bool have_dtype = false;
  if (!lex.Eat(')')) {
    do {
      std::string name(lex.Ident());
      if (name.empty()) return bad("expected a parameter name");
      if (!lex.Eat('=')) return bad(absl::StrCat("expected '=' after '", name, "'"));
      if (name == "dtype") {
        std::string dtype(lex.Ident());
        if (dtype != "float32") {
          return absl::InvalidArgumentError(
              absl::StrCat("unsupported dtype '", dtype, "' in '", std::string(text), "' (supported: float32)"));
        }
        w.dtype = dtype;
        have_dtype = true;
        continue;
      }
      if (t->TextParam(name).has_value()) {
        std::string value(lex.Ident());
        if (value.empty()) return bad(absl::StrCat("parameter ", name, " needs a name as its value"));
        for (const auto& [k, _] : given_text) {
          if (k == name) return bad(absl::StrCat("parameter ", name, " given twice"));
        }
        given_text.emplace_back(name, std::move(value));
        continue;
      }
      std::string_view num = lex.Number();
      int64_t v = 0;
      auto [end, ec] = std::from_chars(num.data() + (num.starts_with('+') ? 1 : 0), num.data() + num.size(), v);
      if (num.empty() || ec == std::errc::invalid_argument || end != num.data() + num.size()) {
        return bad(absl::StrCat("parameter ", name, " needs an integer value"));
      }
      if (ec == std::errc::result_out_of_range) {
        return absl::InvalidArgumentError(absl::StrCat("parameter ", name, "=", std::string(num), " is out of range"));
      }
      for (const auto& [k, _] : given) {
        if (k == name) return bad(absl::StrCat("parameter ", name, " given twice"));
      }
      given.emplace_back(name, v);
    } while (lex.Eat(','));
    if (!lex.Eat(')')) return bad("expected ',' or ')'");
  }
  (void)have_dtype;
  if (!lex.AtEnd()) return bad("unexpected text after ')'");

  std::vector<std::string> names = t->ParamNames();
  const std::vector<std::pair<std::string, int64_t>> optional = t->OptionalParams();
  auto is_optional = [&](const std::string& k) {
    return std::any_of(optional.begin(), optional.end(), [&](const auto& o) { return o.first == k; });
  };
  for (const auto& [k, _] : given) {
    if (std::find(names.begin(), names.end(), k) == names.end() && !is_optional(k)) {
      std::vector<std::string> all = names;
      for (const auto& [o, d] : optional) all.push_back(absl::StrCat(o, " (optional, default ", d, ")"));
      for (const TextParamSpec& tp : t->TextParams()) {
        all.push_back(absl::StrCat(tp.name, " (", absl::StrJoin(tp.values, " or "), ")"));
      }
      return absl::InvalidArgumentError(absl::StrCat("unknown parameter '", k, "' for ", w.op, " (parameters: ",
                                                     absl::StrJoin(all, ", "), ")"));
    }
  }
  for (const std::string& n : names) {
    auto it = std::find_if(given.begin(), given.end(), [&](const auto& p) { return p.first == n; });
    if (it == given.end()) {
      return absl::InvalidArgumentError(absl::StrCat("workload '", std::string(text), "' is missing parameter ", n));
    }
    w.params.emplace_back(n, it->second);
  }
  for (const auto& [n, default_value] : optional) {
    auto it = std::find_if(given.begin(), given.end(), [&](const auto& p) { return p.first == n; });
    if (it != given.end() && it->second != default_value) w.params.emplace_back(n, it->second);
  }
  for (const TextParamSpec& tp : t->TextParams()) {
    auto it = std::find_if(given_text.begin(), given_text.end(), [&](const auto& p) { return p.first == tp.name; });
    if (it == given_text.end()) {
      return absl::InvalidArgumentError(absl::StrCat("workload '", std::string(text), "' is missing parameter ",
                                                     tp.name, " (", absl::StrJoin(tp.values, " or "), ")"));
    }
    if (std::find(tp.values.begin(), tp.values.end(), it->second) == tp.values.end()) {
      return absl::InvalidArgumentError(absl::StrCat(w.op, " ", tp.name, "=", it->second, " is not supported (",
                                                     absl::StrJoin(tp.values, " or "), ")"));
    }
    w.text_params.emplace_back(tp.name, it->second);
  }
  if (absl::Status s = t->Validate(w); !s.ok()) return s;
  return w;
}

}  // namespace tunefarm::kernels
