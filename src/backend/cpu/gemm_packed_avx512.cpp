// AVX-512 VNNI kernels for packed weights (gemm_packed.h): per block of 32 elements and group of
// 16 weight rows, eight vpdpbusd (unsigned weight bytes x four signed activation bytes broadcast)
// form the 16 rows' exact integer sums; one or two FMAs scale them into 16 accumulators. Q8_0
// parts hold q + 128, corrected by seeding the sum with -128 sum x.
// The kernels themselves are in gemm_packed_kernels.inc; the formulas per type:
//   Q4_0: w = d (q - 8):   acc += d_w * (d_x * (dot(q, x) - 8 sum x))
//   Q8_0: w = d q:         acc += d_w * (d_x * dot(q, x))
//   Q4_1: w = d q + m:     acc += d_w * (d_x * dot(q, x)) + m_w * s_x     (s_x = d_x sum x)
//   Q5_0: w = d (q - 16):  as Q4_0 with 5-bit q
//   Q5_1: w = d q + m:     as Q4_1 with 5-bit q
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
// The corrections (-8, -16, -32, -4 times the activation sum for Q4_0, Q5_0, Q6_K, Q3_K; AVX-512
// also -128 for the biased Q8_0 and IQ4 bytes) seed the integer sums: they stay exact.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cpu/gemm_packed.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")
// GCC 12 warns inside its own _mm512_undefined_* (GCC bug 105593, fixed in 13).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "backend/cpu/cpu_features.h"

namespace carpool {
namespace {
using VecI = __m512i;
using VecF = __m512;
constexpr int kLanes = 16;
constexpr int kRowsMax = 8;  // 32 vector registers: 8 parts, 8 accumulators and temporaries
constexpr int32_t kQ8Offset = 128;

inline VecI vload(const uint8_t* p) {
  return _mm512_loadu_si512(p);
}
inline void vstore(uint8_t* p, VecI v) {
  _mm512_storeu_si512(p, v);
}
inline VecI vset1_8(int8_t v) {
  return _mm512_set1_epi8(v);
}
inline VecI vset1_32(int32_t v) {
  return _mm512_set1_epi32(v);
}
inline VecI vand(VecI a, VecI b) {
  return _mm512_and_si512(a, b);
}
inline VecI vor(VecI a, VecI b) {
  return _mm512_or_si512(a, b);
}
inline VecI vadd_i(VecI a, VecI b) {
  return _mm512_add_epi32(a, b);
}
inline VecI vsrl16(VecI a, int n) {
  return _mm512_srli_epi16(a, static_cast<unsigned>(n));
}
inline VecI vsll16(VecI a, int n) {
  return _mm512_slli_epi16(a, static_cast<unsigned>(n));
}
inline VecI vadd_bits(VecI q, const uint8_t* p, VecI add) {
  uint64_t m;
  std::memcpy(&m, p, 8);
  return _mm512_mask_add_epi8(q, m, q, add);
}
inline VecI vmul16(VecI a, VecI b) {
  return _mm512_mullo_epi16(a, b);
}
inline VecI vtable16(const uint8_t* p) {
  return _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline VecI vlookup(VecI table, VecI idx) {
  return _mm512_shuffle_epi8(table, idx);
}
inline VecI vload_u8_32(const uint8_t* p) {
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline VecI vload_s8_32(const uint8_t* p) {
  return _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline VecI vmul32(VecI a, VecI b) {
  return _mm512_mullo_epi32(a, b);
}
inline VecI vsrl32(VecI a, int n) {
  return _mm512_srli_epi32(a, static_cast<unsigned>(n));
}
inline VecI vsll32(VecI a, int n) {
  return _mm512_slli_epi32(a, static_cast<unsigned>(n));
}
inline VecI vdot(VecI acc, VecI w, int32_t x4) {
  return _mm512_dpbusd_epi32(acc, w, _mm512_set1_epi32(x4));
}
// Q8_0 parts hold q + 128: the unsigned dot, corrected by the -128 sum x seed (kQ8Offset).
inline VecI vdot_q8(VecI acc, VecI w, int32_t x4) {
  return vdot(acc, w, x4);
}
inline VecF vcvt(VecI a) {
  return _mm512_cvtepi32_ps(a);
}
inline VecF vmul(VecF a, VecF b) {
  return _mm512_mul_ps(a, b);
}
inline VecF vfmadd(VecF a, VecF b, VecF c) {
  return _mm512_fmadd_ps(a, b, c);
}
inline VecF vfnmadd(VecF a, VecF b, VecF c) {
  return _mm512_fnmadd_ps(a, b, c);
}
inline VecF vset1_f(float v) {
  return _mm512_set1_ps(v);
}
inline VecF vadd_f(VecF a, VecF b) {
  return _mm512_add_ps(a, b);
}
inline VecF vload_f16(const uint8_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline VecF vload_u8f(const uint8_t* p) {
  return _mm512_cvtepi32_ps(
      _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
inline VecF vload_s8f(const uint8_t* p) {
  return _mm512_cvtepi32_ps(
      _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
inline VecF vloadu_f(const float* p) {
  return _mm512_loadu_ps(p);
}
inline void vstoreu_f(float* p, VecF v) {
  _mm512_storeu_ps(p, v);
}

#include "backend/cpu/gemm_packed_kernels.inc"

}  // namespace

bool gemm_packed_avx512(const GemmPackedArgs& a, int64_t g0, int64_t g1) {
  if (!cpu_supports(CpuIsa::kAvx512)) return false;
  return packed_dispatch(a, g0, g1);
}

}  // namespace carpool
#pragma GCC pop_options

#else

namespace carpool {
bool gemm_packed_avx512(const GemmPackedArgs&, int64_t, int64_t) {
  return false;
}
}  // namespace carpool

#endif
