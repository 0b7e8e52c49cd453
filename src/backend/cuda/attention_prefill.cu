// Prefill attention on tensor cores (FlashAttention-2, Dao 2023) over the paged KV cache.
//
// One CTA of 4 warps computes kPrefillTileQ = 64 query rows of one sequence for one query head;
// each warp owns 16 rows and keeps its Q fragments, scores and output in registers. K/V come in
// tiles of kAttnTileKeys = 64 positions read through the block table with cp.async into a double
// buffer (the next tile loads while the current one is used). Scores S = Q K^T and O += P V run on
// mma.sync m16n8k16 (bf16 in, f32 accumulation); the softmax is online, in the log2 domain, with
// the row sums kept per thread and reduced once at the end. Query row j of a sequence sits at
// position kv_len - q_len + j and sees keys [0, that position]; only the tiles that cross the
// diagonal are masked.
//
// The work list (sequence, first row) of CTAs is made on the device by attention_plan_kernel, so
// ragged batches need no host knowledge of per-sequence lengths.
//
// Paired form (LaunchCtx::prefill_pairs, GQA groups of even size): one CTA of 8 warps computes
// the tile for two query heads of the same KV head, so each K/V tile copied into shared memory
// serves twice the rows (half the L2 -> shared traffic, which at 4096 causal tokens is about
// 2 GB per layer unpaired), and takes the work list from its end: a sequence's last tiles see the
// most keys, so the heaviest CTAs start first and the lightest fill the tail.
#include <cfloat>

#include "backend/cuda/attention_common.cuh"
#include "util/check.h"

namespace carpool::cuda {
namespace {

constexpr int kPrefillThreads = 128;  // 4 warps x 16 rows = kPrefillTileQ
static_assert(kPrefillTileQ == 16 * (kPrefillThreads / 32), "one 16-row MMA tile per warp");
constexpr int kPlanThreads = 1024;

template <int D>
constexpr size_t prefill_smem_bytes() {
  return size_t{4} * kAttnTileKeys * tile_stride<D>() * sizeof(__nv_bfloat16);  // K, V x 2 buffers
}

// Exclusive prefix sum over the block (blockDim.x a multiple of 32, at most 1024); *total gets the
// block's sum. Every thread must call it.
__device__ int block_exclusive_scan(int v, int* total) {
  __shared__ int warp_sums[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  int x = v;
  for (int o = 1; o < 32; o <<= 1) {
    const int y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += y;
  }
  if (lane == 31) warp_sums[warp] = x;
  __syncthreads();
  if (warp == 0) {
    int w = lane < n_warps ? warp_sums[lane] : 0;
    for (int o = 1; o < 32; o <<= 1) {
      const int y = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += y;
    }
    warp_sums[lane] = w;  // inclusive sums over warps
  }
  __syncthreads();
  const int excl = x - v + (warp > 0 ? warp_sums[warp - 1] : 0);
  *total = warp_sums[n_warps - 1];
  __syncthreads();  // warp_sums may be reused by the next call
  return excl;
}

// One block of kPlanThreads threads: sequences in chunks of the block size.
__global__ void __launch_bounds__(kPlanThreads)
    attention_plan_kernel(const int32_t* query_start, int n_seqs, int32_t* counts, int2* tiles,
                          int max_tiles, int32_t* decode_tokens, int max_decode) {
  int tile_base = 0, dec_base = 0;  // uniform across the block
  for (int s0 = 0; s0 < n_seqs; s0 += blockDim.x) {
    const int s = s0 + threadIdx.x;
    int n_tiles = 0, n_dec = 0, qs = 0;
    if (s < n_seqs) {
      qs = query_start[s];
      const int q_len = query_start[s + 1] - qs;
      if (q_len >= kMinPrefillQ)
        n_tiles = (q_len + kPrefillTileQ - 1) / kPrefillTileQ;
      else
        n_dec = q_len;
    }
    int tiles_total = 0, dec_total = 0;
    const int tile_off = tile_base + block_exclusive_scan(n_tiles, &tiles_total);
    const int dec_off = dec_base + block_exclusive_scan(n_dec, &dec_total);
    // The capacities come from host bounds that hold for consistent metadata; they also keep
    // inconsistent metadata from writing past the lists.
    for (int j = 0; j < n_tiles && tile_off + j < max_tiles; ++j)
      tiles[tile_off + j] = make_int2(s, j * kPrefillTileQ);
    for (int j = 0; j < n_dec && dec_off + j < max_decode; ++j) decode_tokens[dec_off + j] = qs + j;
    tile_base += tiles_total;
    dec_base += dec_total;
  }
  if (threadIdx.x == 0) {
    counts[0] = min(tile_base, max_tiles);
    counts[1] = min(dec_base, max_decode);
  }
}

// grid (max_tiles, n_heads / HEADS), HEADS * kPrefillThreads threads, prefill_smem_bytes<D>()
// dynamic smem. HEADS 2: warps 0-3 compute head 2y, warps 4-7 head 2y + 1 (the same KV head).
template <int D, int HEADS>
__global__ void __launch_bounds__(HEADS* kPrefillThreads, 2 / HEADS)
    prefill_attention_kernel(AttentionLaunch a, const int32_t* counts, const int2* tiles) {
  static_assert(HEADS == 1 || HEADS == 2, "one or two heads per CTA");
  constexpr int kThreads = HEADS * kPrefillThreads;
  if (int(blockIdx.x) >= counts[0]) return;
  constexpr int BN = kAttnTileKeys;
  constexpr int kStride = tile_stride<D>();
  const int2 tile = tiles[HEADS == 1 ? int(blockIdx.x) : counts[0] - 1 - int(blockIdx.x)];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int s = tile.x, q0 = tile.y, head = int(blockIdx.y) * HEADS + warp / 4;
  const int qs = a.query_start[s];
  const int q_len = a.query_start[s + 1] - qs;
  const int kv_len = a.kv_len[s];
  const int first_pos = kv_len - q_len;  // position of query row 0
  const int group = a.n_heads / a.n_kv_heads;
  const int kvh = head / group;  // the same for the CTA's heads (group % HEADS == 0)
  const int g = lane >> 2, tig = lane & 3;
  const int q_rows = min(kPrefillTileQ, q_len - q0);
  const int n_keys = first_pos + q0 + q_rows;  // last row's position + 1 (<= kv_len)
  const int n_tiles = (n_keys + BN - 1) / BN;
  const int32_t* table = a.block_tables + int64_t(s) * a.max_blocks_per_seq;
  const auto* kc = static_cast<const __nv_bfloat16*>(a.k_cache);
  const auto* vc = static_cast<const __nv_bfloat16*>(a.v_cache);
  const int64_t kv_width = int64_t(a.n_kv_heads) * D;

  extern __shared__ uint4 smem_raw[];
  auto* smem = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  // K tiles at buffers 0 and 1, V tiles at 2 and 3 (BN x kStride each).
  auto k_s = [&](int b) { return smem + b * BN * kStride; };
  auto v_s = [&](int b) { return smem + (2 + b) * BN * kStride; };

  load_kv_tile<D>(k_s(0), v_s(0), kc, vc, table, a.block_size, kv_width, kvh, 0, n_keys, kThreads);
  cp_async_commit();

  // This thread's rows of the tile (within the sequence) and their positions.
  const int r0 = q0 + (warp % 4) * 16 + g, r1 = r0 + 8;
  const int pos0 = first_pos + r0, pos1 = first_pos + r1;
  // Q fragments (rows past q_len are zero; their results are not stored).
  uint32_t qf[D / 16][4];
  const int64_t row_width = int64_t(a.n_heads) * D;
#pragma unroll
  for (int kd = 0; kd < D / 16; ++kd) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = (i & 1) ? r1 : r0;
      const int col = kd * 16 + 2 * tig + ((i & 2) ? 8 : 0);
      float x0 = 0.f, x1 = 0.f;
      if (r < q_len) {
        const int64_t off = int64_t(qs + r) * row_width + int64_t(head) * D + col;
        x0 = load_f(a.q, off, a.q_dtype);
        x1 = load_f(a.q, off + 1, a.q_dtype);
      }
      qf[kd][i] = pack_bf16(x0, x1);
    }
  }

  const float scale_log2 = a.scale * kLog2e;
  float m0 = -INFINITY, m1 = -INFINITY;  // running row max (log2 domain), rows r0 and r1
  float l0 = 0.f, l1 = 0.f;              // this thread's part of the row sums
  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;

  for (int kt = 0; kt < n_tiles; ++kt) {
    const int buf = kt & 1;
    if (kt + 1 < n_tiles) {
      load_kv_tile<D>(k_s(buf ^ 1), v_s(buf ^ 1), kc, vc, table, a.block_size, kv_width, kvh,
                      (kt + 1) * BN, n_keys, kThreads);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();

    // --- S = Q K^T for 16 rows x 64 keys ---
    float sc[BN / 8][4];
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
#pragma unroll
    for (int kd = 0; kd < D / 16; kd += 2) {
#pragma unroll
      for (int j = 0; j < BN / 8; ++j) {
        // matrices: keys 8j..8j+7 x dims 16kd + {0, 8, 16, 24} .. +7
        uint32_t b[4];
        ldmatrix_x4(b, k_s(buf) + (j * 8 + (lane & 7)) * kStride + kd * 16 + (lane >> 3) * 8);
        mma_bf16_16816(sc[j], qf[kd], b[0], b[1]);
        mma_bf16_16816(sc[j], qf[kd + 1], b[2], b[3]);
      }
    }

    // --- scale, causal mask, online softmax ---
    const int key0 = kt * BN;
    const bool need_mask = key0 + BN - 1 > first_pos + q0;  // crosses the tile's first row
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float v = sc[j][e] * scale_log2;
        if (need_mask) {
          const int key = key0 + j * 8 + 2 * tig + (e & 1);
          if (key > ((e < 2) ? pos0 : pos1)) v = -INFINITY;
        }
        sc[j][e] = v;
      }
      mx0 = fmaxf(mx0, fmaxf(sc[j][0], sc[j][1]));
      mx1 = fmaxf(mx1, fmaxf(sc[j][2], sc[j][3]));
    }
    // The 4 lanes of a quad hold the same two rows.
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    // Key 0 is in tile 0 and visible to every row, so the max is finite from the first tile on.
    const float nm0 = fmaxf(m0, mx0), nm1 = fmaxf(m1, mx1);
    const float corr0 = exp2f(m0 - nm0), corr1 = exp2f(m1 - nm1);  // 0 on the first tile
    m0 = nm0;
    m1 = nm1;
    l0 *= corr0;
    l1 *= corr1;
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      o[i][0] *= corr0;
      o[i][1] *= corr0;
      o[i][2] *= corr1;
      o[i][3] *= corr1;
    }
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
      sc[j][0] = exp2f(sc[j][0] - nm0);
      sc[j][1] = exp2f(sc[j][1] - nm0);
      sc[j][2] = exp2f(sc[j][2] - nm1);
      sc[j][3] = exp2f(sc[j][3] - nm1);
      l0 += sc[j][0] + sc[j][1];
      l1 += sc[j][2] + sc[j][3];
    }

    // --- O += P V: the score accumulators of key groups 2kk, 2kk+1 are P's A fragment ---
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      uint32_t pa[4];
      pa[0] = pack_bf16(sc[2 * kk][0], sc[2 * kk][1]);
      pa[1] = pack_bf16(sc[2 * kk][2], sc[2 * kk][3]);
      pa[2] = pack_bf16(sc[2 * kk + 1][0], sc[2 * kk + 1][1]);
      pa[3] = pack_bf16(sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
#pragma unroll
      for (int dn = 0; dn < D / 8; dn += 2) {
        // matrices (transposed): keys 16kk + {0, 8} .. +7 x dims 8dn + {0, 8} .. +7
        uint32_t b[4];
        const int key = kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
        ldmatrix_x4_trans(b, v_s(buf) + key * kStride + dn * 8 + (lane >> 4) * 8);
        mma_bf16_16816(o[dn], pa, b[0], b[1]);
        mma_bf16_16816(o[dn + 1], pa, b[2], b[3]);
      }
    }
    __syncthreads();  // the next iteration's load overwrites the buffer just read
  }

  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const float inv0 = l0 > 0.f ? 1.f / l0 : 0.f, inv1 = l1 > 0.f ? 1.f / l1 : 0.f;
#pragma unroll
  for (int dn = 0; dn < D / 8; ++dn) {
    const int col = dn * 8 + 2 * tig;
    if (r0 < q_len) {
      const int64_t off = int64_t(qs + r0) * row_width + int64_t(head) * D + col;
      store_f(a.out, off, a.out_dtype, o[dn][0] * inv0);
      store_f(a.out, off + 1, a.out_dtype, o[dn][1] * inv0);
    }
    if (r1 < q_len) {
      const int64_t off = int64_t(qs + r1) * row_width + int64_t(head) * D + col;
      store_f(a.out, off, a.out_dtype, o[dn][2] * inv1);
      store_f(a.out, off + 1, a.out_dtype, o[dn][3] * inv1);
    }
  }
}

template <int D, int HEADS>
void launch_prefill_dh(const LaunchCtx& ctx, const AttentionLaunch& a, const int32_t* counts,
                       const int2* tiles, int max_tiles) {
  constexpr size_t smem = prefill_smem_bytes<D>();
  // Above 48 KiB of dynamic shared memory a kernel must opt in (once per process; one device).
  static bool opted_in = false;
  if (!opted_in) {
    CUDA_CHECK(cudaFuncSetAttribute(prefill_attention_kernel<D, HEADS>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    opted_in = true;
  }
  const dim3 grid(unsigned(max_tiles), unsigned(a.n_heads / HEADS));
  prefill_attention_kernel<D, HEADS>
      <<<grid, HEADS * kPrefillThreads, smem, ctx.stream>>>(a, counts, tiles);
  check_launch(ctx);
}

template <int D>
void launch_prefill_d(const LaunchCtx& ctx, const AttentionLaunch& a, const int32_t* counts,
                      const int2* tiles, int max_tiles) {
  const int group = a.n_heads / a.n_kv_heads;
  if (ctx.prefill_pairs && group % 2 == 0) {
    launch_prefill_dh<D, 2>(ctx, a, counts, tiles, max_tiles);
  } else {
    launch_prefill_dh<D, 1>(ctx, a, counts, tiles, max_tiles);
  }
}

}  // namespace

void launch_attention_plan(const LaunchCtx& ctx, const int32_t* query_start, int n_seqs,
                           int32_t* counts, int2* tiles, int max_tiles, int32_t* decode_tokens,
                           int max_decode) {
  attention_plan_kernel<<<1, kPlanThreads, 0, ctx.stream>>>(query_start, n_seqs, counts, tiles,
                                                            max_tiles, decode_tokens, max_decode);
  check_launch(ctx);
}

void launch_prefill_attention(const LaunchCtx& ctx, const AttentionLaunch& a, const int32_t* counts,
                              const int2* tiles, int max_tiles) {
  if (max_tiles <= 0) return;
  if (a.head_dim == 64) {
    launch_prefill_d<64>(ctx, a, counts, tiles, max_tiles);
  } else {
    CARPOOL_CHECK(a.head_dim == 128);
    launch_prefill_d<128>(ctx, a, counts, tiles, max_tiles);
  }
}

}  // namespace carpool::cuda
