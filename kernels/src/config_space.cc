#include "tunefarm/kernels/config_space.h"

#include <algorithm>
#include <charconv>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "check.h"
#include "nlohmann/json.hpp"

namespace tunefarm::kernels {

std::string KnobValueToString(const KnobValue& v) {
  if (const int64_t* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  return std::get<std::string>(v);
}

absl::StatusOr<ConfigSpace> ConfigSpace::Create(std::vector<Knob> knobs) {
  ConfigSpace s;
  std::set<std::string> names;
  uint64_t size = 1;
  for (const Knob& k : knobs) {
    if (k.values.empty()) return absl::InvalidArgumentError(absl::StrCat("knob '", k.name, "' has no values"));
    if (!names.insert(k.name).second) return absl::InvalidArgumentError(absl::StrCat("knob '", k.name, "' repeats"));
    if (size > (uint64_t{1} << 63) / k.values.size()) {
      return absl::InvalidArgumentError("config space larger than 2^63 points");
    }
    size *= k.values.size();
  }
  s.knobs_ = std::move(knobs);
  s.size_ = size;
  return s;
}

Config ConfigSpace::FromIndex(uint64_t index) const {
  TF_CHECK(index < size_, "config index out of range");
  Config c;
  c.index = index;
  c.choices.reserve(knobs_.size());
  for (const Knob& k : knobs_) {
    c.choices.push_back(static_cast<uint32_t>(index % k.values.size()));
    index /= k.values.size();
  }
  return c;
}

absl::StatusOr<Config> ConfigSpace::FromChoices(std::vector<uint32_t> choices) const {
  if (choices.size() != knobs_.size()) return absl::InvalidArgumentError("wrong number of knob choices");
  uint64_t index = 0, radix = 1;
  for (size_t i = 0; i < knobs_.size(); ++i) {
    if (choices[i] >= knobs_[i].values.size()) {
      return absl::InvalidArgumentError(absl::StrCat("choice out of range for knob '", knobs_[i].name, "'"));
    }
    index += choices[i] * radix;
    radix *= knobs_[i].values.size();
  }
  return Config{index, std::move(choices)};
}

absl::StatusOr<Config> ConfigSpace::FromValues(
    const std::vector<std::pair<std::string, KnobValue>>& values) const {
  return With(Config{0, std::vector<uint32_t>(knobs_.size(), 0)}, values);
}

absl::StatusOr<Config> ConfigSpace::With(const Config& c,
                                         const std::vector<std::pair<std::string, KnobValue>>& values) const {
  std::vector<uint32_t> choices = c.choices;
  for (const auto& [name, value] : values) {
    int k = KnobIndex(name);
    if (k < 0) return absl::InvalidArgumentError(absl::StrCat("no knob named '", name, "'"));
    const auto& vs = knobs_[k].values;
    auto it = std::find(vs.begin(), vs.end(), value);
    if (it == vs.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("knob '", name, "' has no value ", KnobValueToString(value)));
    }
    choices[k] = static_cast<uint32_t>(it - vs.begin());
  }
  return FromChoices(std::move(choices));
}

int ConfigSpace::KnobIndex(std::string_view name) const {
  for (size_t i = 0; i < knobs_.size(); ++i) {
    if (knobs_[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

const KnobValue& ConfigSpace::Value(const Config& c, std::string_view knob) const {
  int k = KnobIndex(knob);
  TF_CHECK(k >= 0, "unknown knob");
  return knobs_[k].values[c.choices[k]];
}

int64_t ConfigSpace::IntValue(const Config& c, std::string_view knob) const {
  const KnobValue& v = Value(c, knob);
  TF_CHECK(std::holds_alternative<int64_t>(v), "knob is not an integer");
  return std::get<int64_t>(v);
}

const std::string& ConfigSpace::StrValue(const Config& c, std::string_view knob) const {
  const KnobValue& v = Value(c, knob);
  TF_CHECK(std::holds_alternative<std::string>(v), "knob is not a string");
  return std::get<std::string>(v);
}

absl::StatusOr<ConfigSpace> ConfigSpace::Pin(const std::vector<std::pair<std::string, KnobValue>>& pins) const {
  std::vector<std::pair<std::string, std::vector<KnobValue>>> allowed;
  for (const auto& [name, value] : pins) allowed.push_back({name, {value}});
  return Restrict(allowed);
}

absl::StatusOr<ConfigSpace> ConfigSpace::Restrict(
    const std::vector<std::pair<std::string, std::vector<KnobValue>>>& allowed) const {
  const std::vector<Knob>& base = pinned() ? parent_knobs_ : knobs_;
  std::vector<Knob> knobs = base;
  std::vector<std::vector<uint32_t>> map(base.size());
  for (size_t k = 0; k < base.size(); ++k) {
    for (uint32_t i = 0; i < base[k].values.size(); ++i) map[k].push_back(i);
  }
  for (const auto& [name, values] : allowed) {
    auto it = std::find_if(base.begin(), base.end(), [&](const Knob& k) { return k.name == name; });
    if (it == base.end()) return absl::InvalidArgumentError(absl::StrCat("cannot pin unknown knob '", name, "'"));
    if (values.empty()) return absl::InvalidArgumentError(absl::StrCat("knob '", name, "' would have no values"));
    const size_t k = it - base.begin();
    knobs[k].values.clear();
    map[k].clear();
    for (uint32_t i = 0; i < base[k].values.size(); ++i) {
      if (std::find(values.begin(), values.end(), base[k].values[i]) == values.end()) continue;
      knobs[k].values.push_back(base[k].values[i]);
      map[k].push_back(i);
    }
    for (const KnobValue& value : values) {
      if (std::find(base[k].values.begin(), base[k].values.end(), value) != base[k].values.end()) continue;
      std::string known;
      for (const KnobValue& x : base[k].values) absl::StrAppend(&known, known.empty() ? "" : ", ", KnobValueToString(x));
      return absl::InvalidArgumentError(
          absl::StrCat("knob '", name, "' has no value ", KnobValueToString(value), " (values: ", known, ")"));
    }
  }
  absl::StatusOr<ConfigSpace> s = Create(std::move(knobs));
  if (!s.ok()) return s;
  s->parent_knobs_ = base;
  s->parent_choice_ = std::move(map);
  return s;
}

uint32_t ConfigSpace::ParentChoice(const Config& c, size_t k) const {
  return pinned() ? parent_choice_[k][c.choices[k]] : c.choices[k];
}

uint64_t ConfigSpace::ToParentIndex(uint64_t index) const {
  if (!pinned()) return index;
  Config c = FromIndex(index);
  uint64_t out = 0, radix = 1;
  for (size_t k = 0; k < parent_knobs_.size(); ++k) {
    out += parent_choice_[k][c.choices[k]] * radix;
    radix *= parent_knobs_[k].values.size();
  }
  return out;
}

std::optional<uint64_t> ConfigSpace::FromParentIndex(uint64_t parent_index) const {
  if (!pinned()) return parent_index < size_ ? std::optional<uint64_t>(parent_index) : std::nullopt;
  std::vector<uint32_t> choices(knobs_.size());
  for (size_t k = 0; k < parent_knobs_.size(); ++k) {
    uint32_t pc = static_cast<uint32_t>(parent_index % parent_knobs_[k].values.size());
    parent_index /= parent_knobs_[k].values.size();
    auto it = std::find(parent_choice_[k].begin(), parent_choice_[k].end(), pc);
    if (it == parent_choice_[k].end()) return std::nullopt;
    choices[k] = static_cast<uint32_t>(it - parent_choice_[k].begin());
  }
  if (parent_index != 0) return std::nullopt;
  return FromChoices(std::move(choices))->index;
}

uint64_t ConfigSpace::Sample(std::mt19937_64& rng) const {
  return std::uniform_int_distribution<uint64_t>(0, size_ - 1)(rng);
}

std::vector<uint64_t> ConfigSpace::Neighbors(const Config& c) const {
  std::vector<uint64_t> out;
  uint64_t radix = 1;
  for (size_t i = 0; i < knobs_.size(); ++i) {
    uint64_t n = knobs_[i].values.size();
    if (n > 1) {
      uint64_t base = c.index - c.choices[i] * radix;
      out.push_back(base + ((c.choices[i] + 1) % n) * radix);
      if (n > 2) out.push_back(base + ((c.choices[i] + n - 1) % n) * radix);
    }
    radix *= n;
  }
  return out;
}

std::string ConfigSpace::ToJson(const Config& c) const {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (size_t i = 0; i < knobs_.size(); ++i) {
    const KnobValue& v = knobs_[i].values[c.choices[i]];
    if (const int64_t* x = std::get_if<int64_t>(&v)) {
      j[knobs_[i].name] = *x;
    } else {
      j[knobs_[i].name] = std::get<std::string>(v);
    }
  }
  return j.dump();
}

std::string ConfigSpace::ToString(const Config& c) const {
  std::string s;
  for (size_t i = 0; i < knobs_.size(); ++i) {
    absl::StrAppend(&s, i ? " " : "", knobs_[i].name, "=", KnobValueToString(knobs_[i].values[c.choices[i]]));
  }
  return s;
}

absl::StatusOr<std::vector<std::pair<std::string, KnobValue>>> ParsePins(const std::vector<std::string>& texts) {
  std::vector<std::pair<std::string, KnobValue>> out;
  for (const std::string& p : texts) {
    size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0) return absl::InvalidArgumentError("--pin needs KNOB=VALUE, got '" + p + "'");
    std::string name = p.substr(0, eq), value = p.substr(eq + 1);
    int64_t number = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), number);
    if (!value.empty() && ec == std::errc() && end == value.data() + value.size()) {
      out.emplace_back(name, number);
    } else {
      out.emplace_back(name, value);
    }
  }
  return out;
}

}  // namespace tunefarm::kernels
