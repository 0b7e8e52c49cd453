// AVX2 kernels for float weights (see gemm_float.h), compiled for AVX2 whatever the build's
// -march and called only where CPUID reports AVX2, FMA and F16C.
#include <algorithm>
#include <cstdint>

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/gemm_float.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>

namespace carpool {
namespace {

constexpr int kRowsMax = 4;

template <DType T>
inline __m256 load_w(const char* w, int64_t i) {
  if constexpr (T == DType::kF32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(w) + i);
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * i));
    if constexpr (T == DType::kF16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

template <DType T>
inline float w_scalar(const char* w, int64_t i) {
  if constexpr (T == DType::kF32) return reinterpret_cast<const float*>(w)[i];
  uint16_t h;
  __builtin_memcpy(&h, w + 2 * i, 2);
  if constexpr (T == DType::kF16) return _cvtsh_ss(h);
  return bf16_to_f32(h);
}

inline float hsum(__m256 v) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

// out[r] = dot(w, x row r) for r < R. U independent accumulators per row hide FMA latency.
template <DType T, int R>
void tile(const char* w, const float* x, int64_t k, float* out) {
  // The same number of accumulator sets for every tile size: a row's f32 sum must not depend on
  // how many rows share its tile, or a request's answer would depend on its batch.
  constexpr int U = 2;
  __m256 acc[U][R];
  for (int u = 0; u < U; ++u) {
    for (int r = 0; r < R; ++r) acc[u][r] = _mm256_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 8 * U <= k; i += 8 * U) {
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      const __m256 wv = load_w<T>(w, i + 8 * u);
      for (int r = 0; r < R; ++r) {
        acc[u][r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + r * k + i + 8 * u), acc[u][r]);
      }
    }
  }
  for (; i + 8 <= k; i += 8) {
    const __m256 wv = load_w<T>(w, i);
    for (int r = 0; r < R; ++r) {
      acc[0][r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + r * k + i), acc[0][r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    __m256 v = acc[0][r];
    for (int u = 1; u < U; ++u) v = _mm256_add_ps(v, acc[u][r]);
    float s = hsum(v);
    for (int64_t t = i; t < k; ++t) s += w_scalar<T>(w, t) * x[r * k + t];
    out[r] = s;
  }
}

template <DType T, int RMax>
inline void tail(int rem, const char* w, const float* x, int64_t k, float* out) {
  if constexpr (RMax >= 1) {
    if (rem == RMax) return tile<T, RMax>(w, x, k, out);
    return tail<T, RMax - 1>(rem, w, x, k, out);
  }
}

template <DType T>
void gemm(const GemmFloatArgs& a, int64_t j0, int64_t j1) {
  // Panels of activation rows that stay in L2 while the weight rows pass over them.
  const int64_t panel_rows = std::max<int64_t>(
      kRowsMax, (int64_t{256} << 10) / std::max<int64_t>(1, a.k * 4) / kRowsMax * kRowsMax);
  float out[kRowsMax];
  for (int64_t p0 = 0; p0 < a.m; p0 += panel_rows) {
    const int64_t p1 = std::min(a.m, p0 + panel_rows);
    for (int64_t j = j0; j < j1; ++j) {
      const char* wrow = a.w + a.w_row_bytes * static_cast<size_t>(j);
      const float bj = a.bias != nullptr ? a.bias[j] : 0.f;
      for (int64_t r = p0; r < p1; r += kRowsMax) {
        const int rows = static_cast<int>(std::min<int64_t>(kRowsMax, p1 - r));
        if (rows == kRowsMax) {
          tile<T, kRowsMax>(wrow, a.x + r * a.k, a.k, out);
        } else {
          tail<T, kRowsMax - 1>(rows, wrow, a.x + r * a.k, a.k, out);
        }
        for (int t = 0; t < rows; ++t) a.y[(r + t) * a.ldy + j] = out[t] + bj;
      }
    }
  }
}

}  // namespace

bool gemm_float_avx2(const GemmFloatArgs& a, int64_t j0, int64_t j1) {
  if (!cpu_supports(CpuIsa::kAvx2)) return false;
  switch (a.wtype) {
    case DType::kF32:
      gemm<DType::kF32>(a, j0, j1);
      return true;
    case DType::kF16:
      gemm<DType::kF16>(a, j0, j1);
      return true;
    case DType::kBF16:
      gemm<DType::kBF16>(a, j0, j1);
      return true;
    default:
      return false;
  }
}

}  // namespace carpool
#pragma GCC pop_options

#else

namespace carpool {
bool gemm_float_avx2(const GemmFloatArgs&, int64_t, int64_t) {
  return false;
}
}  // namespace carpool

#endif
