// Internal to the CPU backend: products of packed float weights (packed_weights.h: F32, F16,
// BF16) with activation rows, 16 output columns per vector and up to 8 activation rows x 2
// groups per tile: per k, two weight vectors and one broadcast activation per row feed 16
// independent FMAs (outer products; one or two rows: four groups per tile; F16 at 9-16 rows: 16
// rows x 1 group, each weight widened once for all of them), so the kernel runs at the FMA rate
// instead of the load-bound dot products of gemm_float.h.
//
// Activations are f32 (exact products; F16 and BF16 weights are widened in registers), or, for
// BF16 weights where the processor has AVX512_BF16 and the caller asks for it, bf16 pairs: one
// vdpbf16ps does two products per lane (twice the rate), with activations rounded to bf16 as
// llama.cpp does for BF16 weights.
//
// Per output column the sum runs over k in order with one accumulator, so a column's result
// depends only on its weight row and activation row: never on how many rows or groups share a
// tile or how groups are split over threads (batch invariance).
//
// Thread-safety: pure functions; callers split [g0, g1) across threads.
#pragma once

#include <cstdint>

#include "backend/cpu/packed_weights.h"

namespace carpool {

struct GemmPackedFloatArgs {
  const PackedWeight* w = nullptr;   // F32, F16 or BF16
  const float* x = nullptr;          // activation rows [m, k], f32
  const uint32_t* x_bf16 = nullptr;  // or, BF16 weights only: [m][blocks] bf16 pairs (low half:
                                     // element 2i, high: 2i + 1); null: use x
  int64_t m = 0;
  float* y = nullptr;  // y[r * ldy + j] = dot(x row r, w row j) (+ bias[j])
  int64_t ldy = 0;
  const float* bias = nullptr;  // [n] or null
};

// Computes the outputs of weight groups [g0, g1) for all m rows. False (nothing written) where
// the machine lacks AVX-512 (or AVX512_BF16 when x_bf16 is set).
bool gemm_packed_float_avx512(const GemmPackedFloatArgs& a, int64_t g0, int64_t g1);

// BF16 weights with bf16 activation pairs (x_bf16) on AMX tiles (gemm_packed_bf16_amx.cpp), for
// any number of rows. False (nothing written) unless the weights are BF16, x_bf16 is set and
// cpu_amx_bf16(); the caller then uses gemm_packed_float_avx512. Within a machine the choice
// does not depend on the batch, so neither do the results.
bool gemm_packed_bf16_amx(const GemmPackedFloatArgs& a, int64_t g0, int64_t g1);

// Rounds n f32 values to bf16 pairs (round to nearest even, as vcvtne2ps2bf16); odd n: the last
// pair's high half is zero. out: (n + 1) / 2 words.
void f32_to_bf16_pairs(const float* x, int64_t n, uint32_t* out);

}  // namespace carpool
