// CpuBackend::attention: checks the batch's metadata against the tensors, then runs
// paged_attention (paged_attention.h: tiles of query tokens x the query heads that share their KV
// heads, online softmax one KV block at a time, SIMD kernels chosen at run time, batch invariant).
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_features.h"
#include "backend/cpu/paged_attention.h"
#include "util/check.h"

namespace carpool {

void CpuBackend::attention(Tensor out, const Tensor& q, const Tensor& k_cache,
                           const Tensor& v_cache, const AttentionMeta& meta) {
  const OpScope scope(*this, "attention");
  const int n_tokens = meta.n_tokens;
  const int n_heads = meta.n_heads;
  const int n_kv_heads = meta.n_kv_heads;
  const int head_dim = meta.head_dim;
  CARPOOL_CHECK(n_heads > 0 && n_kv_heads > 0 && n_heads % n_kv_heads == 0 && head_dim > 0);
  CARPOOL_CHECK(q.dtype == DType::kF32 && out.dtype == DType::kF32);
  CARPOOL_CHECK(k_cache.dtype == v_cache.dtype &&
                (k_cache.dtype == DType::kF32 || k_cache.dtype == DType::kF16 ||
                 k_cache.dtype == DType::kI8));
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

  CARPOOL_CHECK(qstart[0] == 0 && qstart[meta.n_seqs] == n_tokens);
  for (int s = 0; s < meta.n_seqs; ++s) {
    CARPOOL_CHECK(qstart[s] <= qstart[s + 1]);
    CARPOOL_CHECK(kv_len[s] >= qstart[s + 1] - qstart[s]);
  }
  const int block_size = meta.block_size;
  CARPOOL_CHECK(block_size > 0 && k_cache.rows % block_size == 0);
  // A cache from alloc_kv keeps each block in one record (kv_layout.h), made for this block size;
  // other K and V tensors (tests) are [rows, kv_cols] with each block's K column-major, float
  // only.
  const bool own = kv_sides_.count(k_cache.data) > 0;
  KvLayer layer;
  if (own) {
    layer = kv_layer(k_cache, v_cache);
    CARPOOL_CHECK(layer.layout.block_size == block_size && layer.layout.head_dim == head_dim);
  } else {
    CARPOOL_CHECK(k_cache.dtype != DType::kI8);
  }
  for (int s = 0; s < meta.n_seqs; ++s) {
    const int n_blocks = (kv_len[s] + block_size - 1) / block_size;
    CARPOOL_CHECK(n_blocks <= meta.max_blocks_per_seq);
    for (int b = 0; b < n_blocks; ++b) {
      const int32_t blk = tables[static_cast<int64_t>(s) * meta.max_blocks_per_seq + b];
      CARPOOL_CHECK(blk >= 0 && static_cast<int64_t>(blk + 1) * block_size <= k_cache.rows);
    }
  }

  PagedAttentionArgs args;
  args.q = static_cast<const float*>(q.data);
  args.k_cache = k_cache.data;
  args.v_cache = v_cache.data;
  args.kv_dtype = k_cache.dtype;
  if (own) {
    const KvLayout& l = layer.layout;
    args.strides = {l.record_bytes(),      l.unit_bytes(),   l.unit_bytes(),
                    l.head_dim * l.elem(), l.record_bytes(), l.unit_bytes()};
    args.k_scales = layer.k_scales;
    args.v_scales = layer.v_scales;
  } else {
    args.strides = KvStrides::back_to_back(block_size, n_kv_heads, head_dim,
                                           static_cast<int>(dtype_row_bytes(k_cache.dtype, 1)));
  }
  args.out = static_cast<float*>(out.data);
  args.query_start = qstart;
  args.kv_len = kv_len;
  args.block_tables = tables;
  args.n_seqs = meta.n_seqs;
  args.max_blocks_per_seq = meta.max_blocks_per_seq;
  args.block_size = block_size;
  args.n_heads = n_heads;
  args.n_kv_heads = n_kv_heads;
  args.head_dim = head_dim;
  args.scale = meta.scale;
  reserve_scratch(paged_attention_scratch_floats(args));
  paged_attention(cpu_isa(), args, pool_, scratch_.data());
}

}  // namespace carpool
