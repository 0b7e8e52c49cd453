// Internal to the CPU backend: multi-row products of F32/F16/BF16 weight rows with f32
// activation rows. Each 8-wide slice of a weight row is loaded and converted to f32 once and
// multiplied into 4 activation rows (FMA), so the weight side costs one load per 4 FMAs and no
// f32 copy of the weights is written. Exact up to f32 summation order.
//
// Thread-safety: pure functions; callers split [j0, j1) across threads.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/dtype.h"

namespace carpool {

struct GemmFloatArgs {
  DType wtype = DType::kF32;  // F32, F16 or BF16
  const char* w = nullptr;    // weight rows [n][row bytes]
  size_t w_row_bytes = 0;
  const float* x = nullptr;  // activation rows [m, k]
  int64_t m = 0;
  int64_t k = 0;
  float* y = nullptr;  // y[r * ldy + j] = dot(x row r, w row j) (+ bias[j])
  int64_t ldy = 0;
  const float* bias = nullptr;  // [n] or null
};

// Computes weight rows [j0, j1) with the AVX2 kernels; false (nothing written) where the CPU
// lacks AVX2/FMA/F16C or the type is not a float type.
bool gemm_float_avx2(const GemmFloatArgs& a, int64_t j0, int64_t j1);

}  // namespace carpool
