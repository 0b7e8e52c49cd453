// Internal to the CPU backend: the SIMD dot-product path behind vec_dot_q8a.
#pragma once

#include <cstdint>

#include "backend/cpu/quants.h"

namespace carpool {

// Sets *out to the dot product of one weight row (nb blocks of type t) with x and returns true
// when this build has a SIMD kernel for t; returns false otherwise (portable path applies).
bool vec_dot_q8a_simd(DType t, const void* w_row, const BlockQ8A* x, int64_t nb, float* out);

}  // namespace carpool
