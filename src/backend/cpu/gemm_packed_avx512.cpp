// AVX-512 VNNI kernels for packed weights (gemm_packed.h): per block of 32 elements and group of
// 16 weight rows, eight vpdpbusd (unsigned weight bytes x four signed activation bytes broadcast)
// form the 16 rows' exact integer sums; one or two FMAs scale them into 16 accumulators. Q8_0
// parts hold q + 128, corrected by seeding the sum with -128 sum x.
// The kernels themselves are in gemm_packed_kernels.inc; the formulas per type:
//   Q4_0: w = d (q - 8):   acc += d_w * (d_x * (dot(q, x) - 8 sum x))
//   Q8_0: w = d q:         acc += d_w * (d_x * dot(q, x))
//   Q4_1: w = d q + m:     acc += d_w * (d_x * dot(q, x)) + m_w * s_x     (s_x = d_x sum x)
//   Q5_0: w = d (q - 16):  as Q4_0 with 5-bit q
//   Q5_1: w = d q + m:     as Q4_1 with 5-bit q
//   Q4_K: w = d sc_j q - dmin m_j per sub-block j of 32:
//                          acc += (d sc_j) * (d_x * dot(q, x)) - (dmin m_j) * s_x
//   Q5_K: as Q4_K with 5-bit q
//   Q6_K: w = d sc_h (q - 32) per half sub-block h of 16 (the halves' sums combined exactly in
//         32-bit integers): acc += d * (d_x * sum_h sc_h (dot_h(q, x) - 32 sum_h x))
//   Q3_K: as Q6_K with 3-bit q and -4
//   Q2_K: w = d sc_h q - dmin m_h per half sub-block h of 16 (q values pre-multiplied by sc_h):
//                          acc += d * (d_x * dot(sc q, x)) - sum_h (dmin m_h) * (d_x sum_h x)
//   IQ4_NL: w = d v (v from the IQ4 table, held as v + 128 like Q8_0's parts):
//                          acc += d_w * (d_x * dot(v, x))
//   IQ4_XS: w = d (ls_j - 32) v per sub-block j of 32: as IQ4_NL with d (ls_j - 32)
// The corrections (-8, -16, -32, -4 times the activation sum for Q4_0, Q5_0, Q6_K, Q3_K; AVX-512
// also -128 for the biased Q8_0 and IQ4 bytes) seed the integer sums: they stay exact.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cpu/gemm_packed.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")
// GCC 12 warns inside its own _mm512_undefined_* (GCC bug 105593, fixed in 13).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "backend/cpu/cpu_features.h"

namespace carpool {
namespace {
#include "backend/cpu/gemm_packed_avx512_ops.inc"
#include "backend/cpu/gemm_packed_kernels.inc"

}  // namespace

bool gemm_packed_avx512(const GemmPackedArgs& a, int64_t g0, int64_t g1) {
  if (!cpu_supports(CpuIsa::kAvx512)) return false;
  return packed_dispatch(a, g0, g1);
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
