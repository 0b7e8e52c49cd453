// CpuBackend::matmul: out[m, n] = x[m, k] @ w[n, k]^T (+ bias).
//
// Work is split over weight rows, the outermost loop. Quantized weights with a packed copy
// (packed_weights.h) go through gemm_packed.h 16 rows at a time, the rows past the last full
// group and every other quantized type through the tiled kernels of gemm_q8a.h (each weight block
// unpacked once per tile of activation rows); float weights through gemm_packed_float.h (AVX-512)
// or the tiled dot products of gemm_float.h (AVX2, and the rows past the last group); without
// AVX2 (or with quantize_activations off for quantized weights) each weight row is converted to f32
// and dotted with every activation row.
#include <algorithm>
#include <cstdlib>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_features.h"
#include "backend/cpu/gemm_float.h"
#include "backend/cpu/gemm_packed.h"
#include "backend/cpu/gemm_packed_float.h"
#include "backend/cpu/gemm_q8a.h"
#include "util/check.h"

namespace carpool {

namespace {

// Decode-sized matmuls (a few rows: microseconds per call) claim their groups coarsely
// (ThreadPool::Claims).
ThreadPool::Claims decode_claims(int64_t m) {
  return m <= 16 ? ThreadPool::Claims::kCoarse : ThreadPool::Claims::kFine;
}

}  // namespace

void CpuBackend::matmul(Tensor out, const Tensor& x, const Tensor& w, const Tensor* bias) {
  const int64_t m = x.rows;
  const int64_t k = x.cols;
  const int64_t n = w.rows;
  OpScope scope(*this, "matmul");
  if (scope.on()) {
    scope.describe(matmul_op_key(m, k, n, w.dtype), static_cast<double>(w.bytes()),
                   2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k));
  }
  CARPOOL_CHECK(x.dtype == DType::kF32 && out.dtype == DType::kF32);
  CARPOOL_CHECK(w.cols == k && out.rows == m && out.cols == n);
  CARPOOL_CHECK(bias == nullptr || ((bias->dtype == DType::kF32 || bias->dtype == DType::kF16 ||
                                     bias->dtype == DType::kBF16) &&
                                    bias->numel() == n));
  const float* xs = static_cast<const float*>(x.data);
  float* y = static_cast<float*>(out.data);
  // Biases as the file has them: f32, or f16/bf16 (Hugging Face checkpoints in half precision)
  // widened here, n values per call.
  const float* b = nullptr;
  if (bias != nullptr && bias->dtype == DType::kF32) {
    b = static_cast<const float*>(bias->data);
  } else if (bias != nullptr) {
    bias_f32_.resize(static_cast<size_t>(n));
    dequantize_row(bias->dtype, bias->data, bias_f32_.data(), n);
    b = bias_f32_.data();
  }
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
    const PackedWeight* packed = packed_for(w);
    const int64_t n_packed = packed != nullptr ? packed->groups * kPackRows : 0;
    const bool tail = n_packed < n;
    const bool offset = tail && gemm_q8a_uses_offset_acts(isa, w.dtype);
    const int sum_parts = packed != nullptr ? gemm_packed_sums_per_block(w.dtype) : 0;
    if (x_q8sum_.size() < need * sum_parts) x_q8sum_.resize(need * sum_parts);
    int32_t* xsums = sum_parts > 0 ? x_q8sum_.data() : nullptr;
    if (offset && x_q8u_.size() < need) x_q8u_.resize(need);
    BlockQ8A* xu = offset ? x_q8u_.data() : nullptr;
    const bool split = tail && (w.dtype == DType::kQ4_K || w.dtype == DType::kQ5_K);
    if (split && x_q8ds_.size() < 2 * need) x_q8ds_.resize(2 * need);
    float* xd = split ? x_q8ds_.data() : nullptr;
    float* xsum = split ? x_q8ds_.data() + need : nullptr;
    const bool amx =
        packed != nullptr && isa >= CpuIsa::kAvx512 && gemm_packed_amx_takes(w.dtype, m);
    if (amx) amx_reset(x_amx_, w.dtype, m, blocks_per_row);
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
        if (xsums != nullptr)
          sum_q8a(xq + r * blocks_per_row, xsums + r * blocks_per_row * sum_parts, blocks_per_row,
                  sum_parts);
        if (amx) {
          amx_put_row(x_amx_, r, xq + r * blocks_per_row,
                      xsums != nullptr ? xsums + r * blocks_per_row * sum_parts : nullptr);
        }
      }
    });
    // The unpacked kernels: every row, or the rows past the last packed group.
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
    if (packed != nullptr) {
      GemmPackedArgs pa;
      pa.w = packed;
      pa.x = xq;
      pa.x_sum = xsums;
      pa.m = m;
      pa.y = y;
      pa.ldy = n;
      pa.bias = b;
      pa.amx = amx ? &x_amx_ : nullptr;
      // One task per group of 16 rows, plus one for the unpacked rows past the last group.
      const int64_t groups = packed->groups;
      const int64_t pgrain = std::max<int64_t>(1, grain / kPackRows);
      pool_.parallel_for(
          groups + (tail ? 1 : 0), pgrain,
          [&](int64_t g0, int64_t g1, int) {
            const int64_t g_end = std::min(g1, groups);
            if (g0 < g_end) {
              const bool handled = isa >= CpuIsa::kAvx512 ? gemm_packed_amx(pa, g0, g_end) ||
                                                                gemm_packed_avx512(pa, g0, g_end)
                                                          : gemm_packed_avx2(pa, g0, g_end);
              CARPOOL_CHECK(handled);
            }
            if (g1 > groups) gemm_q8a(isa, args, n_packed, n);
          },
          decode_claims(m));
      return;
    }
    pool_.parallel_for(n, grain, [&](int64_t j0, int64_t j1, int) { gemm_q8a(isa, args, j0, j1); });
    return;
  }

  if (!dtype_is_quantized(w.dtype) && cpu_isa() >= CpuIsa::kAvx2) {
    GemmFloatArgs args;  // the AVX2 kernels: every row, or the rows past the last packed group
    args.wtype = w.dtype;
    args.w = wbase;
    args.w_row_bytes = w_row_bytes;
    args.x = xs;
    args.m = m;
    args.k = k;
    args.y = y;
    args.ldy = n;
    args.bias = b;
    if (const PackedWeight* packed = packed_for(w)) {
      GemmPackedFloatArgs pa;
      pa.w = packed;
      pa.x = xs;
      pa.m = m;
      pa.y = y;
      pa.ldy = n;
      pa.bias = b;
      if (w.dtype == DType::kBF16 && options_.quantize_activations && cpu_features().avx512_bf16) {
        // Fast mode: bf16 activations and vdpbf16ps (two products per lane).
        const int64_t pairs = packed->blocks;
        if (x_bf16_.size() < static_cast<size_t>(m * pairs)) x_bf16_.resize(m * pairs);
        uint32_t* xb = x_bf16_.data();
        pool_.parallel_for(m, 1, [&](int64_t r0, int64_t r1, int) {
          for (int64_t r = r0; r < r1; ++r) f32_to_bf16_pairs(xs + r * k, k, xb + r * pairs);
        });
        pa.x_bf16 = xb;
      }
      const int64_t groups = packed->groups;
      const bool tail = groups * kPackRows < n;
      // Whole tiles of groups per task (gemm_packed_float.h: 4 groups per tile at one or two
      // rows, else 2).
      const int64_t pgrain = std::max<int64_t>(m <= 2 ? 4 : 2, grain / kPackRows);
      pool_.parallel_for(
          groups + (tail ? 1 : 0), pgrain,
          [&](int64_t g0, int64_t g1, int) {
            const int64_t g_end = std::min(g1, groups);
            if (g0 < g_end && !gemm_packed_bf16_amx(pa, g0, g_end)) {
              CARPOOL_CHECK(gemm_packed_float_avx512(pa, g0, g_end));
            }
            if (g1 > groups) CARPOOL_CHECK(gemm_float_avx2(args, groups * kPackRows, n));
          },
          decode_claims(m));
      return;
    }
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

namespace {

// CARPOOL_CPU_PACK=0 turns packing off (A/B measurements).
bool packing_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("CARPOOL_CPU_PACK");
    return v == nullptr || std::string(v) != "0";
  }();
  return enabled;
}

}  // namespace

bool CpuBackend::packs(DType t, int64_t rows, int64_t cols) const {
  if (!packing_enabled() || !packable(t) || rows < kPackRows ||
      cols % dtype_info(t).block_elems != 0) {
    return false;
  }
  // Float weights: AVX-512 kernels (f32 activations, exact products), in both modes. Quantized
  // weights: 8-bit activations, AVX2 or AVX-512.
  return packable_float(t) ? cpu_isa() >= CpuIsa::kAvx512
                           : options_.quantize_activations && cpu_isa() >= CpuIsa::kAvx2;
}

const PackedWeight* CpuBackend::packed_for(const Tensor& w) {
  if (!packs(w.dtype, w.rows, w.cols)) return nullptr;
  auto it = packed_.find(w.data);
  if (it != packed_.end() && it->second.type == w.dtype &&
      it->second.groups == w.rows / kPackRows && it->second.cols == w.cols) {
    return &it->second;
  }
  if (it != packed_.end()) {  // the memory now holds another weight
    packed_bytes_ -= it->second.bytes();
    packed_.erase(it);
  }
  PackedWeight p = make_packed(w.dtype, w.rows, w.cols);
  const size_t row_bytes = w.row_bytes();
  pool_.parallel_for(
      p.groups, 1, [&](int64_t g0, int64_t g1, int) { pack_groups(p, w.data, row_bytes, g0, g1); });
  packed_bytes_ += p.bytes();
  return &packed_.emplace(w.data, std::move(p)).first->second;
}

}  // namespace carpool
