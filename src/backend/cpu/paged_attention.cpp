// paged_attention: tiles and tasks, the online softmax over KV blocks, and the portable block
// kernel (the scheme is described in paged_attention.h).
#include "backend/cpu/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "util/check.h"

namespace carpool {
namespace {

// Query tokens [tok0, tok0 + n_tok) of one sequence, against KV heads [kv0, kv0 + n_kv) (and so
// query heads [kv0 * group, (kv0 + n_kv) * group)), over the positions of partition `part`.
struct AttnTask {
  int seq = 0;
  int tok0 = 0;
  int n_tok = 0;
  int kv0 = 0;
  int n_kv = 0;
  int part = -1;  // positions [part * partition, (part + 1) * partition) of the context,
                  // its rows' state kept at `partial` for merge_parts; -1: every
                  // partition, folded in order by the task, which writes `out`
  int64_t partial = -1;
  int64_t keys = 0;  // keys the task reads for all its tokens (its cost, for ordering)
};

// A tile and KV head whose context spans several partitions, each a task: their states, `parts`
// regions of rows * (head_dim + 2) floats from `partial`, folded into `out` at the end.
struct AttnMerge {
  int tok0 = 0;
  int n_tok = 0;
  int kv0 = 0;
  int n_kv = 0;
  int parts = 0;
  int64_t partial = 0;
};

struct AttnPlan {
  std::vector<AttnTask> tasks;  // costliest first
  std::vector<AttnMerge> merges;
  int64_t partial_floats = 0;
};

int tile_tokens(const PagedAttentionArgs& a) {
  return std::max(1, kAttnTileRows / (a.n_heads / a.n_kv_heads));
}

// Positions per partition: partition_keys rounded up to whole blocks.
int partition_positions(const PagedAttentionArgs& a) {
  const int blocks = std::max(1, (a.partition_keys + a.block_size - 1) / a.block_size);
  return blocks * a.block_size;
}

// Tasks of the batch, costliest first: the pool hands out contiguous chunks of tasks in order,
// so the long tails of causal prefill start early and the threads finish together. With enough
// tiles to keep the threads busy, a task takes every KV head and every partition of its tile
// (whole blocks are read, which the hardware prefetchers follow); with few (a few decoding
// sequences), one KV head and one partition, so that a long context is shared by the threads.
AttnPlan plan_tasks(const PagedAttentionArgs& a, int n_threads) {
  const int tile = tile_tokens(a);
  const int part_len = partition_positions(a);
  const int group = a.n_heads / a.n_kv_heads;
  int n_tiles = 0;
  for (int s = 0; s < a.n_seqs; ++s) {
    n_tiles += (a.query_start[s + 1] - a.query_start[s] + tile - 1) / tile;
  }
  const bool split = n_tiles < 4 * n_threads;
  const int kv_per_task = split ? 1 : a.n_kv_heads;
  AttnPlan plan;
  for (int s = 0; s < a.n_seqs; ++s) {
    const int q0 = a.query_start[s], q1 = a.query_start[s + 1];
    const int first_pos = a.kv_len[s] - (q1 - q0);
    for (int t0 = q0; t0 < q1; t0 += tile) {
      const int n_tok = std::min(tile, q1 - t0);
      const int64_t ctx0 = first_pos + (t0 - q0) + 1;  // context of the tile's first token
      const int64_t last_ctx = ctx0 + n_tok - 1;       // and of its last
      const int parts = static_cast<int>((last_ctx + part_len - 1) / part_len);
      const int64_t rows = static_cast<int64_t>(n_tok) * kv_per_task * group;
      const int64_t keys = n_tok * ctx0 + static_cast<int64_t>(n_tok) * (n_tok - 1) / 2;
      for (int h = 0; h < a.n_kv_heads; h += kv_per_task) {
        if (!split || parts == 1) {
          plan.tasks.push_back({s, t0, n_tok, h, kv_per_task, -1, -1, keys * kv_per_task});
          continue;
        }
        const int64_t partial = plan.partial_floats;
        plan.partial_floats += parts * rows * (a.head_dim + 2);
        plan.merges.push_back({t0, n_tok, h, kv_per_task, parts, partial});
        for (int p = 0; p < parts; ++p) {
          // Keys of the partition read by the tile's tokens (token i sees ctx0 + i positions).
          const int64_t lo = int64_t{p} * part_len, hi = lo + part_len;
          int64_t part_keys = 0;
          for (int i = 0; i < n_tok; ++i) {
            part_keys += std::clamp<int64_t>(ctx0 + i - lo, 0, hi - lo);
          }
          plan.tasks.push_back({s, t0, n_tok, h, kv_per_task, p,
                                partial + p * rows * (a.head_dim + 2), part_keys * kv_per_task});
        }
      }
    }
  }
  std::stable_sort(plan.tasks.begin(), plan.tasks.end(),
                   [](const AttnTask& x, const AttnTask& y) { return x.keys > y.keys; });
  return plan;
}

// Bytes of one cache element.
int kv_elem(const PagedAttentionArgs& a) {
  return a.kv_dtype == DType::kF16 ? 2 : a.kv_dtype == DType::kI8 ? 1 : 4;
}

// Block `block`'s K of KV head `head`: head_dim columns of block_size keys.
const void* k_block(const PagedAttentionArgs& a, int64_t block, int head) {
  return static_cast<const char*>(a.k_cache) + block * a.strides.block + head * a.strides.k_head;
}

// Block `block`'s V row 0 of KV head `head`; its rows v_row_stride(a) elements apart.
const void* v_block(const PagedAttentionArgs& a, int64_t block, int head) {
  return static_cast<const char*>(a.v_cache) + block * a.strides.block + head * a.strides.v_head;
}
int64_t v_row_stride(const PagedAttentionArgs& a) {
  return a.strides.v_row / kv_elem(a);
}

// An int8 cache's scales of KV head `head` in block `block` (kv_int8.h); null for float caches.
const float* block_scales(const PagedAttentionArgs& a, const float* scales, int64_t block,
                          int head) {
  if (scales == nullptr) return nullptr;
  return reinterpret_cast<const float*>(reinterpret_cast<const char*>(scales) +
                                        block * a.strides.scale_block +
                                        head * a.strides.scale_head);
}

// Asks for a block's K (k_bytes from k, column-major) and rows [0, n_rows) of its V (`width`
// bytes of each) while the current block is computed. Into L2 (locality 2): a whole block's
// lines requested into L1 fill its miss queue and stall (measured: decode at batch 16 about 10%
// faster than with L1 prefetches, which are about 12% faster than none). Within a task the next
// block is asked for by the block kernel, one KV head at a time (AttnKvBlock::next_k, fold_block),
// its K before the current block's scores and its V before P.V, so the requests are spread over
// the block's compute: asking for all heads at once took 5.1-6.3 ms where one head at a time
// took 2.9-3.4 ms (BM_AttentionDecode 16 x 160, f16), and K and V apart a further 10-15% less.
void prefetch_block(const void* k, const void* v, int64_t stride_bytes, int n_rows, int width_bytes,
                    int64_t k_bytes) {
  constexpr int kLine = 64;
  const char* kb = static_cast<const char*>(k);
  const char* vb = static_cast<const char*>(v);
  for (int64_t o = 0; o < k_bytes; o += kLine) __builtin_prefetch(kb + o, 0, 2);
  for (int i = 0; i < n_rows; ++i) {
    for (int d = 0; d < width_bytes; d += kLine)
      __builtin_prefetch(vb + i * stride_bytes + d, 0, 2);
  }
}

// Asks for the first KV block of a task (its K and V rows, the task's KV heads), so that a
// thread's next task finds it on its way while the current one computes.
void prefetch_first_block(const PagedAttentionArgs& a, const AttnTask& task) {
  const int first = std::max(0, task.part) * partition_positions(a);  // the first position
  const int64_t block =
      a.block_tables[static_cast<int64_t>(task.seq) * a.max_blocks_per_seq + first / a.block_size];
  const int q_len = a.query_start[task.seq + 1] - a.query_start[task.seq];
  const int last_ctx =
      a.kv_len[task.seq] - q_len + (task.tok0 - a.query_start[task.seq]) + task.n_tok;
  const int elem = kv_elem(a);
  for (int h = task.kv0; h < task.kv0 + task.n_kv; ++h) {
    prefetch_block(k_block(a, block, h), v_block(a, block, h), elem * v_row_stride(a),
                   std::min(a.block_size, last_ctx - first), elem * a.head_dim,
                   int64_t{elem} * a.head_dim * a.block_size);
  }
}

// The state of a tile's rows over the keys of one partition (AttnRowState's acc, max and denom
// of every row): [rows][head_dim] accumulators, then [rows] maxima, then [rows] denominators.
struct PartState {
  float* acc;
  float* max;
  float* denom;
};
PartState part_state(float* at, int rows, int hd) {
  float* acc = at;
  float* max = acc + static_cast<int64_t>(rows) * hd;
  return {acc, max, max + rows};
}

// The per-task view of the scratch and of the tile: rows are (token i of the tile, query head h
// of the task), r = i * heads + h.
struct TaskRows {
  int heads = 0;             // query heads of the task
  int ctx0 = 0;              // context length (position + 1) of the tile's token 0
  const float* q = nullptr;  // q of row (i, h) at q + i * q_cols + h * head_dim
  int64_t q_cols = 0;        // n_heads * head_dim
  PartState state{};         // the rows' state over the partition being computed
  float* scores = nullptr;   // block kernel scratch
};

// Folds cache block `block` (positions p0...) into every row of the task that reaches it, one KV
// head at a time, in calls of up to kAttnRowsPerCall rows; next_block (or -1): the block to ask
// for meanwhile, of which next_keys keys are read.
void fold_block(const PagedAttentionArgs& a, const AttnTask& task, const TaskRows& t,
                AttnBlockFn block_fn, int64_t block, int p0, int64_t next_block, int next_keys) {
  const int hd = a.head_dim;
  const int group = a.n_heads / a.n_kv_heads;
  // Tokens before the first whose context reaches this block end earlier.
  const int first_tok = std::max(0, p0 + 1 - t.ctx0);
  for (int g = 0; g < task.n_kv; ++g) {
    const int head = task.kv0 + g;
    AttnKvBlock kv{k_block(a, block, head),
                   v_block(a, block, head),
                   v_row_stride(a),
                   a.block_size,
                   block_scales(a, a.k_scales, block, head),
                   block_scales(a, a.v_scales, block, head)};
    if (next_block >= 0) {  // this KV head's part of the next block, asked for by the kernel
      kv.next_k = k_block(a, next_block, head);
      kv.next_v = v_block(a, next_block, head);
      kv.next_keys = next_keys;
      kv.next_k_scale = block_scales(a, a.k_scales, next_block, head);
      kv.next_v_scale = block_scales(a, a.v_scales, next_block, head);
    }
    AttnRowState batch[kAttnRowsPerCall];
    int batch_rows[kAttnRowsPerCall];  // the rows' indices r
    int n = 0;
    auto run_batch = [&] {
      block_fn(kv, batch, n, hd, a.scale, t.scores);
      for (int j = 0; j < n; ++j) {
        t.state.max[batch_rows[j]] = batch[j].max;
        t.state.denom[batch_rows[j]] = batch[j].denom;
      }
      n = 0;
    };
    for (int i = first_tok; i < task.n_tok; ++i) {
      for (int h = g * group; h < (g + 1) * group; ++h) {
        const int r = i * t.heads + h;
        batch_rows[n] = r;
        batch[n++] = {t.q + i * t.q_cols + h * hd, t.state.acc + static_cast<int64_t>(r) * hd,
                      t.state.max[r], t.state.denom[r], std::min(a.block_size, t.ctx0 + i - p0)};
        if (n == kAttnRowsPerCall) run_batch();
      }
    }
    if (n > 0) run_batch();
  }
}

void reset_state(const PartState& s, int rows, int hd) {
  std::fill(s.acc, s.acc + static_cast<int64_t>(rows) * hd, 0.f);
  std::fill(s.max, s.max + rows, -std::numeric_limits<float>::infinity());
  std::fill(s.denom, s.denom + rows, 0.f);
}

// Folds the next partition's state p into s (the partitions before it), row by row: both are
// rescaled to the larger max and summed. The same function, and so the same arithmetic, whether
// a task folds its own partitions or merge_parts folds those of several tasks (explicit fma: no
// contraction left to the compiler). A row that sees no key of p (max -inf) is left as it is.
void fold_state(const PartState& s, const PartState& p, int rows, int hd) {
  for (int r = 0; r < rows; ++r) {
    const float mp = p.max[r];
    if (mp == -std::numeric_limits<float>::infinity()) continue;
    const float m = std::max(s.max[r], mp);
    const float cs = std::exp(s.max[r] - m), cp = std::exp(mp - m);
    s.denom[r] = std::fma(p.denom[r], cp, s.denom[r] * cs);
    float* acc = s.acc + static_cast<int64_t>(r) * hd;
    const float* pacc = p.acc + static_cast<int64_t>(r) * hd;
    for (int d = 0; d < hd; ++d) acc[d] = std::fma(pacc[d], cp, acc[d] * cs);
    s.max[r] = m;
  }
}

// out = acc / denom for the rows of tokens [tok0, tok0 + n_tok) and the query heads of KV heads
// [kv0, kv0 + n_kv); row r = i * heads + h.
void write_out(const PagedAttentionArgs& a, const PartState& s, int tok0, int n_tok, int kv0,
               int n_kv) {
  const int hd = a.head_dim;
  const int group = a.n_heads / a.n_kv_heads, heads = n_kv * group;
  const int64_t q_cols = static_cast<int64_t>(a.n_heads) * hd;
  float* out = a.out + static_cast<int64_t>(tok0) * q_cols + static_cast<int64_t>(kv0) * group * hd;
  for (int i = 0; i < n_tok; ++i) {
    for (int h = 0; h < heads; ++h) {
      const int r = i * heads + h;
      const float inv = 1.f / s.denom[r];
      const float* src = s.acc + static_cast<int64_t>(r) * hd;
      float* dst = out + i * q_cols + h * hd;
      for (int d = 0; d < hd; ++d) dst[d] = src[d] * inv;
    }
  }
}

// One task: every row of the tile, block by block, over one partition (its state kept at
// task.partial for merge_parts) or over all of them, each folded into the first, then out.
void run_task(const PagedAttentionArgs& a, const AttnTask& task, AttnBlockFn block_fn,
              float* scratch, float* partials) {
  const int hd = a.head_dim;
  const int group = a.n_heads / a.n_kv_heads;
  const int64_t kv_off = static_cast<int64_t>(task.kv0) * hd;
  const int q0 = a.query_start[task.seq];
  const int q_len = a.query_start[task.seq + 1] - q0;

  TaskRows t;
  t.heads = task.n_kv * group;
  t.ctx0 = a.kv_len[task.seq] - q_len + (task.tok0 - q0) + 1;
  t.q_cols = static_cast<int64_t>(a.n_heads) * hd;
  t.q = a.q + static_cast<int64_t>(task.tok0) * t.q_cols + kv_off * group;
  const int rows = task.n_tok * t.heads;
  const int64_t state_floats = static_cast<int64_t>(rows) * (hd + 2);
  const PartState first = part_state(task.part >= 0 ? partials + task.partial : scratch, rows, hd);
  const PartState later = part_state(scratch + state_floats, rows, hd);
  t.scores = scratch + 2 * state_floats;

  const int32_t* table = a.block_tables + static_cast<int64_t>(task.seq) * a.max_blocks_per_seq;
  const int last_ctx = t.ctx0 + task.n_tok - 1;  // context of the tile's last token
  const int part_len = partition_positions(a);
  const int p_begin = std::max(0, task.part);
  const int p_end = task.part >= 0 ? task.part + 1 : (last_ctx + part_len - 1) / part_len;
  for (int part = p_begin; part < p_end; ++part) {
    const PartState& st = part == p_begin ? first : later;
    reset_state(st, rows, hd);
    t.state = st;
    const int begin = part * part_len, end = std::min(last_ctx, begin + part_len);
    for (int p0 = begin; p0 < end; p0 += a.block_size) {
      // The next block, asked for one KV head at a time inside fold_block.
      const int next = p0 + a.block_size;
      const int64_t next_block = next < end ? table[next / a.block_size] : -1;
      const int next_keys = next < end ? std::min(a.block_size, end - next) : 0;
      fold_block(a, task, t, block_fn, table[p0 / a.block_size], p0, next_block, next_keys);
    }
    if (part != p_begin) fold_state(first, later, rows, hd);
  }
  if (task.part < 0) write_out(a, first, task.tok0, task.n_tok, task.kv0, task.n_kv);
}

// The partitions' states of one tile and KV head, folded in order into the first, then out.
void merge_parts(const PagedAttentionArgs& a, const AttnMerge& m, float* partials) {
  const int hd = a.head_dim;
  const int rows = m.n_tok * m.n_kv * (a.n_heads / a.n_kv_heads);
  const int64_t state_floats = static_cast<int64_t>(rows) * (hd + 2);
  const PartState first = part_state(partials + m.partial, rows, hd);
  for (int p = 1; p < m.parts; ++p) {
    fold_state(first, part_state(partials + m.partial + p * state_floats, rows, hd), rows, hd);
  }
  write_out(a, first, m.tok0, m.n_tok, m.kv0, m.n_kv);
}

inline float kv_value(float x) {
  return x;
}
inline float kv_value(uint16_t h) {
  return f16_to_f32(h);
}
inline float kv_value(int8_t q) {
  return static_cast<float>(q);
}

// exp(x) as the SIMD levels' vexp takes it: 0 below kAttnExpFloor.
inline float attn_exp(float x) {
  return x < kAttnExpFloor ? 0.f : std::exp(x);
}

// Portable kernel: the plain loops, one row and one key at a time, with std::exp.
template <typename T>
void attn_row_portable(const AttnKvBlock& b, int hd, float scale, float* scores,
                       AttnRowState& row) {
  float block_max = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < row.n_keys; ++i) {
    const T* k = static_cast<const T*>(b.k) + i;  // dimension d at k[d * block_size]
    float even = 0.f, odd = 0.f;
    int d = 0;
    for (; d + 2 <= hd; d += 2) {
      even = std::fma(row.q[d], kv_value(k[d * b.block_size]), even);
      odd = std::fma(row.q[d + 1], kv_value(k[(d + 1) * b.block_size]), odd);
    }
    if (d < hd) even = std::fma(row.q[d], kv_value(k[d * b.block_size]), even);
    scores[i] = b.k_scale != nullptr ? (even + odd) * b.k_scale[i] * scale : (even + odd) * scale;
    block_max = std::max(block_max, scores[i]);
  }
  const float new_max = std::max(row.max, block_max);
  const float correction = attn_exp(row.max - new_max);  // 0 on the first block
  float sum = 0.f;
  for (int i = 0; i < row.n_keys; ++i) {
    scores[i] = attn_exp(scores[i] - new_max);
    sum += scores[i];
  }
  row.denom = row.denom * correction + sum;
  for (int d = 0; d < hd; ++d) row.acc[d] *= correction;
  for (int i = 0; i < row.n_keys; ++i) {
    const T* v = static_cast<const T*>(b.v) + i * b.v_stride;
    const float p = b.v_scale != nullptr ? scores[i] * b.v_scale[i] : scores[i];
    for (int d = 0; d < hd; ++d) row.acc[d] += p * kv_value(v[d]);
  }
  row.max = new_max;
}

template <typename T>
void attn_block_portable(const AttnKvBlock& b, AttnRowState* rows, int n_rows, int hd, float scale,
                         float* scores) {
  attn_prefetch_next_k(b, hd, sizeof(T));
  attn_prefetch_next_v(b, hd, sizeof(T));
  for (int r = 0; r < n_rows; ++r) attn_row_portable<T>(b, hd, scale, scores, rows[r]);
}

}  // namespace

AttnBlockFn attn_block_kernel(CpuIsa isa, int head_dim, DType kv_dtype) {
  CARPOOL_CHECK(cpu_supports(isa));
  CARPOOL_CHECK(kv_dtype == DType::kF32 || kv_dtype == DType::kF16 || kv_dtype == DType::kI8);
  AttnBlockFn fn = nullptr;
  if (isa == CpuIsa::kAvx512) fn = attn_block_avx512(head_dim, kv_dtype);
  if (!fn && isa >= CpuIsa::kAvx2) fn = attn_block_avx2(head_dim, kv_dtype);
  if (fn) return fn;
  if (kv_dtype == DType::kI8) return attn_block_portable<int8_t>;
  return kv_dtype == DType::kF16 ? attn_block_portable<uint16_t> : attn_block_portable<float>;
}

size_t paged_attention_scratch_floats(const PagedAttentionArgs& a) {
  const size_t rows = static_cast<size_t>(tile_tokens(a)) * a.n_heads;
  // Two partition states (the first, and the one being computed) and the block kernel's scores.
  return 2 * rows * (static_cast<size_t>(a.head_dim) + 2) +
         kAttnRowsPerCall * attn_scores_floats(a.block_size);
}

void paged_attention(CpuIsa isa, const PagedAttentionArgs& a, ThreadPool& pool,
                     std::vector<float>* scratch) {
  CARPOOL_CHECK(a.partition_keys > 0);
  CARPOOL_CHECK((a.kv_dtype == DType::kI8) == (a.k_scales != nullptr && a.v_scales != nullptr));
  const AttnBlockFn block_fn = attn_block_kernel(isa, a.head_dim, a.kv_dtype);
  const AttnPlan plan = plan_tasks(a, pool.n_threads());
  // The calling thread's, reused between calls (the workers are handed its address: a
  // thread_local named inside the lambdas would be each worker's own).
  thread_local std::vector<float> partial_store;
  if (partial_store.size() < static_cast<size_t>(plan.partial_floats)) {
    partial_store.resize(static_cast<size_t>(plan.partial_floats));
  }
  float* partials = partial_store.data();
  const std::vector<AttnTask>& tasks = plan.tasks;
  // Decode steps (one query token per sequence) claim their tasks coarsely (ThreadPool::Claims).
  bool decode = true;
  for (int s = 0; s < a.n_seqs && decode; ++s)
    decode = a.query_start[s + 1] - a.query_start[s] <= 1;
  pool.parallel_for(
      static_cast<int64_t>(tasks.size()), 1,
      [&](int64_t b, int64_t e, int t) {
        prefetch_first_block(a, tasks[static_cast<size_t>(b)]);
        for (int64_t i = b; i < e; ++i) {
          if (i + 1 < e) prefetch_first_block(a, tasks[static_cast<size_t>(i + 1)]);
          run_task(a, tasks[static_cast<size_t>(i)], block_fn, scratch[t].data(), partials);
        }
      },
      decode ? ThreadPool::Claims::kCoarse : ThreadPool::Claims::kFine);
  const int64_t n_merges = static_cast<int64_t>(plan.merges.size());
  pool.parallel_for(n_merges, 1, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) merge_parts(a, plan.merges[static_cast<size_t>(i)], partials);
  });
}

}  // namespace carpool
