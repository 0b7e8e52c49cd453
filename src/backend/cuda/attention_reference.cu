// Unfused f32 attention for the conformance tool: checks the fast kernels at sizes where the CPU
// reference would be too slow. Deliberately simple and independent of the block tables: the host
// lists each sequence's cache rows in position order, and each token's first list entry and
// position. The conformance tool validates this kernel against the CPU reference first.
#include <cfloat>

#include "backend/cuda/device_utils.cuh"

namespace carpool::cuda {
namespace {

constexpr int kRefThreads = 128;

__device__ float block_reduce(float v, bool is_max) {
  __shared__ float red[kRefThreads / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = is_max ? warp_max(v) : warp_sum(v);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float r = red[0];
  for (int w = 1; w < kRefThreads / 32; ++w) r = is_max ? fmaxf(r, red[w]) : r + red[w];
  __syncthreads();
  return r;
}

// grid (n_tokens, n_heads), kRefThreads threads; dynamic smem: head_dim + kRefThreads floats.
__global__ void __launch_bounds__(kRefThreads)
    reference_attention_kernel(const void* q, DType q_dtype, const __nv_bfloat16* k,
                               const __nv_bfloat16* v, const int32_t* rows, const int32_t* row0,
                               const int32_t* pos, float* out, int n_heads, int n_kv_heads, int D,
                               float scale) {
  extern __shared__ float ref_smem[];
  float* q_s = ref_smem;      // [D]
  float* p_s = ref_smem + D;  // [kRefThreads]
  const int t = blockIdx.x, h = blockIdx.y;
  const int kvh = h / (n_heads / n_kv_heads);
  const int64_t kv_w = int64_t(n_kv_heads) * D;
  const int n_keys = pos[t] + 1;
  const int32_t* my_rows = rows + row0[t];  // cache row of position j: my_rows[j]
  auto kval = [&](int j, int d) {
    return __bfloat162float(k[int64_t(my_rows[j]) * kv_w + int64_t(kvh) * D + d]);
  };
  auto vval = [&](int j, int d) {
    return __bfloat162float(v[int64_t(my_rows[j]) * kv_w + int64_t(kvh) * D + d]);
  };
  for (int d = threadIdx.x; d < D; d += kRefThreads)
    q_s[d] = load_f(q, (int64_t(t) * n_heads + h) * D + d, q_dtype) * scale;
  __syncthreads();
  // Pass 1: the max score.
  float mx = -FLT_MAX;
  for (int j = threadIdx.x; j < n_keys; j += kRefThreads) {
    float s = 0.f;
    for (int d = 0; d < D; ++d) s += q_s[d] * kval(j, d);
    mx = fmaxf(mx, s);
  }
  mx = block_reduce(mx, true);
  // Pass 2: probabilities a chunk of keys at a time; thread d accumulates output dim d.
  float sum = 0.f;
  float acc[2] = {0.f, 0.f};  // dims threadIdx.x and threadIdx.x + kRefThreads (D <= 256)
  for (int j0 = 0; j0 < n_keys; j0 += kRefThreads) {
    const int j = j0 + threadIdx.x;
    float p = 0.f;
    if (j < n_keys) {
      float s = 0.f;
      for (int d = 0; d < D; ++d) s += q_s[d] * kval(j, d);
      p = expf(s - mx);
    }
    sum += p;
    p_s[threadIdx.x] = p;
    __syncthreads();
    const int n = min(kRefThreads, n_keys - j0);
    for (int i = 0; i < 2; ++i) {
      const int d = threadIdx.x + i * kRefThreads;
      if (d < D)
        for (int jj = 0; jj < n; ++jj) acc[i] += p_s[jj] * vval(j0 + jj, d);
    }
    __syncthreads();
  }
  sum = block_reduce(sum, false);
  for (int i = 0; i < 2; ++i) {
    const int d = threadIdx.x + i * kRefThreads;
    if (d < D) out[(int64_t(t) * n_heads + h) * D + d] = acc[i] / sum;
  }
}

}  // namespace

void launch_reference_attention(const LaunchCtx& ctx, const void* q, DType q_dtype,
                                const void* k_cache, const void* v_cache, const int32_t* rows,
                                const int32_t* row0, const int32_t* pos, float* out, int n_tokens,
                                int n_heads, int n_kv_heads, int head_dim, float scale) {
  if (n_tokens == 0) return;
  const size_t smem = sizeof(float) * (size_t(head_dim) + kRefThreads);
  reference_attention_kernel<<<dim3(unsigned(n_tokens), unsigned(n_heads)), kRefThreads, smem,
                               ctx.stream>>>(q, q_dtype, static_cast<const __nv_bfloat16*>(k_cache),
                                             static_cast<const __nv_bfloat16*>(v_cache), rows, row0,
                                             pos, out, n_heads, n_kv_heads, head_dim, scale);
  check_launch(ctx);
}

}  // namespace carpool::cuda
