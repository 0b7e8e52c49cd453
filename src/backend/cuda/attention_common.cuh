// Device helpers of the fast attention kernels: asynchronous copies into shared memory, ldmatrix,
// the bf16 tensor-core MMA, and the paged K/V tile loader. Included only by .cu files; every
// instruction here needs sm_80 or newer.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "backend/cuda/device_utils.cuh"

namespace carpool::cuda {

constexpr float kLog2e = 1.4426950408889634f;

// 16 bytes global -> shared, bypassing L1. src_bytes = 0 writes 16 zero bytes instead (gmem must
// still be a valid address).
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, int src_bytes) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
// Waits until at most N committed groups of this thread are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Four 8x8 b16 matrices from shared memory. Lane l gives the address of row (l % 8) of matrix
// l / 8 (16 bytes, 16-byte aligned). Without transposition lane l receives, in r[i], elements
// (l / 4, 2 * (l % 4)) and (l / 4, 2 * (l % 4) + 1) of matrix i; with .trans it receives elements
// (2 * (l % 4), l / 4) and (2 * (l % 4) + 1, l / 4).
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* smem_row) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void* smem_row) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

// c[16x8] += a[16x16] * b[16x8], bf16 inputs, f32 accumulation. With g = lane / 4, t = lane % 4:
//   a: a[0] = A(g, 2t..2t+1), a[1] = A(g+8, 2t..), a[2] = A(g, 2t+8..), a[3] = A(g+8, 2t+8..)
//   b: b0 = B(2t..2t+1, g), b1 = B(2t+8..2t+9, g)
//   c: c[0..1] = C(g, 2t..2t+1), c[2..3] = C(g+8, 2t..2t+1)
// (pairs packed low element first).
__device__ __forceinline__ void mma_bf16_16816(float c[4], const uint32_t a[4], uint32_t b0,
                                               uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as a bf16 pair, `lo` in the low half.
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}
__device__ __forceinline__ float bf16_lo(uint32_t u) {
  return __uint_as_float(u << 16);
}
__device__ __forceinline__ float bf16_hi(uint32_t u) {
  return __uint_as_float(u & 0xffff0000u);
}

// Shared-memory row stride of a K/V tile in elements: 16 bytes of padding make the fragment loads
// (8 rows at the same column) fall into distinct banks.
template <int D>
constexpr int tile_stride() {
  return D + 8;
}

// Starts the copy of 16-byte chunk `part` of tile row `key` from cache slot `slot` of K and V
// (slot < 0: the row is zero-filled).
template <int D>
__device__ __forceinline__ void copy_kv_chunk(__nv_bfloat16* k_s, __nv_bfloat16* v_s,
                                              const __nv_bfloat16* kc, const __nv_bfloat16* vc,
                                              int64_t slot, int64_t kv_width, int kvh, int key,
                                              int part) {
  const __nv_bfloat16* ks = kc;
  const __nv_bfloat16* vs = vc;
  int bytes = 0;
  if (slot >= 0) {
    const int64_t off = slot * kv_width + int64_t(kvh) * D + part * 8;
    ks = kc + off;
    vs = vc + off;
    bytes = 16;
  }
  const int so = key * tile_stride<D>() + part * 8;
  cp_async_16(k_s + so, ks, bytes);
  cp_async_16(v_s + so, vs, bytes);
}

// Starts the asynchronous copy of keys [key0, key0 + KEYS) of one KV head of one sequence into
// k_s / v_s ([KEYS, tile_stride<D>()]); positions >= key_end are zero-filled. The threads
// first, first + stride, ... take part (a block: threadIdx.x and the block size; a warp: its
// lane and 32). The caller commits the group.
template <int D, int KEYS>
__device__ __forceinline__ void load_kv_rows(__nv_bfloat16* k_s, __nv_bfloat16* v_s,
                                             const __nv_bfloat16* kc, const __nv_bfloat16* vc,
                                             const int32_t* table, int block_size, int64_t kv_width,
                                             int kvh, int key0, int key_end, int first,
                                             int stride) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  for (int c = first; c < KEYS * kChunks; c += stride) {
    const int key = c / kChunks, part = c % kChunks;
    const int p = key0 + key;
    const int64_t slot =
        p < key_end ? int64_t(table[p / block_size]) * block_size + p % block_size : -1;
    copy_kv_chunk<D>(k_s, v_s, kc, vc, slot, kv_width, kvh, key, part);
  }
}

// load_kv_rows by the 32 lanes of a warp for KEYS keys that lie in one cache block, key0 in
// cache slot slot0 (key0 + j in slot0 + j): no block-table read on the way to the copies.
template <int D, int KEYS>
__device__ __forceinline__ void load_kv_rows_in_block(__nv_bfloat16* k_s, __nv_bfloat16* v_s,
                                                      const __nv_bfloat16* kc,
                                                      const __nv_bfloat16* vc, int64_t slot0,
                                                      int64_t kv_width, int kvh, int key0,
                                                      int key_end, int lane) {
  constexpr int kChunks = D / 8;
  static_assert(KEYS * kChunks % 32 == 0, "whole rounds of the warp");
#pragma unroll
  for (int r = 0; r < KEYS * kChunks / 32; ++r) {
    const int c = lane + 32 * r;
    const int key = c / kChunks, part = c % kChunks;
    copy_kv_chunk<D>(k_s, v_s, kc, vc, key0 + key < key_end ? slot0 + key : -1, kv_width, kvh, key,
                     part);
  }
}

// A tile of kAttnTileKeys keys, copied by all n_threads threads of the block.
template <int D>
__device__ __forceinline__ void load_kv_tile(__nv_bfloat16* k_s, __nv_bfloat16* v_s,
                                             const __nv_bfloat16* kc, const __nv_bfloat16* vc,
                                             const int32_t* table, int block_size, int64_t kv_width,
                                             int kvh, int key0, int key_end, int n_threads) {
  load_kv_rows<D, kAttnTileKeys>(k_s, v_s, kc, vc, table, block_size, kv_width, kvh, key0, key_end,
                                 threadIdx.x, n_threads);
}

// The token of decode row `row`: row itself, or the row-th listed token (false past the list).
__device__ __forceinline__ bool decode_row_token(const DecodeLaunch& d, int row, int* t) {
  if (d.tokens == nullptr) {
    *t = row;
    return true;
  }
  if (row >= *d.count) return false;
  *t = d.tokens[row];
  return true;
}

// The sequence of token t: the last s with query_start[s] <= t.
__device__ __forceinline__ int sequence_of(const int32_t* query_start, int n_seqs, int t) {
  int lo = 0, hi = n_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (query_start[mid] <= t)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// Token t's sequence, its first token, its query length and its KV length. In a pure-decode step
// (one token per sequence) token t is sequence t: that guess costs one round of independent loads,
// where the binary search costs log2(n_seqs) dependent ones before the first K/V address is known.
struct TokenSeq {
  int s, start, q_len, kv_len;
};
__device__ __forceinline__ TokenSeq token_sequence(const int32_t* query_start,
                                                   const int32_t* kv_len, int n_seqs, int t) {
  const int g = min(t, n_seqs - 1);
  const int lo = query_start[g], hi = query_start[g + 1], kv = kv_len[g];  // one round
  if (lo <= t && t < hi) return {g, lo, hi - lo, kv};
  const int s = sequence_of(query_start, n_seqs, t);
  const int start = query_start[s];
  return {s, start, query_start[s + 1] - start, kv_len[s]};
}

}  // namespace carpool::cuda
