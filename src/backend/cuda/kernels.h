// Launchers for the CUDA backend's kernels. Internal to src/backend/cuda (includes CUDA headers).
//
// Each launcher enqueues work on ctx.stream and checks the launch (cudaGetLastError; in debug
// mode also synchronizes so a fault is reported by the launch that caused it). Element types of
// activations are passed at run time (F32, F16 or BF16: one kernel serves all three, the branch is
// uniform across a launch); the KV cache and dequantized weights are BF16.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/dtype.h"

namespace carpool::cuda {

struct LaunchCtx {
  cudaStream_t stream = nullptr;
  bool debug_sync = false;
  int sm_count = 1;
};

// --- weights (weights_kernels.cu) ---
// out[n_elems] BF16 = dequantized `raw` (GGUF block layout of `dtype`, n_elems a multiple of the
// block size). Supports F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K.
void launch_dequantize_to_bf16(const LaunchCtx& ctx, DType dtype, const void* raw, int64_t n_elems,
                               void* out);
// out[n] BF16 = uniform in [-scale, scale], a pure function of (seed, index).
void launch_random_bf16(const LaunchCtx& ctx, void* out, int64_t n, uint64_t seed, float scale);
// out[n] (out_dtype) = in[n] (in_dtype), both in {F32, F16, BF16}.
void launch_convert(const LaunchCtx& ctx, void* out, DType out_dtype, const void* in,
                    DType in_dtype, int64_t n);

// --- row-wise and element-wise ops (elementwise_kernels.cu) ---
// out[n, d] = table[ids[i], :]; ids outside [0, vocab) give a zero row.
void launch_embed(const LaunchCtx& ctx, void* out, DType out_dtype, const void* table,
                  DType table_dtype, int64_t vocab, const int32_t* ids, int64_t n, int64_t d);
// out[n, d] = x / rms(x) * w; with `residual` != nullptr first residual += x and the norm is taken
// of the updated residual (x may then alias nothing else).
void launch_rmsnorm(const LaunchCtx& ctx, void* out, DType out_dtype, const void* x,
                    DType x_dtype, void* residual, DType residual_dtype, const void* w,
                    DType w_dtype, int64_t n, int64_t d, float eps);
// out[m, n] += bias[1, n]
void launch_add_bias(const LaunchCtx& ctx, void* out, DType out_dtype, const void* bias,
                     DType bias_dtype, int64_t m, int64_t n);
// In place on x[n_tokens, n_heads * head_dim].
void launch_rope(const LaunchCtx& ctx, void* x, DType x_dtype, const int32_t* positions,
                 const float* inv_freq, int64_t n_tokens, int n_heads, int head_dim,
                 bool interleaved);
// cache rows slots[i] = k[i], v[i] (rows of `width` elements); slots < 0 are skipped.
void launch_kv_write(const LaunchCtx& ctx, void* k_cache, void* v_cache, DType cache_dtype,
                     int64_t cache_rows, const void* k, const void* v, DType kv_dtype,
                     const int32_t* slots, int64_t n, int64_t width);
// out[m, f] = silu(gate) * up
void launch_swiglu(const LaunchCtx& ctx, void* out, DType out_dtype, const void* gate,
                   const void* up, DType in_dtype, int64_t m, int64_t f);
// out[m, d] = x[idx[i], :]; idx outside [0, x_rows) gives a zero row.
void launch_gather_rows(const LaunchCtx& ctx, void* out, DType out_dtype, const void* x,
                        DType x_dtype, int64_t x_rows, const int32_t* idx, int64_t m, int64_t d);

// --- paged attention (attention_kernels.cu) ---
struct AttentionLaunch {
  const void* q = nullptr;  // [n_tokens, n_heads * head_dim]
  DType q_dtype = DType::kBF16;
  void* out = nullptr;  // [n_tokens, n_heads * head_dim]
  DType out_dtype = DType::kBF16;
  const void* k_cache = nullptr;  // BF16 [num_slots, n_kv_heads * head_dim]
  const void* v_cache = nullptr;
  const int32_t* query_start = nullptr;   // [n_seqs + 1]
  const int32_t* kv_len = nullptr;        // [n_seqs]
  const int32_t* block_tables = nullptr;  // [n_seqs, max_blocks_per_seq]
  int n_tokens = 0, n_seqs = 0, max_blocks_per_seq = 0, block_size = 0;
  int n_heads = 0, n_kv_heads = 0, head_dim = 0, max_kv_len = 0;
  float scale = 0.f;
};
constexpr int kMaxHeadDim = 256;
// Floats of workspace attention needs for this launch (0 when it runs without splitting).
int64_t attention_workspace_floats(const LaunchCtx& ctx, const AttentionLaunch& a);
void launch_attention(const LaunchCtx& ctx, const AttentionLaunch& a, float* workspace);

}  // namespace carpool::cuda
