// Conformance cases for the row-wise ops: embed, rmsnorm, add_rmsnorm, rope, kv_write, swiglu,
// gather_rows.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "backend/cpu/quants.h"
#include "conformance/harness.h"
#include "util/check.h"

namespace carpool::conformance {
namespace {

std::string nd(int64_t n, int64_t d) {
  return format("n%lld d%lld", static_cast<long long>(n), static_cast<long long>(d));
}

std::vector<int32_t> random_ids(Rng& rng, int64_t n, int64_t below) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int32_t& i : ids) i = static_cast<int32_t>(rng.integer(0, below - 1));
  return ids;
}

void embed_cases(Backend& b, Rng& rng, const Tolerances& tol, std::vector<CaseResult>& out) {
  const DType types[] = {DType::kF32,  DType::kF16,    DType::kBF16,  DType::kQ4_0, DType::kQ4_1,
                         DType::kQ8_0, DType::kQ2_K,   DType::kQ3_K,  DType::kQ4_K, DType::kQ5_K,
                         DType::kQ6_K, DType::kIQ4_NL, DType::kIQ4_XS};
  for (DType t : types) {
    const int64_t d = dtype_info(t).block_elems == kQKK ? 512 : (dtype_is_quantized(t) ? 96 : 37);
    for (int64_t n : {1, 7}) {
      Scratch s(b);
      const int64_t vocab = 11;
      std::vector<uint8_t> bytes = random_weight_bytes(rng, t, vocab, d);
      Result<Tensor> table = b.load_weight(HostWeight{t, bytes.data(), vocab, d});
      CARPOOL_CHECK(table.is_ok());
      std::vector<int32_t> ids = random_ids(rng, n, vocab);
      Tensor yt = s.alloc(b.activation_dtype(), n, d);
      b.embed(yt, *table, s.ints(ids));
      std::vector<float> y = s.read(yt), row(static_cast<size_t>(d));
      std::vector<double> ref;
      for (int32_t id : ids) {
        dequantize_row(t, bytes.data() + dtype_row_bytes(t, d) * id, row.data(), d);
        for (float v : row) ref.push_back(round_to(b.activation_dtype(), v));
      }
      out.push_back(make_result("embed", std::string(dtype_name(t)) + " " + nd(n, d),
                                normalized_max_error(y, ref), tol.ops));
    }
  }
}

// residual == nullptr: rmsnorm; else add_rmsnorm (checks both outputs).
void norm_case(Backend& b, Rng& rng, DType wt, int64_t n, int64_t d, bool fused, double tol,
               std::vector<CaseResult>& out) {
  Scratch s(b);
  const float eps = 1e-5f;
  std::vector<float> x = rng.normals(n * d);
  // Rows of very different magnitude.
  for (int64_t i = 0; i < n; ++i) {
    const float scale = (i % 3 == 0) ? 50.f : (i % 3 == 1 ? 0.02f : 1.f);
    for (int64_t j = 0; j < d; ++j) x[i * d + j] *= scale;
  }
  std::vector<float> res = rng.normals(n * d, 2.f);
  std::vector<float> w = rng.normals(d);
  Tensor xt = s.activations(x, n, d);
  Tensor rt = s.activations(res, n, d);
  Tensor wt_t = s.floats(wt, w, 1, d);
  Tensor yt = s.alloc(b.activation_dtype(), n, d);
  if (fused) {
    b.add_rmsnorm(rt, xt, wt_t, yt, eps);
  } else {
    b.rmsnorm(yt, xt, wt_t, eps);
  }
  std::vector<float> y = s.read(yt);
  std::vector<double> ref(y.size()), ref_res(y.size());
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0;
    for (int64_t j = 0; j < d; ++j) {
      double v = x[i * d + j];
      if (fused) v += res[i * d + j];
      ref_res[i * d + j] = v;
      ss += v * v;
    }
    const double inv = 1.0 / std::sqrt(ss / d + eps);
    for (int64_t j = 0; j < d; ++j) ref[i * d + j] = ref_res[i * d + j] * inv * w[j];
  }
  const std::string name = format("w %s ", std::string(dtype_name(wt)).c_str()) + nd(n, d);
  // Rows differ in scale by design, so the error is normalized per row.
  double err = 0;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<float> yr(y.begin() + i * d, y.begin() + (i + 1) * d);
    std::vector<double> rr(ref.begin() + i * d, ref.begin() + (i + 1) * d);
    err = std::max(err, normalized_max_error(yr, rr));
  }
  out.push_back(make_result(fused ? "add_rmsnorm" : "rmsnorm", name, err, tol));
  if (fused) {
    out.push_back(make_result("add_rmsnorm", name + " residual",
                              normalized_max_error(s.read(rt), ref_res), tol));
  }
}

void rope_case(Backend& b, Rng& rng, RopeStyle style, int64_t n, int n_heads, int head_dim,
               double tol, std::vector<CaseResult>& out) {
  Scratch s(b);
  const int half = head_dim / 2;
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int i = 0; i < half; ++i) {
    inv_freq[static_cast<size_t>(i)] =
        static_cast<float>(1.0 / std::pow(10000.0, 2.0 * i / head_dim));
  }
  std::vector<int32_t> pos(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    pos[static_cast<size_t>(i)] = i == 0 ? 0 : static_cast<int32_t>(rng.integer(0, 4096));
  std::vector<float> x = rng.normals(n * n_heads * head_dim);
  Tensor xt = s.activations(x, n, static_cast<int64_t>(n_heads) * head_dim);
  Tensor ft = s.floats(DType::kF32, inv_freq, 1, half);
  b.rope(xt, s.ints(pos), ft, n_heads, head_dim, style);
  std::vector<float> y = s.read(xt);
  std::vector<double> ref(y.size());
  for (int64_t i = 0; i < n; ++i) {
    for (int h = 0; h < n_heads; ++h) {
      const int64_t base = (i * n_heads + h) * head_dim;
      for (int j = 0; j < half; ++j) {
        // The angle is position * inv_freq rounded to f32, as the reference implementations form
        // it; cos and sin of that angle are then exact in double.
        const float theta = static_cast<float>(pos[static_cast<size_t>(i)]) * inv_freq[j];
        const int a = style == RopeStyle::kNeox ? j : 2 * j;
        const int c = style == RopeStyle::kNeox ? j + half : 2 * j + 1;
        const double x0 = x[base + a], x1 = x[base + c];
        ref[base + a] = x0 * std::cos(theta) - x1 * std::sin(theta);
        ref[base + c] = x0 * std::sin(theta) + x1 * std::cos(theta);
      }
    }
  }
  const std::string name =
      format("%s n%lld h%d d%d", style == RopeStyle::kNeox ? "neox" : "interleaved",
             static_cast<long long>(n), n_heads, head_dim);
  out.push_back(make_result("rope", name, normalized_max_error(y, ref), tol));
}

void kv_write_case(Backend& b, Rng& rng, int64_t n, int n_kv_heads, int head_dim, double tol,
                   std::vector<CaseResult>& out) {
  Scratch s(b);
  KvCacheConfig kc;
  kc.n_layers = 2;
  kc.num_blocks = 5;
  kc.block_size = 8;
  kc.n_kv_heads = n_kv_heads;
  kc.head_dim = head_dim;
  Result<KvCache> cache = b.alloc_kv(kc);
  CARPOOL_CHECK(cache.is_ok());
  const int64_t d = static_cast<int64_t>(n_kv_heads) * head_dim;
  std::vector<int32_t> slots(static_cast<size_t>(kc.num_blocks * kc.block_size));
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(slots.begin(), slots.end(), rng.gen());
  slots.resize(static_cast<size_t>(n));
  // Layer 0 first, then layer 1 at the same slots: each layer must keep its own values.
  std::vector<float> k[2], v[2];
  for (int l = 0; l < 2; ++l) {
    k[l] = rng.normals(n * d);
    v[l] = rng.normals(n * d);
    b.kv_write(cache->k[l], cache->v[l], s.activations(k[l], n, d), s.activations(v[l], n, d),
               s.ints(slots));
    // What the cache should hold: each value rounded to its type (an int8 cache: per KV head).
    round_kv_rows(cache->k[l].dtype, k[l], head_dim);
    round_kv_rows(cache->v[l].dtype, v[l], head_dim);
  }
  std::vector<float> got;
  std::vector<double> ref;
  for (int l = 0; l < 2; ++l) {
    for (int64_t i = 0; i < n; ++i) {
      const std::vector<float> kr = b.kv_cache_row(cache->k[l], slots[i]),
                               vr = b.kv_cache_row(cache->v[l], slots[i]);
      CARPOOL_CHECK(static_cast<int64_t>(kr.size()) == d && static_cast<int64_t>(vr.size()) == d);
      for (int64_t j = 0; j < d; ++j) {
        got.push_back(kr[static_cast<size_t>(j)]);
        got.push_back(vr[static_cast<size_t>(j)]);
        ref.push_back(k[l][i * d + j]);
        ref.push_back(v[l][i * d + j]);
      }
    }
  }
  b.free_kv(*cache);
  out.push_back(make_result("kv_write", nd(n, d), normalized_max_error(got, ref), tol));
}

void swiglu_case(Backend& b, Rng& rng, int64_t m, int64_t f, double tol,
                 std::vector<CaseResult>& out) {
  Scratch s(b);
  std::vector<float> g = rng.normals(m * f, 4.f), u = rng.normals(m * f);
  Tensor gt = s.activations(g, m, f), ut = s.activations(u, m, f);
  Tensor yt = s.alloc(b.activation_dtype(), m, f);
  b.swiglu(yt, gt, ut);
  std::vector<float> y = s.read(yt);
  std::vector<double> ref(y.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    ref[i] = static_cast<double>(g[i]) / (1.0 + std::exp(-static_cast<double>(g[i]))) * u[i];
  }
  out.push_back(make_result("swiglu", nd(m, f), normalized_max_error(y, ref), tol));
}

void gather_case(Backend& b, Rng& rng, int64_t rows, int64_t m, int64_t d,
                 std::vector<CaseResult>& out) {
  Scratch s(b);
  std::vector<float> x = rng.normals(rows * d);
  Tensor xt = s.activations(x, rows, d);
  std::vector<int32_t> idx = random_ids(rng, m, rows);
  Tensor yt = s.alloc(b.activation_dtype(), m, d);
  b.gather_rows(yt, xt, s.ints(idx));
  std::vector<float> y = s.read(yt);
  std::vector<double> ref;
  for (int32_t r : idx) {
    for (int64_t j = 0; j < d; ++j) ref.push_back(x[r * d + j]);
  }
  // A copy: exact.
  out.push_back(make_result("gather_rows",
                            format("rows%lld ", static_cast<long long>(rows)) + nd(m, d),
                            normalized_max_error(y, ref), 0.0));
}

}  // namespace

void run_row_op_cases(Backend& b, Rng& rng, const Tolerances& tol, const std::string& only,
                      std::vector<CaseResult>& out) {
  auto want = [&](const char* op) { return only.empty() || only == op; };
  if (want("embed")) embed_cases(b, rng, tol, out);
  for (DType wt : {DType::kF32, DType::kF16, DType::kBF16}) {
    // 4096: the CUDA backend's vector kernel; 16392 (2049 chunks of 8): past its register budget.
    for (auto [n, d] :
         {std::pair<int64_t, int64_t>{1, 1}, {3, 7}, {5, 64}, {4, 577}, {3, 4096}, {2, 16392}}) {
      if (want("rmsnorm")) norm_case(b, rng, wt, n, d, false, tol.ops, out);
      if (want("add_rmsnorm")) norm_case(b, rng, wt, n, d, true, tol.ops, out);
    }
  }
  if (want("rope")) {
    for (RopeStyle st : {RopeStyle::kNeox, RopeStyle::kInterleaved}) {
      rope_case(b, rng, st, 1, 1, 2, tol.ops, out);
      rope_case(b, rng, st, 5, 3, 64, tol.ops, out);
      rope_case(b, rng, st, 13, 2, 128, tol.ops, out);
      rope_case(b, rng, st, 4, 9, 80, tol.ops, out);
    }
  }
  if (want("kv_write")) {
    kv_write_case(b, rng, 1, 1, 8, tol.ops, out);
    kv_write_case(b, rng, 13, 3, 64, tol.ops, out);
    kv_write_case(b, rng, 40, 2, 80, tol.ops, out);
  }
  if (want("swiglu")) {
    swiglu_case(b, rng, 1, 1, tol.ops, out);
    swiglu_case(b, rng, 3, 1537, tol.ops, out);
    swiglu_case(b, rng, 17, 96, tol.ops, out);
  }
  if (want("gather_rows")) {
    gather_case(b, rng, 1, 1, 5, out);
    gather_case(b, rng, 9, 4, 577, out);
    gather_case(b, rng, 30, 30, 64, out);
  }
}

}  // namespace carpool::conformance
