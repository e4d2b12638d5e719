// C code generation for CPU candidates.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "tunefarm/kernels/ir.h"

namespace tunefarm::kernels {

// Prints `f` as a self-contained GNU C11 translation unit exporting
// `void <f.name>(void* const* args)`. Unrolled loops are expanded first;
// vectors become GCC vector extensions. Fails on nodes C cannot express
// (GPU loops, barriers).
absl::StatusOr<std::string> GenerateC(const ir::LoweredFunc& f);

}  // namespace tunefarm::kernels
