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

bool gemm_q8a_uses_offset_acts(CpuIsa isa, DType t) {
  return isa == CpuIsa::kAvx512 && (t == DType::kQ8_0 || t == DType::kQ6_K);
}

void split_q8a_scales(const BlockQ8A* src, float* d, float* s, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b) {
    d[b] = src[b].d;
    s[b] = src[b].s;
  }
}

void offset_q8a(const BlockQ8A* src, BlockQ8A* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b) {
    dst[b].d = src[b].d;
    dst[b].s = src[b].s;
    for (int j = 0; j < kQK; ++j) {
      dst[b].qs[j] = static_cast<int8_t>(static_cast<uint8_t>(src[b].qs[j]) ^ 0x80u);
    }
  }
}

void sum_q8a(const BlockQ8A* src, int32_t* sums, int64_t nb, int parts) {
  CARPOOL_CHECK(parts == 1 || parts == 2);
  const int len = kQK / parts;
  for (int64_t b = 0; b < nb; ++b) {
    for (int p = 0; p < parts; ++p) {
      int32_t s = 0;
      for (int j = 0; j < len; ++j) s += src[b].qs[p * len + j];
      sums[b * parts + p] = s;
    }
  }
}

}  // namespace carpool
