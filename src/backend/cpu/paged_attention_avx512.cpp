// AVX-512 block kernel of paged attention (paged_attention.h): 16 keys per vector. Called only
// where CPUID reports the AVX-512 level (F, BW and VL are used).
//
// Scores: K is column-major in its block, so one load (widened from f16 where the cache is f16)
// gives one dimension of 16 consecutive keys; up to four rows share it, each with a broadcast q
// value and two FMA chains (even and odd dimensions) per row, added at the end. A key's score
// depends only on q and its own K values. P.V: the row's accumulator is held in registers, up to
// 128 dims at a time, while the block's value rows stream through. The kernel is instantiated per
// head_dim remainder (head_dim mod 128, in vectors) so every loop over vectors is unrolled.
#include <algorithm>
#include <cstdint>
#include <limits>

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

// 16 cache values from p as f32 (the cache holds f32 or f16); the _tail forms read only the
// lanes of m and give 0 in the others.
ATTN_INLINE __m512 load_kv(const float* p) {
  return _mm512_loadu_ps(p);
}
ATTN_INLINE __m512 load_kv(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
ATTN_INLINE __m512 load_kv_tail(__mmask16 m, const float* p) {
  return _mm512_maskz_loadu_ps(m, p);
}
ATTN_INLINE __m512 load_kv_tail(__mmask16 m, const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

// head_dim as passes of kPanel dims: `full` passes of kPanelVecs vectors, then one of
// (rest / 16) vectors plus `tail` lanes of one more (the kernel is instantiated per rest / 16).
struct Panels {
  static constexpr int kPanel = kPanelVecs * kLanes;
  explicit Panels(int hd)
      : full((hd - 1) / kPanel), rest(hd - full * kPanel), tail(first_lanes(rest % kLanes)) {}
  int full;
  int rest;  // 1..kPanel
  __mmask16 tail;
};

// For rows r < kR (one panel of dims: kVecs full vectors, then `tail` lanes of one more):
// acc[r] = acc[r] * corr[r] (kRescale) + sum over keys i < n of p[r][i] * (value row i), in key
// order, the accumulators in registers; the rows share each load of V. A row's arithmetic does
// not depend on the other rows of the group.
template <typename T, int kVecs, int kR, bool kRescale>
ATTN_INLINE void pv_rows(float* const* acc, const T* v, int64_t stride, const float* const* p,
                         int n, const float* corr, __mmask16 tail) {
  __m512 a[kR][kVecs + 1];
#pragma GCC unroll 4
  for (int r = 0; r < kR; ++r) {
#pragma GCC unroll 16
    for (int j = 0; j < kVecs; ++j) a[r][j] = _mm512_loadu_ps(acc[r] + j * kLanes);
    a[r][kVecs] = _mm512_maskz_loadu_ps(tail, acc[r] + kVecs * kLanes);
    if constexpr (kRescale) {
      const __m512 c = _mm512_set1_ps(corr[r]);
#pragma GCC unroll 16
      for (int j = 0; j <= kVecs; ++j) a[r][j] = _mm512_mul_ps(a[r][j], c);
    }
  }
  for (int i = 0; i < n; ++i) {
    __m512 pi[kR];
#pragma GCC unroll 4
    for (int r = 0; r < kR; ++r) pi[r] = _mm512_set1_ps(p[r][i]);
    const T* vr = v + i * stride;
#pragma GCC unroll 16
    for (int j = 0; j < kVecs; ++j) {
      const __m512 vj = load_kv(vr + j * kLanes);
#pragma GCC unroll 4
      for (int r = 0; r < kR; ++r) a[r][j] = _mm512_fmadd_ps(pi[r], vj, a[r][j]);
    }
    if (tail) {
      const __m512 vt = load_kv_tail(tail, vr + kVecs * kLanes);
#pragma GCC unroll 4
      for (int r = 0; r < kR; ++r) a[r][kVecs] = _mm512_fmadd_ps(pi[r], vt, a[r][kVecs]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < kR; ++r) {
#pragma GCC unroll 16
    for (int j = 0; j < kVecs; ++j) _mm512_storeu_ps(acc[r] + j * kLanes, a[r][j]);
    _mm512_mask_storeu_ps(acc[r] + kVecs * kLanes, tail, a[r][kVecs]);
  }
}

// Groups of nr <= kR rows (dims [off, off + panel) of each): the keys every row of the group
// sees go through pv_rows together, each row's remaining keys (causal tiles) through pv_rows
// alone, continuing the same FMA sequence.
template <typename T, int kVecs, int kR>
ATTN_INLINE void pv_group(const T* v, int64_t stride, AttnRowState* rows, int nr, int64_t off,
                          const float* const* p, const float* corr, __mmask16 tail) {
  float* acc[kR];
  int n = rows[0].n_keys;
  for (int r = 0; r < nr; ++r) {
    acc[r] = rows[r].acc + off;
    n = std::min(n, rows[r].n_keys);
  }
  if constexpr (kR > 1) {
    if (nr < kR) return pv_group<T, kVecs, kR - 1>(v, stride, rows, nr, off, p, corr, tail);
  }
  pv_rows<T, kVecs, kR, true>(acc, v + off, stride, p, n, corr, tail);
  for (int r = 0; r < nr; ++r) {
    if (rows[r].n_keys > n) {
      const float* pr = p[r] + n;
      pv_rows<T, kVecs, 1, false>(&acc[r], v + off + n * stride, stride, &pr, rows[r].n_keys - n,
                                  nullptr, tail);
    }
  }
}

// P.V of every row over head_dim: full panels of kPanelVecs vectors, then the rest.
template <typename T, int kVecs>
ATTN_INLINE void rows_pv(const AttnKvBlock& b, AttnRowState* rows, int n_rows, const Panels& pn,
                         const float* const* p, const float* corr) {
  constexpr int kFullRows = 2, kRestRows = kVecs <= 4 ? 4 : 2;  // registers: rows x vectors
  const T* v = static_cast<const T*>(b.v);
  for (int i = 0; i < pn.full; ++i) {
    for (int r = 0; r < n_rows; r += kFullRows) {
      pv_group<T, kPanelVecs, kFullRows>(v, b.v_stride, rows + r, std::min(kFullRows, n_rows - r),
                                         int64_t{i} * Panels::kPanel, p + r, corr + r, 0);
    }
  }
  for (int r = 0; r < n_rows; r += kRestRows) {
    pv_group<T, kVecs, kRestRows>(v, b.v_stride, rows + r, std::min(kRestRows, n_rows - r),
                                  int64_t{pn.full} * Panels::kPanel, p + r, corr + r, pn.tail);
  }
}

// Scores of kR rows for keys [i0, i0 + 16) of the block (lanes past n_keys of a row are -inf):
// each lane's dot product is two FMA chains, over the even and the odd dimensions in order, added
// at the end; the rows share each load of K (one dimension of the 16 keys). kFull: all 16 keys
// lie inside the block's storage (else only the lanes of `inside` are read).
template <typename T, int kR, bool kFull>
ATTN_INLINE void scores_rows(const T* k, int64_t k_stride, int hd, const AttnRowState* rows, int i0,
                             __mmask16 inside, float scale, float* scores, int64_t per_row) {
  const float* q[kR];
  __m512 even[kR], odd[kR];
#pragma GCC unroll 4
  for (int r = 0; r < kR; ++r) {
    q[r] = rows[r].q;
    even[r] = odd[r] = _mm512_setzero_ps();
  }
  const T* kp = k + i0;
  auto load = [inside](const T* p) { return kFull ? load_kv(p) : load_kv_tail(inside, p); };
  int d = 0;
  for (; d + 2 <= hd; d += 2, kp += 2 * k_stride) {
    const __m512 k0 = load(kp), k1 = load(kp + k_stride);
#pragma GCC unroll 4
    for (int r = 0; r < kR; ++r) {
      even[r] = _mm512_fmadd_ps(_mm512_set1_ps(q[r][d]), k0, even[r]);
      odd[r] = _mm512_fmadd_ps(_mm512_set1_ps(q[r][d + 1]), k1, odd[r]);
    }
  }
  if (d < hd) {
    const __m512 k0 = load(kp);
#pragma GCC unroll 4
    for (int r = 0; r < kR; ++r) even[r] = _mm512_fmadd_ps(_mm512_set1_ps(q[r][d]), k0, even[r]);
  }
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
#pragma GCC unroll 4
  for (int r = 0; r < kR; ++r) {
    const int n = std::clamp(rows[r].n_keys - i0, 0, kLanes);
    const __m512 sc = _mm512_mul_ps(_mm512_add_ps(even[r], odd[r]), _mm512_set1_ps(scale));
    _mm512_storeu_ps(scores + r * per_row + i0, _mm512_mask_mov_ps(neg_inf, first_lanes(n), sc));
  }
}

template <typename T, bool kFull>
ATTN_INLINE void scores_chunk(const T* k, int64_t k_stride, int hd, const AttnRowState* rows,
                              int n_rows, int i0, __mmask16 inside, float scale, float* scores,
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

// Every row's scores of the block, to a multiple of 16 lanes (-inf past each row's n_keys).
template <typename T>
ATTN_INLINE void block_scores(const AttnKvBlock& b, const AttnRowState* rows, int n_rows, int hd,
                              float scale, float* scores, int64_t per_row) {
  int max_keys = 0;
  for (int r = 0; r < n_rows; ++r) max_keys = std::max(max_keys, rows[r].n_keys);
  const T* k = static_cast<const T*>(b.k);
  for (int i0 = 0; i0 < max_keys; i0 += kLanes) {
    if (i0 + kLanes <= b.block_size) {
      scores_chunk<T, true>(k, b.block_size, hd, rows, n_rows, i0, 0, scale, scores, per_row);
    } else {
      scores_chunk<T, false>(k, b.block_size, hd, rows, n_rows, i0, first_lanes(b.block_size - i0),
                             scale, scores, per_row);
    }
  }
}

// The online-softmax update of every row from its scores: new max, the rescale factors of all
// rows in one vector exp, exp of the scores, then P.V.
template <typename T, int kVecs>
void attn_block(const AttnKvBlock& b, AttnRowState* rows, int n_rows, int hd, float scale,
                float* scores) {
  static_assert(kAttnRowsPerCall == kLanes, "one vector of rescale factors");
  const Panels pn(hd);
  const int64_t per_row = static_cast<int64_t>(attn_scores_floats(b.block_size));
  block_scores<T>(b, rows, n_rows, hd, scale, scores, per_row);
  alignas(64) float shift[kLanes] = {};
  alignas(64) float corr[kLanes];
  float new_max[kLanes];
  const float* p[kLanes];
  for (int r = 0; r < n_rows; ++r) {
    const float* sc = scores + r * per_row;
    __m512 vmax = _mm512_loadu_ps(sc);
    for (int i0 = kLanes; i0 < rows[r].n_keys; i0 += kLanes) {
      vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(sc + i0));
    }
    new_max[r] = std::max(rows[r].max, _mm512_reduce_max_ps(vmax));
    shift[r] = rows[r].max - new_max[r];
  }
  _mm512_store_ps(corr, exp16(_mm512_load_ps(shift)));  // 0 on a row's first block
  for (int r = 0; r < n_rows; ++r) {
    float* sc = scores + r * per_row;
    const __m512 m = _mm512_set1_ps(new_max[r]);
    __m512 sum = _mm512_setzero_ps();
    for (int i0 = 0; i0 < rows[r].n_keys; i0 += kLanes) {
      const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(sc + i0), m));  // 0 past n_keys
      _mm512_storeu_ps(sc + i0, e);
      sum = _mm512_add_ps(sum, e);
    }
    rows[r].denom = rows[r].denom * corr[r] + _mm512_reduce_add_ps(sum);
    rows[r].max = new_max[r];
    p[r] = sc;
  }
  rows_pv<T, kVecs>(b, rows, n_rows, pn, p, corr);
}

}  // namespace

AttnBlockFn attn_block_avx512(int head_dim, bool kv_f16) {
  switch (Panels(head_dim).rest / kLanes) {
    case 0:
      return kv_f16 ? attn_block<uint16_t, 0> : attn_block<float, 0>;
    case 1:
      return kv_f16 ? attn_block<uint16_t, 1> : attn_block<float, 1>;
    case 2:
      return kv_f16 ? attn_block<uint16_t, 2> : attn_block<float, 2>;
    case 3:
      return kv_f16 ? attn_block<uint16_t, 3> : attn_block<float, 3>;
    case 4:
      return kv_f16 ? attn_block<uint16_t, 4> : attn_block<float, 4>;
    case 5:
      return kv_f16 ? attn_block<uint16_t, 5> : attn_block<float, 5>;
    case 6:
      return kv_f16 ? attn_block<uint16_t, 6> : attn_block<float, 6>;
    case 7:
      return kv_f16 ? attn_block<uint16_t, 7> : attn_block<float, 7>;
    default:
      return kv_f16 ? attn_block<uint16_t, 8> : attn_block<float, 8>;
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
AttnBlockFn attn_block_avx512(int, bool) {
  return nullptr;
}
bool exp_f32_avx512(const float*, float*, int64_t) {
  return false;
}
}  // namespace carpool

#endif
