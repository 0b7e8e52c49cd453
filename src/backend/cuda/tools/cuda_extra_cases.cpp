#include "cuda_extra_cases.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <string>

#include "backend/cpu/quants.h"
#include "conformance/harness.h"
#include "util/check.h"

namespace carpool::cuda_tools {
namespace {

using conformance::CaseResult;
using conformance::make_result;
using conformance::normalized_max_error;
using conformance::Rng;
using conformance::Scratch;

// load_weight on the device vs dequantize_row on the host, both rounded to BF16.
void dequant_cases(Backend& b, Rng& rng, std::vector<CaseResult>& out) {
  const DType types[] = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ8_0, DType::kQ4_0,
                         DType::kQ4_1, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K};
  for (DType t : types) {
    const int64_t rows = 7, cols = 512;
    std::vector<uint8_t> bytes;
    if (t == DType::kF32) {
      std::vector<float> f = rng.normals(rows * cols);
      bytes.resize(f.size() * 4);
      std::memcpy(bytes.data(), f.data(), bytes.size());
    } else {
      bytes = conformance::random_weight_bytes(rng, t, rows, cols);
    }
    HostWeight hw{t, bytes.data(), rows, cols};
    Result<Tensor> w = b.load_weight(hw);
    if (!w) {
      out.push_back(
          make_result("load_weight", std::string(dtype_name(t)) + " " + w.error(), INFINITY, 0));
      continue;
    }
    std::vector<double> ref(static_cast<size_t>(rows * cols));
    std::vector<float> row(static_cast<size_t>(cols));
    const size_t rb = dtype_row_bytes(t, cols);
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(t, bytes.data() + r * rb, row.data(), cols);
      for (int64_t c = 0; c < cols; ++c) ref[r * cols + c] = bf16_to_f32(f32_to_bf16(row[c]));
    }
    Scratch s(b);
    std::vector<float> got = s.read(*w);
    b.free(*w);
    // Exact up to one BF16 rounding of a differently ordered f32 product.
    out.push_back(make_result("load_weight", std::string(dtype_name(t)) + " [7, 512] to bf16",
                              normalized_max_error(got, ref), 4e-3));
  }
}

// Random weights made on the device: in range, centred, spread, different per seed.
void random_weight_cases(Backend& b, std::vector<CaseResult>& out) {
  const float scale = 0.05f;
  Result<Tensor> a = b.alloc_random_weight(DType::kQ4_K, 512, 1024, 7, scale);
  Result<Tensor> c = b.alloc_random_weight(DType::kQ4_K, 512, 1024, 8, scale);
  CARPOOL_CHECK(a.is_ok() && c.is_ok());
  Scratch s(b);
  std::vector<float> x = s.read(*a), y = s.read(*c);
  b.free(*a);
  b.free(*c);
  double sum = 0, sq = 0, max_abs = 0;
  size_t same = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sum += x[i];
    sq += double(x[i]) * x[i];
    max_abs = std::max(max_abs, double(std::fabs(x[i])));
    same += x[i] == y[i];
  }
  const double n = double(x.size());
  const double mean = sum / n, stddev = std::sqrt(sq / n - mean * mean);
  const double want_std = scale / std::sqrt(3.0);  // uniform on [-scale, scale]
  // One figure of merit: the worst relative deviation among the properties.
  double err = std::max({std::fabs(mean) / scale, std::fabs(stddev - want_std) / want_std,
                         max_abs > scale * 1.004 ? 1.0 : 0.0, double(same) / n > 0.01 ? 1.0 : 0.0});
  out.push_back(
      make_result("alloc_random_weight", "uniform [-0.05, 0.05] 512x1024, 2 seeds", err, 0.02));
}

// Decode and short chunks over long contexts: the split-KV (flash-decoding) path.
void long_attention_case(Backend& b, Rng& rng, int n_heads, int n_kv_heads, int head_dim,
                         const std::vector<std::pair<int, int>>& seqs,  // (kv_len, q_len)
                         std::vector<CaseResult>& out) {
  Scratch s(b);
  const int block_size = 16;
  int max_blocks = 1, total_blocks = 0, max_kv = 0, max_q = 0, n_tokens = 0;
  for (auto [kv, q] : seqs) {
    const int nb = (kv + block_size - 1) / block_size;
    max_blocks = std::max(max_blocks, nb);
    total_blocks += nb;
    max_kv = std::max(max_kv, kv);
    max_q = std::max(max_q, q);
    n_tokens += q;
  }
  KvCacheConfig kc{1, total_blocks + 2, block_size, n_kv_heads, head_dim};
  Result<KvCache> cache = b.alloc_kv(kc);
  CARPOOL_CHECK(cache.is_ok());
  std::vector<int32_t> pool(static_cast<size_t>(kc.num_blocks));
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng.gen());
  std::vector<int32_t> tables(seqs.size() * max_blocks, 0), slots;
  size_t next = 0;
  for (size_t si = 0; si < seqs.size(); ++si) {
    for (int blk = 0; blk * block_size < seqs[si].first; ++blk)
      tables[si * max_blocks + blk] = pool[next++];
    for (int p = 0; p < seqs[si].first; ++p)
      slots.push_back(tables[si * max_blocks + p / block_size] * block_size + p % block_size);
  }
  const int kv_dim = n_kv_heads * head_dim, q_dim = n_heads * head_dim;
  const int64_t n_rows = static_cast<int64_t>(slots.size());
  std::vector<float> kh = rng.normals(n_rows * kv_dim), vh = rng.normals(n_rows * kv_dim);
  b.kv_write(cache->k[0], cache->v[0], s.activations(kh, n_rows, kv_dim),
             s.activations(vh, n_rows, kv_dim), s.ints(slots));
  std::vector<float> qh = rng.normals(int64_t(n_tokens) * q_dim, 2.f);
  std::vector<int32_t> qstart{0}, kv_len;
  for (auto [kv, q] : seqs) {
    qstart.push_back(qstart.back() + q);
    kv_len.push_back(kv);
  }
  AttentionMeta meta;
  meta.n_tokens = n_tokens;
  meta.n_seqs = static_cast<int>(seqs.size());
  meta.max_q_len = max_q;
  meta.max_kv_len = max_kv;
  meta.max_blocks_per_seq = max_blocks;
  meta.block_size = block_size;
  meta.query_start = s.ints(qstart);
  meta.kv_len = s.ints(kv_len);
  meta.block_tables = s.ints(tables);
  meta.n_heads = n_heads;
  meta.n_kv_heads = n_kv_heads;
  meta.head_dim = head_dim;
  meta.scale = 1.f / std::sqrt(float(head_dim));
  Tensor qt = s.activations(qh, n_tokens, q_dim);
  Tensor yt = s.alloc(DType::kF32, n_tokens, q_dim);  // F32 output path too
  b.attention(yt, qt, cache->k[0], cache->v[0], meta);
  std::vector<float> y = s.read(yt);
  for (Tensor& t : cache->k) b.free(t);
  for (Tensor& t : cache->v) b.free(t);

  std::vector<double> ref(y.size());
  const int group = n_heads / n_kv_heads;
  int64_t row0 = 0;
  for (size_t si = 0; si < seqs.size(); ++si) {
    const auto [kvl, ql] = seqs[si];
    for (int j = 0; j < ql; ++j) {
      const int tok = qstart[si] + j, pos = kvl - ql + j;
      for (int h = 0; h < n_heads; ++h) {
        const float* q = qh.data() + int64_t(tok) * q_dim + h * head_dim;
        const int kvh = h / group;
        std::vector<double> sc(static_cast<size_t>(pos + 1));
        double mx = -1e300;
        for (int p = 0; p <= pos; ++p) {
          const float* k = kh.data() + (row0 + p) * kv_dim + kvh * head_dim;
          double d = 0;
          for (int e = 0; e < head_dim; ++e) d += double(q[e]) * k[e];
          sc[p] = d * meta.scale;
          mx = std::max(mx, sc[p]);
        }
        double denom = 0;
        for (double& v : sc) denom += (v = std::exp(v - mx));
        for (int e = 0; e < head_dim; ++e) {
          double acc = 0;
          for (int p = 0; p <= pos; ++p)
            acc += sc[p] * vh[(row0 + p) * kv_dim + kvh * head_dim + e];
          ref[size_t(tok) * q_dim + h * head_dim + e] = acc / denom;
        }
      }
    }
    row0 += kvl;
  }
  std::string name = "long h" + std::to_string(n_heads) + "/kv" + std::to_string(n_kv_heads) +
                     " d" + std::to_string(head_dim) + " seqs";
  for (auto [kv, q] : seqs) {
    char part[32];  // (snprintf: GCC 12 warns falsely on a std::string operator+ chain)
    std::snprintf(part, sizeof part, " %d/%d", q, kv);
    name += part;
  }
  out.push_back(make_result("attention", name, normalized_max_error(y, ref), 2e-2));
}

// out[m, n] = x[m, k] w[n, k]^T at a model's widths (cuBLAS picks other kernels there).
void wide_matmul_case(Backend& b, Rng& rng, int64_t m, int64_t k, int64_t n, DType out_t,
                      std::vector<CaseResult>& out) {
  Scratch s(b);
  std::vector<float> xh = rng.normals(m * k), wh = rng.normals(n * k, 0.02f);
  Tensor x = s.activations(xh, m, k);
  Tensor w = s.floats(DType::kBF16, wh, n, k);
  Tensor y = s.alloc(out_t, m, n);
  b.matmul(y, x, w, nullptr);
  std::vector<float> got = s.read(y);
  std::vector<double> ref(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t e = 0; e < k; ++e) acc += double(xh[i * k + e]) * wh[j * k + e];
      ref[i * n + j] = acc;
    }
  out.push_back(make_result("matmul",
                            "bf16 wide " + std::to_string(m) + "x" + std::to_string(k) + "->" +
                                std::to_string(n) + " out " + std::string(dtype_name(out_t)),
                            normalized_max_error(got, ref), 2e-2));
}

// The fused rope + kv_write against the same ops one by one (Backend's default composition):
// q, k and both caches must be identical, including cache rows left alone for slots of -1.
void rope_kv_write_case(Backend& b, Rng& rng, int n_tokens, int n_heads, int n_kv_heads,
                        int head_dim, RopeStyle style, std::vector<CaseResult>& out) {
  Scratch s(b);
  const int block_size = 16, q_dim = n_heads * head_dim, kv_dim = n_kv_heads * head_dim;
  const KvCacheConfig kc{1, (n_tokens + block_size - 1) / block_size + 2, block_size, n_kv_heads,
                         head_dim};
  std::vector<float> qh = rng.normals(int64_t(n_tokens) * q_dim);
  std::vector<float> kh = rng.normals(int64_t(n_tokens) * kv_dim);
  std::vector<float> vh = rng.normals(int64_t(n_tokens) * kv_dim);
  std::vector<float> inv(static_cast<size_t>(head_dim / 2));
  for (size_t i = 0; i < inv.size(); ++i) inv[i] = std::pow(10000.f, -2.f * i / head_dim);
  std::vector<int32_t> pos(n_tokens), slots(n_tokens);
  std::vector<int32_t> order(static_cast<size_t>(kc.num_blocks) * block_size);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng.gen());
  for (int t = 0; t < n_tokens; ++t) {
    pos[t] = static_cast<int32_t>(rng.integer(0, 5000));
    slots[t] = t % 5 == 3 ? -1 : order[t];  // some rows pad a batch: not written
  }
  const Tensor v = s.activations(vh, n_tokens, kv_dim),
               inv_t = s.floats(DType::kF32, inv, 1, head_dim / 2);
  const Tensor pos_t = s.ints(pos), slots_t = s.ints(slots);
  std::vector<float> got[2][4];
  for (int fused = 0; fused < 2; ++fused) {
    std::vector<float> qc = qh, kc2 = kh;
    Tensor q = s.activations(qc, n_tokens, q_dim), k = s.activations(kc2, n_tokens, kv_dim);
    Result<KvCache> cache = b.alloc_kv(kc);
    CARPOOL_CHECK(cache.is_ok());
    Rng fill(99);  // the same starting contents in both caches
    for (Tensor* t : {&cache->k[0], &cache->v[0]}) {
      std::vector<float> f = fill.normals(t->numel());
      Tensor src = s.activations(f, t->rows, t->cols);
      b.gather_rows(*t, src, s.ints([&] {
        std::vector<int32_t> r(static_cast<size_t>(t->rows));
        std::iota(r.begin(), r.end(), 0);
        return r;
      }()));
    }
    if (fused) {
      b.rope_kv_write(q, k, v, cache->k[0], cache->v[0], pos_t, inv_t, slots_t, n_heads, n_kv_heads,
                      head_dim, style);
    } else {
      b.Backend::rope_kv_write(q, k, v, cache->k[0], cache->v[0], pos_t, inv_t, slots_t, n_heads,
                               n_kv_heads, head_dim, style);
    }
    got[fused][0] = s.read(q);
    got[fused][1] = s.read(k);
    got[fused][2] = s.read(cache->k[0]);
    got[fused][3] = s.read(cache->v[0]);
    b.free_kv(*cache);
  }
  double worst = 0;
  for (int i = 0; i < 4; ++i) {
    std::vector<double> ref(got[0][i].begin(), got[0][i].end());
    worst = std::max(worst, normalized_max_error(got[1][i], ref));
  }
  out.push_back(make_result(
      "rope_kv_write",
      conformance::format("fused vs unfused %d tokens h%d/kv%d d%d %s", n_tokens, n_heads,
                          n_kv_heads, head_dim, style == RopeStyle::kNeox ? "neox" : "interleaved"),
      worst, 0.0));
}

}  // namespace

std::vector<CaseResult> run_cuda_extra_cases(Backend& b, uint64_t seed, double tolerance) {
  (void)tolerance;
  std::vector<CaseResult> out;
  Rng rng(seed ^ 0xC0DA);
  dequant_cases(b, rng, out);
  random_weight_cases(b, out);
  long_attention_case(b, rng, 32, 8, 128, {{4099, 1}, {1000, 1}, {2500, 3}}, out);
  long_attention_case(b, rng, 9, 3, 64, {{3001, 1}}, out);
  long_attention_case(b, rng, 4, 4, 96, {{777, 1}, {300, 1}, {1, 1}}, out);
  wide_matmul_case(b, rng, 1, 4096, 1024, DType::kBF16, out);
  wide_matmul_case(b, rng, 64, 4096, 1536, DType::kF32, out);
  wide_matmul_case(b, rng, 257, 2048, 513, DType::kBF16, out);
  // Decode widths on the small-batch kernel (up to 8 rows): n not a multiple of its rows per warp.
  wide_matmul_case(b, rng, 2, 14336, 4096, DType::kBF16, out);
  wide_matmul_case(b, rng, 5, 4096, 1001, DType::kBF16, out);
  wide_matmul_case(b, rng, 8, 4096, 6144, DType::kF32, out);
  rope_kv_write_case(b, rng, 37, 32, 8, 128, RopeStyle::kNeox, out);
  rope_kv_write_case(b, rng, 5, 14, 2, 64, RopeStyle::kInterleaved, out);
  run_fused_projection_cases(b, seed, out);
  return out;
}

}  // namespace carpool::cuda_tools
