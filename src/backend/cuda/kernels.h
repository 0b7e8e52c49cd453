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
  // Route every attention call to the generic kernel (A/B comparisons; the environment variable
  // CARPOOL_CUDA_ATTENTION=generic sets it when the backend starts).
  bool generic_attention = false;
  // Launch the kernels that support it as programmatic dependents of the previous kernel
  // (compute capability 9.0+; CARPOOL_CUDA_PDL=1 when the backend starts): gemv_kernels.cu.
  bool pdl = false;
  // Decode attention on the SIMT kernel instead of the tensor-core one (A/B comparisons;
  // CARPOOL_CUDA_ATTENTION=simt sets it when the backend starts).
  bool simt_decode_attention = false;
  // Blocks per row of sample_rows: 2 (a thread block cluster) on compute capability 9.0+, where
  // it ran batch-64 decode steps with draws 13% faster than 1 on an H200 (bench/RESULTS.md); 1
  // below. CARPOOL_CUDA_SAMPLING=block / cluster4 set 1 / 4 when the backend starts (A/B).
  int sampling_ctas = 1;
  // Prefill attention with two query heads of a KV head per CTA and the heaviest tiles first
  // (attention_prefill.cu): 3% faster than one head per CTA at 4096 tokens on an H200
  // (bench/RESULTS.md). CARPOOL_CUDA_PREFILL=single clears it when the backend starts (A/B).
  bool prefill_pairs = true;
  // Weight rows per warp of the streaming matmul at one activation row: 0 = 2 for matrices of at
  // most 8192 rows (q|k|v, o: twice the blocks, 2-4% faster on an H200), else 4; 1, 2 or 4 forces
  // it (CARPOOL_CUDA_GEMV_ROWS when the backend starts; A/B).
  int gemv_rows_m1 = 0;
  // Warps per CTA of the tensor-core decode attention kernel: 0 picks per call
  // (attention_dispatch.cu: 4 while the CTAs fit the SMs in one wave of 4-warp CTAs, else 2, of
  // which twice as many are resident); 2 or 4 forces it (CARPOOL_CUDA_DECODE_WARPS when the backend
  // starts; A/B).
  int decode_warps = 0;
  // Decode-attention CTAs per SM that the split plan fills: 0 = as many as are resident at once
  // (decode_attention_mma_ctas_per_sm); N > 0 overrides (CARPOOL_CUDA_DECODE_CTAS, 1..64; A/B).
  int decode_ctas_per_sm = 0;
  // Tensor-core decode attention reads the cache blocks of a warp's next 32 granules up front
  // (one load per lane) instead of one block-table read before each granule's copies, which
  // keeps a memory round trip per granule off each warp's path. CARPOOL_CUDA_DECODE_PREFETCH=1
  // sets it when the backend starts; off until measured on a GPU.
  bool decode_block_prefetch = false;
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

// --- small-batch matmul (gemv_kernels.cu) ---
// Decode steps of up to kGemvMaxRows tokens: y[m, n] (F32, F16 or BF16) = x[m, k] w[n, k]^T
// (+ bias[n], F32/F16/BF16, or nullptr), x and w BF16 and dense, streamed at the memory bus
// rather than through cuBLAS's tiles. A row's result does not depend on m.
constexpr int64_t kGemvMaxRows = 8;
// Whether launch_gemv_bf16 takes this shape: 1 <= m <= kGemvMaxRows, k a multiple of 8, x and w
// 16-byte aligned.
bool gemv_bf16_fits(int64_t m, int64_t k, const void* w, const void* x);
void launch_gemv_bf16(const LaunchCtx& ctx, void* y, DType y_dtype, const void* x, const void* w,
                      const void* bias, DType bias_dtype, int64_t m, int64_t n, int64_t k);

// --- row-wise and element-wise ops (elementwise_kernels.cu) ---
// out[n, d] = table[ids[i], :]; ids outside [0, vocab) give a zero row.
void launch_embed(const LaunchCtx& ctx, void* out, DType out_dtype, const void* table,
                  DType table_dtype, int64_t vocab, const int32_t* ids, int64_t n, int64_t d);
// out[n, d] = x / rms(x) * w; with `residual` != nullptr first residual += x and the norm is taken
// of the updated residual (x may then alias nothing else).
void launch_rmsnorm(const LaunchCtx& ctx, void* out, DType out_dtype, const void* x, DType x_dtype,
                    void* residual, DType residual_dtype, const void* w, DType w_dtype, int64_t n,
                    int64_t d, float eps);
// out[m, n] += bias[1, n]
void launch_add_bias(const LaunchCtx& ctx, void* out, DType out_dtype, const void* bias,
                     DType bias_dtype, int64_t m, int64_t n);
// In place on x[n_tokens, n_heads * head_dim].
void launch_rope(const LaunchCtx& ctx, void* x, DType x_dtype, const int32_t* positions,
                 const float* inv_freq, int64_t n_tokens, int n_heads, int head_dim,
                 bool interleaved);
// rope on q [n_tokens, n_heads * head_dim] and k [n_tokens, n_kv_heads * head_dim] in place, and
// the rotated k (as stored in k, then converted) and v written to cache rows slots[i] (slots < 0
// or >= cache_rows skipped): launch_rope twice and launch_kv_write in one launch, same results.
void launch_rope_kv_write(const LaunchCtx& ctx, void* q, void* k, DType qk_dtype, const void* v,
                          DType v_dtype, void* k_cache, void* v_cache, DType cache_dtype,
                          int64_t cache_rows, const int32_t* positions, const float* inv_freq,
                          const int32_t* slots, int64_t n_tokens, int n_heads, int n_kv_heads,
                          int head_dim, bool interleaved);
// Fused projections: qkv [n_tokens, (n_heads + 2 n_kv_heads) * head_dim] holds q | k | v per
// row. q_out [n_tokens, n_heads * head_dim] = q rotated; k rotated and v go to cache rows
// slots[i] (skipped as above); qkv is only read. Same values as launch_rope_kv_write on the
// separated slices (each element is rounded once, to its destination's type).
void launch_rope_kv_write_qkv(const LaunchCtx& ctx, void* q_out, DType q_dtype, const void* qkv,
                              DType qkv_dtype, void* k_cache, void* v_cache, DType cache_dtype,
                              int64_t cache_rows, const int32_t* positions, const float* inv_freq,
                              const int32_t* slots, int64_t n_tokens, int n_heads, int n_kv_heads,
                              int head_dim, bool interleaved);
// cache rows slots[i] = k[i], v[i] (rows of `width` elements); slots < 0 are skipped.
void launch_kv_write(const LaunchCtx& ctx, void* k_cache, void* v_cache, DType cache_dtype,
                     int64_t cache_rows, const void* k, const void* v, DType kv_dtype,
                     const int32_t* slots, int64_t n, int64_t width);
// out[m, f] = silu(gate) * up
void launch_swiglu(const LaunchCtx& ctx, void* out, DType out_dtype, const void* gate,
                   const void* up, DType in_dtype, int64_t m, int64_t f);
// out[m, f] = silu(gate_up[:, :f]) * gate_up[:, f:2f]  (gate_up: [m, 2f])
void launch_swiglu_fused(const LaunchCtx& ctx, void* out, DType out_dtype, const void* gate_up,
                         DType in_dtype, int64_t m, int64_t f);
// out[m, d] = x[idx[i], :]; idx outside [0, x_rows) gives a zero row.
void launch_gather_rows(const LaunchCtx& ctx, void* out, DType out_dtype, const void* x,
                        DType x_dtype, int64_t x_rows, const int32_t* idx, int64_t m, int64_t d);

// --- sampling (sampling_kernels.cu) ---
// out[r] = greedy token of logits row r [rows, vocab] (F32, F16 or BF16): Backend::argmax_rows
// (largest value, ties to the lowest index, NaN as std::max_element treats it). One block per row.
void launch_argmax_rows(const LaunchCtx& ctx, int32_t* out, const void* logits, DType dtype,
                        int64_t rows, int64_t vocab);
// out[r] = a token drawn from logits row r with params[r * 5 ..] (temperature, top_k, top_p,
// min_p, u): Backend::sample_rows. LaunchCtx::sampling_ctas blocks of 512 threads per row.
void launch_sample_rows(const LaunchCtx& ctx, int32_t* out, const void* logits, DType dtype,
                        int64_t rows, int64_t vocab, const float* params);

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
  int max_q_len = 0;  // max over sequences of q_len (bounds the dispatch's lists)
  float scale = 0.f;
};
constexpr int kMaxHeadDim = 256;
// Floats of workspace attention needs for this launch (per-step plan, lists and split partials).
int64_t attention_workspace_floats(const LaunchCtx& ctx, const AttentionLaunch& a);
// Dispatch (attention_dispatch.cu): head_dim 64/128 with n_heads / n_kv_heads <= 32 run on the
// fast kernels (sequences with q_len >= kMinPrefillQ on the tensor-core prefill kernel, the other
// tokens on the split-KV decode kernel); every other shape on the generic kernel.
void launch_attention(const LaunchCtx& ctx, const AttentionLaunch& a, float* workspace);

// The generic kernel alone (attention_generic.cu).
int64_t generic_attention_workspace_floats(const LaunchCtx& ctx, const AttentionLaunch& a);
void launch_generic_attention(const LaunchCtx& ctx, const AttentionLaunch& a, float* workspace);

// Fast kernels (attention_prefill.cu, attention_decode.cu); shapes as in the dispatch above.
constexpr int kMinPrefillQ = 16;     // sequences with q_len >= this go to the prefill kernel
constexpr int kPrefillTileQ = 64;    // query rows per prefill CTA
constexpr int kAttnTileKeys = 64;    // keys per shared-memory K/V tile (both kernels)
constexpr int kDecodeMaxGroup = 32;  // query heads per KV head the decode kernel handles

// Work lists made on the device from query_start (one small kernel per call):
//   counts[0] = prefill tiles, counts[1] = listed decode tokens;
//   tiles[i] = (sequence, first query row of the tile) for sequences with q_len >= kMinPrefillQ;
//   decode_tokens[i] = token index, for the tokens of the other sequences.
// Lists hold at most max_tiles / max_decode entries (counts are clamped to them).
void launch_attention_plan(const LaunchCtx& ctx, const int32_t* query_start, int n_seqs,
                           int32_t* counts, int2* tiles, int max_tiles, int32_t* decode_tokens,
                           int max_decode);
// grid (max_tiles, n_heads): CTAs past counts[0] exit.
void launch_prefill_attention(const LaunchCtx& ctx, const AttentionLaunch& a, const int32_t* counts,
                              const int2* tiles, int max_tiles);
struct DecodeLaunch {
  const int32_t* tokens = nullptr;  // [rows] token indices; nullptr: row i is token i
  const int32_t* count = nullptr;   // rows actually listed (device); nullptr: all `rows`
  int rows = 0;                     // grid rows (upper bound of listed tokens)
  int n_splits = 1;
  int split_len = 0;            // keys per split, a multiple of kAttnTileKeys
  int warps = 4;                // per CTA of the tensor-core kernel: 2 or 4
  bool block_prefetch = false;  // tensor-core kernel: LaunchCtx::decode_block_prefetch
  float* part_o = nullptr;      // [rows, n_heads, n_splits, head_dim] when n_splits > 1
  float* part_ml = nullptr;     // [rows, n_heads, n_splits, 2]: running max (log2 domain), sum
};
void launch_decode_attention(const LaunchCtx& ctx, const AttentionLaunch& a, const DecodeLaunch& d);
// The tensor-core form of the decode kernel's main pass (attention_decode_mma.cu): groups of up
// to 8 query heads per KV head, head_dim 64 or 128; launch_decode_attention uses it unless
// LaunchCtx::simt_decode_attention is set.
bool decode_attention_mma_supported(const AttentionLaunch& a);
// The decode attention launch's shape (pure logic, decode_shape.cpp). ctas: CTAs of one split
// (decode rows x KV heads); tiles: kAttnTileKeys tiles of the longest context; resident4 /
// resident2: CTAs of 4 / 2 warps resident per SM; warps and ctas_per_sm: LaunchCtx's overrides
// (0: none). Warps: 4 while one wave of 4-warp CTAs holds `ctas`, else 2 (twice as many are
// resident). Splits: as many as the resident CTAs hold whole (a split that overflows them adds a
// wave), at most one per tile, 1..1024.
struct DecodeShapeInput {
  int64_t ctas = 0;
  int64_t tiles = 1;
  int sm_count = 1;
  int resident4 = 1, resident2 = 1;
  int warps = 0, ctas_per_sm = 0;
};
struct DecodeShape {
  int warps = 4;
  int splits = 1;
};
DecodeShape decode_shape(const DecodeShapeInput& in);
// How many CTAs of `warps` (2 or 4) warps of the tensor-core kernel are resident per SM at once
// (the occupancy calculator, asked once per process and shape; at least 1).
int decode_attention_mma_ctas_per_sm(int head_dim, int warps);
void launch_decode_attention_mma(const LaunchCtx& ctx, const AttentionLaunch& a,
                                 const DecodeLaunch& d);

// Unfused f32 reference attention for the conformance tool (attention_reference.cu), independent
// of block tables: token t attends to cache rows rows[row0[t] + j] for positions j in
// [0, pos[t]]. q [n_tokens, n_heads * head_dim] (F32/F16/BF16); caches BF16
// [*, n_kv_heads * head_dim]; out F32 like q. head_dim <= 256.
void launch_reference_attention(const LaunchCtx& ctx, const void* q, DType q_dtype,
                                const void* k_cache, const void* v_cache, const int32_t* rows,
                                const int32_t* row0, const int32_t* pos, float* out, int n_tokens,
                                int n_heads, int n_kv_heads, int head_dim, float scale);

}  // namespace carpool::cuda
