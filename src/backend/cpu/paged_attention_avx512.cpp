// AVX-512 block kernel of paged attention (paged_attention.h): 16 keys per vector. Called only
// where CPUID reports the AVX-512 level; uses AVX-512F only.
//
// Scores: for 16 keys at a time, each key's 16-lane partial dot product over head_dim (one FMA
// per 16 dims, q held in registers), then a transpose-and-add tree that leaves key j's total in
// lane j. Every key goes through the same FMA chain and the same tree, so its score depends only
// on q and its own row. P.V: the row's accumulator is held in registers, up to 128 dims at a
// time, while the block's value rows stream through. The kernel is instantiated per head_dim
// remainder (head_dim mod 128, in vectors) so every loop over vectors is unrolled.
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

ATTN_INLINE float exp1(float x) {
  return _mm512_cvtss_f32(exp16(_mm512_set1_ps(x)));
}

// Lane j of the result: the sum of the 16 lanes of a[j]. The same tree for every j: within each
// 128-bit lane (0+2)+(1+3), then across them (L0+L1)+(L2+L3).
ATTN_INLINE __m512 transpose_sum(const __m512* a) {
  __m512 b[8], c[4], d[2];
#pragma GCC unroll 16
  for (int j = 0; j < 8; ++j) {
    b[j] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * j], a[2 * j + 1]),
                         _mm512_unpackhi_ps(a[2 * j], a[2 * j + 1]));
  }
#pragma GCC unroll 16
  for (int j = 0; j < 4; ++j) {
    const __m512d lo = _mm512_castps_pd(b[2 * j]), hi = _mm512_castps_pd(b[2 * j + 1]);
    c[j] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(lo, hi)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(lo, hi)));
  }
#pragma GCC unroll 16
  for (int j = 0; j < 2; ++j) {
    d[j] = _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * j], c[2 * j + 1], 0x88),
                         _mm512_shuffle_f32x4(c[2 * j], c[2 * j + 1], 0xDD));
  }
  return _mm512_add_ps(_mm512_shuffle_f32x4(d[0], d[1], 0x88),
                       _mm512_shuffle_f32x4(d[0], d[1], 0xDD));
}

// acc[j] += lane-wise q * (key row j) over one panel of dims: kVecs full vectors, then `tail`
// lanes of one more (none if tail is 0). q stays in registers while the 16 key rows stream past;
// rows from n_keys on read row 0 instead (in the block, and their lanes are discarded).
template <typename T, int kVecs>
ATTN_INLINE void dot_panel(const float* q, const T* k, int64_t stride, int n_keys, __mmask16 tail,
                           __m512* acc) {
  __m512 qv[kVecs + 1];
#pragma GCC unroll 16
  for (int c = 0; c < kVecs; ++c) qv[c] = _mm512_loadu_ps(q + c * kLanes);
  qv[kVecs] = _mm512_maskz_loadu_ps(tail, q + kVecs * kLanes);
#pragma GCC unroll 16
  for (int j = 0; j < kLanes; ++j) {
    const T* kr = k + (j < n_keys ? j : 0) * stride;
#pragma GCC unroll 16
    for (int c = 0; c < kVecs; ++c) {
      acc[j] = _mm512_fmadd_ps(qv[c], load_kv(kr + c * kLanes), acc[j]);
    }
    if (tail) {
      acc[j] = _mm512_fmadd_ps(qv[kVecs], load_kv_tail(tail, kr + kVecs * kLanes), acc[j]);
    }
  }
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

// Lane j: q . (key row j) for j < n_keys (n_keys <= 16). Each key's dot is one FMA chain over
// head_dim in order, whatever n_keys is.
template <typename T, int kVecs>
ATTN_INLINE __m512 dot_keys(const float* q, const T* k, int64_t stride, const Panels& pn,
                            int n_keys) {
  __m512 acc[kLanes];
#pragma GCC unroll 16
  for (int j = 0; j < kLanes; ++j) acc[j] = _mm512_setzero_ps();
  for (int i = 0; i < pn.full; ++i, q += Panels::kPanel, k += Panels::kPanel) {
    dot_panel<T, kPanelVecs>(q, k, stride, n_keys, 0, acc);
  }
  dot_panel<T, kVecs>(q, k, stride, n_keys, pn.tail, acc);
  return transpose_sum(acc);
}

// acc[0, 16 * kVecs + tail lanes) = acc * correction + sum over keys i of p[i] * v row i, the
// accumulator in registers.
template <typename T, int kVecs>
ATTN_INLINE void pv_panel(float* acc, const T* v, int64_t stride, const float* p, int n_keys,
                          float correction, __mmask16 tail) {
  __m512 a[kVecs + 1];
  const __m512 c = _mm512_set1_ps(correction);
#pragma GCC unroll 16
  for (int j = 0; j < kVecs; ++j) a[j] = _mm512_mul_ps(_mm512_loadu_ps(acc + j * kLanes), c);
  a[kVecs] = _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, acc + kVecs * kLanes), c);
  for (int i = 0; i < n_keys; ++i) {
    const __m512 pi = _mm512_set1_ps(p[i]);
    const T* vr = v + i * stride;
#pragma GCC unroll 16
    for (int j = 0; j < kVecs; ++j) {
      a[j] = _mm512_fmadd_ps(pi, load_kv(vr + j * kLanes), a[j]);
    }
    if (tail) {
      a[kVecs] = _mm512_fmadd_ps(pi, load_kv_tail(tail, vr + kVecs * kLanes), a[kVecs]);
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < kVecs; ++j) _mm512_storeu_ps(acc + j * kLanes, a[j]);
  _mm512_mask_storeu_ps(acc + kVecs * kLanes, tail, a[kVecs]);
}

template <typename T, int kVecs>
ATTN_INLINE void accumulate_pv(float* acc, const T* v, int64_t stride, const float* p, int n_keys,
                               float correction, const Panels& pn) {
  for (int i = 0; i < pn.full; ++i, acc += Panels::kPanel, v += Panels::kPanel) {
    pv_panel<T, kPanelVecs>(acc, v, stride, p, n_keys, correction, 0);
  }
  pv_panel<T, kVecs>(acc, v, stride, p, n_keys, correction, pn.tail);
}

// The row's scores of the block, scaled, -inf past n_keys (to a multiple of 16 lanes).
template <typename T, int kVecs>
ATTN_INLINE void row_scores(const AttnKvBlock& b, const AttnRowState& row, const Panels& pn,
                            float scale, float* scores) {
  for (int i0 = 0; i0 < row.n_keys; i0 += kLanes) {
    const int n = std::min(kLanes, row.n_keys - i0);
    const __m512 dots =
        dot_keys<T, kVecs>(row.q, static_cast<const T*>(b.k) + i0 * b.stride, b.stride, pn, n);
    _mm512_storeu_ps(scores + i0, _mm512_mask_mov_ps(
                                      _mm512_set1_ps(-std::numeric_limits<float>::infinity()),
                                      first_lanes(n), _mm512_mul_ps(dots, _mm512_set1_ps(scale))));
  }
}

// The online-softmax update of one row from its scores: new max, rescale, exp, P.V.
template <typename T, int kVecs>
ATTN_INLINE void row_update(const AttnKvBlock& b, AttnRowState& row, const Panels& pn,
                            float* scores) {
  __m512 vmax = _mm512_loadu_ps(scores);
  for (int i0 = kLanes; i0 < row.n_keys; i0 += kLanes) {
    vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(scores + i0));
  }
  const float new_max = std::max(row.max, _mm512_reduce_max_ps(vmax));
  const float correction = exp1(row.max - new_max);  // 0 on the first block
  const __m512 m = _mm512_set1_ps(new_max);
  __m512 sum = _mm512_setzero_ps();
  for (int i0 = 0; i0 < row.n_keys; i0 += kLanes) {
    const __m512 p = exp16(_mm512_sub_ps(_mm512_loadu_ps(scores + i0), m));  // 0 past n_keys
    _mm512_storeu_ps(scores + i0, p);
    sum = _mm512_add_ps(sum, p);
  }
  row.denom = row.denom * correction + _mm512_reduce_add_ps(sum);
  accumulate_pv<T, kVecs>(row.acc, static_cast<const T*>(b.v), b.stride, scores, row.n_keys,
                          correction, pn);
  row.max = new_max;
}

template <typename T, int kVecs>
void attn_block(const AttnKvBlock& b, AttnRowState* rows, int n_rows, int hd, float scale,
                float* scores) {
  const Panels pn(hd);
  const int64_t per_row = static_cast<int64_t>(attn_scores_floats(b.block_size));
  for (int r = 0; r < n_rows; ++r)
    row_scores<T, kVecs>(b, rows[r], pn, scale, scores + r * per_row);
  for (int r = 0; r < n_rows; ++r) row_update<T, kVecs>(b, rows[r], pn, scores + r * per_row);
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
