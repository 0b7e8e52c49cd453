// Row-wise and element-wise kernels: embed, rmsnorm (with fused residual add), bias, rope,
// rope + kv_write fused (also from a fused q|k|v buffer), kv_write, swiglu (also from a fused
// gate|up buffer), gather_rows.
#include "backend/cuda/device_utils.cuh"

namespace carpool::cuda {
namespace {

constexpr int kThreads = 256;

// out[i, :] = src[rows[i], :], zero for rows outside [0, src_rows).
__global__ void gather_kernel(void* out, DType out_dtype, const void* src, DType src_dtype,
                              int64_t src_rows, const int32_t* rows, int64_t n, int64_t d) {
  const int64_t total = n * d;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / d, c = i % d;
    const int64_t row = rows[r];
    float v = (row >= 0 && row < src_rows) ? load_f(src, row * d + c, src_dtype) : 0.f;
    store_f(out, i, out_dtype, v);
  }
}

__device__ float block_sum(float v) {
  __shared__ float partial[32];
  v = warp_sum(v);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int n_warps = blockDim.x / 32;
  v = lane < n_warps ? partial[lane] : 0.f;
  v = warp_sum(v);
  return v;
}

// One block per row.
__global__ void rmsnorm_kernel(void* out, DType out_dtype, const void* x, DType x_dtype,
                               void* residual, DType residual_dtype, const void* w, DType w_dtype,
                               int64_t d, float eps) {
  const int64_t row = blockIdx.x;
  const int64_t base = row * d;
  float ss = 0.f;
  if (residual != nullptr) {
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
      store_f(residual, base + c, residual_dtype,
              load_f(residual, base + c, residual_dtype) + load_f(x, base + c, x_dtype));
      // Norm of the stored (rounded) residual, which is what later layers see.
      const float r = load_f(residual, base + c, residual_dtype);
      ss += r * r;
    }
  } else {
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
      const float v = load_f(x, base + c, x_dtype);
      ss += v * v;
    }
  }
  const float inv = rsqrtf(block_sum(ss) / static_cast<float>(d) + eps);
  const void* src = residual != nullptr ? residual : x;
  const DType src_dtype = residual != nullptr ? residual_dtype : x_dtype;
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x)
    store_f(out, base + c, out_dtype,
            load_f(src, base + c, src_dtype) * inv * load_f(w, c, w_dtype));
}

// rmsnorm_kernel for bf16 x, out (and residual) with d a multiple of 8: a block per row, each
// thread owning up to kNormChunks 16-byte chunks (8 elements) kept in registers between the sum
// of squares and the scaling, so a row is read once and written once (the scalar kernel above
// walks it three times with a type test per element). The same arithmetic per element as the
// scalar kernel; only the order in which the squares are summed differs.
constexpr int kNormChunks = 2;

__global__ void __launch_bounds__(1024)
    rmsnorm_bf16x8_kernel(uint4* out, const uint4* x, uint4* residual, const void* w, DType w_dtype,
                          int d8, float eps) {
  const int64_t base = static_cast<int64_t>(blockIdx.x) * d8;
  float v[kNormChunks][8];
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < kNormChunks; ++j) {
    const int c = threadIdx.x + j * blockDim.x;
    if (c >= d8) break;
    bf16x8_to_f32(x[base + c], v[j]);
    if (residual != nullptr) {
      float r[8];
      bf16x8_to_f32(residual[base + c], r);
#pragma unroll
      for (int e = 0; e < 8; ++e) r[e] += v[j][e];
      const uint4 stored = f32_to_bf16x8(r);
      residual[base + c] = stored;
      bf16x8_to_f32(stored, v[j]);  // the rounded residual, which later layers see
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) ss += v[j][e] * v[j][e];
  }
  const float inv = rsqrtf(block_sum(ss) / static_cast<float>(d8 * 8) + eps);
#pragma unroll
  for (int j = 0; j < kNormChunks; ++j) {
    const int c = threadIdx.x + j * blockDim.x;
    if (c >= d8) break;
    float wf[8];
    if (w_dtype == DType::kBF16) {
      bf16x8_to_f32(static_cast<const uint4*>(w)[c], wf);
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) wf[e] = load_f(w, int64_t(c) * 8 + e, w_dtype);
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) v[j][e] = v[j][e] * inv * wf[e];
    out[base + c] = f32_to_bf16x8(v[j]);
  }
}

__global__ void add_bias_kernel(void* out, DType out_dtype, const void* bias, DType bias_dtype,
                                int64_t m, int64_t n) {
  const int64_t total = m * n;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    store_f(out, i, out_dtype, load_f(out, i, out_dtype) + load_f(bias, i % n, bias_dtype));
}

// One thread per rotated pair.
__global__ void rope_kernel(void* x, DType x_dtype, const int32_t* positions, const float* inv_freq,
                            int64_t n_tokens, int n_heads, int head_dim, bool interleaved) {
  const int half = head_dim / 2;
  const int64_t total = n_tokens * n_heads * half;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int p = static_cast<int>(i % half);
    const int64_t th = i / half;  // token * n_heads + head
    const int64_t t = th / n_heads;
    const int64_t base = th * head_dim;
    const int64_t i0 = base + (interleaved ? 2 * p : p);
    const int64_t i1 = base + (interleaved ? 2 * p + 1 : p + half);
    float s, c;
    sincosf(static_cast<float>(positions[t]) * inv_freq[p], &s, &c);
    const float a = load_f(x, i0, x_dtype), b = load_f(x, i1, x_dtype);
    store_f(x, i0, x_dtype, a * c - b * s);
    store_f(x, i1, x_dtype, a * s + b * c);
  }
}

// Thread per rotated pair of q or k (heads [0, n_heads) are q's, the rest k's); a k pair's
// thread also copies the same two elements of v, so together they cover every cache element.
__global__ void rope_kv_write_kernel(void* q, void* k, DType qk_dtype, const void* v, DType v_dtype,
                                     void* k_cache, void* v_cache, DType cache_dtype,
                                     int64_t cache_rows, const int32_t* positions,
                                     const float* inv_freq, const int32_t* slots, int64_t n_tokens,
                                     int n_heads, int n_kv_heads, int head_dim, bool interleaved) {
  const int half = head_dim / 2;
  const int heads = n_heads + n_kv_heads;
  const int64_t total = n_tokens * heads * half;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int p = static_cast<int>(i % half);
    const int64_t th = i / half;
    const int64_t t = th / heads;
    const int h = static_cast<int>(th % heads);
    const bool is_q = h < n_heads;
    void* x = is_q ? q : k;
    const int64_t width = int64_t(is_q ? n_heads : n_kv_heads) * head_dim;
    const int64_t head_off = int64_t(is_q ? h : h - n_heads) * head_dim;
    const int64_t e0 = head_off + (interleaved ? 2 * p : p);
    const int64_t e1 = head_off + (interleaved ? 2 * p + 1 : p + half);
    const int64_t i0 = t * width + e0, i1 = t * width + e1;
    float s, c;
    sincosf(static_cast<float>(positions[t]) * inv_freq[p], &s, &c);
    const float a = load_f(x, i0, qk_dtype), b = load_f(x, i1, qk_dtype);
    store_f(x, i0, qk_dtype, a * c - b * s);
    store_f(x, i1, qk_dtype, a * s + b * c);
    if (is_q) continue;
    const int64_t slot = slots[t];
    if (slot < 0 || slot >= cache_rows) continue;
    // Read back what was stored, so the cache holds exactly what kv_write would copy.
    store_f(k_cache, slot * width + e0, cache_dtype, load_f(k, i0, qk_dtype));
    store_f(k_cache, slot * width + e1, cache_dtype, load_f(k, i1, qk_dtype));
    store_f(v_cache, slot * width + e0, cache_dtype, load_f(v, i0, v_dtype));
    store_f(v_cache, slot * width + e1, cache_dtype, load_f(v, i1, v_dtype));
  }
}

// rope_kv_write_kernel's work on a fused q|k|v buffer: a thread per rotated pair of q or k,
// reading from qkv (row width q_dim + 2 kv_dim); q pairs go to q_out, k pairs (with the same
// two elements of v) to the cache. A rotated k is rounded to qkv's type first, as the unfused
// path stores it in the activation buffer before copying it to the cache. Index is uint32_t when
// the pairs fit (the divisions per pair were most of the kernel's time in 64 bits), else int64_t.
template <typename Index>
__global__ void rope_kv_write_qkv_kernel(void* q_out, DType q_dtype, const void* qkv,
                                         DType qkv_dtype, void* k_cache, void* v_cache,
                                         DType cache_dtype, int64_t cache_rows,
                                         const int32_t* positions, const float* inv_freq,
                                         const int32_t* slots, int64_t n_tokens, int n_heads,
                                         int n_kv_heads, int head_dim, bool interleaved) {
  const int half = head_dim / 2;
  const int heads = n_heads + n_kv_heads;
  const int64_t q_dim = int64_t(n_heads) * head_dim, kv_dim = int64_t(n_kv_heads) * head_dim;
  const int64_t row = q_dim + 2 * kv_dim;
  const Index total = static_cast<Index>(n_tokens * heads * half);
  const Index half_i = static_cast<Index>(half), heads_i = static_cast<Index>(heads);
  for (Index i = blockIdx.x * Index(blockDim.x) + threadIdx.x; i < total;
       i += Index(gridDim.x) * blockDim.x) {
    const int p = static_cast<int>(i % half_i);
    const Index th = i / half_i;
    const int64_t t = static_cast<int64_t>(th / heads_i);
    const int h = static_cast<int>(th % heads_i);
    const bool is_q = h < n_heads;
    const int64_t head_off = int64_t(is_q ? h : h - n_heads) * head_dim;
    const int64_t e0 = head_off + (interleaved ? 2 * p : p);
    const int64_t e1 = head_off + (interleaved ? 2 * p + 1 : p + half);
    const int64_t src = t * row + (is_q ? 0 : q_dim);
    float s, c;
    sincosf(static_cast<float>(positions[t]) * inv_freq[p], &s, &c);
    const float a = load_f(qkv, src + e0, qkv_dtype), b = load_f(qkv, src + e1, qkv_dtype);
    const float r0 = a * c - b * s, r1 = a * s + b * c;
    if (is_q) {
      store_f(q_out, t * q_dim + e0, q_dtype, r0);
      store_f(q_out, t * q_dim + e1, q_dtype, r1);
      continue;
    }
    const int64_t slot = slots[t];
    if (slot < 0 || slot >= cache_rows) continue;
    uint32_t k0 = 0, k1 = 0;  // r0, r1 rounded to qkv's type (4 bytes hold any float type)
    store_f(&k0, 0, qkv_dtype, r0);
    store_f(&k1, 0, qkv_dtype, r1);
    store_f(k_cache, slot * kv_dim + e0, cache_dtype, load_f(&k0, 0, qkv_dtype));
    store_f(k_cache, slot * kv_dim + e1, cache_dtype, load_f(&k1, 0, qkv_dtype));
    const int64_t v_src = t * row + q_dim + kv_dim;
    store_f(v_cache, slot * kv_dim + e0, cache_dtype, load_f(qkv, v_src + e0, qkv_dtype));
    store_f(v_cache, slot * kv_dim + e1, cache_dtype, load_f(qkv, v_src + e1, qkv_dtype));
  }
}

__global__ void kv_write_kernel(void* k_cache, void* v_cache, DType cache_dtype, int64_t cache_rows,
                                const void* k, const void* v, DType kv_dtype, const int32_t* slots,
                                int64_t n, int64_t width) {
  const int64_t total = n * width;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / width, c = i % width;
    const int64_t slot = slots[r];
    if (slot < 0 || slot >= cache_rows) continue;
    store_f(k_cache, slot * width + c, cache_dtype, load_f(k, i, kv_dtype));
    store_f(v_cache, slot * width + c, cache_dtype, load_f(v, i, kv_dtype));
  }
}

__global__ void swiglu_kernel(void* out, DType out_dtype, const void* gate, const void* up,
                              DType in_dtype, int64_t total) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = load_f(gate, i, in_dtype);
    const float silu = g / (1.f + __expf(-g));
    store_f(out, i, out_dtype, silu * load_f(up, i, in_dtype));
  }
}

// swiglu_kernel on a fused [m, 2f] buffer: gate is the first half of each row, up the second.
__global__ void swiglu_fused_kernel(void* out, DType out_dtype, const void* gate_up, DType in_dtype,
                                    int64_t m, int64_t f) {
  const int64_t total = m * f;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / f, c = i % f;
    const float g = load_f(gate_up, r * 2 * f + c, in_dtype);
    const float silu = g / (1.f + __expf(-g));
    store_f(out, i, out_dtype, silu * load_f(gate_up, r * 2 * f + f + c, in_dtype));
  }
}

// swiglu_fused_kernel for bf16 in and out with f a multiple of 8 and m * f / 8 < 2^31: a thread
// per 16-byte chunk of out (8 elements), 32-bit index arithmetic (the 64-bit division per element
// of the kernel above cost more than its memory traffic).
__global__ void swiglu_fused_bf16x8_kernel(uint4* out, const uint4* gate_up, uint32_t m,
                                           uint32_t f8) {
  const uint32_t total = m * f8;
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const uint32_t r = i / f8, c = i - r * f8;
    const int64_t src = int64_t(r) * 2 * f8 + c;
    float g[8], u[8];
    bf16x8_to_f32(gate_up[src], g);
    bf16x8_to_f32(gate_up[src + f8], u);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const float silu = g[e] / (1.f + __expf(-g[e]));
      g[e] = silu * u[e];
    }
    out[i] = f32_to_bf16x8(g);
  }
}

}  // namespace

void launch_embed(const LaunchCtx& ctx, void* out, DType out_dtype, const void* table,
                  DType table_dtype, int64_t vocab, const int32_t* ids, int64_t n, int64_t d) {
  launch_gather_rows(ctx, out, out_dtype, table, table_dtype, vocab, ids, n, d);
}

void launch_gather_rows(const LaunchCtx& ctx, void* out, DType out_dtype, const void* x,
                        DType x_dtype, int64_t x_rows, const int32_t* idx, int64_t m, int64_t d) {
  if (m * d == 0) return;
  gather_kernel<<<grid_for(m * d, kThreads, ctx), kThreads, 0, ctx.stream>>>(
      out, out_dtype, x, x_dtype, x_rows, idx, m, d);
  check_launch(ctx);
}

void launch_rmsnorm(const LaunchCtx& ctx, void* out, DType out_dtype, const void* x, DType x_dtype,
                    void* residual, DType residual_dtype, const void* w, DType w_dtype, int64_t n,
                    int64_t d, float eps) {
  if (n == 0 || d == 0) return;
  const bool bf16 = x_dtype == DType::kBF16 && out_dtype == DType::kBF16 &&
                    (residual == nullptr || residual_dtype == DType::kBF16);
  if (bf16 && d % 8 == 0 && d / 8 <= int64_t{kNormChunks} * 1024 && aligned16(out) &&
      aligned16(x) && aligned16(residual) && (w_dtype != DType::kBF16 || aligned16(w))) {
    const int d8 = static_cast<int>(d / 8);
    // As few chunks per thread as 1024 threads allow, the block a whole number of warps.
    const int per_thread = (d8 + 1023) / 1024;
    const int threads = static_cast<int>(ceil_div(ceil_div(d8, per_thread), 32) * 32);
    rmsnorm_bf16x8_kernel<<<static_cast<unsigned>(n), threads, 0, ctx.stream>>>(
        static_cast<uint4*>(out), static_cast<const uint4*>(x), static_cast<uint4*>(residual), w,
        w_dtype, d8, eps);
    check_launch(ctx);
    return;
  }
  const int threads = d >= 2048 ? 1024 : (d >= 512 ? 512 : 256);
  rmsnorm_kernel<<<static_cast<unsigned>(n), threads, 0, ctx.stream>>>(
      out, out_dtype, x, x_dtype, residual, residual_dtype, w, w_dtype, d, eps);
  check_launch(ctx);
}

void launch_add_bias(const LaunchCtx& ctx, void* out, DType out_dtype, const void* bias,
                     DType bias_dtype, int64_t m, int64_t n) {
  if (m * n == 0) return;
  add_bias_kernel<<<grid_for(m * n, kThreads, ctx), kThreads, 0, ctx.stream>>>(out, out_dtype, bias,
                                                                               bias_dtype, m, n);
  check_launch(ctx);
}

void launch_rope(const LaunchCtx& ctx, void* x, DType x_dtype, const int32_t* positions,
                 const float* inv_freq, int64_t n_tokens, int n_heads, int head_dim,
                 bool interleaved) {
  const int64_t total = n_tokens * n_heads * (head_dim / 2);
  if (total == 0) return;
  rope_kernel<<<grid_for(total, kThreads, ctx), kThreads, 0, ctx.stream>>>(
      x, x_dtype, positions, inv_freq, n_tokens, n_heads, head_dim, interleaved);
  check_launch(ctx);
}

void launch_rope_kv_write(const LaunchCtx& ctx, void* q, void* k, DType qk_dtype, const void* v,
                          DType v_dtype, void* k_cache, void* v_cache, DType cache_dtype,
                          int64_t cache_rows, const int32_t* positions, const float* inv_freq,
                          const int32_t* slots, int64_t n_tokens, int n_heads, int n_kv_heads,
                          int head_dim, bool interleaved) {
  const int64_t total = n_tokens * (n_heads + n_kv_heads) * (head_dim / 2);
  if (total == 0) return;
  rope_kv_write_kernel<<<grid_for(total, kThreads, ctx), kThreads, 0, ctx.stream>>>(
      q, k, qk_dtype, v, v_dtype, k_cache, v_cache, cache_dtype, cache_rows, positions, inv_freq,
      slots, n_tokens, n_heads, n_kv_heads, head_dim, interleaved);
  check_launch(ctx);
}

void launch_kv_write(const LaunchCtx& ctx, void* k_cache, void* v_cache, DType cache_dtype,
                     int64_t cache_rows, const void* k, const void* v, DType kv_dtype,
                     const int32_t* slots, int64_t n, int64_t width) {
  if (n * width == 0) return;
  kv_write_kernel<<<grid_for(n * width, kThreads, ctx), kThreads, 0, ctx.stream>>>(
      k_cache, v_cache, cache_dtype, cache_rows, k, v, kv_dtype, slots, n, width);
  check_launch(ctx);
}

void launch_swiglu(const LaunchCtx& ctx, void* out, DType out_dtype, const void* gate,
                   const void* up, DType in_dtype, int64_t m, int64_t f) {
  if (m * f == 0) return;
  swiglu_kernel<<<grid_for(m * f, kThreads, ctx), kThreads, 0, ctx.stream>>>(out, out_dtype, gate,
                                                                             up, in_dtype, m * f);
  check_launch(ctx);
}

void launch_rope_kv_write_qkv(const LaunchCtx& ctx, void* q_out, DType q_dtype, const void* qkv,
                              DType qkv_dtype, void* k_cache, void* v_cache, DType cache_dtype,
                              int64_t cache_rows, const int32_t* positions, const float* inv_freq,
                              const int32_t* slots, int64_t n_tokens, int n_heads, int n_kv_heads,
                              int head_dim, bool interleaved) {
  const int64_t total = n_tokens * (n_heads + n_kv_heads) * (head_dim / 2);
  if (total == 0) return;
  const auto kernel = total < (int64_t{1} << 31) ? rope_kv_write_qkv_kernel<uint32_t>
                                                 : rope_kv_write_qkv_kernel<int64_t>;
  kernel<<<grid_for(total, kThreads, ctx), kThreads, 0, ctx.stream>>>(
      q_out, q_dtype, qkv, qkv_dtype, k_cache, v_cache, cache_dtype, cache_rows, positions,
      inv_freq, slots, n_tokens, n_heads, n_kv_heads, head_dim, interleaved);
  check_launch(ctx);
}

void launch_swiglu_fused(const LaunchCtx& ctx, void* out, DType out_dtype, const void* gate_up,
                         DType in_dtype, int64_t m, int64_t f) {
  if (m * f == 0) return;
  if (in_dtype == DType::kBF16 && out_dtype == DType::kBF16 && f % 8 == 0 &&
      m * (f / 8) < (int64_t{1} << 31) && aligned16(out) && aligned16(gate_up)) {
    swiglu_fused_bf16x8_kernel<<<grid_for(m * f / 8, kThreads, ctx), kThreads, 0, ctx.stream>>>(
        static_cast<uint4*>(out), static_cast<const uint4*>(gate_up), static_cast<uint32_t>(m),
        static_cast<uint32_t>(f / 8));
    check_launch(ctx);
    return;
  }
  swiglu_fused_kernel<<<grid_for(m * f, kThreads, ctx), kThreads, 0, ctx.stream>>>(
      out, out_dtype, gate_up, in_dtype, m, f);
  check_launch(ctx);
}

}  // namespace carpool::cuda
