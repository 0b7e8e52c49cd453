// AVX-512 VNNI kernels for packed weights (gemm_packed.h): per block of 32 elements and group of
// 16 weight rows, eight vpdpbusd (unsigned weight bytes x four signed activation bytes broadcast)
// form the 16 rows' exact integer sums; one or two FMAs scale them into the 16 accumulators.
//   Q4_0: w = d (q - 8):   acc += d_w * (d_x * (dot(q, x) - 8 sum x))
//   Q8_0: w = d q:         acc += d_w * (d_x * (dot(q + 128, x) - 128 sum x))
//   Q4_1: w = d q + m:     acc += d_w * (d_x * dot(q, x)) + m_w * s_x     (s_x = d_x sum x)
//   Q4_K: w = d sc_j q - dmin m_j per sub-block j of 32:
//                          acc += (d sc_j) * (d_x * dot(q, x)) - (dmin m_j) * s_x
//   Q5_K: as Q4_K with 5-bit q
//   Q6_K: w = d sc_h (q - 32) per half sub-block h of 16:
//                          acc += (d sc_h) * (d_x * (dot_h(q, x) - 32 sum_h x))
// The corrections (-8, -32, -128 times the activation sum) seed the integer sums: they stay exact.
#include <algorithm>
#include <cstring>

#include "backend/cpu/gemm_packed.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")
#include <immintrin.h>

#include "backend/cpu/cpu_features.h"

namespace carpool {
namespace {

constexpr int kRowsMax = 8;  // activation rows per tile

inline int32_t load_i32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// The integer sums of one activation block with the 8 unpacked weight parts, seeded with `init`.
inline __m512i block_dot(const __m512i (&q)[8], const int8_t* xq, int32_t init) {
  __m512i s0 = _mm512_set1_epi32(init);
  __m512i s1 = _mm512_setzero_si512();
  for (int t = 0; t < 8; t += 2) {
    s0 = _mm512_dpbusd_epi32(s0, q[t], _mm512_set1_epi32(load_i32(xq + 4 * t)));
    s1 = _mm512_dpbusd_epi32(s1, q[t + 1], _mm512_set1_epi32(load_i32(xq + 4 * t + 4)));
  }
  return _mm512_add_epi32(s0, s1);
}

// The 8 weight parts of a block: nibbles split into low (elements 0..15) and high (16..31)
// halves, or the 8 byte parts of Q8_0.
template <DType T>
inline void unpack(const uint8_t* b, __m512i (&q)[8]) {
  if constexpr (T == DType::kQ8_0) {
    for (int t = 0; t < 8; ++t) q[t] = _mm512_loadu_si512(b + 64 * t);
  } else {
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    for (int t = 0; t < 4; ++t) {
      const __m512i v = _mm512_loadu_si512(b + 64 * t);
      q[t] = _mm512_and_si512(v, low4);
      q[t + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
    }
  }
}

template <DType T>
constexpr int kParts = T == DType::kQ8_0 ? 8 : 4;

template <DType T>
constexpr int32_t kOffset = T == DType::kQ8_0 ? 128 : (T == DType::kQ4_0 ? 8 : 0);

// acc[r] (16 columns) for R activation rows starting at x (row stride ldx blocks).
template <DType T, int R>
inline void tile(const uint8_t* g, int64_t nb, size_t block_bytes, const BlockQ8A* x,
                 const int32_t* xsum, int64_t ldx, __m512 (&acc)[R]) {
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t i = 0; i < nb; ++i, g += block_bytes) {
    __m512i q[8];
    unpack<T>(g, q);
    const uint8_t* sc = g + 64 * kParts<T>;
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sc)));
    __m512 mw = _mm512_setzero_ps();
    if constexpr (T == DType::kQ4_1) {
      mw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sc + 32)));
    }
    for (int r = 0; r < R; ++r) {
      const BlockQ8A& xb = x[r * ldx + i];
      int32_t init = 0;
      if constexpr (kOffset<T> != 0) init = -kOffset<T> * xsum[r * ldx + i];
      const __m512 isum = _mm512_cvtepi32_ps(block_dot(q, xb.qs, init));
      acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(isum, _mm512_set1_ps(xb.d)), dw, acc[r]);
      if constexpr (T == DType::kQ4_1) acc[r] = _mm512_fmadd_ps(mw, _mm512_set1_ps(xb.s), acc[r]);
    }
  }
}

// 16 u8 at p as f32 times s.
inline __m512 bytes_times(const uint8_t* p, __m512 s) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b)), s);
}

// Q4_K / Q5_K: per super-block, four chunks of 8 parts; the low nibbles form sub-block 2c, the
// high ones 2c+1; Q5_K adds bit j of its qh parts as bit 4 of sub-block j.
template <bool kFive, int R>
inline void tile_k45(const uint8_t* g, int64_t nb, size_t block_bytes, const BlockQ8A* x,
                     int64_t ldx, __m512 (&acc)[R]) {
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  const __m512i one = _mm512_set1_epi8(1);
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t i = 0; i < nb; ++i, g += block_bytes) {
    const uint8_t* sc = g + 32 * 64;
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sc)));
    const __m512 dmin =
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sc + 32)));
    const uint8_t* scales = sc + 64;
    const uint8_t* qh = sc + 64 + 256;
    for (int j = 0; j < 8; ++j) {
      const uint8_t* parts = g + 64 * 8 * (j / 2);
      __m512i q[8];
      for (int t = 0; t < 8; ++t) {
        const __m512i v = _mm512_loadu_si512(parts + 64 * t);
        q[t] = _mm512_and_si512((j & 1) != 0 ? _mm512_srli_epi16(v, 4) : v, low4);
        if constexpr (kFive) {
          const __m512i h = _mm512_loadu_si512(qh + 64 * t);
          const __m512i bit = _mm512_and_si512(_mm512_srli_epi16(h, j), one);
          q[t] = _mm512_or_si512(q[t], _mm512_slli_epi16(bit, 4));
        }
      }
      const __m512 dsc = bytes_times(scales + 16 * j, d);
      const __m512 dm = bytes_times(scales + 16 * (8 + j), dmin);
      for (int r = 0; r < R; ++r) {
        const BlockQ8A& xb = x[r * ldx + 8 * i + j];
        const __m512 isum = _mm512_cvtepi32_ps(block_dot(q, xb.qs, 0));
        acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(isum, _mm512_set1_ps(xb.d)), dsc, acc[r]);
        acc[r] = _mm512_fnmadd_ps(dm, _mm512_set1_ps(xb.s), acc[r]);
      }
    }
  }
}

// 16 int8 at p as f32 times s.
inline __m512 sbytes_times(const uint8_t* p, __m512 s) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)), s);
}

// Q6_K: sub-block j = 4h + g (h: half of the super-block) takes the low (g < 2) or high nibbles
// of ql parts 16h + 8(g & 1) + t and bits 2g, 2g+1 of qh parts 8h + t. Its first and second 16
// elements have their own scales, so each half's integer sum is seeded with -32 times that half's
// activation sum (xsum2: two sums per activation block).
template <int R>
inline void tile_q6_k(const uint8_t* g, int64_t nb, size_t block_bytes, const BlockQ8A* x,
                      const int32_t* xsum2, int64_t ldx, __m512 (&acc)[R]) {
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  const __m512i three = _mm512_set1_epi8(3);
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t i = 0; i < nb; ++i, g += block_bytes) {
    const uint8_t* qh = g + 32 * 64;
    const uint8_t* tail = g + 48 * 64;
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(tail)));
    const uint8_t* scales = tail + 32;
    for (int j = 0; j < 8; ++j) {
      const int h = j / 4, sub = j % 4;
      const uint8_t* lparts = g + 64 * (16 * h + 8 * (sub & 1));
      const uint8_t* hparts = qh + 64 * 8 * h;
      __m512i q[8];
      for (int t = 0; t < 8; ++t) {
        __m512i lo = _mm512_loadu_si512(lparts + 64 * t);
        if (sub >= 2) lo = _mm512_srli_epi16(lo, 4);
        const __m512i hi = _mm512_and_si512(
            _mm512_srli_epi16(_mm512_loadu_si512(hparts + 64 * t), 2 * sub), three);
        q[t] = _mm512_or_si512(_mm512_and_si512(lo, low4), _mm512_slli_epi16(hi, 4));
      }
      const __m512 dsc0 = sbytes_times(scales + 16 * (2 * j), d);
      const __m512 dsc1 = sbytes_times(scales + 16 * (2 * j + 1), d);
      for (int r = 0; r < R; ++r) {
        const int64_t xi = r * ldx + 8 * i + j;
        const BlockQ8A& xb = x[xi];
        __m512i s0 = _mm512_set1_epi32(-32 * xsum2[2 * xi]);
        __m512i s1 = _mm512_set1_epi32(-32 * xsum2[2 * xi + 1]);
        for (int t = 0; t < 4; ++t) {
          s0 = _mm512_dpbusd_epi32(s0, q[t], _mm512_set1_epi32(load_i32(xb.qs + 4 * t)));
          s1 = _mm512_dpbusd_epi32(s1, q[t + 4], _mm512_set1_epi32(load_i32(xb.qs + 16 + 4 * t)));
        }
        const __m512 dx = _mm512_set1_ps(xb.d);
        acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s0), dx), dsc0, acc[r]);
        acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s1), dx), dsc1, acc[r]);
      }
    }
  }
}

template <DType T, int R>
inline void tile_store(const GemmPackedArgs& a, int64_t g, int64_t r0) {
  const PackedWeight& w = *a.w;
  const int64_t ldx = w.cols / kQK;
  __m512 acc[R];
  if constexpr (T == DType::kQ4_K || T == DType::kQ5_K) {
    tile_k45<T == DType::kQ5_K, R>(w.group(g), w.blocks, w.block_bytes, a.x + r0 * ldx, ldx, acc);
  } else if constexpr (T == DType::kQ6_K) {
    tile_q6_k<R>(w.group(g), w.blocks, w.block_bytes, a.x + r0 * ldx, a.x_sum + 2 * r0 * ldx, ldx,
                 acc);
  } else {
    tile<T, R>(w.group(g), w.blocks, w.block_bytes, a.x + r0 * ldx,
               a.x_sum != nullptr ? a.x_sum + r0 * ldx : nullptr, ldx, acc);
  }
  const int64_t j0 = g * kPackRows;
  const __m512 bias = a.bias != nullptr ? _mm512_loadu_ps(a.bias + j0) : _mm512_setzero_ps();
  for (int r = 0; r < R; ++r) {
    _mm512_storeu_ps(a.y + (r0 + r) * a.ldy + j0, _mm512_add_ps(acc[r], bias));
  }
}

template <DType T, int R>
inline void tile_tail(int rows, const GemmPackedArgs& a, int64_t g, int64_t r0) {
  if constexpr (R >= 1) {
    if (rows == R) return tile_store<T, R>(a, g, r0);
    return tile_tail<T, R - 1>(rows, a, g, r0);
  }
}

// Activation rows in panels small enough to stay in L2 while the groups pass over them.
template <DType T>
void run(const GemmPackedArgs& a, int64_t g0, int64_t g1) {
  const int64_t ldx = a.w->cols / kQK;
  const int64_t panel_rows = std::max<int64_t>(
      kRowsMax, (int64_t{256} << 10) / std::max<int64_t>(1, ldx * 44) / kRowsMax * kRowsMax);
  for (int64_t p0 = 0; p0 < a.m; p0 += panel_rows) {
    const int64_t p1 = std::min(a.m, p0 + panel_rows);
    for (int64_t g = g0; g < g1; ++g) {
      for (int64_t r = p0; r < p1; r += kRowsMax) {
        const int rows = static_cast<int>(std::min<int64_t>(kRowsMax, p1 - r));
        if (rows == kRowsMax) {
          tile_store<T, kRowsMax>(a, g, r);
        } else {
          tile_tail<T, kRowsMax - 1>(rows, a, g, r);
        }
      }
    }
  }
}

}  // namespace

bool gemm_packed_avx512(const GemmPackedArgs& a, int64_t g0, int64_t g1) {
  if (!cpu_supports(CpuIsa::kAvx512)) return false;
  switch (a.w->type) {
    case DType::kQ4_0:
      run<DType::kQ4_0>(a, g0, g1);
      return true;
    case DType::kQ4_1:
      run<DType::kQ4_1>(a, g0, g1);
      return true;
    case DType::kQ8_0:
      run<DType::kQ8_0>(a, g0, g1);
      return true;
    case DType::kQ4_K:
      run<DType::kQ4_K>(a, g0, g1);
      return true;
    case DType::kQ5_K:
      run<DType::kQ5_K>(a, g0, g1);
      return true;
    case DType::kQ6_K:
      run<DType::kQ6_K>(a, g0, g1);
      return true;
    default:
      return false;
  }
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
