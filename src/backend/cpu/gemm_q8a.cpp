#include "backend/cpu/gemm_q8a.h"

#include "util/check.h"

namespace carpool {

void gemm_q8a(CpuIsa isa, const GemmQ8aArgs& a, int64_t j0, int64_t j1) {
  CARPOOL_CHECK(cpu_supports(isa));
  CARPOOL_CHECK(a.k % dtype_info(a.wtype).block_elems == 0 && a.k % kQK == 0);
  if (isa == CpuIsa::kAvx512 && gemm_q8a_avx512(a, j0, j1)) return;
  if (isa >= CpuIsa::kAvx2 && gemm_q8a_avx2(a, j0, j1)) return;
  const int64_t nb_x = a.k / kQK;
  for (int64_t j = j0; j < j1; ++j) {
    const char* wrow = a.w + a.w_row_bytes * static_cast<size_t>(j);
    const float bj = a.bias != nullptr ? a.bias[j] : 0.f;
    for (int64_t r = 0; r < a.m; ++r) {
      a.y[r * a.ldy + j] = vec_dot_q8a_scalar(a.wtype, wrow, a.x + r * nb_x, a.k) + bj;
    }
  }
}

}  // namespace carpool
