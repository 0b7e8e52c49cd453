// AVX2 block kernel of paged attention (paged_attention.h): the kernel of
// paged_attention_kernels.inc at 8 keys per vector, over this file's vector primitives. Called
// only where CPUID reports AVX2, FMA and F16C.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "backend/cpu/paged_attention.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>

namespace carpool {
namespace {

// The helpers are forced inline so that the accumulator arrays stay in registers.
#define ATTN_INLINE inline __attribute__((always_inline))

constexpr int kLanes = 8;
// Accumulator registers per row per pass over head_dim: 16 dims, so that up to 4 rows share each
// load of V (kPvRows; with panels of 32 dims only 2 fitted the 16 registers, and rows past them
// loaded and widened each value row again). f16 widening (vcvtph2ps) is this level's costliest
// instruction on the AMD EPYC (Zen 1) VM: ~1.2 ns per 8 values against ~0.25 ns per FMA.
constexpr int kPanelVecs = 2;

// All-ones in lanes [0, n), for maskload/maskstore and blends.
ATTN_INLINE __m256i first_lanes(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// 2^n for integer n in [-126, 127], as a float.
ATTN_INLINE __m256 pow2(__m256i n) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
}

// exp(x) per lane, the same arithmetic as the AVX-512 kernel's exp16 (max error 1 ulp): range
// reduction with n = round(x / ln2), Taylor polynomial of degree 7 of e^r, |r| <= ln2 / 2. The
// scaling by 2^n (n in [-159, 128] after clamping x to [-110, 89]) is split into two factors that
// are normal floats, p * 2^(n >> 1) exactly and then * 2^(n - (n >> 1)) with one rounding, so
// results below FLT_MIN round to subnormals or 0 as with scalef. -inf gives 0, NaN stays NaN.
ATTN_INLINE __m256 exp8(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(-110.f), x);
  x = _mm256_min_ps(_mm256_set1_ps(89.f), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693147182f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-1.90465430e-09f), r);
  __m256 p = _mm256_set1_ps(1.f / 5040.f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 720.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 120.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 24.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 6.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  return _mm256_mul_ps(_mm256_mul_ps(p, pow2(n1)), pow2(_mm256_sub_epi32(ni, n1)));
}

// The primitives of paged_attention_kernels.inc at 8 lanes.
// Calls of 1-3 rows (a decoding token's query heads per KV head in most GQA models) take both
// vectors of a 16-key block per broadcast q value: 12 accumulators. Zen 1 VM, one block in L2,
// ns per block of 16 keys, head_dim 64, f16, before -> after (with the 4-row P.V above): 1 row
// 465 -> 450, 2 rows 639 -> 597, 3 rows 890-934 -> 773, 4 rows 1030 -> 970, 8 rows 2030 -> 1880.
// Larger calls keep 4 rows per K load: a second group would widen K again.
constexpr int kScorePairRows = 3;
using VecF = __m256;
template <int kVecs>
constexpr int kPvRows = 4;  // 16 registers: rows x kVecs accumulators (+1 with a tail), V, p
struct Tail {
  __m256i m;  // all-ones in the first n lanes
  int n;
  bool any() const { return n > 0; }
};
ATTN_INLINE Tail tail_of(int n) {
  return {first_lanes(n), n};
}

// 8 cache values from p as f32 (the cache holds f32, f16 or int8); the _tail forms read only
// the lanes of the tail and give 0 in the others.
ATTN_INLINE __m256 load_kv(const float* p) {
  return _mm256_loadu_ps(p);
}
ATTN_INLINE __m256 load_kv(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
ATTN_INLINE __m256 load_kv(const int8_t* p) {
  return _mm256_cvtepi32_ps(
      _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
ATTN_INLINE __m256 load_kv_tail(Tail t, const float* p) {
  return _mm256_maskload_ps(p, t.m);
}
ATTN_INLINE __m256 load_kv_tail(Tail t, const int8_t* p) {
  alignas(16) int8_t q[16] = {};
  for (int i = 0; i < t.n; ++i) q[i] = p[i];
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_load_si128(reinterpret_cast<__m128i*>(q))));
}
ATTN_INLINE __m256 load_kv_tail(Tail t, const uint16_t* p) {
  alignas(16) uint16_t h[kLanes] = {};
  for (int i = 0; i < t.n; ++i) h[i] = p[i];
  return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(h)));
}
ATTN_INLINE __m256 vzero() {
  return _mm256_setzero_ps();
}
ATTN_INLINE __m256 vset1(float x) {
  return _mm256_set1_ps(x);
}
ATTN_INLINE __m256 vbcast(const float* p) {
  return _mm256_broadcast_ss(p);
}
ATTN_INLINE __m256 vadd(__m256 a, __m256 b) {
  return _mm256_add_ps(a, b);
}
ATTN_INLINE __m256 vsub(__m256 a, __m256 b) {
  return _mm256_sub_ps(a, b);
}
ATTN_INLINE __m256 vmul(__m256 a, __m256 b) {
  return _mm256_mul_ps(a, b);
}
ATTN_INLINE __m256 vmax(__m256 a, __m256 b) {
  return _mm256_max_ps(a, b);
}
ATTN_INLINE __m256 vfmadd(__m256 a, __m256 b, __m256 c) {
  return _mm256_fmadd_ps(a, b, c);
}
ATTN_INLINE __m256 vloadu(const float* p) {
  return _mm256_loadu_ps(p);
}
ATTN_INLINE void vstoreu(float* p, __m256 v) {
  _mm256_storeu_ps(p, v);
}
ATTN_INLINE __m256 vload_tail(Tail t, const float* p) {
  return _mm256_maskload_ps(p, t.m);
}
ATTN_INLINE void vstore_tail(float* p, Tail t, __m256 v) {
  _mm256_maskstore_ps(p, t.m, v);
}
ATTN_INLINE __m256 vkeep_first(int n, __m256 v, __m256 fill) {
  return _mm256_blendv_ps(fill, v, _mm256_castsi256_ps(first_lanes(n)));
}
ATTN_INLINE float vhmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
}
ATTN_INLINE float vhsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}
// exp8, 0 below kAttnExpFloor (NaN stays NaN: the comparison is true for unordered inputs).
ATTN_INLINE __m256 vexp(__m256 x) {
  const __m256 keep = _mm256_cmp_ps(x, _mm256_set1_ps(kAttnExpFloor), _CMP_NLT_UQ);
  return _mm256_and_ps(keep, exp8(x));
}

#include "backend/cpu/paged_attention_kernels.inc"

}  // namespace

AttnBlockFn attn_block_avx2(int head_dim, DType kv_dtype) {
  static_assert(kPanelVecs == 2, "one case per vector count of the last pass");
  switch (Panels(head_dim).rest / kLanes) {
    case 0:
      return attn_block_for<0>(kv_dtype);
    case 1:
      return attn_block_for<1>(kv_dtype);
    default:
      return attn_block_for<2>(kv_dtype);
  }
}

bool exp_f32_avx2(const float* x, float* y, int64_t n) {
  if (!cpu_supports(CpuIsa::kAvx2)) return false;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) _mm256_storeu_ps(y + i, exp8(_mm256_loadu_ps(x + i)));
  if (i < n) {
    const __m256i m = first_lanes(static_cast<int>(n - i));
    _mm256_maskstore_ps(y + i, m, exp8(_mm256_maskload_ps(x + i, m)));
  }
  return true;
}

}  // namespace carpool
#undef ATTN_INLINE
#pragma GCC pop_options

#else

namespace carpool {
AttnBlockFn attn_block_avx2(int, DType) {
  return nullptr;
}
bool exp_f32_avx2(const float*, float*, int64_t) {
  return false;
}
}  // namespace carpool

#endif
