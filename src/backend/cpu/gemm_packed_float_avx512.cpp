// AVX-512 kernels for packed float weights (gemm_packed_float.h). A tile is R activation rows x
// C groups of 16 columns (R <= 8 and C <= 2, R <= 2 and C <= 4, or for F16 at 9-16 rows R <= 16
// and C = 1): R * C accumulators; per k, C weight vectors (F16 widened by vcvtph2ps, BF16 pairs
// split into their even and odd elements by shifts) and one broadcast per row. F16 groups under
// more than one tile of rows (prefill) are widened once per panel, by its first tile, into a
// per-thread f32 buffer that the F32 tiles of the panel's other rows then read.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/gemm_packed_float.h"
#include "backend/dtype.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512bf16")
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

namespace carpool {
namespace {

constexpr int kRowsMax = 8;
constexpr int kGroupsMax = 2;
// F16 at 9 to 16 rows (a decode batch): one tile of up to 16 rows x 1 group, so that each group's
// weights are read and widened once instead of by two tiles of 8 rows (~1B F16, decode at batch
// 16, Xeon VM, alternated: 180-185 -> 147-149 ms per step). Not at 8 rows or fewer (one group's
// 8 accumulator chains wait on FMA latency: batch 8 80 -> 98 ms), not for more rows (the first
// tile widens the weights for the others: 256-token prefill 131 -> 114-120 tok/s), not for F32
// (no widening to save; batch 16 within noise).
constexpr int kF16RowsOneGroup = 16;

// kF16Widen: kF16 that also stores the widened weights (a panel's first tile, widen_f16_groups).
enum class Mode { kF32, kF16, kF16Widen, kBF16, kBF16Dot };

// F32 and F16 weights: each group's line 2 KB ahead into L2. On the Xeon VM (2 threads,
// BM_MatmulStream/f16) 30.2-31.2 -> 34.7-36.5 GB/s (1 KB: 33.5-34.5, 4 KB: 33.8-35.1). On the
// EPYC VM an earlier prefetch 2 KB ahead, into L1, had made F16 decode slower (11-15 vs 15-24
// tok/s, ~1B F16, 2 threads); BF16 pairs stream at the memory's rate without one.
constexpr size_t kAheadBytes = 2048;
// acc[r][c] = sum over k of w[c] column values times x row r, k in order.
template <Mode M, int R, int C>
inline void tile(const uint8_t* const (&w)[C], int64_t nb, size_t bb, const GemmPackedFloatArgs& a,
                 int64_t r0, __m512 (&acc)[R][C], float* widen) {
  const int64_t k = a.w->cols;
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  if constexpr (M == Mode::kF32 || M == Mode::kF16 || M == Mode::kF16Widen) {
    const float* x = a.x + r0 * k;
    for (int64_t i = 0; i < nb; ++i) {
      __m512 wv[C];
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) {
        const uint8_t* p = w[c] + static_cast<size_t>(i) * bb;
        if ((static_cast<size_t>(i) * bb) % 64 == 0) {
          _mm_prefetch(reinterpret_cast<const char*>(p + kAheadBytes), _MM_HINT_T1);
        }
        if constexpr (M == Mode::kF32) {
          wv[c] = _mm512_loadu_ps(reinterpret_cast<const float*>(p));
        } else {
          wv[c] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
          if constexpr (M == Mode::kF16Widen) {
            _mm512_storeu_ps(widen + (c * nb + i) * kPackRows, wv[c]);
          }
        }
      }
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m512 xb = _mm512_set1_ps(x[r * k + i]);
#pragma GCC unroll 4
        for (int c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(wv[c], xb, acc[r][c]);
      }
    }
  } else if constexpr (M == Mode::kBF16) {
    const float* x = a.x + r0 * k;
    const __m512i high = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
    for (int64_t i = 0; i < nb; ++i) {
      __m512 even[C], odd[C];
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) {
        const uint8_t* p = w[c] + static_cast<size_t>(i) * bb;
        const __m512i v = _mm512_loadu_si512(p);
        even[c] = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
        odd[c] = _mm512_castsi512_ps(_mm512_and_si512(v, high));
      }
      const bool has_odd = 2 * i + 1 < k;
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m512 x0 = _mm512_set1_ps(x[r * k + 2 * i]);
#pragma GCC unroll 4
        for (int c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(even[c], x0, acc[r][c]);
        if (has_odd) {
          const __m512 x1 = _mm512_set1_ps(x[r * k + 2 * i + 1]);
#pragma GCC unroll 4
          for (int c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(odd[c], x1, acc[r][c]);
        }
      }
    }
  } else {
    const uint32_t* x = a.x_bf16 + r0 * nb;
    for (int64_t i = 0; i < nb; ++i) {
      __m512bh wv[C];
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) {
        const uint8_t* p = w[c] + static_cast<size_t>(i) * bb;
        wv[c] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(p));
      }
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m512bh xb =
            reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(x[r * nb + i])));
#pragma GCC unroll 4
        for (int c = 0; c < C; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], wv[c], xb);
      }
    }
  }
}

// Tile at groups [g, g + C) whose blocks (one k index of 16 columns each, bb bytes apart) start
// at w[c]; kF16Widen also writes the widened weights to `widen`.
template <Mode M, int R, int C>
inline void tile_store(const GemmPackedFloatArgs& a, int64_t g, int64_t r0,
                       const uint8_t* const (&w)[C], size_t bb, float* widen) {
  __m512 acc[R][C];
  tile<M, R, C>(w, a.w->blocks, bb, a, r0, acc, widen);
  for (int c = 0; c < C; ++c) {
    const int64_t j0 = (g + c) * kPackRows;
    const __m512 bias = a.bias != nullptr ? _mm512_loadu_ps(a.bias + j0) : _mm512_setzero_ps();
    for (int r = 0; r < R; ++r) {
      _mm512_storeu_ps(a.y + (r0 + r) * a.ldy + j0, _mm512_add_ps(acc[r][c], bias));
    }
  }
}

template <Mode M, int R, int C>
inline void tile_rows(int rows, const GemmPackedFloatArgs& a, int64_t g, int64_t r0,
                      const uint8_t* const (&w)[C], size_t bb, float* widen = nullptr) {
  if constexpr (R >= 1) {
    if (rows == R) return tile_store<M, R, C>(a, g, r0, w, bb, widen);
    return tile_rows<M, R - 1, C>(rows, a, g, r0, w, bb, widen);
  }
}

// C groups at g for rows [p0, p1), RMax rows per tile. F16 under more than one tile of rows: the
// first tile widens the weights as it goes and keeps them (16 floats per k index, a per-thread
// buffer), and the other tiles run the F32 kernel on them: vcvtph2ps once per weight instead of
// once per weight and tile, and the weights still stream from memory under the first tile's FMAs.
// Same products either way (widening is exact).
template <Mode M, int C, int RMax>
void run_tiles(const GemmPackedFloatArgs& a, int64_t g, int64_t p0, int64_t p1) {
  const PackedWeight& pw = *a.w;
  const uint8_t* w[C];
  for (int c = 0; c < C; ++c) w[c] = pw.group(g + c);
  if constexpr (M == Mode::kF16) {
    if (p1 - p0 > RMax) {
      thread_local std::vector<float> widened;
      widened.resize(static_cast<size_t>(C * pw.blocks * kPackRows));
      tile_rows<Mode::kF16Widen, RMax, C>(RMax, a, g, p0, w, pw.block_bytes, widened.data());
      const uint8_t* wf[C];
      for (int c = 0; c < C; ++c)
        wf[c] = reinterpret_cast<const uint8_t*>(widened.data() + c * pw.blocks * kPackRows);
      for (int64_t r = p0 + RMax; r < p1; r += RMax) {
        tile_rows<Mode::kF32, RMax, C>(static_cast<int>(std::min<int64_t>(RMax, p1 - r)), a, g, r,
                                       wf, kPackRows * sizeof(float));
      }
      return;
    }
  }
  for (int64_t r = p0; r < p1; r += RMax) {
    tile_rows<M, RMax, C>(static_cast<int>(std::min<int64_t>(RMax, p1 - r)), a, g, r, w,
                          pw.block_bytes);
  }
}

// Groups [g0, g1) for rows [p0, p1): C groups per tile, then the rest two or one at a time.
template <Mode M, int C, int RMax>
void run_groups(const GemmPackedFloatArgs& a, int64_t g0, int64_t g1, int64_t p0, int64_t p1) {
  int64_t g = g0;
  for (; g + C <= g1; g += C) run_tiles<M, C, RMax>(a, g, p0, p1);
  if constexpr (C > 2) {
    for (; g + 2 <= g1; g += 2) run_tiles<M, 2, RMax>(a, g, p0, p1);
  }
  for (; g < g1; ++g) run_tiles<M, 1, RMax>(a, g, p0, p1);
}

template <Mode M>
void run(const GemmPackedFloatArgs& a, int64_t g0, int64_t g1) {
  // One or two rows (decode): each accumulator is a chain of dependent FMAs, so four groups per
  // tile keep four chains in flight (one or two would leave the kernel waiting on FMA latency).
  if (a.m <= 2) return run_groups<M, 4, 2>(a, g0, g1, 0, a.m);
  // Activation rows in panels that stay in L2 while the groups pass over them.
  const int64_t row_bytes = a.w->cols * 4;
  const int64_t panel_rows = std::max<int64_t>(
      kRowsMax, (int64_t{384} << 10) / std::max<int64_t>(1, row_bytes) / kRowsMax * kRowsMax);
  for (int64_t p0 = 0; p0 < a.m; p0 += panel_rows) {
    const int64_t p1 = std::min(a.m, p0 + panel_rows);
    if constexpr (M == Mode::kF16) {
      if (p1 - p0 > kRowsMax && p1 - p0 <= kF16RowsOneGroup) {
        run_groups<M, 1, kF16RowsOneGroup>(a, g0, g1, p0, p1);
        continue;
      }
    }
    run_groups<M, kGroupsMax, kRowsMax>(a, g0, g1, p0, p1);
  }
}

// 32 values at a time with vcvtne2ps2bf16 (round to nearest even; the bf16 array in element
// order is the pairs array); the rest as the scalar f32_to_bf16.
int64_t f32_to_bf16_vector(const float* x, int64_t n, uint16_t* out) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
    _mm512_storeu_si512(out + i, reinterpret_cast<__m512i>(v));
  }
  return i;
}

}  // namespace

bool gemm_packed_float_avx512(const GemmPackedFloatArgs& a, int64_t g0, int64_t g1) {
  if (!cpu_supports(CpuIsa::kAvx512)) return false;
  switch (a.w->type) {
    case DType::kF32:
      run<Mode::kF32>(a, g0, g1);
      return true;
    case DType::kF16:
      run<Mode::kF16>(a, g0, g1);
      return true;
    case DType::kBF16:
      if (a.x_bf16 != nullptr) {
        if (!cpu_features().avx512_bf16) return false;
        run<Mode::kBF16Dot>(a, g0, g1);
      } else {
        run<Mode::kBF16>(a, g0, g1);
      }
      return true;
    default:
      return false;
  }
}

}  // namespace carpool
#pragma GCC pop_options

#else

namespace carpool {
namespace {
int64_t f32_to_bf16_vector(const float*, int64_t, uint16_t*) {
  return 0;
}
}  // namespace
bool gemm_packed_float_avx512(const GemmPackedFloatArgs&, int64_t, int64_t) {
  return false;
}
}  // namespace carpool

#endif

namespace carpool {

void f32_to_bf16_pairs(const float* x, int64_t n, uint32_t* out) {
  int64_t done = 0;
  if (cpu_features().avx512_bf16) done = f32_to_bf16_vector(x, n, reinterpret_cast<uint16_t*>(out));
  for (int64_t i = done; i < n; i += 2) {
    const uint32_t lo = f32_to_bf16(x[i]);
    const uint32_t hi = i + 1 < n ? f32_to_bf16(x[i + 1]) : 0;
    out[i / 2] = lo | (hi << 16);
  }
}

}  // namespace carpool
