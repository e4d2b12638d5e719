// How every `tunefarm` subcommand reports failure.
#pragma once

#include <iostream>

#include "absl/strings/string_view.h"

namespace tunefarm::cli {

// Exit codes: 0 success, 1 the work failed, 2 bad input.
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// Prints "tunefarm: MSG" on stderr and returns `code`.
inline int Error(int code, absl::string_view msg) {
  std::cerr << "tunefarm: " << msg << "\n";
  return code;
}

}  // namespace tunefarm::cli
