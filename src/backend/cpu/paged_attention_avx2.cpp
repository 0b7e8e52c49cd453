// AVX2 block kernel of paged attention (paged_attention.h): the AVX-512 kernel's scheme with 8
// keys per vector. Called only where CPUID reports AVX2, FMA and F16C.
//
// Scores: one load of the column-major K block gives one dimension of 8 consecutive keys; up to
// four rows share it, each with two FMA chains (even and odd dimensions), added at the end (the
// same arithmetic per key as the AVX-512 kernel). P.V: the row's accumulator is held in
// registers, 32 dims at a time (16 vector registers), while the block's value rows stream through.
#include <algorithm>
#include <cstdint>
#include <limits>

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
constexpr int kPanelVecs = 4;  // q or accumulator registers per pass over head_dim: 32 dims

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

// 8 cache values from p as f32 (the cache holds f32 or f16); the _tail forms read only the
// lanes of `tail` (its first lanes) and give 0 in the others.
ATTN_INLINE __m256 load_kv(const float* p) {
  return _mm256_loadu_ps(p);
}
ATTN_INLINE __m256 load_kv(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
ATTN_INLINE __m256 load_kv_tail(__m256i tail, const float* p) {
  return _mm256_maskload_ps(p, tail);
}
ATTN_INLINE __m256 load_kv_tail(__m256i tail, const uint16_t* p) {
  alignas(16) uint16_t h[kLanes] = {};
  const int n = __builtin_popcount(_mm256_movemask_ps(_mm256_castsi256_ps(tail)));
  for (int i = 0; i < n; ++i) h[i] = p[i];
  return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(h)));
}

ATTN_INLINE float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
}

ATTN_INLINE float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}

// head_dim as passes of kPanel dims: `full` passes of kPanelVecs vectors, then one of
// (rest / 8) vectors plus the lanes of `tail` of one more (the kernel is instantiated per
// rest / 8).
struct Panels {
  static constexpr int kPanel = kPanelVecs * kLanes;
  explicit Panels(int hd)
      : full((hd - 1) / kPanel),
        rest(hd - full * kPanel),
        has_tail(rest % kLanes != 0),
        tail(first_lanes(rest % kLanes)) {}
  int full;
  int rest;  // 1..kPanel
  bool has_tail;
  __m256i tail;
};

// For rows r < kR (one panel of dims: kVecs full vectors, then the lanes of `tail` of one more
// when has_tail): acc[r] = acc[r] * corr[r] (kRescale) + sum over keys i < n of p[r][i] * (value
// row i), in key order, the accumulators in registers; the rows share each load of V. A row's
// arithmetic does not depend on the other rows of the group.
template <typename T, int kVecs, int kR, bool kRescale>
ATTN_INLINE void pv_rows(float* const* acc, const T* v, int64_t stride, const float* const* p,
                         int n, const float* corr, bool has_tail, __m256i tail) {
  __m256 a[kR][kVecs + 1];
#pragma GCC unroll 4
  for (int r = 0; r < kR; ++r) {
#pragma GCC unroll 16
    for (int j = 0; j < kVecs; ++j) a[r][j] = _mm256_loadu_ps(acc[r] + j * kLanes);
    a[r][kVecs] =
        has_tail ? _mm256_maskload_ps(acc[r] + kVecs * kLanes, tail) : _mm256_setzero_ps();
    if constexpr (kRescale) {
      const __m256 c = _mm256_set1_ps(corr[r]);
#pragma GCC unroll 16
      for (int j = 0; j <= kVecs; ++j) a[r][j] = _mm256_mul_ps(a[r][j], c);
    }
  }
  for (int i = 0; i < n; ++i) {
    __m256 pi[kR];
#pragma GCC unroll 4
    for (int r = 0; r < kR; ++r) pi[r] = _mm256_broadcast_ss(p[r] + i);
    const T* vr = v + i * stride;
#pragma GCC unroll 16
    for (int j = 0; j < kVecs; ++j) {
      const __m256 vj = load_kv(vr + j * kLanes);
#pragma GCC unroll 4
      for (int r = 0; r < kR; ++r) a[r][j] = _mm256_fmadd_ps(pi[r], vj, a[r][j]);
    }
    if (has_tail) {
      const __m256 vt = load_kv_tail(tail, vr + kVecs * kLanes);
#pragma GCC unroll 4
      for (int r = 0; r < kR; ++r) a[r][kVecs] = _mm256_fmadd_ps(pi[r], vt, a[r][kVecs]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < kR; ++r) {
#pragma GCC unroll 16
    for (int j = 0; j < kVecs; ++j) _mm256_storeu_ps(acc[r] + j * kLanes, a[r][j]);
    if (has_tail) _mm256_maskstore_ps(acc[r] + kVecs * kLanes, tail, a[r][kVecs]);
  }
}

// Groups of nr <= kR rows (dims [off, off + panel) of each): the keys every row of the group
// sees go through pv_rows together, each row's remaining keys (causal tiles) through pv_rows
// alone, continuing the same FMA sequence.
template <typename T, int kVecs, int kR>
ATTN_INLINE void pv_group(const T* v, int64_t stride, AttnRowState* rows, int nr, int64_t off,
                          const float* const* p, const float* corr, bool has_tail, __m256i tail) {
  float* acc[kR];
  int n = rows[0].n_keys;
  for (int r = 0; r < nr; ++r) {
    acc[r] = rows[r].acc + off;
    n = std::min(n, rows[r].n_keys);
  }
  if constexpr (kR > 1) {
    if (nr < kR) {
      return pv_group<T, kVecs, kR - 1>(v, stride, rows, nr, off, p, corr, has_tail, tail);
    }
  }
  pv_rows<T, kVecs, kR, true>(acc, v + off, stride, p, n, corr, has_tail, tail);
  for (int r = 0; r < nr; ++r) {
    if (rows[r].n_keys > n) {
      const float* pr = p[r] + n;
      pv_rows<T, kVecs, 1, false>(&acc[r], v + off + n * stride, stride, &pr, rows[r].n_keys - n,
                                  nullptr, has_tail, tail);
    }
  }
}

// P.V of every row over head_dim, two rows at a time (16 vector registers): full panels of
// kPanelVecs vectors, then the rest.
template <typename T, int kVecs>
ATTN_INLINE void rows_pv(const AttnKvBlock& b, AttnRowState* rows, int n_rows, const Panels& pn,
                         const float* const* p, const float* corr) {
  constexpr int kGroup = 2;
  const T* v = static_cast<const T*>(b.v);
  for (int i = 0; i < pn.full; ++i) {
    for (int r = 0; r < n_rows; r += kGroup) {
      pv_group<T, kPanelVecs, kGroup>(v, b.v_stride, rows + r, std::min(kGroup, n_rows - r),
                                      int64_t{i} * Panels::kPanel, p + r, corr + r, false, pn.tail);
    }
  }
  for (int r = 0; r < n_rows; r += kGroup) {
    pv_group<T, kVecs, kGroup>(v, b.v_stride, rows + r, std::min(kGroup, n_rows - r),
                               int64_t{pn.full} * Panels::kPanel, p + r, corr + r, pn.has_tail,
                               pn.tail);
  }
}

// Scores of kR rows for keys [i0, i0 + 8) of the block (lanes past n_keys of a row are -inf):
// each lane's dot product is two FMA chains, over the even and the odd dimensions in order, added
// at the end; the rows share each load of K (one dimension of the 8 keys). kFull: all 8 keys lie
// inside the block's storage (else only the lanes of `inside` are read).
template <typename T, int kR, bool kFull>
ATTN_INLINE void scores_rows(const T* k, int64_t k_stride, int hd, const AttnRowState* rows, int i0,
                             __m256i inside, float scale, float* scores, int64_t per_row) {
  const float* q[kR];
  __m256 even[kR], odd[kR];
#pragma GCC unroll 4
  for (int r = 0; r < kR; ++r) {
    q[r] = rows[r].q;
    even[r] = odd[r] = _mm256_setzero_ps();
  }
  const T* kp = k + i0;
  auto load = [inside](const T* p) { return kFull ? load_kv(p) : load_kv_tail(inside, p); };
  int d = 0;
  for (; d + 2 <= hd; d += 2, kp += 2 * k_stride) {
    const __m256 k0 = load(kp), k1 = load(kp + k_stride);
#pragma GCC unroll 4
    for (int r = 0; r < kR; ++r) {
      even[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(&q[r][d]), k0, even[r]);
      odd[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(&q[r][d + 1]), k1, odd[r]);
    }
  }
  if (d < hd) {
    const __m256 k0 = load(kp);
#pragma GCC unroll 4
    for (int r = 0; r < kR; ++r)
      even[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(&q[r][d]), k0, even[r]);
  }
  const __m256 neg_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
#pragma GCC unroll 4
  for (int r = 0; r < kR; ++r) {
    const int n = std::clamp(rows[r].n_keys - i0, 0, kLanes);
    const __m256 sc = _mm256_mul_ps(_mm256_add_ps(even[r], odd[r]), _mm256_set1_ps(scale));
    _mm256_storeu_ps(scores + r * per_row + i0,
                     _mm256_blendv_ps(neg_inf, sc, _mm256_castsi256_ps(first_lanes(n))));
  }
}

template <typename T, bool kFull>
ATTN_INLINE void scores_chunk(const T* k, int64_t k_stride, int hd, const AttnRowState* rows,
                              int n_rows, int i0, __m256i inside, float scale, float* scores,
                              int64_t per_row) {
  int r = 0;
  for (; r + 4 <= n_rows; r += 4) {
    scores_rows<T, 4, kFull>(k, k_stride, hd, rows + r, i0, inside, scale, scores + r * per_row,
                             per_row);
  }
  switch (n_rows - r) {
    case 3:
      return scores_rows<T, 3, kFull>(k, k_stride, hd, rows + r, i0, inside, scale,
                                      scores + r * per_row, per_row);
    case 2:
      return scores_rows<T, 2, kFull>(k, k_stride, hd, rows + r, i0, inside, scale,
                                      scores + r * per_row, per_row);
    case 1:
      return scores_rows<T, 1, kFull>(k, k_stride, hd, rows + r, i0, inside, scale,
                                      scores + r * per_row, per_row);
    default:
      return;
  }
}

// Every row's scores of the block, to a multiple of 8 lanes (-inf past each row's n_keys).
template <typename T>
ATTN_INLINE void block_scores(const AttnKvBlock& b, const AttnRowState* rows, int n_rows, int hd,
                              float scale, float* scores, int64_t per_row) {
  int max_keys = 0;
  for (int r = 0; r < n_rows; ++r) max_keys = std::max(max_keys, rows[r].n_keys);
  const T* k = static_cast<const T*>(b.k);
  for (int i0 = 0; i0 < max_keys; i0 += kLanes) {
    if (i0 + kLanes <= b.block_size) {
      scores_chunk<T, true>(k, b.block_size, hd, rows, n_rows, i0, first_lanes(kLanes), scale,
                            scores, per_row);
    } else {
      scores_chunk<T, false>(k, b.block_size, hd, rows, n_rows, i0, first_lanes(b.block_size - i0),
                             scale, scores, per_row);
    }
  }
}

// The online-softmax update of every row from its scores: new max, the rescale factors of all
// rows in two vector exps, exp of the scores, then P.V.
template <typename T, int kVecs>
void attn_block(const AttnKvBlock& b, AttnRowState* rows, int n_rows, int hd, float scale,
                float* scores) {
  static_assert(kAttnRowsPerCall == 2 * kLanes, "two vectors of rescale factors");
  const Panels pn(hd);
  const int64_t per_row = static_cast<int64_t>(attn_scores_floats(b.block_size));
  block_scores<T>(b, rows, n_rows, hd, scale, scores, per_row);
  alignas(32) float shift[2 * kLanes] = {};
  alignas(32) float corr[2 * kLanes];
  float new_max[2 * kLanes];
  const float* p[2 * kLanes];
  for (int r = 0; r < n_rows; ++r) {
    const float* sc = scores + r * per_row;
    __m256 vmax = _mm256_loadu_ps(sc);
    for (int i0 = kLanes; i0 < rows[r].n_keys; i0 += kLanes) {
      vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(sc + i0));
    }
    new_max[r] = std::max(rows[r].max, hmax(vmax));
    shift[r] = rows[r].max - new_max[r];
  }
  for (int h = 0; h < 2 * kLanes; h += kLanes) {  // 0 on a row's first block
    _mm256_store_ps(corr + h, exp8(_mm256_load_ps(shift + h)));
  }
  for (int r = 0; r < n_rows; ++r) {
    float* sc = scores + r * per_row;
    const __m256 m = _mm256_set1_ps(new_max[r]);
    __m256 sum = _mm256_setzero_ps();
    for (int i0 = 0; i0 < rows[r].n_keys; i0 += kLanes) {
      const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(sc + i0), m));  // 0 past n_keys
      _mm256_storeu_ps(sc + i0, e);
      sum = _mm256_add_ps(sum, e);
    }
    rows[r].denom = rows[r].denom * corr[r] + hsum(sum);
    rows[r].max = new_max[r];
    p[r] = sc;
  }
  rows_pv<T, kVecs>(b, rows, n_rows, pn, p, corr);
}

}  // namespace

AttnBlockFn attn_block_avx2(int head_dim, bool kv_f16) {
  switch (Panels(head_dim).rest / kLanes) {
    case 0:
      return kv_f16 ? attn_block<uint16_t, 0> : attn_block<float, 0>;
    case 1:
      return kv_f16 ? attn_block<uint16_t, 1> : attn_block<float, 1>;
    case 2:
      return kv_f16 ? attn_block<uint16_t, 2> : attn_block<float, 2>;
    case 3:
      return kv_f16 ? attn_block<uint16_t, 3> : attn_block<float, 3>;
    default:
      return kv_f16 ? attn_block<uint16_t, 4> : attn_block<float, 4>;
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
AttnBlockFn attn_block_avx2(int, bool) {
  return nullptr;
}
bool exp_f32_avx2(const float*, float*, int64_t) {
  return false;
}
}  // namespace carpool

#endif
