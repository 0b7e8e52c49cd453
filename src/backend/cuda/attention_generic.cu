// Paged attention over a ragged batch, generic kernel: any head_dim (even, <= kMaxHeadDim), any
// GQA ratio, F32/F16/BF16 activations. The fast kernels (attention_prefill.cu, attention_decode.cu)
// cover head_dim 64 and 128; this one serves every other shape, and all shapes when
// LaunchCtx::generic_attention is set (A/B comparisons).
//
// One warp computes one (query token, query head) over a range of KV positions; the warps of a
// block are the query heads that share one KV head (GQA), so a KV row is read from memory once
// per block. Keys are taken 32 at a time: lane i scores key i (a dot product over the head),
// then the warp updates an online softmax (Milakov & Gimelshein 2018) and accumulates V with
// lane-owned pairs of dimensions, so V reads are coalesced.
//
// Long contexts with few tokens (decode) are split over the KV positions (flash-decoding, Dao et
// al. 2023): each split writes an unnormalized partial output with its running max and sum, and a
// second kernel combines the splits.
#include <cfloat>

#include "backend/cuda/device_utils.cuh"

namespace carpool::cuda {
namespace {

constexpr int kMaxWarps = 8;
constexpr int kPairsPerLane = kMaxHeadDim / 64;  // lane owns dims 2*lane + 64*i, +1

struct SplitPlan {
  int n_splits = 1;
  int split_len = 0;  // KV positions per split
};

SplitPlan plan_splits(const LaunchCtx& ctx, const AttentionLaunch& a) {
  SplitPlan p;
  p.split_len = a.max_kv_len > 0 ? a.max_kv_len : 1;
  const int64_t base_blocks = int64_t(a.n_tokens) * a.n_kv_heads;
  const int64_t want = 4LL * ctx.sm_count;
  if (base_blocks >= want || a.max_kv_len <= 256) return p;
  int64_t splits = ceil_div(want, base_blocks);
  const int64_t max_splits = ceil_div(a.max_kv_len, 128);  // at least 128 positions per split
  if (splits > max_splits) splits = max_splits;
  if (splits <= 1) return p;
  int64_t len = ceil_div(a.max_kv_len, splits);
  len = ceil_div(len, 32) * 32;
  p.split_len = static_cast<int>(len);
  p.n_splits = static_cast<int>(ceil_div(a.max_kv_len, len));
  return p;
}

struct AttnArgs {
  AttentionLaunch a;
  int n_splits;
  int split_len;
  float* part_o;   // [n_tokens, n_heads, n_splits, head_dim] when n_splits > 1
  float* part_ml;  // [n_tokens, n_heads, n_splits, 2]
};

__device__ __forceinline__ float bf16_lo(uint32_t u) {
  return __uint_as_float(u << 16);
}
__device__ __forceinline__ float bf16_hi(uint32_t u) {
  return __uint_as_float(u & 0xffff0000u);
}

// grid: (n_tokens, n_kv_heads, n_splits); block: 32 * min(group, kMaxWarps) threads.
__global__ void __launch_bounds__(32 * kMaxWarps) attention_kernel(AttnArgs args) {
  const AttentionLaunch& a = args.a;
  const int t = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  const int D = a.head_dim;
  const int group = a.n_heads / a.n_kv_heads;
  const int64_t kv_width = int64_t(a.n_kv_heads) * D;

  // The sequence of token t: the last s with query_start[s] <= t.
  int lo = 0, hi = a.n_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (a.query_start[mid] <= t)
      lo = mid;
    else
      hi = mid - 1;
  }
  const int s = lo;
  const int q_len = a.query_start[s + 1] - a.query_start[s];
  const int pos = a.kv_len[s] - q_len + (t - a.query_start[s]);
  const int n_keys = pos + 1;  // causal: positions [0, pos]
  const int k_begin = split * args.split_len;
  const int k_end = min(n_keys, k_begin + args.split_len);
  const int32_t* table = a.block_tables + int64_t(s) * a.max_blocks_per_seq;
  const __nv_bfloat16* kc = static_cast<const __nv_bfloat16*>(a.k_cache);
  const __nv_bfloat16* vc = static_cast<const __nv_bfloat16*>(a.v_cache);

  __shared__ float q_s[kMaxWarps][kMaxHeadDim];

  for (int hh = warp; hh < group; hh += n_warps) {
    const int head = kvh * group + hh;
    const int64_t q_off = int64_t(t) * a.n_heads * D + int64_t(head) * D;
    __syncwarp();
    for (int d = lane; d < D; d += 32) q_s[warp][d] = load_f(a.q, q_off + d, a.q_dtype) * a.scale;
    __syncwarp();

    float m = -FLT_MAX, l = 0.f;
    float acc[kPairsPerLane][2];
#pragma unroll
    for (int i = 0; i < kPairsPerLane; ++i) acc[i][0] = acc[i][1] = 0.f;

    for (int kb = k_begin; kb < k_end; kb += 32) {
      const int key = kb + lane;
      const bool valid = key < k_end;
      int64_t row = 0;
      float score = -FLT_MAX;
      if (valid) {
        const int64_t slot = int64_t(table[key / a.block_size]) * a.block_size + key % a.block_size;
        row = slot * kv_width + int64_t(kvh) * D;
        const __nv_bfloat16* kr = kc + row;
        float dot = 0.f;
        if (D % 8 == 0) {
          for (int d = 0; d < D; d += 8) {
            const uint4 u = *reinterpret_cast<const uint4*>(kr + d);
            const float* qq = &q_s[warp][d];
            dot += qq[0] * bf16_lo(u.x) + qq[1] * bf16_hi(u.x) + qq[2] * bf16_lo(u.y) +
                   qq[3] * bf16_hi(u.y) + qq[4] * bf16_lo(u.z) + qq[5] * bf16_hi(u.z) +
                   qq[6] * bf16_lo(u.w) + qq[7] * bf16_hi(u.w);
          }
        } else {
          for (int d = 0; d < D; ++d) dot += q_s[warp][d] * __bfloat162float(kr[d]);
        }
        score = dot;
      }
      const float new_m = fmaxf(m, warp_max(score));
      const float p = valid ? __expf(score - new_m) : 0.f;
      const float corr = __expf(m - new_m);
      l = l * corr + warp_sum(p);
#pragma unroll
      for (int i = 0; i < kPairsPerLane; ++i) {
        acc[i][0] *= corr;
        acc[i][1] *= corr;
      }
      m = new_m;
      const int n_here = min(32, k_end - kb);
      for (int j = 0; j < n_here; ++j) {
        const float pj = __shfl_sync(0xffffffffu, p, j);
        const int64_t rj = __shfl_sync(0xffffffffu, row, j);
        const __nv_bfloat16* vr = vc + rj;
#pragma unroll
        for (int i = 0; i < kPairsPerLane; ++i) {
          const int d = 2 * lane + 64 * i;
          if (d < D) {
            const uint32_t u = *reinterpret_cast<const uint32_t*>(vr + d);
            acc[i][0] += pj * bf16_lo(u);
            acc[i][1] += pj * bf16_hi(u);
          }
        }
      }
    }

    if (args.n_splits == 1) {
      const float inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
      for (int i = 0; i < kPairsPerLane; ++i) {
        const int d = 2 * lane + 64 * i;
        if (d < D) {
          store_f(a.out, q_off + d, a.out_dtype, acc[i][0] * inv);
          store_f(a.out, q_off + d + 1, a.out_dtype, acc[i][1] * inv);
        }
      }
    } else {
      const int64_t part = (int64_t(t) * a.n_heads + head) * args.n_splits + split;
      float* po = args.part_o + part * D;
#pragma unroll
      for (int i = 0; i < kPairsPerLane; ++i) {
        const int d = 2 * lane + 64 * i;
        if (d < D) {
          po[d] = acc[i][0];
          po[d + 1] = acc[i][1];
        }
      }
      if (lane == 0) {
        args.part_ml[part * 2] = l > 0.f ? m : -FLT_MAX;
        args.part_ml[part * 2 + 1] = l;
      }
    }
  }
}

// grid: (n_tokens, n_heads); block: 128 threads over head_dim.
__global__ void combine_kernel(AttnArgs args) {
  const AttentionLaunch& a = args.a;
  const int t = blockIdx.x, head = blockIdx.y, D = a.head_dim, S = args.n_splits;
  const int64_t part0 = (int64_t(t) * a.n_heads + head) * S;
  float gmax = -FLT_MAX;
  for (int s = 0; s < S; ++s)
    if (args.part_ml[(part0 + s) * 2 + 1] > 0.f) gmax = fmaxf(gmax, args.part_ml[(part0 + s) * 2]);
  float total = 0.f;
  for (int s = 0; s < S; ++s) {
    const float l = args.part_ml[(part0 + s) * 2 + 1];
    if (l > 0.f) total += l * __expf(args.part_ml[(part0 + s) * 2] - gmax);
  }
  const float inv = total > 0.f ? 1.f / total : 0.f;
  const int64_t q_off = int64_t(t) * a.n_heads * D + int64_t(head) * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float o = 0.f;
    for (int s = 0; s < S; ++s) {
      const float l = args.part_ml[(part0 + s) * 2 + 1];
      if (l > 0.f)
        o += args.part_o[(part0 + s) * D + d] * __expf(args.part_ml[(part0 + s) * 2] - gmax);
    }
    store_f(a.out, q_off + d, a.out_dtype, o * inv);
  }
}

}  // namespace

int64_t generic_attention_workspace_floats(const LaunchCtx& ctx, const AttentionLaunch& a) {
  const SplitPlan p = plan_splits(ctx, a);
  if (p.n_splits == 1) return 0;
  return int64_t(a.n_tokens) * a.n_heads * p.n_splits * (a.head_dim + 2);
}

void launch_generic_attention(const LaunchCtx& ctx, const AttentionLaunch& a, float* workspace) {
  if (a.n_tokens == 0) return;
  const SplitPlan p = plan_splits(ctx, a);
  AttnArgs args{a, p.n_splits, p.split_len, nullptr, nullptr};
  if (p.n_splits > 1) {
    args.part_o = workspace;
    args.part_ml = workspace + int64_t(a.n_tokens) * a.n_heads * p.n_splits * a.head_dim;
  }
  const int group = a.n_heads / a.n_kv_heads;
  const int warps = group < kMaxWarps ? group : kMaxWarps;
  const dim3 grid(a.n_tokens, a.n_kv_heads, p.n_splits);
  attention_kernel<<<grid, 32 * warps, 0, ctx.stream>>>(args);
  check_launch(ctx);
  if (p.n_splits > 1) {
    combine_kernel<<<dim3(a.n_tokens, a.n_heads), 128, 0, ctx.stream>>>(args);
    check_launch(ctx);
  }
}

}  // namespace carpool::cuda
