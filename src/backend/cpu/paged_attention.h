// Internal to the CPU backend: causal attention over a paged f32 KV cache for a ragged batch
// (the work behind CpuBackend::attention, which validates the metadata first).
//
// Work is split into tasks of (tile of up to kAttnTileRows / group consecutive query tokens of one
// sequence, KV heads), where group = n_heads / n_kv_heads: every query head that reads a KV head
// of the task is in the task, so each K and V block is read from memory once per tile and then
// reused from L1 by all of the tile's rows (a row is one token and one query head). A task takes
// one KV head when the batch has few tiles (so that all threads get work, e.g. one decoding
// sequence) and all of them otherwise (whole blocks, which the hardware prefetchers follow);
// the next block is prefetched while one is computed. Tasks run costliest first.
//
// Per row the softmax is the online (running max) form, one KV block of block_size keys at a
// time: scores of the block, the block max, one rescale of the row's accumulator, then exp and
// P.V. A row never sees positions after its own (causal); the last block it reads may be partial.
//
// Long contexts are cut into partitions of partition_keys positions (fixed by position, like the
// blocks): a row's (max, denominator, accumulator) is computed per partition, and the partitions
// are folded in order (both rescaled to the larger max, then summed). When the batch has few
// tiles (a few decoding sequences), each partition is a task of its own and the fold runs after
// them, so that one long context keeps every thread busy (default model, decode at batch 1 and 8000
// positions, Xeon VM: 21.5-21.9 -> 16.2-17.0 ms per step); otherwise a task folds its tile's
// partitions itself. The arithmetic is the same either way, and a context within one partition
// is computed exactly as without partitions.
//
// Batch invariance, bitwise: a row's arithmetic depends only on its q, its sequence's K/V and its
// position. Block boundaries are fixed by position (multiples of block_size), a key's place in the
// SIMD lanes is fixed by its position in the block, and rows never mix, so a token's output is the
// same whether it is alone, in a tile with other tokens, in a task with one or all KV heads, in a
// batch with other sequences, or on any thread.
//
// The cache holds f32, f16 (half the bytes to stream) or int8 with a scale per token and KV head
// (kv_int8.h; a quarter of the bytes plus the scales); each value is widened to f32 as it is
// loaded, and all arithmetic is f32. With int8, a block's scores are multiplied by their keys'
// scales after the dot products, and its softmax weights by their values' scales before P.V
// (the denominator takes them unscaled): the same sums as over the dequantized values, in
// another rounding order.
//
// Kernels per instruction-set level (cpu_features.h): AVX-512 (16 keys per vector), AVX2 (8 keys
// per vector) and portable C++ (one key at a time, std::exp). The SIMD levels use their own exp
// (range reduction to |r| <= ln2 / 2, Taylor polynomial of degree 7; max error 1 ulp measured over
// [-104, 88.7], exp(-inf) = 0); levels differ from each other only in f32 rounding.
//
// Every level takes a softmax weight (or a rescale factor) below 2^-64 as 0 (kAttnExpFloor). A
// row's denominator holds its largest key's weight, 1, so such terms cannot move it, and the
// output moves by less than 2^-64 times the largest cached value, far below the f16 cache's own
// rounding. Left in, they ran into subnormal floats, which x86 cores handle in microcode: with
// random weights (scores spread over tens of nats) the ~1B model's batch-1 attention took 1.33
// ms per step instead of 0.37 (Xeon VM, 2026-11-27).
//
// Thread-safety: pure functions of their arguments; paged_attention runs on the given pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend/cpu/cpu_features.h"
#include "backend/dtype.h"
#include "util/thread_pool.h"

namespace carpool {

// Query rows per tile and KV head (tokens x the group's heads): a tile's accumulators and K/V
// block stay in L1.
constexpr int kAttnTileRows = 16;

// ln(2^-64): exp of a score minus the row's max below it counts as 0 (see above).
constexpr float kAttnExpFloor = -44.3614196f;

// One query row's online-softmax state (one token, one query head).
struct AttnRowState {
  const float* q = nullptr;  // [head_dim]
  float* acc = nullptr;      // [head_dim] sum over the keys seen of exp(score - max) * v
  float max = 0.f;           // max of the scores seen; -inf before the first block
  float denom = 0.f;         // sum over the keys seen of exp(score - max)
  int n_keys = 0;            // keys of the current block the row sees, 1..block_size (causal)
};

// One KV cache block, for one KV head. The elements are f32, f16 or int8 (the kernel's type).
// K is column-major within a block (dimension d of key i at element d * block_size + i), so one
// vector load reads one dimension of 16 (8) consecutive keys; V is row-major (a row per key).
struct AttnKvBlock {
  const void* k = nullptr;  // dimension 0 of key 0 of this KV head
  const void* v = nullptr;  // value row 0 of the block; row i at element i * v_stride
  int64_t v_stride = 0;     // elements between consecutive value rows (KvStrides::v_row)
  int block_size = 0;       // keys in a full block (and elements between K dimensions)
  // int8 caches: the scales of the block's keys and values, block_size each (kv_int8.h).
  const float* k_scale = nullptr;
  const float* v_scale = nullptr;
  // The same KV head's part of a block read later, asked for while this one is computed (its K
  // before the scores, its V before P.V); null: none.
  const void* next_k = nullptr;
  const void* next_v = nullptr;
  int next_keys = 0;
  const float* next_k_scale = nullptr;  // int8 caches
  const float* next_v_scale = nullptr;
};

// The block kernels' requests for the next block (AttnKvBlock::next_k / next_v), into L2:
// its K, hd * block_size elements of elem_bytes, and its next_keys V rows of hd elements.
inline void attn_prefetch_next_k(const AttnKvBlock& b, int hd, int elem_bytes) {
  if (b.next_k == nullptr) return;
  const char* k = static_cast<const char*>(b.next_k);
  const int64_t bytes = int64_t{hd} * b.block_size * elem_bytes;
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(k + o, 0, 2);
  if (b.next_k_scale != nullptr) __builtin_prefetch(b.next_k_scale, 0, 2);
}
inline void attn_prefetch_next_v(const AttnKvBlock& b, int hd, int elem_bytes) {
  if (b.next_v == nullptr) return;
  const char* v = static_cast<const char*>(b.next_v);
  const int64_t width = int64_t{hd} * elem_bytes, stride = b.v_stride * elem_bytes;
  for (int i = 0; i < b.next_keys; ++i) {
    for (int64_t o = 0; o < width; o += 64) __builtin_prefetch(v + i * stride + o, 0, 2);
  }
  if (b.next_v_scale != nullptr) __builtin_prefetch(b.next_v_scale, 0, 2);
}

// Rows a block kernel takes per call.
constexpr int kAttnRowsPerCall = 16;

// Scratch floats for one row's scores in a block kernel (n_keys rounded up to 16 lanes).
inline size_t attn_scores_floats(int n_keys) {
  return (static_cast<size_t>(n_keys) + 15) / 16 * 16;
}

// Folds one block into each of rows[0, n_rows) (n_rows <= kAttnRowsPerCall; the rows read the
// same K and V): scores = scale * q.k over the row's n_keys keys, new max, one rescale of acc and
// denom, then acc += exp(score - max) * v. The scores of all rows come first, a few rows at a
// time sharing each K load: lane i holds key i, and its dot product is two FMA chains, over the
// even and over the odd dimensions in order, then their sum, so a row's arithmetic does not
// depend on the other rows. `scores` is scratch of n_rows * attn_scores_floats(block_size)
// floats.
using AttnBlockFn = void (*)(const AttnKvBlock& block, AttnRowState* rows, int n_rows, int head_dim,
                             float scale, float* scores);

// The block kernel of level `isa` (which this machine must support) for head_dim and a cache of
// kv_dtype (kF32, kF16 or kI8).
AttnBlockFn attn_block_kernel(CpuIsa isa, int head_dim, DType kv_dtype);

// Per-level kernels for head_dim (specialized on it) and a cache of kv_dtype (kF32, kF16 or kI8):
// null where this build has no kernel for the level.
AttnBlockFn attn_block_avx2(int head_dim, DType kv_dtype);
AttnBlockFn attn_block_avx512(int head_dim, DType kv_dtype);

// y[i] = exp(x[i]) with the SIMD levels' exp (for its accuracy test); false (nothing written)
// where the build or the CPU lacks the level. -inf and inputs below about -103.97 give 0, NaN
// stays NaN, inputs above about 88.72 give +inf; results below FLT_MIN are rounded subnormals.
bool exp_f32_avx2(const float* x, float* y, int64_t n);
bool exp_f32_avx512(const float* x, float* y, int64_t n);

// Byte offsets of block b's KV head h in a cache: its K at b * block + h * k_head, its V at
// b * block + h * v_head with rows v_row bytes apart, its scales at b * scale_block + h *
// scale_head (each from its own base pointer).
struct KvStrides {
  int64_t block = 0;
  int64_t k_head = 0;
  int64_t v_head = 0;
  int64_t v_row = 0;
  int64_t scale_block = 0;
  int64_t scale_head = 0;

  // [cache rows, n_kv_heads * head_dim] K and V tensors (each block's K column-major, V
  // row-major) and [blocks][n_kv_heads][block_size] scales.
  static KvStrides back_to_back(int block_size, int n_kv_heads, int head_dim, int elem_bytes) {
    const int64_t row = int64_t{n_kv_heads} * head_dim * elem_bytes;
    return {block_size * row,
            int64_t{head_dim} * block_size * elem_bytes,
            int64_t{head_dim} * elem_bytes,
            row,
            int64_t{n_kv_heads} * block_size * 4,
            int64_t{block_size} * 4};
  }
};

// The batch, already validated by the caller (CpuBackend::attention checks every field).
struct PagedAttentionArgs {
  const float* q = nullptr;  // [n_tokens, n_heads * head_dim]
  // Where block b's KV head h lies (KvStrides): K from k_cache (head_dim columns of block_size
  // keys, column-major: AttnKvBlock), V from v_cache (block_size rows of head_dim values), an int8
  // cache's scales from k_scales and v_scales (block_size each, in key order).
  const void* k_cache = nullptr;
  const void* v_cache = nullptr;
  KvStrides strides;
  DType kv_dtype = DType::kF32;     // kF32, kF16 or kI8 (converted to f32 as it is read)
  const float* k_scales = nullptr;  // kI8 only (kv_int8.h)
  const float* v_scales = nullptr;
  float* out = nullptr;                   // [n_tokens, n_heads * head_dim]
  const int32_t* query_start = nullptr;   // [n_seqs + 1] first token of each sequence
  const int32_t* kv_len = nullptr;        // [n_seqs] context length including this step
  const int32_t* block_tables = nullptr;  // [n_seqs, max_blocks_per_seq] cache block ids
  int n_seqs = 0;
  int max_blocks_per_seq = 0;
  int block_size = 0;  // keys per cache block
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  float scale = 0.f;         // multiplies q.k
  int partition_keys = 512;  // positions per partition (a multiple of block_size after rounding up)
};

// Floats of per-thread scratch that paged_attention needs.
size_t paged_attention_scratch_floats(const PagedAttentionArgs& a);

// Computes `out` on `pool` with the kernels of level `isa`. scratch[t] is thread t's scratch of
// at least paged_attention_scratch_floats(a) floats, for every thread of the pool.
void paged_attention(CpuIsa isa, const PagedAttentionArgs& a, ThreadPool& pool,
                     std::vector<float>* scratch);

}  // namespace carpool
