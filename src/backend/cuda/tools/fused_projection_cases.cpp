// Conformance cases for fused projections (Backend::prefers_fused_projections): each fused op
// against the unfused ops on the same random inputs.
//   load_weight_concat: the stacked weight holds exactly each part as load_weight makes it
//     (mixed GGUF types included), and one matmul with it matches the separate matmuls;
//   rope_kv_write_qkv: q, both caches (and the untouched qkv buffer) identical to rope_kv_write
//     on the separated slices, and to Backend's default (which goes through the host);
//   swiglu_fused: identical to swiglu on the separated halves.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

#include "conformance/harness.h"
#include "cuda_extra_cases.h"
#include "util/check.h"

namespace carpool::cuda_tools {
namespace {

using conformance::CaseResult;
using conformance::make_result;
using conformance::normalized_max_error;
using conformance::Rng;
using conformance::Scratch;

std::vector<double> to_double(const std::vector<float>& v) {
  return {v.begin(), v.end()};
}

// Columns [c0, c0 + w) of every row of a row-major [rows, cols] host matrix.
std::vector<float> columns(const std::vector<float>& m, int64_t rows, int64_t cols, int64_t c0,
                           int64_t w) {
  std::vector<float> out(static_cast<size_t>(rows * w));
  for (int64_t r = 0; r < rows; ++r) std::copy_n(m.begin() + r * cols + c0, w, out.begin() + r * w);
  return out;
}

std::vector<uint8_t> weight_bytes(Rng& rng, DType t, int64_t rows, int64_t cols) {
  if (t != DType::kF32) return conformance::random_weight_bytes(rng, t, rows, cols);
  std::vector<float> f = rng.normals(rows * cols, 0.05f);
  std::vector<uint8_t> bytes(f.size() * 4);
  std::memcpy(bytes.data(), f.data(), bytes.size());
  return bytes;
}

// Parts of [rows_i, cols] in types types_i, stacked; then x[m, cols] @ stack^T vs each part's.
void concat_case(Backend& b, Rng& rng, std::vector<DType> types, std::vector<int64_t> rows,
                 int64_t cols, int64_t m, std::vector<CaseResult>& out) {
  Scratch s(b);
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<HostWeight> parts;
  std::string name;
  int64_t total = 0;
  for (size_t i = 0; i < types.size(); ++i) {
    bytes.push_back(weight_bytes(rng, types[i], rows[i], cols));
    parts.push_back(HostWeight{types[i], bytes.back().data(), rows[i], cols});
    name +=
        conformance::format("%s%s[%lld]", i ? "|" : "", std::string(dtype_name(types[i])).c_str(),
                            static_cast<long long>(rows[i]));
    total += rows[i];
  }
  name += conformance::format(" x %lld", static_cast<long long>(cols));
  Result<Tensor> stacked = b.load_weight_concat(parts);
  if (!stacked) {
    out.push_back(make_result("load_weight_concat", name + " " + stacked.error(), INFINITY, 0));
    return;
  }
  std::vector<float> xh = rng.normals(m * cols);
  const Tensor x = s.activations(xh, m, cols);
  const DType act = b.activation_dtype();
  Tensor y_fused = s.alloc(act, m, total);
  b.matmul(y_fused, x, *stacked, nullptr);
  const std::vector<float> got_w = s.read(*stacked), got_y = s.read(y_fused);
  b.free(*stacked);
  std::vector<float> ref_w, ref_y(static_cast<size_t>(m * total));
  int64_t row0 = 0;
  for (const HostWeight& p : parts) {
    Result<Tensor> w = b.load_weight(p);
    CARPOOL_CHECK(w.is_ok());
    std::vector<float> wf = s.read(*w);
    ref_w.insert(ref_w.end(), wf.begin(), wf.end());
    Tensor y = s.alloc(act, m, p.rows);
    b.matmul(y, x, *w, nullptr);
    std::vector<float> yf = s.read(y);
    for (int64_t r = 0; r < m; ++r)
      std::copy_n(yf.begin() + r * p.rows, p.rows, ref_y.begin() + r * total + row0);
    b.free(*w);
    row0 += p.rows;
  }
  out.push_back(make_result("load_weight_concat", name + " vs parts",
                            normalized_max_error(got_w, to_double(ref_w)), 0.0));
  // cuBLAS may choose another kernel for the wider product: equal within a BF16 rounding.
  out.push_back(make_result("matmul", conformance::format("fused %lld rows: ", (long long)m) + name,
                            normalized_max_error(got_y, to_double(ref_y)), 8e-3));
}

// rope_kv_write_qkv (the backend's and Backend's default) against rope_kv_write on the slices.
void rope_qkv_case(Backend& b, Rng& rng, int n_tokens, int n_heads, int n_kv_heads, int head_dim,
                   RopeStyle style, std::vector<CaseResult>& out) {
  Scratch s(b);
  const int block_size = 16;
  const int64_t q_dim = int64_t(n_heads) * head_dim, kv_dim = int64_t(n_kv_heads) * head_dim;
  const int64_t width = q_dim + 2 * kv_dim;
  const KvCacheConfig kc{1, (n_tokens + block_size - 1) / block_size + 2, block_size, n_kv_heads,
                         head_dim};
  std::vector<float> qkvh = rng.normals(n_tokens * width);
  const Tensor qkv = s.activations(qkvh, n_tokens, width);  // rounds qkvh to what is stored
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
  const Tensor inv_t = s.floats(DType::kF32, inv, 1, head_dim / 2);
  const Tensor pos_t = s.ints(pos), slots_t = s.ints(slots);
  // 0: unfused ops on the slices; 1: the backend's fused op; 2: Backend's default fused op.
  std::vector<float> got[3][3];
  for (int way = 0; way < 3; ++way) {
    Result<KvCache> cache = b.alloc_kv(kc);
    CARPOOL_CHECK(cache.is_ok());
    Rng fill(99);  // the same starting contents in every cache
    for (Tensor* t : {&cache->k[0], &cache->v[0]}) {
      std::vector<float> f = fill.normals(t->numel());
      Tensor src = s.activations(f, t->rows, t->cols);
      std::vector<int32_t> r(static_cast<size_t>(t->rows));
      std::iota(r.begin(), r.end(), 0);
      b.gather_rows(*t, src, s.ints(r));
    }
    Tensor q = s.alloc(b.activation_dtype(), n_tokens, q_dim);
    if (way == 0) {
      std::vector<float> qh = columns(qkvh, n_tokens, width, 0, q_dim);
      std::vector<float> kh = columns(qkvh, n_tokens, width, q_dim, kv_dim);
      std::vector<float> vh = columns(qkvh, n_tokens, width, q_dim + kv_dim, kv_dim);
      q = s.activations(qh, n_tokens, q_dim);
      Tensor k = s.activations(kh, n_tokens, kv_dim), v = s.activations(vh, n_tokens, kv_dim);
      b.rope_kv_write(q, k, v, cache->k[0], cache->v[0], pos_t, inv_t, slots_t, n_heads, n_kv_heads,
                      head_dim, style);
    } else if (way == 1) {
      b.rope_kv_write_qkv(q, qkv, cache->k[0], cache->v[0], pos_t, inv_t, slots_t, n_heads,
                          n_kv_heads, head_dim, style);
    } else {
      b.Backend::rope_kv_write_qkv(q, qkv, cache->k[0], cache->v[0], pos_t, inv_t, slots_t, n_heads,
                                   n_kv_heads, head_dim, style);
    }
    got[way][0] = s.read(q);
    got[way][1] = s.read(cache->k[0]);
    got[way][2] = s.read(cache->v[0]);
    b.free_kv(*cache);
  }
  const std::string shape =
      conformance::format("%d tokens h%d/kv%d d%d %s", n_tokens, n_heads, n_kv_heads, head_dim,
                          style == RopeStyle::kNeox ? "neox" : "interleaved");
  for (int way = 1; way < 3; ++way) {
    double worst = 0;
    for (int i = 0; i < 3; ++i)
      worst = std::max(worst, normalized_max_error(got[way][i], to_double(got[0][i])));
    out.push_back(make_result("rope_kv_write_qkv",
                              std::string(way == 1 ? "fused" : "default") + " vs unfused " + shape,
                              worst, 0.0));
  }
  out.push_back(make_result("rope_kv_write_qkv", "qkv left unchanged " + shape,
                            normalized_max_error(s.read(qkv), to_double(qkvh)), 0.0));
}

// swiglu_fused on [m, 2f] against swiglu on the two halves.
void swiglu_fused_case(Backend& b, Rng& rng, int64_t m, int64_t f, std::vector<CaseResult>& out) {
  Scratch s(b);
  std::vector<float> guh = rng.normals(m * 2 * f, 2.f);
  const Tensor gate_up = s.activations(guh, m, 2 * f);
  std::vector<float> gh = columns(guh, m, 2 * f, 0, f), uh = columns(guh, m, 2 * f, f, f);
  const Tensor gate = s.activations(gh, m, f), up = s.activations(uh, m, f);
  const DType act = b.activation_dtype();
  Tensor y_fused = s.alloc(act, m, f), y_ref = s.alloc(act, m, f), y_default = s.alloc(act, m, f);
  b.swiglu_fused(y_fused, gate_up);
  b.Backend::swiglu_fused(y_default, gate_up);
  b.swiglu(y_ref, gate, up);
  const std::vector<double> ref = to_double(s.read(y_ref));
  const std::string shape = conformance::format("[%lld, 2 x %lld]", (long long)m, (long long)f);
  out.push_back(make_result("swiglu_fused", "fused vs unfused " + shape,
                            normalized_max_error(s.read(y_fused), ref), 0.0));
  out.push_back(make_result("swiglu_fused", "default vs unfused " + shape,
                            normalized_max_error(s.read(y_default), ref), 0.0));
}

}  // namespace

void run_fused_projection_cases(Backend& b, uint64_t seed, std::vector<CaseResult>& out) {
  Rng rng(seed ^ 0xF05E);
  // Llama-style q|k|v (GQA 4:1) in one type and in the mixed types of a Q4_K_M file; gate|up.
  concat_case(b, rng, {DType::kBF16, DType::kBF16, DType::kBF16}, {256, 64, 64}, 512, 5, out);
  concat_case(b, rng, {DType::kQ4_K, DType::kQ4_K, DType::kQ6_K}, {512, 128, 128}, 512, 64, out);
  concat_case(b, rng, {DType::kF32, DType::kQ8_0}, {300, 300}, 256, 33, out);
  concat_case(b, rng, {DType::kBF16, DType::kBF16, DType::kBF16}, {4096, 1024, 1024}, 4096, 256,
              out);
  rope_qkv_case(b, rng, 37, 32, 8, 128, RopeStyle::kNeox, out);
  rope_qkv_case(b, rng, 5, 14, 2, 64, RopeStyle::kInterleaved, out);
  rope_qkv_case(b, rng, 1, 32, 8, 128, RopeStyle::kInterleaved, out);
  swiglu_fused_case(b, rng, 64, 14336, out);
  swiglu_fused_case(b, rng, 3, 1000, out);
  swiglu_fused_case(b, rng, 1, 8960, out);
  swiglu_fused_case(b, rng, 2, 1001, out);  // not whole 16-byte chunks: the scalar kernel
}

}  // namespace carpool::cuda_tools
