// AVX-512 tile kernels: the AVX2 tiles with VNNI dot products (vpdpbusd on 256-bit registers) and
// 8 activation rows per tile (AVX-512VL has 32 vector registers); called only where CPUID
// reports AVX-512 F/BW/VL and VNNI.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "backend/cpu/gemm_q8a.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")
#include <immintrin.h>

namespace carpool {
namespace {

constexpr int kRowsMax = 8;

inline __m256i dot_us(__m256i u, __m256i s) {
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
}

inline __m256i dot_us_acc(__m256i acc, __m256i u, __m256i s) {
  return _mm256_dpbusd_epi32(acc, u, s);
}
constexpr bool kHaveVnni = true;

constexpr int kAccSets = 2;

#include "backend/cpu/gemm_q8a_tiles.inc"

}  // namespace

bool gemm_q8a_avx512(const GemmQ8aArgs& a, int64_t j0, int64_t j1) {
  return gemm_dispatch(a, j0, j1);
}

}  // namespace carpool
#pragma GCC pop_options

#else

namespace carpool {
bool gemm_q8a_avx512(const GemmQ8aArgs&, int64_t, int64_t) {
  return false;
}
}  // namespace carpool

#endif
