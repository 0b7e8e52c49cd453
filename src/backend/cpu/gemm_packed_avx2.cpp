// AVX2 kernels for packed weights (gemm_packed.h): each group of 16 weight rows as two halves of
// 8; per 4-byte part, maddubs (no VNNI) forms 8 rows' 16-bit pair sums, added in 16 bits over as
// many parts as stay exact and widened by one madd per run (parts_dot); one or two activation
// rows of Q4_0, Q4_1, Q4_K and Q8_0, and one row of Q5_K and Q6_K, take both halves at once
// (tile_pair and its K-quant forms). Q8_0 parts
// (q + 128) are dotted as |q| times x with q's sign.
// The kernels themselves are in gemm_packed_kernels.inc; the formulas per type:
//   Q4_0: w = d (q - 8):   acc += d_w * (d_x * (dot(q, x) - 8 sum x))
//   Q8_0: w = d q:         acc += d_w * (d_x * dot(q, x))
//   Q4_1: w = d q + m:     acc += d_w * (d_x * dot(q, x)) + m_w * s_x     (s_x = d_x sum x)
//   Q4_K: w = d sc_j q - dmin m_j per sub-block j of 32:
//                          acc += (d sc_j) * (d_x * dot(q, x)) - (dmin m_j) * s_x
//   Q5_K: as Q4_K with 5-bit q
//   Q6_K: w = d sc_h (q - 32) per half sub-block h of 16 (the halves' sums combined exactly in
//         32-bit integers): acc += d * (d_x * sum_h sc_h (dot_h(q, x) - 32 sum_h x))
//   Q3_K: as Q6_K with 3-bit q and -4
//   Q2_K: w = d sc_h q - dmin m_h per half sub-block h of 16 (q values pre-multiplied by sc_h):
//                          acc += d * (d_x * dot(sc q, x)) - sum_h (dmin m_h) * (d_x sum_h x)
//   IQ4_NL: w = d v (v from the IQ4 table, held as v + 128 like Q8_0's parts):
//                          acc += d_w * (d_x * dot(v, x))
//   IQ4_XS: w = d (ls_j - 32) v per sub-block j of 32: as IQ4_NL with d (ls_j - 32)
// The corrections (-8, -16, -32, -4 times the activation sum for Q4_0, Q5_0, Q6_K, Q3_K) seed
// the integer sums: they stay exact.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cpu/gemm_packed.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>

#include "backend/cpu/cpu_features.h"

namespace carpool {
namespace {
using VecI = __m256i;
using VecF = __m256;
constexpr int kLanes = 8;
constexpr int kRowsMax = 4;  // 16 vector registers: 8 parts, 4 accumulators and temporaries
constexpr int32_t kQ8Offset = 0;

inline VecI vload(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
inline void vstore(uint8_t* p, VecI v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v);
}
inline VecI vset1_8(int8_t v) {
  return _mm256_set1_epi8(v);
}
inline VecI vset1_32(int32_t v) {
  return _mm256_set1_epi32(v);
}
inline VecI vand(VecI a, VecI b) {
  return _mm256_and_si256(a, b);
}
inline VecI vor(VecI a, VecI b) {
  return _mm256_or_si256(a, b);
}
inline VecI vadd_i(VecI a, VecI b) {
  return _mm256_add_epi32(a, b);
}
inline VecI vsrl16(VecI a, int n) {
  return _mm256_srli_epi16(a, n);
}
inline VecI vsll16(VecI a, int n) {
  return _mm256_slli_epi16(a, n);
}
// Byte i of the result is q + add where bit i of the 32 bits at p is set: the bits' bytes are
// spread to 8 lanes each, each lane keeps its own bit, and the lanes that kept one get add.
inline VecI vadd_bits(VecI q, const uint8_t* p, VecI add) {
  uint32_t m;
  std::memcpy(&m, p, 4);
  const VecI spread =
      _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int32_t>(m)),
                          _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                           2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const VecI bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const VecI set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
  return _mm256_add_epi8(q, _mm256_and_si256(set, add));
}
inline VecI vmul16(VecI a, VecI b) {
  return _mm256_mullo_epi16(a, b);
}
inline VecI vtable16(const uint8_t* p) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline VecI vlookup(VecI table, VecI idx) {
  return _mm256_shuffle_epi8(table, idx);
}
inline VecI vload_u8_32(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
inline VecI vload_s8_32(const uint8_t* p) {
  return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
inline VecI vmul32(VecI a, VecI b) {
  return _mm256_mullo_epi32(a, b);
}
inline VecI vsrl32(VecI a, int n) {
  return _mm256_srli_epi32(a, n);
}
inline VecI vsll32(VecI a, int n) {
  return _mm256_slli_epi32(a, n);
}
// u8 x s8 pairs into 16 bits (no saturation for weights below 128), then pairs into 32 bits.
inline VecI vdot(VecI acc, VecI w, int32_t x4) {
  const __m256i p = _mm256_maddubs_epi16(w, _mm256_set1_epi32(x4));
  return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}
// No VNNI: parts_dot sums runs of maddubs results in 16-bit lanes, widening once per run.
constexpr bool kDot16 = true;
inline VecI vmaddubs(VecI w, int32_t x4) {
  return _mm256_maddubs_epi16(w, _mm256_set1_epi32(x4));
}
inline VecI vadd16(VecI a, VecI b) {
  return _mm256_add_epi16(a, b);
}
inline VecI vwiden16(VecI a) {
  return _mm256_madd_epi16(a, _mm256_set1_epi16(1));
}
// Q8_0 parts hold q + 128, too large for maddubs: |q| times x with q's sign (exact: |q| <= 128,
// |x| <= 127), so no correction (kQ8Offset 0).
inline VecI vdot_q8(VecI acc, VecI w, int32_t x4) {
  const __m256i q = _mm256_xor_si256(w, _mm256_set1_epi8(static_cast<char>(0x80)));
  const __m256i p =
      _mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(_mm256_set1_epi32(x4), q));
  return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}
inline VecF vcvt(VecI a) {
  return _mm256_cvtepi32_ps(a);
}
inline VecF vmul(VecF a, VecF b) {
  return _mm256_mul_ps(a, b);
}
inline VecF vfmadd(VecF a, VecF b, VecF c) {
  return _mm256_fmadd_ps(a, b, c);
}
inline VecF vfnmadd(VecF a, VecF b, VecF c) {
  return _mm256_fnmadd_ps(a, b, c);
}
inline VecF vset1_f(float v) {
  return _mm256_set1_ps(v);
}
inline VecF vadd_f(VecF a, VecF b) {
  return _mm256_add_ps(a, b);
}
inline VecF vload_f16(const uint8_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline VecF vload_u8f(const uint8_t* p) {
  return _mm256_cvtepi32_ps(
      _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
inline VecF vload_s8f(const uint8_t* p) {
  return _mm256_cvtepi32_ps(
      _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
inline VecF vloadu_f(const float* p) {
  return _mm256_loadu_ps(p);
}
inline void vstoreu_f(float* p, VecF v) {
  _mm256_storeu_ps(p, v);
}

#include "backend/cpu/gemm_packed_kernels.inc"

}  // namespace

bool gemm_packed_avx2(const GemmPackedArgs& a, int64_t g0, int64_t g1) {
  if (!cpu_supports(CpuIsa::kAvx2)) return false;
  return packed_dispatch(a, g0, g1);
}

}  // namespace carpool
#pragma GCC pop_options

#else

namespace carpool {
bool gemm_packed_avx2(const GemmPackedArgs&, int64_t, int64_t) {
  return false;
}
}  // namespace carpool

#endif
