// Dequantization of every supported weight type, 8-bit activation blocks, and dot products.
//
// All functions are pure and thread-safe. Row lengths `n` are in elements and must be multiples
// of the type's block size (CARPOOL_CHECK).
#pragma once

#include <cstdint>
#include <cstring>

#include "backend/dtype.h"

namespace carpool {

// dst[n] = the f32 values of the first n elements stored at src in type t (any type but I32).
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// Activations quantized to 8 bits per block of 32, for integer dot products with quantized
// weights. d is the f32 scale (x ~= d * qs) and s = d * sum(qs), used by types with a minimum.
struct BlockQ8A {
  float d;
  float s;
  int8_t qs[kQK];
};

// dst[n / 32] = x[n] quantized with round-to-nearest, d = max|x| / 127 per block.
void quantize_row_q8a(const float* x, BlockQ8A* dst, int64_t n);

// Dot product of one weight row (n elements of type t, t quantized) with quantized activations.
// The weight side is exact; the error comes from the 8-bit activations (about 0.5% relative).
// Uses the SIMD kernels where the build has them (AVX2), else the portable scalar code.
float vec_dot_q8a(DType t, const void* w_row, const BlockQ8A* x, int64_t n);
// The portable scalar path (the reference for the SIMD kernels).
float vec_dot_q8a_scalar(DType t, const void* w_row, const BlockQ8A* x, int64_t n);

// sum_i a[i] * b[i] in f32 (several accumulators, FMA where available).
float vec_dot_f32(const float* a, const float* b, int64_t n);

// Helpers shared by the K types: 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block.
inline void k_scale_min(int j, const uint8_t* q, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = static_cast<uint8_t>((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
    *min = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// All eight scales and mins of a Q4_K/Q5_K block at once (same values as k_scale_min).
inline void k_scales_mins(const uint8_t* q, uint8_t* scales, uint8_t* mins) {
  constexpr uint32_t kLow6 = 0x3f3f3f3f, kLow4 = 0x0f0f0f0f, kLow2 = 0x03030303;
  uint32_t u[3];
  std::memcpy(u, q, 12);
  const uint32_t s_lo = u[0] & kLow6;                                          // scales 0..3
  const uint32_t s_hi = (u[2] & kLow4) | (((u[0] >> 6) & kLow2) << 4);         // scales 4..7
  const uint32_t m_lo = u[1] & kLow6;                                          // mins 0..3
  const uint32_t m_hi = ((u[2] >> 4) & kLow4) | (((u[1] >> 6) & kLow2) << 4);  // mins 4..7
  std::memcpy(scales, &s_lo, 4);
  std::memcpy(scales + 4, &s_hi, 4);
  std::memcpy(mins, &m_lo, 4);
  std::memcpy(mins + 4, &m_hi, 4);
}

// The 16 six-bit scales of a Q3_K block (0..63; the weight's factor is the value minus 32):
// scale s takes its low four bits from the low (s < 8) or high nibble of scales[s % 8], and its
// top two from bits 2 (s / 4), 2 (s / 4) + 1 of scales[8 + s % 4].
inline void q3_k_scales(const uint8_t* packed, uint8_t* out) {
  for (int s = 0; s < 16; ++s) {
    const int low = s < 8 ? (packed[s] & 0x0f) : (packed[s - 8] >> 4);
    const int high = (packed[8 + s % 4] >> (2 * (s / 4))) & 3;
    out[s] = static_cast<uint8_t>(low | (high << 4));
  }
}

// The 256 two-bit parts of a Q2_K / Q3_K block (element e at (qs[32 h + l] >> 2 j) & 3, h = e /
// 128, j = e % 128 / 32, l = e % 32), and Q3_K's third bits (bit 4 h + j of hmask[l]).
inline int k_low2(const uint8_t* qs, int e) {
  return (qs[32 * (e / 128) + e % 32] >> (2 * (e % 128 / 32))) & 3;
}
inline int q3_k_high(const uint8_t* hmask, int e) {
  return (hmask[e % 32] >> (4 * (e / 128) + e % 128 / 32)) & 1;
}

// The 6-bit scale (0..63; the factor is the value minus 32) of sub-block j of an IQ4_XS block.
inline int iq4_xs_scale(const BlockIQ4_XS& b, int j) {
  return ((b.scales_l[j / 2] >> (4 * (j % 2))) & 0x0f) | (((b.scales_h >> (2 * j)) & 3) << 4);
}

// The 32 five-bit values (0..31) of a Q5_0 / Q5_1 block: element j < 16 is the low nibble of
// qs[j] with bit j of qh as its fifth bit, element j + 16 the high nibble with bit j + 16.
inline void q5_values(const uint8_t* qs, const uint8_t* qh_bytes, int8_t* q) {
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, 4);
  for (int j = 0; j < kQK / 2; ++j) {
    q[j] = static_cast<int8_t>((qs[j] & 0x0f) | (((qh >> j) & 1u) << 4));
    q[j + kQK / 2] = static_cast<int8_t>((qs[j] >> 4) | (((qh >> (j + kQK / 2)) & 1u) << 4));
  }
}

}  // namespace carpool
