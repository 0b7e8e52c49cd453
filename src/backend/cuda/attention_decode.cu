// Decode attention (and short chunks) over the paged KV cache, split over the context
// (flash-decoding, Dao et al. 2023).
//
// One CTA of 4 warps handles one query token, one KV head and one split of its context, for all
// query heads of that KV head's group, so each K/V byte is read from memory once per token. K/V
// tiles of kAttnTileKeys positions are copied with 16-byte cp.async into a double buffer in shared
// memory (the next tile streams in while the current one is used), then:
//   scores   thread per (head, key): q (f32, shared, broadcast) . K row (16-byte reads);
//   softmax  warp per head: tile max, online update (log2 domain), probabilities in place;
//   P V      thread per (head, 4 dims): sum over the tile's keys.
// With several splits each CTA writes an unnormalized partial output with its max and sum and
// decode_combine_kernel merges them.
#include <cfloat>

#include "backend/cuda/attention_common.cuh"
#include "util/check.h"

namespace carpool::cuda {
namespace {

constexpr int kDecodeThreads = 128;
constexpr int kDecodeWarps = kDecodeThreads / 32;
static_assert(kAttnTileKeys == 64, "the softmax step gives each lane two keys of a tile");

template <int D>
constexpr size_t decode_smem_bytes(int group) {
  return size_t{4} * kAttnTileKeys * tile_stride<D>() * sizeof(__nv_bfloat16) +
         sizeof(float) * (size_t(group) * D + size_t(group) * kAttnTileKeys + 3 * size_t(group));
}

struct DecodeArgs {
  AttentionLaunch a;
  DecodeLaunch d;
};

// grid (rows, n_kv_heads, n_splits), kDecodeThreads threads, decode_smem_bytes<D>(group) smem.
template <int D>
__global__ void __launch_bounds__(kDecodeThreads) decode_attention_kernel(DecodeArgs args) {
  constexpr int BN = kAttnTileKeys;
  constexpr int kStride = tile_stride<D>();
  constexpr int kMaxChunks = kDecodeMaxGroup * D / 4 / kDecodeThreads;  // 4 dims per chunk
  const AttentionLaunch& a = args.a;
  const DecodeLaunch& dl = args.d;
  const int row = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
  int t = 0;
  if (!decode_row_token(dl, row, &t)) return;
  const int s = sequence_of(a.query_start, a.n_seqs, t);
  const int q_len = a.query_start[s + 1] - a.query_start[s];
  const int pos = a.kv_len[s] - q_len + (t - a.query_start[s]);
  const int n_keys = pos + 1;  // causal: positions [0, pos]
  const int k_begin = split * dl.split_len;
  const int k_end = min(n_keys, k_begin + dl.split_len);
  const int n_tiles = k_end > k_begin ? (k_end - k_begin + BN - 1) / BN : 0;
  const int G = a.n_heads / a.n_kv_heads;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int32_t* table = a.block_tables + int64_t(s) * a.max_blocks_per_seq;
  const auto* kc = static_cast<const __nv_bfloat16*>(a.k_cache);
  const auto* vc = static_cast<const __nv_bfloat16*>(a.v_cache);
  const int64_t kv_width = int64_t(a.n_kv_heads) * D;
  const int64_t row_width = int64_t(a.n_heads) * D;

  extern __shared__ uint4 smem_raw[];
  auto* smem = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  // K tiles at buffers 0 and 1, V tiles at 2 and 3 (BN x kStride each).
  auto k_s = [&](int b) { return smem + b * BN * kStride; };
  auto v_s = [&](int b) { return smem + (2 + b) * BN * kStride; };
  float* q_s = reinterpret_cast<float*>(smem + 4 * BN * kStride);  // [G, D], scaled
  float* p_s = q_s + G * D;                                        // [G, BN] scores, then p
  float* corr_s = p_s + G * BN;                                    // [G]
  float* m_s = corr_s + G;                                         // [G] running max
  float* l_s = m_s + G;                                            // [G] running sum

  if (n_tiles > 0) {
    load_kv_tile<D>(k_s(0), v_s(0), kc, vc, table, a.block_size, kv_width, kvh, k_begin, k_end,
                    kDecodeThreads);
    cp_async_commit();
  }
  const float scale_log2 = a.scale * kLog2e;
  for (int i = tid; i < G * D; i += kDecodeThreads) {
    const int h = i / D, d = i % D;
    q_s[i] =
        load_f(a.q, int64_t(t) * row_width + int64_t(kvh * G + h) * D + d, a.q_dtype) * scale_log2;
  }
  for (int h = tid; h < G; h += kDecodeThreads) {
    m_s[h] = -INFINITY;
    l_s[h] = 0.f;
  }
  const int n_chunks = G * D / 4;
  float acc[kMaxChunks][4];
#pragma unroll
  for (int i = 0; i < kMaxChunks; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;

  for (int kt = 0; kt < n_tiles; ++kt) {
    const int buf = kt & 1;
    if (kt + 1 < n_tiles) {
      load_kv_tile<D>(k_s(buf ^ 1), v_s(buf ^ 1), kc, vc, table, a.block_size, kv_width, kvh,
                      k_begin + (kt + 1) * BN, k_end, kDecodeThreads);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // the tile, and (first time) q_s, m_s, l_s, are visible to all

    // --- scores: thread per (head, key); a warp shares the head, so q reads broadcast ---
    const int key0 = k_begin + kt * BN;
    for (int i = tid; i < G * BN; i += kDecodeThreads) {
      const int h = i / BN, key = i % BN;
      float sc = -INFINITY;
      if (key0 + key < k_end) {
        const __nv_bfloat16* kr = k_s(buf) + key * kStride;
        const float* qh = q_s + h * D;
        float dot = 0.f;
#pragma unroll
        for (int d = 0; d < D; d += 8) {
          const uint4 u = *reinterpret_cast<const uint4*>(kr + d);
          const float4 qa = *reinterpret_cast<const float4*>(qh + d);
          const float4 qb = *reinterpret_cast<const float4*>(qh + d + 4);
          dot += qa.x * bf16_lo(u.x) + qa.y * bf16_hi(u.x) + qa.z * bf16_lo(u.y) +
                 qa.w * bf16_hi(u.y) + qb.x * bf16_lo(u.z) + qb.y * bf16_hi(u.z) +
                 qb.z * bf16_lo(u.w) + qb.w * bf16_hi(u.w);
        }
        sc = dot;
      }
      p_s[i] = sc;
    }
    __syncthreads();

    // --- online softmax: warp per head, two keys per lane ---
    for (int h = warp; h < G; h += kDecodeWarps) {
      float* ph = p_s + h * BN;
      const float v0 = ph[lane], v1 = ph[lane + 32];
      const float m_old = m_s[h];
      // The tile's first key is < k_end, so the max is finite.
      const float m_new = fmaxf(m_old, warp_max(fmaxf(v0, v1)));
      const float p0 = exp2f(v0 - m_new), p1 = exp2f(v1 - m_new);
      ph[lane] = p0;
      ph[lane + 32] = p1;
      const float sum = warp_sum(p0 + p1);  // every lane has read m_s[h] before this point
      if (lane == 0) {
        const float corr = exp2f(m_old - m_new);  // 0 on the first tile
        corr_s[h] = corr;
        l_s[h] = l_s[h] * corr + sum;
        m_s[h] = m_new;
      }
    }
    __syncthreads();

    // --- O = O * corr + P V: thread per (head, 4 dims) ---
#pragma unroll
    for (int i = 0; i < kMaxChunks; ++i) {
      const int c = tid + i * kDecodeThreads;
      if (c < n_chunks) {
        const int h = (c * 4) / D, d = (c * 4) % D;
        const float corr = corr_s[h];
        float o0 = acc[i][0] * corr, o1 = acc[i][1] * corr;
        float o2 = acc[i][2] * corr, o3 = acc[i][3] * corr;
        const float* ph = p_s + h * BN;
        const __nv_bfloat16* vcol = v_s(buf) + d;
#pragma unroll 8
        for (int key = 0; key < BN; ++key) {
          const float pk = ph[key];
          const uint2 u = *reinterpret_cast<const uint2*>(vcol + key * kStride);
          o0 += pk * bf16_lo(u.x);
          o1 += pk * bf16_hi(u.x);
          o2 += pk * bf16_lo(u.y);
          o3 += pk * bf16_hi(u.y);
        }
        acc[i][0] = o0;
        acc[i][1] = o1;
        acc[i][2] = o2;
        acc[i][3] = o3;
      }
    }
    __syncthreads();  // the next iteration's load overwrites the buffer just read
  }
  if (n_tiles == 0) __syncthreads();  // m_s, l_s initialized by other threads

  if (dl.n_splits == 1) {
#pragma unroll
    for (int i = 0; i < kMaxChunks; ++i) {
      const int c = tid + i * kDecodeThreads;
      if (c < n_chunks) {
        const int h = (c * 4) / D, d = (c * 4) % D;
        const float inv = l_s[h] > 0.f ? 1.f / l_s[h] : 0.f;
        const int64_t off = int64_t(t) * row_width + int64_t(kvh * G + h) * D + d;
        for (int e = 0; e < 4; ++e) store_f(a.out, off + e, a.out_dtype, acc[i][e] * inv);
      }
    }
  } else {
    const int64_t head0 = int64_t(row) * a.n_heads + int64_t(kvh) * G;
#pragma unroll
    for (int i = 0; i < kMaxChunks; ++i) {
      const int c = tid + i * kDecodeThreads;
      if (c < n_chunks) {
        const int h = (c * 4) / D, d = (c * 4) % D;
        const int64_t part = (head0 + h) * dl.n_splits + split;
        *reinterpret_cast<float4*>(dl.part_o + part * D + d) =
            make_float4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
      }
    }
    for (int h = tid; h < G; h += kDecodeThreads) {
      const int64_t part = (head0 + h) * dl.n_splits + split;
      dl.part_ml[part * 2] = m_s[h];
      dl.part_ml[part * 2 + 1] = l_s[h];
    }
  }
}

// grid (rows, n_heads), 128 threads over head_dim.
__global__ void decode_combine_kernel(DecodeArgs args) {
  const AttentionLaunch& a = args.a;
  const DecodeLaunch& dl = args.d;
  const int row = blockIdx.x, head = blockIdx.y, D = a.head_dim, S = dl.n_splits;
  int t = 0;
  if (!decode_row_token(dl, row, &t)) return;
  const int64_t part0 = (int64_t(row) * a.n_heads + head) * S;
  const float* ml = dl.part_ml + part0 * 2;
  float gmax = -INFINITY;
  for (int s = 0; s < S; ++s)
    if (ml[2 * s + 1] > 0.f) gmax = fmaxf(gmax, ml[2 * s]);
  float total = 0.f;
  for (int s = 0; s < S; ++s)
    if (ml[2 * s + 1] > 0.f) total += ml[2 * s + 1] * exp2f(ml[2 * s] - gmax);
  const float inv = total > 0.f ? 1.f / total : 0.f;
  const int64_t off = int64_t(t) * a.n_heads * D + int64_t(head) * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float o = 0.f;
    for (int s = 0; s < S; ++s)
      if (ml[2 * s + 1] > 0.f) o += dl.part_o[(part0 + s) * D + d] * exp2f(ml[2 * s] - gmax);
    store_f(a.out, off + d, a.out_dtype, o * inv);
  }
}

template <int D>
void launch_decode_d(const LaunchCtx& ctx, const AttentionLaunch& a, const DecodeLaunch& d) {
  const int group = a.n_heads / a.n_kv_heads;
  const size_t smem = decode_smem_bytes<D>(group);
  static bool opted_in = false;  // once per process (one device per process)
  if (!opted_in) {
    CUDA_CHECK(cudaFuncSetAttribute(decode_attention_kernel<D>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(decode_smem_bytes<D>(kDecodeMaxGroup))));
    opted_in = true;
  }
  const dim3 grid(unsigned(d.rows), unsigned(a.n_kv_heads), unsigned(d.n_splits));
  DecodeArgs args{a, d};
  if (!ctx.simt_decode_attention && decode_attention_mma_supported(a)) {
    launch_decode_attention_mma(ctx, a, d);  // the same grid and partial layout
  } else {
    decode_attention_kernel<D><<<grid, kDecodeThreads, smem, ctx.stream>>>(args);
    check_launch(ctx);
  }
  if (d.n_splits > 1) {
    decode_combine_kernel<<<dim3(unsigned(d.rows), unsigned(a.n_heads)), 128, 0, ctx.stream>>>(
        args);
    check_launch(ctx);
  }
}

}  // namespace

void launch_decode_attention(const LaunchCtx& ctx, const AttentionLaunch& a,
                             const DecodeLaunch& d) {
  if (d.rows <= 0) return;
  const int group = a.n_heads / a.n_kv_heads;
  CARPOOL_CHECK(group >= 1 && group <= kDecodeMaxGroup);
  CARPOOL_CHECK(d.n_splits >= 1 && d.split_len % kAttnTileKeys == 0 && d.split_len > 0);
  if (a.head_dim == 64) {
    launch_decode_d<64>(ctx, a, d);
  } else {
    CARPOOL_CHECK(a.head_dim == 128);
    launch_decode_d<128>(ctx, a, d);
  }
}

}  // namespace carpool::cuda
