// AVX-512 block kernel of paged attention (paged_attention.h): the kernel of
// paged_attention_kernels.inc at 16 keys per vector, over this file's vector primitives. Called
// only where CPUID reports the AVX-512 level (F, BW and VL are used).
#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "backend/cpu/paged_attention.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl")
// GCC 12 warns inside its own _mm512_undefined_ps (GCC bug 105593, fixed in 13).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

namespace carpool {
namespace {

// The helpers are forced inline so that the accumulator arrays stay in registers.
#define ATTN_INLINE inline __attribute__((always_inline))

constexpr int kLanes = 16;
constexpr int kPanelVecs = 8;  // q or accumulator registers per pass over head_dim: 128 dims

// The first n lanes (n <= 16).
ATTN_INLINE __mmask16 first_lanes(int n) {
  return static_cast<__mmask16>((1u << n) - 1);
}

// exp(x) per lane (max error 1 ulp measured, paged_attention_test). x = n ln2 + r with n = round(x
// / ln2), |r| <= ln2 / 2; r is formed with FMAs from ln2 split into a float and its remainder. e^r
// is the Taylor polynomial of degree 7 (truncation error < 5e-9 relative at |r| = ln2 / 2), by
// Horner; scalef multiplies by 2^n with one rounding, so results below FLT_MIN round to subnormals
// or 0. Inputs are clamped to
// [-110, 89] first: -inf and anything below about -103.97 give 0, anything above about 88.72 gives
// +inf; max/min return their second operand for NaN, so NaN stays NaN.
ATTN_INLINE __m512 exp16(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-110.f), x);
  x = _mm512_min_ps(_mm512_set1_ps(89.f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693147182f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-1.90465430e-09f), r);
  __m512 p = _mm512_set1_ps(1.f / 5040.f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 720.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

// 16 cache values from p as f32 (the cache holds f32, f16 or int8); the _tail forms read only
// the lanes of the tail and give 0 in the others.
ATTN_INLINE __m512 load_kv(const float* p) {
  return _mm512_loadu_ps(p);
}
ATTN_INLINE __m512 load_kv(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
ATTN_INLINE __m512 load_kv(const int8_t* p) {
  return _mm512_cvtepi32_ps(
      _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

// The primitives of paged_attention_kernels.inc at 16 lanes.
using VecF = __m512;
constexpr int kScorePairRows = 0;  // scores_rows_pair not measured at this level
template <int kVecs>
constexpr int kPvRows = kVecs <= 4 ? 4 : 2;  // 32 registers: rows x (kVecs + 1) accumulators
struct Tail {
  __mmask16 m;
  bool any() const { return m != 0; }
};
ATTN_INLINE Tail tail_of(int n) {
  return {first_lanes(n)};
}
ATTN_INLINE __m512 load_kv_tail(Tail t, const float* p) {
  return _mm512_maskz_loadu_ps(t.m, p);
}
ATTN_INLINE __m512 load_kv_tail(Tail t, const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(t.m, p));
}
ATTN_INLINE __m512 load_kv_tail(Tail t, const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(t.m, p)));
}
ATTN_INLINE __m512 vzero() {
  return _mm512_setzero_ps();
}
ATTN_INLINE __m512 vset1(float x) {
  return _mm512_set1_ps(x);
}
ATTN_INLINE __m512 vbcast(const float* p) {
  return _mm512_set1_ps(*p);
}
ATTN_INLINE __m512 vadd(__m512 a, __m512 b) {
  return _mm512_add_ps(a, b);
}
ATTN_INLINE __m512 vsub(__m512 a, __m512 b) {
  return _mm512_sub_ps(a, b);
}
ATTN_INLINE __m512 vmul(__m512 a, __m512 b) {
  return _mm512_mul_ps(a, b);
}
ATTN_INLINE __m512 vmax(__m512 a, __m512 b) {
  return _mm512_max_ps(a, b);
}
ATTN_INLINE __m512 vfmadd(__m512 a, __m512 b, __m512 c) {
  return _mm512_fmadd_ps(a, b, c);
}
ATTN_INLINE __m512 vloadu(const float* p) {
  return _mm512_loadu_ps(p);
}
ATTN_INLINE void vstoreu(float* p, __m512 v) {
  _mm512_storeu_ps(p, v);
}
ATTN_INLINE __m512 vload_tail(Tail t, const float* p) {
  return _mm512_maskz_loadu_ps(t.m, p);
}
ATTN_INLINE void vstore_tail(float* p, Tail t, __m512 v) {
  _mm512_mask_storeu_ps(p, t.m, v);
}
ATTN_INLINE __m512 vkeep_first(int n, __m512 v, __m512 fill) {
  return _mm512_mask_mov_ps(fill, first_lanes(n), v);
}
ATTN_INLINE float vhmax(__m512 v) {
  return _mm512_reduce_max_ps(v);
}
ATTN_INLINE float vhsum(__m512 v) {
  return _mm512_reduce_add_ps(v);
}
// exp16, 0 below kAttnExpFloor (NaN stays NaN: the comparison is true for unordered inputs).
ATTN_INLINE __m512 vexp(__m512 x) {
  const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kAttnExpFloor), _CMP_NLT_UQ);
  return _mm512_maskz_mov_ps(keep, exp16(x));
}

#include "backend/cpu/paged_attention_kernels.inc"

}  // namespace

AttnBlockFn attn_block_avx512(int head_dim, DType kv_dtype) {
  switch (Panels(head_dim).rest / kLanes) {
    case 0:
      return attn_block_for<0>(kv_dtype);
    case 1:
      return attn_block_for<1>(kv_dtype);
    case 2:
      return attn_block_for<2>(kv_dtype);
    case 3:
      return attn_block_for<3>(kv_dtype);
    case 4:
      return attn_block_for<4>(kv_dtype);
    case 5:
      return attn_block_for<5>(kv_dtype);
    case 6:
      return attn_block_for<6>(kv_dtype);
    case 7:
      return attn_block_for<7>(kv_dtype);
    default:
      return attn_block_for<8>(kv_dtype);
  }
}

bool exp_f32_avx512(const float* x, float* y, int64_t n) {
  if (!cpu_supports(CpuIsa::kAvx512)) return false;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) _mm512_storeu_ps(y + i, exp16(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = first_lanes(static_cast<int>(n - i));
    _mm512_mask_storeu_ps(y + i, m, exp16(_mm512_maskz_loadu_ps(m, x + i)));
  }
  return true;
}

}  // namespace carpool
#undef ATTN_INLINE
#pragma GCC pop_options

#else

namespace carpool {
AttnBlockFn attn_block_avx512(int, DType) {
  return nullptr;
}
bool exp_f32_avx512(const float*, float*, int64_t) {
  return false;
}
}  // namespace carpool

#endif
