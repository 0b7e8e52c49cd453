// CpuBackend: row-wise ops (embed, norms, rope, kv_write, swiglu, gather_rows).
#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_features.h"
#include "backend/cpu/paged_attention.h"
#include "util/check.h"

namespace carpool {
namespace {

const int32_t* i32(const Tensor& t) {
  CARPOOL_CHECK(t.dtype == DType::kI32);
  return static_cast<const int32_t*>(t.data);
}
const float* f32(const Tensor& t) {
  CARPOOL_CHECK(t.dtype == DType::kF32);
  return static_cast<const float*>(t.data);
}
float* f32(Tensor& t) {
  CARPOOL_CHECK(t.dtype == DType::kF32);
  return static_cast<float*>(t.data);
}

// y[d] = x[d] / sqrt(mean(x^2) + eps) * w[d]
void rmsnorm_row(const float* x, const float* w, float* y, int64_t d, float eps) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= d; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += x[i + j] * x[i + j];
  }
  float ss = 0.f;
  for (int j = 0; j < 8; ++j) ss += acc[j];
  for (; i < d; ++i) ss += x[i] * x[i];
  const float inv = 1.f / std::sqrt(ss / static_cast<float>(d) + eps);
  for (i = 0; i < d; ++i) y[i] = x[i] * inv * w[i];
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// f32_to_f16 eight values at a time with F16C (round to nearest even, as f32_to_f16).
__attribute__((target("avx,f16c"))) void f32_to_f16_f16c(const float* src, uint16_t* dst,
                                                         int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  for (; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}
#endif

void f32_to_f16_row(const float* src, uint16_t* dst, int64_t n) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (cpu_supports(CpuIsa::kAvx2)) return f32_to_f16_f16c(src, dst, n);
#endif
  for (int64_t i = 0; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

// Converts n f32 values to the storage type `t` (F32, F16 or BF16) at dst.
void store_row(DType t, const float* src, void* dst, int64_t n) {
  switch (t) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kF16:
      f32_to_f16_row(src, static_cast<uint16_t*>(dst), n);
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = f32_to_bf16(src[i]);
      return;
    default:
      break;
  }
  CARPOOL_CHECK(false && "store_row: unsupported type");
}

}  // namespace

void CpuBackend::embed(Tensor out, const Tensor& table, const Tensor& ids) {
  const int32_t* id = i32(ids);
  const int64_t n = ids.cols;
  const int64_t d = table.cols;
  CARPOOL_CHECK(ids.rows == 1 && out.rows == n && out.cols == d && out.dtype == DType::kF32);
  for (int64_t i = 0; i < n; ++i) CARPOOL_CHECK(id[i] >= 0 && id[i] < table.rows);
  float* y = f32(out);
  const char* base = static_cast<const char*>(table.data);
  const size_t row_bytes = table.row_bytes();
  pool_.parallel_for(n, 4, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) {
      dequantize_row(table.dtype, base + row_bytes * static_cast<size_t>(id[i]), y + i * d, d);
    }
  });
}

void CpuBackend::rmsnorm(Tensor out, const Tensor& x, const Tensor& w, float eps) {
  const int64_t d = x.cols;
  CARPOOL_CHECK(out.rows == x.rows && out.cols == d && w.numel() == d);
  const float* wf = weight_as_f32(w);
  const float* xs = f32(x);
  float* y = f32(out);
  pool_.parallel_for(x.rows, 4, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) rmsnorm_row(xs + i * d, wf, y + i * d, d, eps);
  });
}

void CpuBackend::add_rmsnorm(Tensor residual, const Tensor& x, const Tensor& w, Tensor out,
                             float eps) {
  const int64_t d = x.cols;
  CARPOOL_CHECK(residual.rows == x.rows && residual.cols == d);
  CARPOOL_CHECK(out.rows == x.rows && out.cols == d && w.numel() == d);
  const float* wf = weight_as_f32(w);
  const float* xs = f32(x);
  float* r = f32(residual);
  float* y = f32(out);
  pool_.parallel_for(x.rows, 4, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) {
      float* ri = r + i * d;
      const float* xi = xs + i * d;
      for (int64_t j = 0; j < d; ++j) ri[j] += xi[j];
      rmsnorm_row(ri, wf, y + i * d, d, eps);
    }
  });
}

void CpuBackend::rope(Tensor x, const Tensor& positions, const Tensor& inv_freq, int n_heads,
                      int head_dim, RopeStyle style) {
  const int64_t n = x.rows;
  const int half = head_dim / 2;
  CARPOOL_CHECK(head_dim > 0 && head_dim % 2 == 0 && n_heads > 0);
  CARPOOL_CHECK(x.cols == static_cast<int64_t>(n_heads) * head_dim);
  CARPOOL_CHECK(positions.numel() == n && inv_freq.numel() == half);
  const int32_t* pos = i32(positions);
  const float* freq = f32(inv_freq);
  float* xs = f32(x);
  reserve_scratch(static_cast<size_t>(head_dim));
  pool_.parallel_for(n, 1, [&](int64_t b, int64_t e, int t) {
    float* cs = scratch(t);  // [half] cos, then [half] sin
    for (int64_t i = b; i < e; ++i) {
      // The angle is formed in f32 like the reference implementations (position * inv_freq).
      const float p = static_cast<float>(pos[i]);
      for (int j = 0; j < half; ++j) {
        const float theta = p * freq[j];
        cs[j] = std::cos(theta);
        cs[half + j] = std::sin(theta);
      }
      for (int h = 0; h < n_heads; ++h) {
        float* v = xs + i * x.cols + static_cast<int64_t>(h) * head_dim;
        for (int j = 0; j < half; ++j) {
          const int a = style == RopeStyle::kNeox ? j : 2 * j;
          const int c = style == RopeStyle::kNeox ? j + half : 2 * j + 1;
          const float x0 = v[a], x1 = v[c];
          v[a] = x0 * cs[j] - x1 * cs[half + j];
          v[c] = x0 * cs[half + j] + x1 * cs[j];
        }
      }
    }
  });
}

void CpuBackend::kv_write(Tensor k_cache, Tensor v_cache, const Tensor& k, const Tensor& v,
                          const Tensor& slots) {
  const int64_t n = k.rows;
  const int64_t d = k.cols;
  CARPOOL_CHECK(v.rows == n && v.cols == d && slots.numel() == n);
  CARPOOL_CHECK(k_cache.cols == d && v_cache.cols == d && k_cache.rows == v_cache.rows);
  CARPOOL_CHECK(k_cache.dtype == v_cache.dtype &&
                (k_cache.dtype == DType::kF32 || k_cache.dtype == DType::kF16));
  const int32_t* slot = i32(slots);
  const float* ks = f32(k);
  const float* vs = f32(v);
  const size_t row_bytes = v_cache.row_bytes();
  const int64_t bs = k_block_size(k_cache);
  const bool f16 = k_cache.dtype == DType::kF16;
  reserve_scratch(static_cast<size_t>(d));
  uint16_t* krow = reinterpret_cast<uint16_t*>(scratch(0));  // one K row as f16
  for (int64_t i = 0; i < n; ++i) {
    CARPOOL_CHECK(slot[i] >= 0 && slot[i] < k_cache.rows);
    char* vd = static_cast<char*>(v_cache.data) + row_bytes * static_cast<size_t>(slot[i]);
    store_row(v_cache.dtype, vs + i * d, vd, d);
    // K: column c of the slot's block holds dimension c of its bs keys (k_cache_index).
    const int64_t base = slot[i] / bs * bs * d + slot[i] % bs;
    if (f16) {
      f32_to_f16_row(ks + i * d, krow, d);
      uint16_t* kd = static_cast<uint16_t*>(k_cache.data) + base;
      for (int64_t c = 0; c < d; ++c) kd[c * bs] = krow[c];
    } else {
      float* kd = static_cast<float*>(k_cache.data) + base;
      for (int64_t c = 0; c < d; ++c) kd[c * bs] = ks[i * d + c];
    }
  }
}

void CpuBackend::swiglu(Tensor out, const Tensor& gate, const Tensor& up) {
  CARPOOL_CHECK(gate.rows == up.rows && gate.cols == up.cols);
  CARPOOL_CHECK(out.rows == gate.rows && out.cols == gate.cols);
  const float* g = f32(gate);
  const float* u = f32(up);
  float* y = f32(out);
  // silu(g) * u; exp(-g) from the attention kernels' vector exp (1 ulp) where the level has it.
  const bool simd = cpu_isa() >= CpuIsa::kAvx2;
  pool_.parallel_for(out.numel(), 4096, [&](int64_t b, int64_t e, int) {
    constexpr int64_t kChunk = 512;
    float t[kChunk];
    for (int64_t c0 = b; c0 < e; c0 += kChunk) {
      const int64_t n = std::min(kChunk, e - c0);
      for (int64_t i = 0; i < n; ++i) t[i] = -g[c0 + i];
      if (!simd || !exp_f32_avx2(t, t, n)) {
        for (int64_t i = 0; i < n; ++i) t[i] = std::exp(t[i]);
      }
      for (int64_t i = 0; i < n; ++i) y[c0 + i] = g[c0 + i] / (1.f + t[i]) * u[c0 + i];
    }
  });
}

void CpuBackend::gather_rows(Tensor out, const Tensor& x, const Tensor& idx) {
  const int32_t* id = i32(idx);
  const int64_t m = idx.numel();
  CARPOOL_CHECK(out.rows == m && out.cols == x.cols && out.dtype == x.dtype);
  const size_t row_bytes = x.row_bytes();
  for (int64_t i = 0; i < m; ++i) {
    CARPOOL_CHECK(id[i] >= 0 && id[i] < x.rows);
    std::memcpy(static_cast<char*>(out.data) + row_bytes * static_cast<size_t>(i),
                static_cast<const char*>(x.data) + row_bytes * static_cast<size_t>(id[i]),
                row_bytes);
  }
}

}  // namespace carpool
