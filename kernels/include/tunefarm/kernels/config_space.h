// Config spaces: the product of a template's knobs, addressed by a
// mixed-radix index so that spaces of 1e9+ points are sampled and walked
// without enumeration.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace tunefarm::kernels {

using KnobValue = std::variant<int64_t, std::string>;
std::string KnobValueToString(const KnobValue& v);

// What a knob decides. The kind is metadata for cost-model features; the
// space treats every knob as a list of choices.
enum class KnobKind {
  kSplit,     // a tile size of an axis (need not divide it: tails are handled)
  kReorder,   // a loop permutation
  kAnnotate,  // unroll / vectorize / parallel / bind
  kChoice,    // one of a list (layouts, compilers, flags, ...)
};

struct Knob {
  std::string name;
  KnobKind kind = KnobKind::kChoice;
  std::vector<KnobValue> values;  // non-empty
};

// A point of a space: one choice per knob, in knob order.
struct Config {
  uint64_t index = 0;
  std::vector<uint32_t> choices;
};

class ConfigSpace {
 public:
  ConfigSpace() = default;
  // Fails if a knob has no values, names repeat, or the product exceeds 2^63
  // (indices are stored as signed 64-bit integers).
  static absl::StatusOr<ConfigSpace> Create(std::vector<Knob> knobs);

  uint64_t size() const { return size_; }
  const std::vector<Knob>& knobs() const { return knobs_; }

  // Knob 0 is the least significant digit. index must be < size().
  Config FromIndex(uint64_t index) const;
  absl::StatusOr<Config> FromChoices(std::vector<uint32_t> choices) const;
  // Looks a config up by knob values, e.g. for a template's default.
  absl::StatusOr<Config> FromValues(const std::vector<std::pair<std::string, KnobValue>>& values) const;
  // `c` with the named knobs set to the given values.
  absl::StatusOr<Config> With(const Config& c, const std::vector<std::pair<std::string, KnobValue>>& values) const;

  const KnobValue& Value(const Config& c, std::string_view knob) const;
  int64_t IntValue(const Config& c, std::string_view knob) const;
  const std::string& StrValue(const Config& c, std::string_view knob) const;

  uint64_t Sample(std::mt19937_64& rng) const;
  // The configs differing from `c` in exactly one knob (to the adjacent value
  // of that knob, wrapping); deterministic order.
  std::vector<uint64_t> Neighbors(const Config& c) const;

  // A sub-space with the named knobs pinned to one value each, e.g. to tune
  // with a fixed compiler or to record a small space densely. Its configs
  // map to the same code as the parent's; ToParentIndex/FromParentIndex
  // translate indices. Pinning a pinned space pins relative to the original.
  absl::StatusOr<ConfigSpace> Pin(const std::vector<std::pair<std::string, KnobValue>>& pins) const;
  // Like Pin, keeping a set of values per named knob (in the knob's order),
  // e.g. thread counts up to a device's cores.
  absl::StatusOr<ConfigSpace> Restrict(
      const std::vector<std::pair<std::string, std::vector<KnobValue>>>& allowed) const;
  uint64_t ToParentIndex(uint64_t index) const;
  // Fails (nullopt) when the parent config is outside this sub-space.
  std::optional<uint64_t> FromParentIndex(uint64_t parent_index) const;
  // The choice index in the unpinned space of knob `k`'s value in `c`.
  uint32_t ParentChoice(const Config& c, size_t k) const;
  bool pinned() const { return !parent_choice_.empty(); }
  bool HasKnob(std::string_view name) const { return KnobIndex(name) >= 0; }
  // The knob called `name`; null when the space has none.
  const Knob* FindKnob(std::string_view name) const {
    const int k = KnobIndex(name);
    return k < 0 ? nullptr : &knobs_[k];
  }

  // {"knob": value, ...} as JSON text.
  std::string ToJson(const Config& c) const;
  // "mr=6 nv=2 vec=16 ..." for logs and tables.
  std::string ToString(const Config& c) const;

 private:
  int KnobIndex(std::string_view name) const;
  std::vector<Knob> knobs_;
  uint64_t size_ = 0;
  // Pinned spaces only: the unpinned knobs, and per knob the parent choice
  // of each of this space's choices.
  std::vector<Knob> parent_knobs_;
  std::vector<std::vector<uint32_t>> parent_choice_;
};

// "knob=value" texts (e.g. from --pin options) as pins: a value of digits
// is an integer, anything else text. Fails on a text without a knob name
// or '='; whether the knob and value exist is Pin's to say.
absl::StatusOr<std::vector<std::pair<std::string, KnobValue>>> ParsePins(const std::vector<std::string>& texts);

}  // namespace tunefarm::kernels
