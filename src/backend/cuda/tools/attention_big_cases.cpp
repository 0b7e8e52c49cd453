// Attention at realistic sizes (prefill 1024-4096 tokens, chunked prefill over a cached prefix,
// decode at batch 1/64/256 with contexts up to 8192, head_dim 64 and 128, GQA 4 and 8).
//
// Inputs are made on the device (random BF16 caches and queries) so the cases stay fast. The
// oracle is launch_reference_attention, an unfused f32 kernel that reads the cache through a
// host-made list of rows per sequence (not the block tables); it is itself checked against the
// CPU reference (double) on a moderate case first. Error metric: per output row (token, head),
// max |out - ref| / max |ref| of that row, maximized over rows, so one lost key in a long context
// cannot hide behind the large values of short rows.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/cuda_check.h"
#include "conformance/harness.h"
#include "cuda_extra_cases.h"
#include "util/check.h"

namespace carpool::cuda_tools {
namespace {

using conformance::CaseResult;
using conformance::make_result;
using conformance::Rng;
using conformance::Scratch;

struct Seq {
  int kv_len, q_len;
};

struct BigCase {
  int n_heads, n_kv_heads, head_dim;
  std::vector<Seq> seqs;
  float q_range = 2.f;  // q uniform in [-q_range, q_range]
  std::string label;
};

double row_normalized_error(const std::vector<float>& out, const std::vector<float>& ref,
                            int64_t row_len) {
  if (out.size() != ref.size()) return INFINITY;
  double worst = 0;
  for (size_t r0 = 0; r0 < out.size(); r0 += size_t(row_len)) {
    double mx = 0, err = 0;
    for (size_t i = r0; i < r0 + size_t(row_len); ++i) {
      if (!std::isfinite(out[i]) || !std::isfinite(ref[i])) return INFINITY;
      mx = std::max(mx, double(std::fabs(ref[i])));
      err = std::max(err, double(std::fabs(out[i] - ref[i])));
    }
    worst = std::max(worst, err / std::max(mx, 1e-6));
  }
  return worst;
}

// Runs one case: backend attention (F32 output) and the reference kernel; with `check_reference`
// also the CPU reference against the reference kernel (small cases only).
void run_case(Backend& b, Rng& rng, const BigCase& c, uint64_t seed, bool check_reference,
              std::vector<CaseResult>& out) {
  auto& cb = static_cast<cuda::CudaBackend&>(b);
  Scratch s(b);
  const int bs = 16, D = c.head_dim;
  int max_blocks = 1, total_blocks = 0, max_q = 0, max_kv = 0, n_tokens = 0;
  for (const Seq& q : c.seqs) {
    const int nb = (q.kv_len + bs - 1) / bs;
    max_blocks = std::max(max_blocks, nb);
    total_blocks += nb;
    max_q = std::max(max_q, q.q_len);
    max_kv = std::max(max_kv, q.kv_len);
    n_tokens += q.q_len;
  }
  KvCacheConfig kc{1, total_blocks + 5, bs, c.n_kv_heads, D};
  Result<KvCache> cache = b.alloc_kv(kc);
  CARPOOL_CHECK(cache.is_ok());
  cuda::launch_random_bf16(cb.launch_ctx(), cache->k[0].data, cache->k[0].numel(), seed, 1.f);
  cuda::launch_random_bf16(cb.launch_ctx(), cache->v[0].data, cache->v[0].numel(), seed + 1, 1.f);

  // Shuffled block tables; the reference's row lists follow them on the host.
  std::vector<int32_t> pool(size_t(kc.num_blocks));
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng.gen());
  const int n_seqs = int(c.seqs.size());
  std::vector<int32_t> tables(size_t(n_seqs) * max_blocks, 0), rows, row0, pos;
  std::vector<int32_t> qstart{0}, kv_len;
  size_t next = 0;
  for (int si = 0; si < n_seqs; ++si) {
    const Seq& q = c.seqs[size_t(si)];
    const int first_row = int(rows.size());
    for (int blk = 0; blk * bs < q.kv_len; ++blk)
      tables[size_t(si) * max_blocks + blk] = pool[next++];
    for (int p = 0; p < q.kv_len; ++p)
      rows.push_back(tables[size_t(si) * max_blocks + p / bs] * bs + p % bs);
    for (int j = 0; j < q.q_len; ++j) {
      row0.push_back(first_row);
      pos.push_back(q.kv_len - q.q_len + j);
    }
    qstart.push_back(qstart.back() + q.q_len);
    kv_len.push_back(q.kv_len);
  }
  const int q_dim = c.n_heads * D;
  Tensor qt = s.alloc(DType::kBF16, n_tokens, q_dim);
  cuda::launch_random_bf16(cb.launch_ctx(), qt.data, qt.numel(), seed + 2, c.q_range);

  AttentionMeta meta;
  meta.n_tokens = n_tokens;
  meta.n_seqs = n_seqs;
  meta.max_q_len = max_q;
  meta.max_kv_len = max_kv;
  meta.max_blocks_per_seq = max_blocks;
  meta.block_size = bs;
  meta.query_start = s.ints(qstart);
  meta.kv_len = s.ints(kv_len);
  meta.block_tables = s.ints(tables);
  meta.n_heads = c.n_heads;
  meta.n_kv_heads = c.n_kv_heads;
  meta.head_dim = D;
  meta.scale = 1.f / std::sqrt(float(D));
  Tensor yt = s.alloc(DType::kF32, n_tokens, q_dim);
  CUDA_CHECK(cudaMemsetAsync(yt.data, 0xff, yt.bytes(), cb.stream()));  // poison (NaN)
  b.attention(yt, qt, cache->k[0], cache->v[0], meta);
  std::vector<float> y = s.read(yt);

  Tensor rt = s.alloc(DType::kF32, n_tokens, q_dim);
  CUDA_CHECK(cudaMemsetAsync(rt.data, 0xff, rt.bytes(), cb.stream()));
  Tensor rows_t = s.ints(rows), row0_t = s.ints(row0), pos_t = s.ints(pos);
  cuda::launch_reference_attention(
      cb.launch_ctx(), qt.data, DType::kBF16, cache->k[0].data, cache->v[0].data,
      static_cast<const int32_t*>(rows_t.data), static_cast<const int32_t*>(row0_t.data),
      static_cast<const int32_t*>(pos_t.data), static_cast<float*>(rt.data), n_tokens, c.n_heads,
      c.n_kv_heads, D, meta.scale);
  std::vector<float> ref = s.read(rt);

  std::string name = c.label + conformance::format(" h%d/kv%d d%d", c.n_heads, c.n_kv_heads, D);
  if (check_reference) {
    // The reference kernel against a double-precision CPU computation on the same inputs.
    std::vector<float> qh = s.read(qt), kh = s.read(cache->k[0]), vh = s.read(cache->v[0]);
    std::vector<float> cpu(ref.size());
    const int group = c.n_heads / c.n_kv_heads, kv_dim = c.n_kv_heads * D;
    for (int t = 0; t < n_tokens; ++t) {
      for (int h = 0; h < c.n_heads; ++h) {
        const float* q = qh.data() + int64_t(t) * q_dim + h * D;
        const int kvh = h / group, np = pos[size_t(t)] + 1;
        std::vector<double> sc(static_cast<size_t>(np));
        double mx = -1e300;
        for (int p = 0; p < np; ++p) {
          const float* k =
              kh.data() + int64_t(rows[size_t(row0[size_t(t)] + p)]) * kv_dim + kvh * D;
          double d = 0;
          for (int e = 0; e < D; ++e) d += double(q[e]) * k[e];
          sc[size_t(p)] = d * meta.scale;
          mx = std::max(mx, sc[size_t(p)]);
        }
        double denom = 0;
        for (double& v : sc) denom += (v = std::exp(v - mx));
        for (int e = 0; e < D; ++e) {
          double acc = 0;
          for (int p = 0; p < np; ++p)
            acc += sc[size_t(p)] *
                   vh[size_t(int64_t(rows[size_t(row0[size_t(t)] + p)]) * kv_dim + kvh * D + e)];
          cpu[size_t(t) * q_dim + h * D + e] = float(acc / denom);
        }
      }
    }
    out.push_back(make_result("attention-ref", "f32 reference kernel vs CPU: " + name,
                              row_normalized_error(ref, cpu, D), 1e-4));
  }
  for (Tensor& t : cache->k) b.free(t);
  for (Tensor& t : cache->v) b.free(t);
  // bf16 probabilities in P V give ~2^-9 relative error per term; a lost or extra key in a
  // 4096-long row moves it by ~1/64.
  out.push_back(make_result("attention-big", name + " vs f32 reference",
                            row_normalized_error(y, ref, D), 1e-2));
}

std::vector<Seq> decode_batch(Rng& rng, int batch, int max_ctx) {
  std::vector<Seq> v;
  for (int i = 0; i < batch; ++i) v.push_back({int(rng.integer(1, max_ctx)), 1});
  v.back().kv_len = max_ctx;  // the longest context is always present
  return v;
}

}  // namespace

void run_attention_big_cases(Backend& b, uint64_t seed, std::vector<CaseResult>& out) {
  Rng rng(seed ^ 0xB16);
  uint64_t s = seed * 7919 + 17;
  // The oracle first: moderate mixed batches against the CPU.
  run_case(b, rng, {8, 2, 128, {{300, 300}, {513, 1}, {200, 37}, {90, 16}}, 2.f, "ref-check mixed"},
           s++, true, out);
  run_case(b, rng, {8, 1, 64, {{257, 257}, {1, 1}, {150, 15}}, 6.f, "ref-check big-q"}, s++, true,
           out);
  // Prefill on the tensor-core kernel.
  run_case(b, rng, {32, 8, 128, {{1024, 1024}}, 2.f, "prefill 1024"}, s++, false, out);
  run_case(b, rng, {32, 8, 128, {{4096, 4096}}, 2.f, "prefill 4096"}, s++, false, out);
  run_case(b, rng, {32, 4, 64, {{2048, 2048}}, 2.f, "prefill 2048"}, s++, false, out);
  run_case(b, rng, {32, 8, 128, {{1500, 1500}}, 8.f, "prefill 1500 big-q"}, s++, false, out);
  // Chunked prefill over a cached prefix, mixed with decodes and short chunks (both kernels in
  // one call): tile edges (q 16, 17, 63, 64, 65, 127), prefixes mid-block.
  run_case(b, rng,
           {32,
            8,
            128,
            {{3000, 1000},
             {8192, 1},
             {1, 1},
             {1100, 100},
             {77, 1},
             {300, 5},
             {64, 16},
             {65, 15},
             {81, 17},
             {2000, 63},
             {129, 64},
             {700, 65},
             {127, 127}},
            2.f,
            "chunked+decode mixed"},
           s++, false, out);
  run_case(b, rng, {32, 4, 64, {{4000, 2048}, {33, 1}, {1000, 999}, {20, 3}}, 2.f, "chunked mixed"},
           s++, false, out);
  // Decode (split-KV kernel).
  run_case(b, rng, {32, 8, 128, {{8192, 1}}, 2.f, "decode b1 ctx8192"}, s++, false, out);
  run_case(b, rng, {32, 8, 128, {{1, 1}}, 2.f, "decode b1 ctx1"}, s++, false, out);
  run_case(b, rng, {32, 4, 64, {{5000, 1}}, 2.f, "decode b1 ctx5000"}, s++, false, out);
  run_case(b, rng, {32, 8, 128, decode_batch(rng, 64, 4096), 2.f, "decode b64 ctx1..4096"}, s++,
           false, out);
  run_case(b, rng, {32, 8, 128, decode_batch(rng, 256, 2048), 2.f, "decode b256 ctx1..2048"}, s++,
           false, out);
  run_case(b, rng, {32, 4, 64, decode_batch(rng, 256, 1024), 2.f, "decode b256 ctx1..1024"}, s++,
           false, out);
  run_case(b, rng, {32, 1, 128, decode_batch(rng, 16, 3000), 2.f, "decode b16 MQA"}, s++, false,
           out);
  run_case(b, rng, {16, 16, 128, {{2048, 2048}, {999, 1}}, 2.f, "MHA mixed"}, s++, false, out);
}

}  // namespace carpool::cuda_tools
