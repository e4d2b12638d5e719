// Workloads: operator + shape + dtype, with one canonical text form.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace tunefarm::kernels {

// An operator instance. Parameters keep the order the operator's template
// declares, so the canonical key is stable:
// "matmul(M=1024,N=1024,K=1024,dtype=float32)".
struct Workload {
  std::string op;
  std::vector<std::pair<std::string, int64_t>> params;
  // Parameters whose values are names (a layout such as "NCHW"), in the
  // order the template declares them; always listed, after `params`.
  std::vector<std::pair<std::string, std::string>> text_params;
  std::string dtype = "float32";

  // Value of a parameter; the workload must have been validated by its
  // template (ParseWorkload does that), so a missing name is a bug.
  int64_t param(std::string_view name) const;
  // Value of an optional parameter, which a workload lists only when it
  // differs from its default (so keys without it stay as they were).
  int64_t param_or(std::string_view name, int64_t default_value) const;
  // Value of a text parameter; like param(), a missing name is a bug.
  const std::string& text(std::string_view name) const;
  std::string Key() const;
  // 64-bit FNV-1a of Key(), for indexing.
  uint64_t Hash() const;
  bool operator==(const Workload&) const = default;
};

// Parses "op(NAME=VALUE,...[,dtype=T])", whitespace allowed between tokens,
// and validates it against the registered template for `op` (known
// parameters, all present, values in range). Errors are InvalidArgument or
// NotFound (unknown operator) with a one-line message meant for users.
absl::StatusOr<Workload> ParseWorkload(std::string_view text);

}  // namespace tunefarm::kernels
