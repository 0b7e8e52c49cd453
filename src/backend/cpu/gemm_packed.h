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
#include <vector>

#include "backend/cpu/packed_weights.h"
#include "backend/cpu/quants.h"

namespace carpool {

// Activation rows laid out for AMX tile loads (gemm_packed_amx): chunks of 16 rows; per chunk c
// and block i, at index (c * blocks + i) * 16 + row: 32 quants (qs), d, s and `sums` block sums
// times the weight type's factor (gemm_packed_amx_sum_factor: the kernels add them to integer
// sums as they are); rows past m are zeros. Filled once per matmul, row by row, after
// quantization.
struct AmxActivations {
  int64_t m = 0;
  int64_t blocks = 0;  // per row
  int sums = 0;        // gemm_packed_sums_per_block of the weight type
  int32_t factor = 1;
  std::vector<int8_t> qs;
  std::vector<float> d, s;
  std::vector<int32_t> sum;
};

// What the AMX kernels for weight type t expect the activation sums multiplied by.
int32_t gemm_packed_amx_sum_factor(DType t);

// Sizes x for m rows of `blocks` blocks, for weights of type t, and zeroes its padding rows.
void amx_reset(AmxActivations& x, DType t, int64_t m, int64_t blocks);
// Row r from its quantized blocks and their sums (gemm_packed_sums_per_block of the type).
void amx_put_row(AmxActivations& x, int64_t r, const BlockQ8A* row, const int32_t* row_sums);

struct GemmPackedArgs {
  const PackedWeight* w = nullptr;
  const BlockQ8A* x = nullptr;  // activation rows [m][blocks]
  const int32_t* x_sum =
      nullptr;  // sums of activation quants [m][k/32][gemm_packed_sums_per_block]
  int64_t m = 0;
  float* y = nullptr;  // y[r * ldy + j] = dot(x row r, w row j) (+ bias[j])
  int64_t ldy = 0;
  const float* bias = nullptr;          // [n] or null
  const AmxActivations* amx = nullptr;  // x and x_sum again, for gemm_packed_amx
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

// True if gemm_packed_amx takes weights of type t with m activation rows: AMX is usable here
// (cpu_amx()) and there are enough rows for tiles to pay.
bool gemm_packed_amx_takes(DType t, int64_t m);
// The same outputs, bit for bit, from AMX tile multiplies (gemm_packed_amx.cpp), reading the
// activations from a.amx: false, with nothing written, unless gemm_packed_amx_takes and a.amx is
// set (the caller then uses gemm_packed_avx512).
bool gemm_packed_amx(const GemmPackedArgs& a, int64_t g0, int64_t g1);

}  // namespace carpool
