// Decode attention on the tensor cores, for GQA groups of up to 8 query heads per KV head.
//
// The same grid and split plan as decode_attention_kernel (attention_decode.cu): one CTA per
// query token, KV head and split of the context, so each K/V byte is read once per token. Inside
// the CTA each of the W warps (DecodeLaunch::warps: 2 or 4) is an independent
// flash-decoding stream: warp w takes the 16-key granules w, w + W, w + 2W, ... of the split,
// copies each into its own double buffer with 16-byte cp.async (load_kv_rows by its 32 lanes: no
// block-wide barrier on the way), and runs
//   S = Q K^T   mma m16n8k16: the group's heads are the A rows (rows >= group are zero), the
//               granule's 16 keys two n8 tiles, head_dim / 16 k-steps;
//   softmax     online, per head row, in the log2 domain, on the accumulator fragments;
//   O += P V    P from the S fragments as the A operand, V through ldmatrix.trans.
// At the end the W warps' (max, sum, O) are merged in shared memory and written either as the
// final row or as a split's partial for decode_combine_kernel. Against the SIMT kernel the
// arithmetic per K/V byte falls from ~2 shared-memory reads and ~8 instructions per element to
// one ldmatrix read and a quarter of an MMA, so the kernel streams the cache at DRAM speed.
#include <cfloat>

#include "backend/cuda/attention_common.cuh"
#include "util/check.h"

namespace carpool::cuda {
namespace {

constexpr int kGranule = 16;  // keys per warp step
constexpr int kMaxRows = 8;   // heads per group: rows g = lane / 4 of the m16 tile

template <int D>
constexpr int granule_elems() {
  return kGranule * tile_stride<D>();
}
// Per warp: 2 stages x (K, V) granules (17 KB at D = 128). Per SM that is what limits how many
// warps are resident (13 of an H100/H200's 228 KB): with 4-warp CTAs 3 fit (396 on 132 SMs, so a
// batch-64 step's 512 CTAs took two waves), with 2-warp CTAs 6.
template <int D, int W>
constexpr size_t mma_smem_bytes() {
  const size_t tiles = size_t{W} * 2 * 2 * granule_elems<D>() * sizeof(__nv_bfloat16);
  const size_t merge = sizeof(float) * size_t{W} * kMaxRows * (D + 2);
  return tiles > merge ? tiles : merge;
}

struct MmaArgs {
  AttentionLaunch a;
  DecodeLaunch d;
};

// grid (rows, n_kv_heads, n_splits), W warps, mma_smem_bytes<D, W>() dynamic shared memory.
template <int D, int W>
__global__ void __launch_bounds__(W * 32) decode_attention_mma_kernel(MmaArgs args) {
  constexpr int kStride = tile_stride<D>();
  constexpr int kSteps = D / 16;    // k-steps of S = Q K^T
  constexpr int kDimTiles = D / 8;  // n8 tiles of O
  const AttentionLaunch& a = args.a;
  const DecodeLaunch& dl = args.d;
  const int row = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
  int t = 0;
  if (!decode_row_token(dl, row, &t)) return;
  const int G = a.n_heads / a.n_kv_heads;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, tq = lane % 4;  // fragment row (head) and column pair
  const int64_t row_width = int64_t(a.n_heads) * D;

  // Q as A fragments (bf16, unscaled): rows g < G, columns 16 * ks + 2 tq (+1) and + 8. Loaded
  // first: they depend on t alone, so their latency overlaps the sequence lookup's (bf16 pairs are
  // loaded as one word and not touched until the first MMA).
  uint32_t qa[kSteps][2];
  {
    const bool valid = g < G;
    const int64_t qoff = int64_t(t) * row_width + int64_t(kvh * G + (valid ? g : 0)) * D;
    const bool bf16 = a.q_dtype == DType::kBF16;
    const auto* qw = static_cast<const uint32_t*>(a.q);  // bf16 pairs (offsets are even)
#pragma unroll
    for (int ks = 0; ks < kSteps; ++ks) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int64_t c = qoff + 16 * ks + 2 * tq + 8 * half;
        uint32_t w = 0u;
        if (valid) {
          w = bf16 ? qw[c / 2]
                   : pack_bf16(load_f(a.q, c, a.q_dtype), load_f(a.q, c + 1, a.q_dtype));
        }
        qa[ks][half] = w;
      }
    }
  }

  const TokenSeq ts = token_sequence(a.query_start, a.kv_len, a.n_seqs, t);
  const int s = ts.s;
  const int pos = ts.kv_len - ts.q_len + (t - ts.start);
  const int n_keys = pos + 1;  // causal: positions [0, pos]
  const int k_begin = split * dl.split_len;
  const int k_end = min(n_keys, k_begin + dl.split_len);
  const int32_t* table = a.block_tables + int64_t(s) * a.max_blocks_per_seq;
  const auto* kc = static_cast<const __nv_bfloat16*>(a.k_cache);
  const auto* vc = static_cast<const __nv_bfloat16*>(a.v_cache);
  const int64_t kv_width = int64_t(a.n_kv_heads) * D;

  extern __shared__ uint4 smem_raw[];
  auto* smem = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  __nv_bfloat16* my = smem + warp * 4 * granule_elems<D>();  // K0, V0, K1, V1
  auto k_s = [&](int b) { return my + (2 * b) * granule_elems<D>(); };
  auto v_s = [&](int b) { return my + (2 * b + 1) * granule_elems<D>(); };

  // This warp's granules: key0 = k_begin + 16 * (warp + W * i) while key0 < k_end.
  const int first = k_begin + kGranule * warp;
  const int n_gran = first < k_end ? (k_end - first + kGranule * W - 1) / (kGranule * W) : 0;
  // With DecodeLaunch::block_prefetch and cache blocks of whole granules, lane j holds the cache
  // block of granule 32 r + j (r = i / 32), read 32 at a time: the copies of a granule then wait
  // for no table read.
  const bool in_block = dl.block_prefetch && a.block_size % kGranule == 0;
  int32_t gran_block = 0;
  auto fetch_blocks = [&](int i0) {
    const int gi = i0 + lane;
    gran_block = gi < n_gran ? table[(first + gi * kGranule * W) / a.block_size] : 0;
  };
  // Starts the copies of granule i into buffer b (called by the whole warp, i ascending).
  auto load_granule = [&](int b, int i) {
    const int key0 = first + i * kGranule * W;
    if (in_block) {
      if (i % 32 == 0) fetch_blocks(i);
      const int blk = __shfl_sync(0xffffffffu, gran_block, i % 32);
      const int64_t slot0 = int64_t(blk) * a.block_size + key0 % a.block_size;
      load_kv_rows_in_block<D, kGranule>(k_s(b), v_s(b), kc, vc, slot0, kv_width, kvh, key0, k_end,
                                         lane);
    } else {
      load_kv_rows<D, kGranule>(k_s(b), v_s(b), kc, vc, table, a.block_size, kv_width, kvh, key0,
                                k_end, lane, 32);
    }
    cp_async_commit();
  };
  if (n_gran > 0) load_granule(0, 0);

  const float scale_log2 = a.scale * kLog2e;

  float o[kDimTiles][4];
#pragma unroll
  for (int i = 0; i < kDimTiles; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m_run = -INFINITY;  // row g's running max (log2 domain), the same in its 4 lanes
  float l_run = 0.f;        // this lane's share of row g's running sum

  for (int i = 0; i < n_gran; ++i) {
    const int buf = i & 1;
    const int key0 = first + i * kGranule * W;
    if (i + 1 < n_gran) {
      load_granule(buf ^ 1, i + 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncwarp();  // every lane's copies of this granule are visible to the warp

    // --- S = Q K^T: two n8 tiles (keys 0-7, 8-15) ---
    float sc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
    const __nv_bfloat16* kb = k_s(buf);
#pragma unroll
    for (int ks = 0; ks < kSteps; ++ks) {
      // matrices: 0 = keys 0-7 dims 16ks+0..7, 1 = keys 0-7 dims +8..15, 2/3 = keys 8-15.
      const int mi = lane / 8;
      const int key = (mi / 2) * 8 + lane % 8;
      uint32_t b[4];
      ldmatrix_x4(b, kb + key * kStride + 16 * ks + (mi % 2) * 8);
      const uint32_t afr[4] = {qa[ks][0], 0u, qa[ks][1], 0u};
      mma_bf16_16816(sc[0], afr, b[0], b[1]);
      mma_bf16_16816(sc[1], afr, b[2], b[3]);
    }

    // --- online softmax on row g (elements [j][0..1]; [j][2..3] are padding rows) ---
    float v[4];
#pragma unroll
    for (int j = 0; j < 2; ++j) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int key = key0 + 8 * j + 2 * tq + e;
        v[2 * j + e] = key < k_end ? sc[j][e] * scale_log2 : -INFINITY;
      }
    }
    float mx = fmaxf(fmaxf(v[0], v[1]), fmaxf(v[2], v[3]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m_run, mx);     // finite: key0 < k_end
    const float corr = exp2f(m_run - m_new);  // 0 on the first granule
    m_run = m_new;
    float p[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) p[e] = exp2f(v[e] - m_new);
    l_run = l_run * corr + (p[0] + p[1] + p[2] + p[3]);
#pragma unroll
    for (int nd = 0; nd < kDimTiles; ++nd) {
      o[nd][0] *= corr;
      o[nd][1] *= corr;
    }

    // --- O += P V: A = P (row g, keys 2tq.. and 2tq+8..), B = V via ldmatrix.trans ---
    const uint32_t pa[4] = {pack_bf16(p[0], p[1]), 0u, pack_bf16(p[2], p[3]), 0u};
    const __nv_bfloat16* vb = v_s(buf);
#pragma unroll
    for (int nd = 0; nd < kDimTiles; nd += 2) {
      // matrices: 0 = keys 0-7 dims 8nd.., 1 = keys 8-15 dims 8nd.., 2/3 = dims 8(nd+1)..
      const int mi = lane / 8;
      const int key = (mi % 2) * 8 + lane % 8;
      uint32_t b[4];
      ldmatrix_x4_trans(b, vb + key * kStride + 8 * (nd + mi / 2));
      mma_bf16_16816(o[nd], pa, b[0], b[1]);
      mma_bf16_16816(o[nd + 1], pa, b[2], b[3]);
    }
    __syncwarp();  // the next iteration's copy overwrites the buffer just read
  }
  // Row g's sum over its 4 lanes.
  l_run += __shfl_xor_sync(0xffffffffu, l_run, 1);
  l_run += __shfl_xor_sync(0xffffffffu, l_run, 2);

  // --- merge the W warps: [warp][row] (max, sum) and [warp][row][D] O in shared memory ---
  __syncthreads();                                 // every warp is done with its K/V buffers
  float* mo = reinterpret_cast<float*>(smem_raw);  // [W][kMaxRows][D]
  float* ml = mo + W * kMaxRows * D;               // [W][kMaxRows][2]
  if (tq == 0) {
    ml[(warp * kMaxRows + g) * 2] = n_gran > 0 ? m_run : -INFINITY;
    ml[(warp * kMaxRows + g) * 2 + 1] = n_gran > 0 ? l_run : 0.f;
  }
#pragma unroll
  for (int nd = 0; nd < kDimTiles; ++nd) {
    float* dst = mo + (warp * kMaxRows + g) * D + 8 * nd + 2 * tq;
    dst[0] = o[nd][0];
    dst[1] = o[nd][1];
  }
  __syncthreads();

  const int64_t head0 = int64_t(row) * a.n_heads + int64_t(kvh) * G;
  for (int idx = threadIdx.x; idx < G * D; idx += W * 32) {
    const int h = idx / D, d = idx % D;
    float gmax = -INFINITY;
#pragma unroll
    for (int w = 0; w < W; ++w)
      if (ml[(w * kMaxRows + h) * 2 + 1] > 0.f) gmax = fmaxf(gmax, ml[(w * kMaxRows + h) * 2]);
    float total = 0.f, acc = 0.f;
#pragma unroll
    for (int w = 0; w < W; ++w) {
      const float lw = ml[(w * kMaxRows + h) * 2 + 1];
      if (lw > 0.f) {
        const float f = exp2f(ml[(w * kMaxRows + h) * 2] - gmax);
        total += lw * f;
        acc += mo[(w * kMaxRows + h) * D + d] * f;
      }
    }
    if (dl.n_splits == 1) {
      const float inv = total > 0.f ? 1.f / total : 0.f;
      store_f(a.out, int64_t(t) * row_width + int64_t(kvh * G + h) * D + d, a.out_dtype, acc * inv);
    } else {
      const int64_t part = (head0 + h) * dl.n_splits + split;
      dl.part_o[part * D + d] = acc;
      if (d == 0) {
        dl.part_ml[part * 2] = gmax;
        dl.part_ml[part * 2 + 1] = total;
      }
    }
  }
}

// Lets decode_attention_mma_kernel<D, W> take its shared memory (once per process: one device
// per process).
template <int D, int W>
void opt_in() {
  static bool opted_in = false;
  if (!opted_in) {
    CUDA_CHECK(cudaFuncSetAttribute(decode_attention_mma_kernel<D, W>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(mma_smem_bytes<D, W>())));
    opted_in = true;
  }
}

template <int D, int W>
int resident_ctas() {
  static int n = 0;
  if (n == 0) {
    opt_in<D, W>();
    int blocks = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &blocks, decode_attention_mma_kernel<D, W>, W * 32, mma_smem_bytes<D, W>()));
    n = blocks > 0 ? blocks : 1;
  }
  return n;
}

template <int D, int W>
void launch_mma_dw(const LaunchCtx& ctx, const AttentionLaunch& a, const DecodeLaunch& d) {
  constexpr size_t smem = mma_smem_bytes<D, W>();
  opt_in<D, W>();
  const dim3 grid(unsigned(d.rows), unsigned(a.n_kv_heads), unsigned(d.n_splits));
  DecodeLaunch dl = d;
  dl.block_prefetch = ctx.decode_block_prefetch;
  decode_attention_mma_kernel<D, W><<<grid, W * 32, smem, ctx.stream>>>(MmaArgs{a, dl});
  check_launch(ctx);
}

template <int D>
void launch_mma_d(const LaunchCtx& ctx, const AttentionLaunch& a, const DecodeLaunch& d) {
  if (d.warps == 4) {
    launch_mma_dw<D, 4>(ctx, a, d);
  } else {
    launch_mma_dw<D, 2>(ctx, a, d);
  }
}

}  // namespace

bool decode_attention_mma_supported(const AttentionLaunch& a) {
  const int group = a.n_heads / a.n_kv_heads;
  return group >= 1 && group <= kMaxRows && (a.head_dim == 64 || a.head_dim == 128);
}

int decode_attention_mma_ctas_per_sm(int head_dim, int warps) {
  if (head_dim == 64) return warps == 4 ? resident_ctas<64, 4>() : resident_ctas<64, 2>();
  return warps == 4 ? resident_ctas<128, 4>() : resident_ctas<128, 2>();
}

void launch_decode_attention_mma(const LaunchCtx& ctx, const AttentionLaunch& a,
                                 const DecodeLaunch& d) {
  CARPOOL_CHECK(decode_attention_mma_supported(a));
  if (a.head_dim == 64) {
    launch_mma_d<64>(ctx, a, d);
  } else {
    launch_mma_d<128>(ctx, a, d);
  }
}

}  // namespace carpool::cuda
