// CARPOOL_CHECK: internal invariants only (never for untrusted input). Reports file and line.
#pragma once

#include <cstdio>
#include <cstdlib>

#define CARPOOL_CHECK(cond)                                                                     \
  do {                                                                                          \
    if (!(cond)) {                                                                              \
      std::fprintf(stderr, "carpool: internal check failed at %s:%d: %s\n", __FILE__, __LINE__, \
                   #cond);                                                                      \
      std::abort();                                                                             \
    }                                                                                           \
  } while (0)
