// Random weight rows for the CPU kernel tests: quantized ones (random quant bytes with sane f16
// scales; random bytes there would give infinities and NaNs) and float ones with their f32 values.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/quants.h"
#include "backend/dtype.h"

namespace carpool {

// Where a block of type t keeps its f16 scale fields (d, then m or dmin where it has one).
struct F16Fields {
  size_t offset;
  int count;
};
inline F16Fields f16_scale_fields(DType t) {
  switch (t) {
    case DType::kQ4_1:
    case DType::kQ5_1:
    case DType::kQ4_K:
    case DType::kQ5_K:
      return {0, 2};
    case DType::kQ2_K:
      return {offsetof(BlockQ2_K, d), 2};
    case DType::kQ3_K:
      return {offsetof(BlockQ3_K, d), 1};
    case DType::kQ6_K:
      return {offsetof(BlockQ6_K, d), 1};
    default:
      return {0, 1};
  }
}

inline std::vector<uint8_t> random_quant_weights(std::mt19937& g, DType t, int64_t rows,
                                                 int64_t k) {
  const DTypeInfo& info = dtype_info(t);
  std::vector<uint8_t> bytes(dtype_row_bytes(t, k) * static_cast<size_t>(rows));
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(g());
  std::uniform_real_distribution<float> u(-0.02f, 0.02f);
  const F16Fields fields = f16_scale_fields(t);
  for (size_t blk = 0; blk < bytes.size() / info.block_bytes; ++blk) {
    uint8_t* p = bytes.data() + blk * info.block_bytes;
    const size_t off = fields.offset;
    const int n_halves = fields.count;
    for (int h = 0; h < n_halves; ++h) {
      const uint16_t v = f32_to_f16(u(g));
      std::memcpy(p + off + 2 * h, &v, 2);
    }
  }
  return bytes;
}

// Every quant bit set (each type's largest values), with sane f16 scales.
inline std::vector<uint8_t> saturated_quant_weights(std::mt19937& g, DType t, int64_t rows,
                                                    int64_t k) {
  const DTypeInfo& info = dtype_info(t);
  std::vector<uint8_t> bytes(dtype_row_bytes(t, k) * static_cast<size_t>(rows), 0xff);
  std::uniform_real_distribution<float> u(0.005f, 0.02f);
  const F16Fields fields = f16_scale_fields(t);
  for (size_t blk = 0; blk < bytes.size() / info.block_bytes; ++blk) {
    for (int h = 0; h < fields.count; ++h) {
      const uint16_t v = f32_to_f16(u(g));
      std::memcpy(bytes.data() + blk * info.block_bytes + fields.offset + 2 * h, &v, 2);
    }
  }
  return bytes;
}

// The reference for an 8-bit-activation kernel's output: dequantized weights wf [k] dotted with
// activation row r of xq (rows of k / 32 blocks) in double, plus bias; *scale gets the sum of
// the magnitudes (bias and products), the size a tolerance is relative to.
inline double q8a_reference_dot(const float* wf, const BlockQ8A* xq, int64_t r, int64_t k,
                                double bias, double* scale) {
  double ref = bias;
  *scale = std::fabs(bias);
  for (int64_t i = 0; i < k; ++i) {
    const BlockQ8A& b = xq[static_cast<size_t>((r * k + i) / kQK)];
    const double xv = static_cast<double>(b.d) * b.qs[i % kQK];
    ref += wf[i] * xv;
    *scale += std::fabs(wf[i] * xv);
  }
  return ref;
}

// n rows of k weights of float type t (F32, F16 or BF16) drawn from nd: their bytes in *w and
// their values as f32 (after rounding to t) in *wf.
inline void random_float_weights(std::mt19937& g, std::normal_distribution<float>& nd, DType t,
                                 int64_t n, int64_t k, std::vector<uint8_t>* w,
                                 std::vector<float>* wf) {
  const size_t row_bytes = dtype_row_bytes(t, k);
  w->assign(row_bytes * static_cast<size_t>(n), 0);
  wf->assign(static_cast<size_t>(n * k), 0.f);
  for (int64_t i = 0; i < n * k; ++i) {
    const float v = nd(g);
    if (t == DType::kF32) std::memcpy(w->data() + 4 * i, &v, 4);
    const uint16_t h = t == DType::kF16 ? f32_to_f16(v) : f32_to_bf16(v);
    if (t != DType::kF32) std::memcpy(w->data() + 2 * i, &h, 2);
  }
  for (int64_t j = 0; j < n; ++j) dequantize_row(t, w->data() + row_bytes * j, &(*wf)[j * k], k);
}

}  // namespace carpool
