// CpuBackend: row-wise ops (embed, norms, rope, kv_write, swiglu, gather_rows).
#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_features.h"
#include "backend/cpu/kv_int8.h"
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
  const OpScope scope(*this, "embed");
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
  const OpScope scope(*this, "rmsnorm");
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
  const OpScope scope(*this, "add_rmsnorm");
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

namespace {

// cs[j] = cos(pos * inv_freq[j]), cs[half + j] = sin(...): the angle formed in f32 like the
// reference implementations (position * inv_freq).
void rope_angles(int32_t pos, const float* freq, int half, float* cs) {
  const float p = static_cast<float>(pos);
  for (int j = 0; j < half; ++j) {
    const float theta = p * freq[j];
    cs[j] = std::cos(theta);
    cs[half + j] = std::sin(theta);
  }
}

// dst = src rotated by the angles cs (one head; dst may be src).
inline void rope_head(const float* src, float* dst, const float* cs, int half, RopeStyle style) {
  for (int j = 0; j < half; ++j) {
    const int a = style == RopeStyle::kNeox ? j : 2 * j;
    const int c = style == RopeStyle::kNeox ? j + half : 2 * j + 1;
    const float x0 = src[a], x1 = src[c];
    dst[a] = x0 * cs[j] - x1 * cs[half + j];
    dst[c] = x0 * cs[half + j] + x1 * cs[j];
  }
}

// A layer's K and V caches of rows of d values, f32, f16 or i8 (checked).
void check_kv_caches(const Tensor& k_cache, const Tensor& v_cache, int64_t d) {
  CARPOOL_CHECK(k_cache.cols == d && v_cache.cols == d && k_cache.rows == v_cache.rows);
  CARPOOL_CHECK(k_cache.dtype == v_cache.dtype &&
                (k_cache.dtype == DType::kF32 || k_cache.dtype == DType::kF16 ||
                 k_cache.dtype == DType::kI8));
}

// Where slot `slot` lies in a cache layer: its block's record, and its place in the block (one
// division per slot; the ops below then only add).
struct SlotPlace {
  char* record;
  int64_t offset;
};
SlotPlace slot_place(const KvLayer& c, int32_t slot) {
  const KvLayout& l = c.layout;
  return {c.k + slot / l.block_size * l.record_bytes(), slot % l.block_size};
}

// Asks, with intent to write, for the cache lines that write_kv_slot will store slot `slot`'s K
// columns into (head_dim values block_size elements apart per KV head: one line per 64 /
// (block_size * elem) of them, every line of the head's K) and its V rows, so that their misses
// overlap the rotation of the token before.
void prefetch_kv_slot(const KvLayer& c, int32_t slot) {
  const KvLayout& l = c.layout;
  const SlotPlace at = slot_place(c, slot);
  const int64_t elem = l.elem(), k_step = std::max<int64_t>(64, l.block_size * elem);
  for (int h = 0; h < l.n_kv_heads; ++h) {
    const char* unit = at.record + h * l.unit_bytes();
    const char* kb = unit + at.offset * elem;
    for (int64_t o = 0; o < l.head_dim * l.block_size * elem; o += k_step) {
      __builtin_prefetch(kb + o, 1, 3);
    }
    const char* vb = unit + l.v_begin() + at.offset * l.head_dim * elem;
    for (int64_t o = 0; o < l.head_dim * elem; o += 64) __builtin_prefetch(vb + o, 1, 3);
  }
}

// Writes one token's k and v rows (n_kv_heads * head_dim values each) to cache slot `slot`
// (kv_layout.h), head by head: V's values, and K's into column c of the slot's block; an int8
// cache's with one scale per KV head (kv_int8.h). k16: scratch of a head's values for the f16
// conversion.
void write_kv_slot(const KvLayer& c, int32_t slot, const float* k, const float* v, uint16_t* k16) {
  const KvLayout& l = c.layout;
  const int hd = l.head_dim;
  const int64_t bs = l.block_size, elem = l.elem();
  const SlotPlace at = slot_place(c, slot);
  for (int h = 0; h < l.n_kv_heads; ++h) {
    const int64_t o = int64_t{h} * hd;
    char* unit = at.record + h * l.unit_bytes();
    char* kd = unit + at.offset * elem;
    char* vd = unit + l.v_begin() + at.offset * hd * elem;
    if (l.dtype == DType::kI8) {
      float* ks = reinterpret_cast<float*>(unit + l.k_scales_begin()) + at.offset;
      float* vs = reinterpret_cast<float*>(unit + l.v_scales_begin()) + at.offset;
      *ks = quantize_kv_head(k + o, hd, reinterpret_cast<int8_t*>(kd), bs);
      *vs = quantize_kv_head(v + o, hd, reinterpret_cast<int8_t*>(vd), 1);
      continue;
    }
    store_row(l.dtype, v + o, vd, hd);
    if (l.dtype == DType::kF16) {
      f32_to_f16_row(k + o, k16, hd);
      uint16_t* kh = reinterpret_cast<uint16_t*>(kd);
      for (int col = 0; col < hd; ++col) kh[col * bs] = k16[col];
    } else {
      float* kf = reinterpret_cast<float*>(kd);
      for (int col = 0; col < hd; ++col) kf[col * bs] = k[o + col];
    }
  }
}

}  // namespace

void CpuBackend::rope(Tensor x, const Tensor& positions, const Tensor& inv_freq, int n_heads,
                      int head_dim, RopeStyle style) {
  const OpScope scope(*this, "rope");
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
      rope_angles(pos[i], freq, half, cs);
      for (int h = 0; h < n_heads; ++h) {
        float* v = xs + i * x.cols + static_cast<int64_t>(h) * head_dim;
        rope_head(v, v, cs, half, style);
      }
    }
  });
}

void CpuBackend::rope_kv_rows(const RopeKvArgs& a, Tensor k_cache, Tensor v_cache,
                              const Tensor& positions, const Tensor& inv_freq, const Tensor& slots,
                              int n_heads, int n_kv_heads, int head_dim, RopeStyle style) {
  const int half = head_dim / 2;
  const int64_t d = static_cast<int64_t>(n_kv_heads) * head_dim;
  CARPOOL_CHECK(head_dim > 0 && head_dim % 2 == 0 && n_heads > 0 && n_kv_heads > 0);
  CARPOOL_CHECK(positions.numel() == a.n && slots.numel() == a.n && inv_freq.numel() == half);
  check_kv_caches(k_cache, v_cache, d);
  const int32_t* pos = i32(positions);
  const int32_t* slot = i32(slots);
  const float* freq = f32(inv_freq);
  const KvLayer layer = kv_layer(k_cache, v_cache);
  // Per thread: [head_dim] angles, [d] the rotated K row, [d / 2] that row as f16.
  reserve_scratch(static_cast<size_t>(head_dim + d + (d + 1) / 2));
  pool_.parallel_for(a.n, 1, [&](int64_t b, int64_t e, int t) {
    float* cs = scratch(t);
    float* krow = cs + head_dim;
    uint16_t* krow16 = reinterpret_cast<uint16_t*>(krow + d);
    for (int64_t i = b; i < e; ++i) {
      CARPOOL_CHECK(slot[i] >= 0 && slot[i] < k_cache.rows);
      if (i == b) prefetch_kv_slot(layer, slot[i]);
      if (i + 1 < e && slot[i + 1] >= 0 && slot[i + 1] < k_cache.rows) {
        prefetch_kv_slot(layer, slot[i + 1]);
      }
      rope_angles(pos[i], freq, half, cs);
      for (int h = 0; h < n_heads; ++h) {
        const int64_t o = static_cast<int64_t>(h) * head_dim;
        rope_head(a.q_in + i * a.q_in_stride + o, a.q_out + i * a.q_out_stride + o, cs, half,
                  style);
      }
      const float* ki = a.k + i * a.kv_stride;
      for (int h = 0; h < n_kv_heads; ++h) {
        const int64_t o = static_cast<int64_t>(h) * head_dim;
        rope_head(ki + o, krow + o, cs, half, style);
      }
      write_kv_slot(layer, slot[i], krow, a.v + i * a.kv_stride, krow16);
      // Rotated in place where the caller's k is writable (rope_kv_write leaves k rotated).
      if (a.k_out != nullptr) std::memcpy(a.k_out + i * a.kv_stride, krow, d * sizeof(float));
    }
  });
}

void CpuBackend::rope_kv_write(Tensor q, Tensor k, const Tensor& v, Tensor k_cache, Tensor v_cache,
                               const Tensor& positions, const Tensor& inv_freq, const Tensor& slots,
                               int n_heads, int n_kv_heads, int head_dim, RopeStyle style) {
  const OpScope scope(*this, "rope_kv_write");
  const int64_t n = q.rows, kv_dim = static_cast<int64_t>(n_kv_heads) * head_dim;
  CARPOOL_CHECK(q.cols == static_cast<int64_t>(n_heads) * head_dim);
  CARPOOL_CHECK(k.rows == n && v.rows == n && k.cols == kv_dim && v.cols == kv_dim);
  RopeKvArgs a;
  a.q_in = f32(q);
  a.q_out = f32(q);
  a.q_in_stride = a.q_out_stride = q.cols;
  a.k = f32(k);
  a.k_out = f32(k);
  a.v = f32(v);
  a.kv_stride = kv_dim;
  a.n = n;
  rope_kv_rows(a, k_cache, v_cache, positions, inv_freq, slots, n_heads, n_kv_heads, head_dim,
               style);
}

void CpuBackend::rope_kv_write_qkv(Tensor q_out, const Tensor& qkv, Tensor k_cache, Tensor v_cache,
                                   const Tensor& positions, const Tensor& inv_freq,
                                   const Tensor& slots, int n_heads, int n_kv_heads, int head_dim,
                                   RopeStyle style) {
  const OpScope scope(*this, "rope_kv_write_qkv");
  const int64_t q_dim = static_cast<int64_t>(n_heads) * head_dim;
  const int64_t kv_dim = static_cast<int64_t>(n_kv_heads) * head_dim;
  CARPOOL_CHECK(qkv.cols == q_dim + 2 * kv_dim && q_out.cols == q_dim && q_out.rows == qkv.rows);
  CARPOOL_CHECK(qkv.dtype == DType::kF32 && q_out.dtype == DType::kF32);
  RopeKvArgs a;
  a.q_in = f32(qkv);
  a.q_out = f32(q_out);
  a.q_in_stride = qkv.cols;
  a.q_out_stride = q_dim;
  a.k = a.q_in + q_dim;
  a.v = a.q_in + q_dim + kv_dim;
  a.kv_stride = qkv.cols;
  a.n = qkv.rows;
  rope_kv_rows(a, k_cache, v_cache, positions, inv_freq, slots, n_heads, n_kv_heads, head_dim,
               style);
}

void CpuBackend::kv_write(Tensor k_cache, Tensor v_cache, const Tensor& k, const Tensor& v,
                          const Tensor& slots) {
  const OpScope scope(*this, "kv_write");
  const int64_t n = k.rows;
  const int64_t d = k.cols;
  CARPOOL_CHECK(v.rows == n && v.cols == d && slots.numel() == n);
  check_kv_caches(k_cache, v_cache, d);
  const int32_t* slot = i32(slots);
  const float* ks = f32(k);
  const float* vs = f32(v);
  const KvLayer layer = kv_layer(k_cache, v_cache);
  reserve_scratch(static_cast<size_t>(d));
  uint16_t* krow = reinterpret_cast<uint16_t*>(scratch(0));  // one K row as f16
  for (int64_t i = 0; i < n; ++i) {
    CARPOOL_CHECK(slot[i] >= 0 && slot[i] < k_cache.rows);
    write_kv_slot(layer, slot[i], ks + i * d, vs + i * d, krow);
  }
}

void CpuBackend::swiglu_rows(float* out, const float* gate, const float* up, int64_t rows,
                             int64_t cols, int64_t in_stride) {
  // silu(g) * u; exp(-g) from the attention kernels' vector exp (1 ulp) where the level has it
  // (the AVX-512 and AVX2 forms give the same bits: paged_attention_test). Work is split over the
  // elements (a decode step has few rows), in pieces within one row.
  const bool simd = cpu_isa() >= CpuIsa::kAvx2;
  const auto vexp = cpu_isa() >= CpuIsa::kAvx512 ? exp_f32_avx512 : exp_f32_avx2;
  pool_.parallel_for(rows * cols, 4096, [&](int64_t b, int64_t e, int) {
    constexpr int64_t kChunk = 512;
    float t[kChunk];
    for (int64_t c0 = b; c0 < e;) {
      const int64_t r = c0 / cols, col = c0 % cols;
      const int64_t n = std::min({kChunk, e - c0, cols - col});
      const float* g = gate + r * in_stride + col;
      const float* u = up + r * in_stride + col;
      float* y = out + r * cols + col;
      for (int64_t i = 0; i < n; ++i) t[i] = -g[i];
      if (!simd || !vexp(t, t, n)) {
        for (int64_t i = 0; i < n; ++i) t[i] = std::exp(t[i]);
      }
      for (int64_t i = 0; i < n; ++i) y[i] = g[i] / (1.f + t[i]) * u[i];
      c0 += n;
    }
  });
}

void CpuBackend::swiglu(Tensor out, const Tensor& gate, const Tensor& up) {
  const OpScope scope(*this, "swiglu");
  CARPOOL_CHECK(gate.rows == up.rows && gate.cols == up.cols);
  CARPOOL_CHECK(out.rows == gate.rows && out.cols == gate.cols);
  CARPOOL_CHECK(gate.dtype == DType::kF32 && up.dtype == DType::kF32 && out.dtype == DType::kF32);
  swiglu_rows(f32(out), f32(gate), f32(up), out.rows, out.cols, out.cols);
}

void CpuBackend::swiglu_fused(Tensor out, const Tensor& gate_up) {
  const OpScope scope(*this, "swiglu_fused");
  CARPOOL_CHECK(gate_up.cols == 2 * out.cols && gate_up.rows == out.rows);
  CARPOOL_CHECK(gate_up.dtype == DType::kF32 && out.dtype == DType::kF32);
  const float* g = f32(gate_up);
  swiglu_rows(f32(out), g, g + out.cols, out.rows, out.cols, gate_up.cols);
}

void CpuBackend::gather_rows(Tensor out, const Tensor& x, const Tensor& idx) {
  const OpScope scope(*this, "gather_rows");
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
