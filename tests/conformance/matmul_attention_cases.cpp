// Conformance cases for matmul (every weight dtype) and paged attention (ragged batches).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "backend/cpu/quants.h"
#include "conformance/harness.h"
#include "util/check.h"

namespace carpool::conformance {
namespace {

std::string shape_name(int64_t m, int64_t k, int64_t n) {
  return format("m%lld k%lld n%lld", static_cast<long long>(m), static_cast<long long>(k),
                static_cast<long long>(n));
}

void matmul_case(Backend& b, Rng& rng, DType wt, int64_t m, int64_t k, int64_t n, bool with_bias,
                 double tol, std::vector<CaseResult>& out) {
  Scratch s(b);
  std::vector<uint8_t> wbytes = random_weight_bytes(rng, wt, n, k);
  HostWeight hw{wt, wbytes.data(), n, k};
  Result<Tensor> w = b.load_weight(hw);
  CARPOOL_CHECK(w.is_ok());
  std::vector<float> x = rng.normals(m * k);
  Tensor xt = s.activations(x, m, k);
  std::vector<float> bias = rng.normals(n, 0.3f);
  Tensor bt = s.floats(DType::kF32, bias, 1, n);
  Tensor yt = s.alloc(DType::kF32, m, n);
  b.matmul(yt, xt, *w, with_bias ? &bt : nullptr);
  std::vector<float> y = s.read(yt);

  std::vector<float> wf(static_cast<size_t>(k));
  std::vector<double> ref(static_cast<size_t>(m * n));
  const size_t row_bytes = dtype_row_bytes(wt, k);
  // Scale of a dot product whose terms cancel: the L2 norm of its terms.
  double term_norm = 0;
  for (int64_t j = 0; j < n; ++j) {
    dequantize_row(wt, wbytes.data() + row_bytes * static_cast<size_t>(j), wf.data(), k);
    for (int64_t i = 0; i < m; ++i) {
      double acc = with_bias ? bias[static_cast<size_t>(j)] : 0.0;
      double sq = 0;
      for (int64_t c = 0; c < k; ++c) {
        const double term = static_cast<double>(wf[c]) * x[i * k + c];
        acc += term;
        sq += term * term;
      }
      ref[static_cast<size_t>(i * n + j)] = acc;
      term_norm = std::max(term_norm, std::sqrt(sq));
    }
  }
  out.push_back(make_result(
      "matmul",
      std::string(dtype_name(wt)) + " " + shape_name(m, k, n) + (with_bias ? " +bias" : ""),
      normalized_max_error(y, ref, term_norm), tol));
}

}  // namespace

void run_matmul_cases(Backend& b, Rng& rng, const Tolerances& tol, std::vector<CaseResult>& out) {
  const DType float_types[] = {DType::kF32, DType::kF16, DType::kBF16};
  const DType block_types[] = {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0,
                               DType::kQ5_1, DType::kQ8_0, DType::kIQ4_NL};
  const DType k_types[] = {DType::kQ2_K, DType::kQ3_K, DType::kQ4_K,
                           DType::kQ5_K, DType::kQ6_K, DType::kIQ4_XS};
  const int64_t ms[] = {1, 3, 17};
  const int64_t ns[] = {1, 13, 67};
  for (DType t : float_types) {
    for (int64_t k : {1, 7, 33, 130, 576}) {
      for (int64_t m : ms) {
        for (int64_t n : ns) {
          matmul_case(b, rng, t, m, k, n, n == 13,
                      t == DType::kBF16 ? tol.matmul_bf16_w : tol.matmul_float_w, out);
        }
      }
    }
  }
  for (DType t : block_types) {
    for (int64_t k : {32, 224, 576}) {
      for (int64_t m : ms) {
        for (int64_t n : ns) matmul_case(b, rng, t, m, k, n, n == 13, tol.matmul_quant_w, out);
      }
    }
  }
  for (DType t : k_types) {
    for (int64_t k : {256, 768}) {
      for (int64_t m : ms) {
        for (int64_t n : ns) matmul_case(b, rng, t, m, k, n, n == 13, tol.matmul_quant_w, out);
      }
    }
  }
  // One larger shape per common model type (several row chunks per thread).
  matmul_case(b, rng, DType::kQ4_1, 5, 576, 1536, false, tol.matmul_quant_w, out);
  matmul_case(b, rng, DType::kQ6_K, 2, 1536, 577, true, tol.matmul_quant_w, out);
  matmul_case(b, rng, DType::kQ8_0, 33, 576, 300, false, tol.matmul_quant_w, out);
  // Whole groups of 16 rows with a bias (the CPU backend's packed weights) and a short tail.
  matmul_case(b, rng, DType::kQ4_0, 9, 512, 48, true, tol.matmul_quant_w, out);
  matmul_case(b, rng, DType::kQ4_K, 10, 512, 35, true, tol.matmul_quant_w, out);
  matmul_case(b, rng, DType::kQ2_K, 10, 512, 35, true, tol.matmul_quant_w, out);
  matmul_case(b, rng, DType::kQ3_K, 20, 768, 50, false, tol.matmul_quant_w, out);
}

namespace {

struct SeqSpec {
  int kv_len;  // context after this step
  int q_len;   // tokens in this step (1 = decode, kv_len = whole prefill, else a chunk)
};

struct AttnConfig {
  int n_heads, n_kv_heads, head_dim, block_size;
  float q_scale;  // multiplies q: large values test softmax stability
};

void attention_case(Backend& b, Rng& rng, const AttnConfig& c, const std::vector<SeqSpec>& seqs,
                    double tol, std::vector<CaseResult>& out) {
  Scratch s(b);
  const int n_seqs = static_cast<int>(seqs.size());
  int max_blocks = 1, total_blocks = 0, max_q = 0, max_kv = 0, n_tokens = 0;
  for (const SeqSpec& q : seqs) {
    const int nb = (q.kv_len + c.block_size - 1) / c.block_size;
    max_blocks = std::max(max_blocks, nb);
    total_blocks += nb;
    max_q = std::max(max_q, q.q_len);
    max_kv = std::max(max_kv, q.kv_len);
    n_tokens += q.q_len;
  }
  KvCacheConfig kc;
  kc.n_layers = 1;
  kc.num_blocks = total_blocks + 3;  // spare blocks that no sequence uses
  kc.block_size = c.block_size;
  kc.n_kv_heads = c.n_kv_heads;
  kc.head_dim = c.head_dim;
  Result<KvCache> cache = b.alloc_kv(kc);
  CARPOOL_CHECK(cache.is_ok());

  // Blocks handed out in a shuffled order so tables are not contiguous.
  std::vector<int32_t> pool(static_cast<size_t>(kc.num_blocks));
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng.gen());
  std::vector<int32_t> tables(static_cast<size_t>(n_seqs * max_blocks), 0);
  size_t next = 0;
  const int kv_dim = c.n_kv_heads * c.head_dim;
  const int q_dim = c.n_heads * c.head_dim;
  // Every sequence's whole context is written to the cache through kv_write.
  std::vector<int32_t> slots;
  for (int si = 0; si < n_seqs; ++si) {
    for (int blk = 0; blk * c.block_size < seqs[si].kv_len; ++blk) {
      tables[static_cast<size_t>(si * max_blocks + blk)] = pool[next++];
    }
    for (int p = 0; p < seqs[si].kv_len; ++p) {
      slots.push_back(tables[static_cast<size_t>(si * max_blocks + p / c.block_size)] *
                          c.block_size +
                      p % c.block_size);
    }
  }
  const int64_t n_kv_rows = static_cast<int64_t>(slots.size());
  std::vector<float> kh = rng.normals(n_kv_rows * kv_dim), vh = rng.normals(n_kv_rows * kv_dim);
  Tensor kt = s.activations(kh, n_kv_rows, kv_dim);
  Tensor vt = s.activations(vh, n_kv_rows, kv_dim);
  b.kv_write(cache->k[0], cache->v[0], kt, vt, s.ints(slots));
  // The reference reads K/V as the cache stores them.
  const DType cache_t = cache->k[0].dtype;
  round_kv_rows(cache_t, kh, c.head_dim);
  round_kv_rows(cache_t, vh, c.head_dim);

  std::vector<float> qh = rng.normals(static_cast<int64_t>(n_tokens) * q_dim, c.q_scale);
  std::vector<int32_t> qstart{0}, kv_len;
  for (const SeqSpec& q : seqs) {
    qstart.push_back(qstart.back() + q.q_len);
    kv_len.push_back(q.kv_len);
  }
  AttentionMeta meta;
  meta.n_tokens = n_tokens;
  meta.n_seqs = n_seqs;
  meta.max_q_len = max_q;
  meta.max_kv_len = max_kv;
  meta.max_blocks_per_seq = max_blocks;
  meta.block_size = c.block_size;
  meta.query_start = s.ints(qstart);
  meta.kv_len = s.ints(kv_len);
  meta.block_tables = s.ints(tables);
  meta.n_heads = c.n_heads;
  meta.n_kv_heads = c.n_kv_heads;
  meta.head_dim = c.head_dim;
  meta.scale = 1.f / std::sqrt(static_cast<float>(c.head_dim));
  Tensor qt = s.activations(qh, n_tokens, q_dim);
  Tensor yt = s.alloc(b.activation_dtype(), n_tokens, q_dim);
  b.attention(yt, qt, cache->k[0], cache->v[0], meta);
  std::vector<float> y = s.read(yt);
  b.free_kv(*cache);

  // Reference: per sequence, per token, per head, a two-pass softmax in double.
  std::vector<double> ref(y.size());
  const int group = c.n_heads / c.n_kv_heads;
  int64_t kv_row0 = 0;  // first row of this sequence in kh/vh (position order)
  for (int si = 0; si < n_seqs; ++si) {
    for (int j = 0; j < seqs[si].q_len; ++j) {
      const int tok = qstart[static_cast<size_t>(si)] + j;
      const int pos = seqs[si].kv_len - seqs[si].q_len + j;
      for (int h = 0; h < c.n_heads; ++h) {
        const float* q = qh.data() + static_cast<int64_t>(tok) * q_dim + h * c.head_dim;
        const int kvh = h / group;
        std::vector<double> sc(static_cast<size_t>(pos + 1));
        double mx = -1e300;
        for (int p = 0; p <= pos; ++p) {
          const float* k = kh.data() + (kv_row0 + p) * kv_dim + kvh * c.head_dim;
          double d = 0;
          for (int e = 0; e < c.head_dim; ++e) d += static_cast<double>(q[e]) * k[e];
          sc[static_cast<size_t>(p)] = d * meta.scale;
          mx = std::max(mx, sc[static_cast<size_t>(p)]);
        }
        double denom = 0;
        for (double& v : sc) denom += (v = std::exp(v - mx));
        for (int e = 0; e < c.head_dim; ++e) {
          double acc = 0;
          for (int p = 0; p <= pos; ++p) {
            acc += sc[static_cast<size_t>(p)] * vh[(kv_row0 + p) * kv_dim + kvh * c.head_dim + e];
          }
          ref[static_cast<size_t>(tok) * q_dim + h * c.head_dim + e] = acc / denom;
        }
      }
    }
    kv_row0 += seqs[si].kv_len;
  }
  std::string name = format("h%d/kv%d d%d bs%d%s seqs", c.n_heads, c.n_kv_heads, c.head_dim,
                            c.block_size, c.q_scale > 1.f ? " big-q" : "");
  for (const SeqSpec& q : seqs) name += format(" %d/%d", q.q_len, q.kv_len);
  out.push_back(make_result("attention", name, normalized_max_error(y, ref), tol));
}

}  // namespace

void run_attention_cases(Backend& b, Rng& rng, const Tolerances& tol,
                         std::vector<CaseResult>& out) {
  const AttnConfig configs[] = {
      {1, 1, 8, 16, 1.f},   // single head
      {4, 4, 16, 4, 1.f},   // MHA, small blocks
      {6, 2, 32, 16, 1.f},  // GQA 3:1
      {8, 1, 64, 8, 1.f},   // MQA
      {9, 3, 80, 16, 1.f},  // GQA, head_dim not a power of two
      {4, 2, 64, 16, 8.f},  // large scores: softmax must stay stable
  };
  const std::vector<std::vector<SeqSpec>> batches = {
      {{1, 1}},                              // first token
      {{37, 37}},                            // one prefill, partial last block
      {{17, 1}, {5, 1}, {64, 1}},            // decodes only, one at a block boundary
      {{23, 23}, {40, 1}, {50, 7}, {3, 2}},  // prefill + decode + chunked prefill mixed
      {{1, 1}, {97, 13}, {16, 16}},          // chunks ending mid-block and on a boundary
  };
  for (const AttnConfig& c : configs) {
    for (const auto& seqs : batches) attention_case(b, rng, c, seqs, tol.ops, out);
  }
}

}  // namespace carpool::conformance
