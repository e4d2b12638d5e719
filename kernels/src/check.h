// Internal assertions: a failed TF_CHECK is a bug in tunefarm, never bad user
// input (that is reported through absl::Status).
#pragma once

#include <cstdio>
#include <cstdlib>

#define TF_CHECK(cond, msg)                                                              \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: internal error: %s (%s)\n", __FILE__, __LINE__, msg, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)
