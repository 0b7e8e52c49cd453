// CpuBackend::matmul: out[m, n] = x[m, k] @ w[n, k]^T (+ bias).
//
// Work is split over weight rows, the outermost loop. Quantized weights go through the tiled
// kernels of gemm_q8a.h (each weight block unpacked once per tile of activation rows), float
// weights through those of gemm_float.h; without AVX2 (or with quantize_activations off for
// quantized weights) each weight row is converted to f32 and dotted with every activation row.
#include <algorithm>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/gemm_float.h"
#include "backend/cpu/gemm_q8a.h"
#include "util/check.h"

namespace carpool {

void CpuBackend::matmul(Tensor out, const Tensor& x, const Tensor& w, const Tensor* bias) {
  const int64_t m = x.rows;
  const int64_t k = x.cols;
  const int64_t n = w.rows;
  CARPOOL_CHECK(x.dtype == DType::kF32 && out.dtype == DType::kF32);
  CARPOOL_CHECK(w.cols == k && out.rows == m && out.cols == n);
  CARPOOL_CHECK(bias == nullptr || (bias->dtype == DType::kF32 && bias->numel() == n));
  const float* xs = static_cast<const float*>(x.data);
  float* y = static_cast<float*>(out.data);
  const float* b = bias != nullptr ? static_cast<const float*>(bias->data) : nullptr;
  const char* wbase = static_cast<const char*>(w.data);
  const size_t w_row_bytes = w.row_bytes();
  // Enough rows per chunk that a chunk is worth a thread hand-off.
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, k * m));

  if (dtype_is_quantized(w.dtype) && options_.quantize_activations) {
    const int64_t blocks_per_row = k / kQK;
    const size_t need = static_cast<size_t>(m * blocks_per_row);
    if (x_q8_.size() < need) x_q8_.resize(need);
    BlockQ8A* xq = x_q8_.data();
    const CpuIsa isa = cpu_isa();
    const bool offset = gemm_q8a_uses_offset_acts(isa, w.dtype);
    if (offset && x_q8u_.size() < need) x_q8u_.resize(need);
    BlockQ8A* xu = offset ? x_q8u_.data() : nullptr;
    const bool split = w.dtype == DType::kQ4_K || w.dtype == DType::kQ5_K;
    if (split && x_q8ds_.size() < 2 * need) x_q8ds_.resize(2 * need);
    float* xd = split ? x_q8ds_.data() : nullptr;
    float* xsum = split ? x_q8ds_.data() + need : nullptr;
    pool_.parallel_for(m, 1, [&](int64_t r0, int64_t r1, int) {
      for (int64_t r = r0; r < r1; ++r) {
        quantize_row_q8a(xs + r * k, xq + r * blocks_per_row, k);
        if (split) {
          split_q8a_scales(xq + r * blocks_per_row, xd + r * blocks_per_row,
                           xsum + r * blocks_per_row, blocks_per_row);
        }
        if (xu != nullptr) {
          offset_q8a(xq + r * blocks_per_row, xu + r * blocks_per_row, blocks_per_row);
        }
      }
    });
    GemmQ8aArgs args;
    args.wtype = w.dtype;
    args.w = wbase;
    args.w_row_bytes = w_row_bytes;
    args.x = xq;
    args.m = m;
    args.k = k;
    args.y = y;
    args.ldy = n;
    args.bias = b;
    args.x_u = xu;
    args.x_d = xd;
    args.x_s = xsum;
    pool_.parallel_for(n, grain, [&](int64_t j0, int64_t j1, int) { gemm_q8a(isa, args, j0, j1); });
    return;
  }

  if (!dtype_is_quantized(w.dtype) && cpu_isa() >= CpuIsa::kAvx2) {
    GemmFloatArgs args;
    args.wtype = w.dtype;
    args.w = wbase;
    args.w_row_bytes = w_row_bytes;
    args.x = xs;
    args.m = m;
    args.k = k;
    args.y = y;
    args.ldy = n;
    args.bias = b;
    pool_.parallel_for(n, grain, [&](int64_t j0, int64_t j1, int) {
      const bool handled = gemm_float_avx2(args, j0, j1);
      CARPOOL_CHECK(handled);
    });
    return;
  }

  if (w.dtype != DType::kF32) reserve_scratch(static_cast<size_t>(k));
  pool_.parallel_for(n, grain, [&](int64_t j0, int64_t j1, int t) {
    for (int64_t j = j0; j < j1; ++j) {
      const void* wrow = wbase + w_row_bytes * static_cast<size_t>(j);
      const float* wf = static_cast<const float*>(wrow);
      if (w.dtype != DType::kF32) {
        dequantize_row(w.dtype, wrow, scratch(t), k);
        wf = scratch(t);
      }
      const float bj = b != nullptr ? b[j] : 0.f;
      for (int64_t r = 0; r < m; ++r) y[r * n + j] = vec_dot_f32(wf, xs + r * k, k) + bj;
    }
  });
}

}  // namespace carpool
