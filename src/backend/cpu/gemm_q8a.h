// Internal to the CPU backend: multi-row products of quantized weight rows with 8-bit
// activation rows (matmul with quantize_activations, decode and prefill alike).
//
// A tile kernel unpacks each weight block once into registers and dots it with up to 4 (AVX2)
// or 8 (AVX-512) activation rows before moving on, so a weight row is read and unpacked once per
// panel of activation rows instead of once per row. Kernels exist for every quantized type at
// each CpuIsa level; the scalar level calls vec_dot_q8a_scalar per (row, column).
//
// Thread-safety: pure functions; callers split [j0, j1) across threads.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/quants.h"

namespace carpool {

struct GemmQ8aArgs {
  DType wtype = DType::kQ4_0;  // quantized weight type
  const char* w = nullptr;     // weight rows [n][row bytes]
  size_t w_row_bytes = 0;
  const BlockQ8A* x = nullptr;  // activation rows [m][nb_x] (nb_x = k / 32)
  // Optional: the same blocks with qs ^ 0x80 (activations + 128 as unsigned bytes), which the
  // VNNI kernels of signed weight types (Q8_0, Q6_K) use in place of a sign transfer.
  const BlockQ8A* x_u = nullptr;
  // Optional: the d and s of every activation block as plain arrays [m][nb_x], which the Q4_K
  // and Q5_K kernels use to scale eight sub-blocks at once (see split_q8a_scales).
  const float* x_d = nullptr;
  const float* x_s = nullptr;
  int64_t m = 0;
  int64_t k = 0;       // elements per row, a multiple of the weight block size
  float* y = nullptr;  // y[r * ldy + j] = dot(x row r, w row j) (+ bias[j])
  int64_t ldy = 0;
  const float* bias = nullptr;  // [n] or null
};

// Computes the outputs of weight rows [j0, j1) for all m activation rows with kernels of level
// `isa` (which the machine must support, CARPOOL_CHECK).
void gemm_q8a(CpuIsa isa, const GemmQ8aArgs& a, int64_t j0, int64_t j1);

// True if the kernels of `isa` for type t read GemmQ8aArgs::x_u when given.
bool gemm_q8a_uses_offset_acts(CpuIsa isa, DType t);

// d[nb] and s[nb] of the blocks src[nb].
void split_q8a_scales(const BlockQ8A* src, float* d, float* s, int64_t nb);

// dst[nb] = src[nb] with every quant flipped to unsigned (qs ^ 0x80); d and s are copied.
void offset_q8a(const BlockQ8A* src, BlockQ8A* dst, int64_t nb);

// sums[nb * parts] = the sums of each block's quants in `parts` (1 or 2) equal pieces (the packed
// kernels' offset corrections).
void sum_q8a(const BlockQ8A* src, int32_t* sums, int64_t nb, int parts);

// The per-level entry points (defined in gemm_q8a_<level>.cpp); false: no kernel for the type.
bool gemm_q8a_avx2(const GemmQ8aArgs& a, int64_t j0, int64_t j1);
bool gemm_q8a_avx512(const GemmQ8aArgs& a, int64_t j0, int64_t j1);

}  // namespace carpool
