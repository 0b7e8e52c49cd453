// CpuBackend::attention: causal attention over a paged KV cache for a ragged batch.
//
// One task per (token, head). Scores are computed one KV block at a time; the softmax is the
// online (running max) form, rescaling the accumulator once per block, so the result is stable
// for any score magnitude and needs only O(head_dim + block_size) scratch.
#include <algorithm>
#include <cmath>
#include <limits>

#include "backend/cpu/cpu_backend.h"
#include "util/check.h"

namespace carpool {

void CpuBackend::attention(Tensor out, const Tensor& q, const Tensor& k_cache,
                           const Tensor& v_cache, const AttentionMeta& meta) {
  const int n_tokens = meta.n_tokens;
  const int n_heads = meta.n_heads;
  const int n_kv_heads = meta.n_kv_heads;
  const int head_dim = meta.head_dim;
  CARPOOL_CHECK(n_heads > 0 && n_kv_heads > 0 && n_heads % n_kv_heads == 0 && head_dim > 0);
  CARPOOL_CHECK(q.dtype == DType::kF32 && out.dtype == DType::kF32);
  CARPOOL_CHECK(k_cache.dtype == DType::kF32 && v_cache.dtype == DType::kF32);
  CARPOOL_CHECK(q.rows == n_tokens && out.rows == n_tokens);
  CARPOOL_CHECK(q.cols == static_cast<int64_t>(n_heads) * head_dim && out.cols == q.cols);
  const int64_t kv_cols = static_cast<int64_t>(n_kv_heads) * head_dim;
  CARPOOL_CHECK(k_cache.cols == kv_cols && v_cache.cols == kv_cols);
  CARPOOL_CHECK(k_cache.rows == v_cache.rows);
  CARPOOL_CHECK(meta.query_start.numel() == meta.n_seqs + 1 && meta.kv_len.numel() == meta.n_seqs);
  CARPOOL_CHECK(meta.block_tables.numel() ==
                static_cast<int64_t>(meta.n_seqs) * meta.max_blocks_per_seq);
  const int32_t* qstart = static_cast<const int32_t*>(meta.query_start.data);
  const int32_t* kv_len = static_cast<const int32_t*>(meta.kv_len.data);
  const int32_t* tables = static_cast<const int32_t*>(meta.block_tables.data);
  CARPOOL_CHECK(meta.max_blocks_per_seq > 0);

  token_seq_.assign(static_cast<size_t>(n_tokens), -1);
  CARPOOL_CHECK(qstart[0] == 0 && qstart[meta.n_seqs] == n_tokens);
  for (int s = 0; s < meta.n_seqs; ++s) {
    CARPOOL_CHECK(qstart[s] <= qstart[s + 1]);
    CARPOOL_CHECK(kv_len[s] >= qstart[s + 1] - qstart[s]);
    for (int t = qstart[s]; t < qstart[s + 1]; ++t) token_seq_[static_cast<size_t>(t)] = s;
  }
  const int block_size = meta.block_size;
  CARPOOL_CHECK(block_size > 0);
  for (int s = 0; s < meta.n_seqs; ++s) {
    const int n_blocks = (kv_len[s] + block_size - 1) / block_size;
    CARPOOL_CHECK(n_blocks <= meta.max_blocks_per_seq);
    for (int b = 0; b < n_blocks; ++b) {
      const int32_t blk = tables[static_cast<int64_t>(s) * meta.max_blocks_per_seq + b];
      CARPOOL_CHECK(blk >= 0 && static_cast<int64_t>(blk + 1) * block_size <= k_cache.rows);
    }
  }

  const float* qs = static_cast<const float*>(q.data);
  const float* ks = static_cast<const float*>(k_cache.data);
  const float* vs = static_cast<const float*>(v_cache.data);
  float* ys = static_cast<float*>(out.data);
  const int group = n_heads / n_kv_heads;
  const float scale = meta.scale;
  reserve_scratch(static_cast<size_t>(head_dim + block_size));

  pool_.parallel_for(static_cast<int64_t>(n_tokens) * n_heads, 1, [&](int64_t b, int64_t e, int t) {
    float* acc = scratch(t);                // [head_dim]
    float* scores = scratch(t) + head_dim;  // [block_size]
    for (int64_t task = b; task < e; ++task) {
      const int tok = static_cast<int>(task / n_heads);
      const int h = static_cast<int>(task % n_heads);
      const int s = token_seq_[static_cast<size_t>(tok)];
      const int q_len = qstart[s + 1] - qstart[s];
      const int pos = kv_len[s] - q_len + (tok - qstart[s]);
      const int n_ctx = pos + 1;
      const int64_t kv_off = static_cast<int64_t>(h / group) * head_dim;
      const float* qh =
          qs + static_cast<int64_t>(tok) * q.cols + static_cast<int64_t>(h) * head_dim;
      const int32_t* table = tables + static_cast<int64_t>(s) * meta.max_blocks_per_seq;
      std::fill(acc, acc + head_dim, 0.f);
      float running_max = -std::numeric_limits<float>::infinity();
      float denom = 0.f;
      for (int p0 = 0; p0 < n_ctx; p0 += block_size) {
        const int cnt = std::min(block_size, n_ctx - p0);
        const int64_t row0 = static_cast<int64_t>(table[p0 / block_size]) * block_size;
        float block_max = -std::numeric_limits<float>::infinity();
        for (int i = 0; i < cnt; ++i) {
          const float* kr = ks + (row0 + i) * kv_cols + kv_off;
          scores[i] = vec_dot_f32(qh, kr, head_dim) * scale;
          block_max = std::max(block_max, scores[i]);
        }
        const float new_max = std::max(running_max, block_max);
        const float correction = std::exp(running_max - new_max);  // 0 on the first block
        denom *= correction;
        for (int d = 0; d < head_dim; ++d) acc[d] *= correction;
        for (int i = 0; i < cnt; ++i) {
          const float p = std::exp(scores[i] - new_max);
          denom += p;
          const float* vr = vs + (row0 + i) * kv_cols + kv_off;
          for (int d = 0; d < head_dim; ++d) acc[d] += p * vr[d];
        }
        running_max = new_max;
      }
      float* yh = ys + static_cast<int64_t>(tok) * out.cols + static_cast<int64_t>(h) * head_dim;
      const float inv = 1.f / denom;
      for (int d = 0; d < head_dim; ++d) yh[d] = acc[d] * inv;
    }
  });
}

}  // namespace carpool
