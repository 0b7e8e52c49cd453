// Internal to the CPU backend: products of packed quantized weights (packed_weights.h) with
// 8-bit activation rows, 16 output columns per vector.
//
// Per output column the sum runs over the blocks in order, each block's integer dot product being
// exact, so a column's result depends only on its weight row and activation row: never on how
// many activation rows share the call (batch invariance) or on how groups are split over threads.
//
// Thread-safety: pure functions; callers split [g0, g1) across threads.
#pragma once

#include <cstdint>

#include "backend/cpu/packed_weights.h"
#include "backend/cpu/quants.h"

namespace carpool {

struct GemmPackedArgs {
  const PackedWeight* w = nullptr;
  const BlockQ8A* x = nullptr;  // activation rows [m][blocks]
  const int32_t* x_sum =
      nullptr;  // sums of activation quants [m][k/32][gemm_packed_sums_per_block]
  int64_t m = 0;
  float* y = nullptr;  // y[r * ldy + j] = dot(x row r, w row j) (+ bias[j])
  int64_t ldy = 0;
  const float* bias = nullptr;  // [n] or null
};

// How many sums per activation block the kernels read from GemmPackedArgs::x_sum for type t:
// 1 (the whole block) for Q4_0, Q5_0, Q8_0 and the IQ4 types, 2 (each half of 16) for Q2_K, Q3_K
// and Q6_K, else 0.
inline int gemm_packed_sums_per_block(DType t) {
  if (t == DType::kQ4_0 || t == DType::kQ5_0 || t == DType::kQ8_0 || t == DType::kIQ4_NL ||
      t == DType::kIQ4_XS) {
    return 1;
  }
  return t == DType::kQ2_K || t == DType::kQ3_K || t == DType::kQ6_K ? 2 : 0;
}

// Computes the outputs of weight groups [g0, g1) (columns 16 g0 .. 16 g1 - 1) for all m rows,
// with the kernels of one instruction-set level. False if this machine lacks the level (the
// caller then uses the unpacked kernels). Both levels give the same integer sums and use the
// same f32 operations per column.
bool gemm_packed_avx512(const GemmPackedArgs& a, int64_t g0, int64_t g1);
bool gemm_packed_avx2(const GemmPackedArgs& a, int64_t g0, int64_t g1);

}  // namespace carpool
