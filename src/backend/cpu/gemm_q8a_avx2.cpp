// AVX2 tile kernels (u8 x s8 products with maddubs + madd), compiled for AVX2 whatever the
// build's -march and called only where CPUID reports AVX2, FMA and F16C.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "backend/cpu/gemm_q8a.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>

namespace carpool {
namespace {

constexpr int kRowsMax = 4;

inline __m256i dot_us(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

inline __m256i dot_us_acc(__m256i acc, __m256i u, __m256i s) {
  return _mm256_add_epi32(acc, dot_us(u, s));
}
constexpr bool kHaveVnni = false;

constexpr int kAccSets = 1;

#include "backend/cpu/gemm_q8a_tiles.inc"

}  // namespace

bool gemm_q8a_avx2(const GemmQ8aArgs& a, int64_t j0, int64_t j1) {
  return gemm_dispatch(a, j0, j1);
}

}  // namespace carpool
#pragma GCC pop_options

#else

namespace carpool {
bool gemm_q8a_avx2(const GemmQ8aArgs&, int64_t, int64_t) {
  return false;
}
}  // namespace carpool

#endif
