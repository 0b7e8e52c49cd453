// Attention dispatch: which kernels run a ragged batch, how the decode context is split, and how
// the per-call workspace is laid out. Host code only; the kernels are in attention_*.cu.
//
// Only host-known figures (n_tokens, n_seqs, max_q_len, max_kv_len) shape the launches; per-
// sequence lengths stay on the device, where attention_plan_kernel turns query_start into the
// prefill tile list and the decode token list. Pure decode batches (max_q_len < kMinPrefillQ)
// skip the plan and run the decode kernel over every token directly.
#include <algorithm>

#include "backend/cuda/device_utils.cuh"
#include "util/check.h"

namespace carpool::cuda {
namespace {

bool fast_path(const LaunchCtx& ctx, const AttentionLaunch& a) {
  if (ctx.generic_attention) return false;
  if (a.head_dim != 64 && a.head_dim != 128) return false;
  const int group = a.n_heads / a.n_kv_heads;
  return group >= 1 && group <= kDecodeMaxGroup;
}

// Workspace layout in 4-byte words, offsets aligned to 4 words (16 bytes).
struct Plan {
  bool use_lists = false;  // a prefill kernel runs; decode tokens come from the list
  int max_tiles = 0;       // prefill CTAs per head (upper bound of counts[0])
  DecodeLaunch decode;     // pointers filled in at launch
  int64_t off_counts = 0, off_tiles = 0, off_dec = 0, off_ml = 0, off_o = 0, words = 0;
};

int64_t align4(int64_t w) {
  return (w + 3) / 4 * 4;
}

Plan make_plan(const LaunchCtx& ctx, const AttentionLaunch& a) {
  Plan p;
  const int64_t n_tokens = a.n_tokens;
  p.use_lists = a.max_q_len >= kMinPrefillQ;
  int64_t dec_rows = n_tokens;
  if (p.use_lists) {
    // Sequences with q_len >= kMinPrefillQ: at most n_tokens / kMinPrefillQ of them, and
    // sum ceil(q / 64) <= (n_tokens + 63 * n_long) / 64.
    const int64_t n_long = std::min<int64_t>(a.n_seqs, n_tokens / kMinPrefillQ);
    p.max_tiles = static_cast<int>((n_tokens + (kPrefillTileQ - 1) * n_long) / kPrefillTileQ + 1);
    // Each short sequence gives at most kMinPrefillQ - 1 decode tokens. (Not n_tokens -
    // max_q_len: a max_q_len larger than the truth would then drop tokens.)
    dec_rows = std::min<int64_t>(n_tokens, int64_t(kMinPrefillQ - 1) * a.n_seqs);
    dec_rows = std::max<int64_t>(dec_rows, 0);
  }
  // Decode CTAs of 4 warps while one wave of them holds the call's (each warp then walks fewer
  // 16-key granules, one after another: at batch 1 that measured 3% faster on an H200), else 2
  // warps, twice as many resident (a batch-64 step's 512 CTAs in one wave instead of two: 5%
  // faster); splits to fill the resident CTAs (decode_shape).
  const int max_kv = std::max(a.max_kv_len, 1);
  const int64_t max_tiles_kv = ceil_div(max_kv, kAttnTileKeys);
  DecodeShapeInput in;
  in.ctas = dec_rows * a.n_kv_heads;
  in.tiles = max_tiles_kv;
  in.sm_count = ctx.sm_count;
  in.resident4 = decode_attention_mma_ctas_per_sm(a.head_dim, 4);
  in.resident2 = decode_attention_mma_ctas_per_sm(a.head_dim, 2);
  in.warps = ctx.decode_warps;
  in.ctas_per_sm = ctx.decode_ctas_per_sm;
  const DecodeShape shape = decode_shape(in);
  const int64_t splits = shape.splits;
  p.decode.warps = shape.warps;
  const int64_t tiles_per_split = ceil_div(max_tiles_kv, splits);
  p.decode.split_len = static_cast<int>(tiles_per_split * kAttnTileKeys);
  p.decode.n_splits = static_cast<int>(ceil_div(max_kv, p.decode.split_len));
  p.decode.rows = static_cast<int>(dec_rows);

  int64_t w = 0;
  p.off_counts = w;
  w = align4(w + 4);
  if (p.use_lists) {
    p.off_tiles = w;
    w = align4(w + 2 * int64_t(p.max_tiles));
    p.off_dec = w;
    w = align4(w + std::max<int64_t>(dec_rows, 1));
  }
  if (p.decode.n_splits > 1) {
    const int64_t parts = dec_rows * a.n_heads * p.decode.n_splits;
    p.off_ml = w;
    w = align4(w + 2 * parts);
    p.off_o = w;
    w = align4(w + parts * a.head_dim);
  }
  p.words = w;
  return p;
}

}  // namespace

int64_t attention_workspace_floats(const LaunchCtx& ctx, const AttentionLaunch& a) {
  if (!fast_path(ctx, a)) return generic_attention_workspace_floats(ctx, a);
  return make_plan(ctx, a).words;
}

void launch_attention(const LaunchCtx& ctx, const AttentionLaunch& a, float* workspace) {
  if (a.n_tokens == 0 || a.n_seqs == 0) return;
  if (!fast_path(ctx, a)) {
    launch_generic_attention(ctx, a, workspace);
    return;
  }
  Plan p = make_plan(ctx, a);
  CARPOOL_CHECK(workspace != nullptr);
  auto* ws = reinterpret_cast<int32_t*>(workspace);
  if (p.use_lists) {
    int32_t* counts = ws + p.off_counts;
    launch_attention_plan(ctx, a.query_start, a.n_seqs, counts,
                          reinterpret_cast<int2*>(ws + p.off_tiles), p.max_tiles, ws + p.off_dec,
                          p.decode.rows);
    launch_prefill_attention(ctx, a, counts, reinterpret_cast<const int2*>(ws + p.off_tiles),
                             p.max_tiles);
    p.decode.tokens = ws + p.off_dec;
    p.decode.count = counts + 1;
  }
  if (p.decode.n_splits > 1) {
    p.decode.part_ml = workspace + p.off_ml;
    p.decode.part_o = workspace + p.off_o;
  }
  launch_decode_attention(ctx, a, p.decode);
}

}  // namespace carpool::cuda
