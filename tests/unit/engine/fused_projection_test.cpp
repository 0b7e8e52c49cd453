// Fused projections in LlamaModel (Backend::prefers_fused_projections), checked on the CPU
// against the CPU backend with fused_projections off (separate projections, the reference):
//  - a backend that forwards every op to the CPU backend but uses Backend's default
//    load_weight_concat, rope_kv_write_qkv and swiglu_fused;
//  - the CPU backend's own fused path (its load_weight_concat, in place or copied, and its
//    one-pass rope_kv_write_qkv and swiglu_fused), exact and with 8-bit activations, and with
//    parts of different types (then only the stacks of one type are fused).
// Logits and KV cache must match on the same weights.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_features.h"
#include "model/llama.h"

namespace carpool {
namespace {

CpuBackendOptions exact_options(bool fused = false) {
  CpuBackendOptions o;
  o.n_threads = 1;
  o.quantize_activations = false;
  o.fused_projections = fused;
  return o;
}

// The CPU backend plus a request for fused projections; counts the ops the model calls.
class FusedCpuBackend final : public Backend {
 public:
  FusedCpuBackend() : cpu_(make_cpu_backend(exact_options())) {}

  std::string name() const override { return "cpu-fused"; }
  std::string device_name() const override { return cpu_->device_name(); }
  DType activation_dtype() const override { return cpu_->activation_dtype(); }
  BackendMemoryInfo memory_info() const override { return cpu_->memory_info(); }
  Result<Tensor> alloc(DType t, int64_t r, int64_t c) override { return cpu_->alloc(t, r, c); }
  void free(Tensor& t) override { cpu_->free(t); }
  Result<Tensor> load_weight(const HostWeight& w) override { return cpu_->load_weight(w); }
  Result<KvCache> alloc_kv(const KvCacheConfig& c) override { return cpu_->alloc_kv(c); }
  std::vector<float> kv_cache_row(const Tensor& cache, int64_t slot) override {
    return cpu_->kv_cache_row(cache, slot);
  }
  void upload(Tensor dst, const void* host, size_t bytes) override {
    cpu_->upload(dst, host, bytes);
  }
  void download(void* host, const Tensor& src, size_t bytes) override {
    cpu_->download(host, src, bytes);
  }
  void synchronize() override { cpu_->synchronize(); }
  void embed(Tensor out, const Tensor& table, const Tensor& ids) override {
    cpu_->embed(out, table, ids);
  }
  void rmsnorm(Tensor out, const Tensor& x, const Tensor& w, float eps) override {
    cpu_->rmsnorm(out, x, w, eps);
  }
  void add_rmsnorm(Tensor residual, const Tensor& x, const Tensor& w, Tensor out,
                   float eps) override {
    cpu_->add_rmsnorm(residual, x, w, out, eps);
  }
  void matmul(Tensor out, const Tensor& x, const Tensor& w, const Tensor* bias) override {
    ++matmuls;
    cpu_->matmul(out, x, w, bias);
  }
  void rope(Tensor x, const Tensor& positions, const Tensor& inv_freq, int n_heads, int head_dim,
            RopeStyle style) override {
    cpu_->rope(x, positions, inv_freq, n_heads, head_dim, style);
  }
  void kv_write(Tensor k_cache, Tensor v_cache, const Tensor& k, const Tensor& v,
                const Tensor& slots) override {
    cpu_->kv_write(k_cache, v_cache, k, v, slots);
  }
  void attention(Tensor out, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                 const AttentionMeta& m) override {
    cpu_->attention(out, q, k_cache, v_cache, m);
  }
  void swiglu(Tensor out, const Tensor& gate, const Tensor& up) override {
    cpu_->swiglu(out, gate, up);
  }
  void gather_rows(Tensor out, const Tensor& x, const Tensor& idx) override {
    cpu_->gather_rows(out, x, idx);
  }

  bool prefers_fused_projections() const override { return true; }
  Result<Tensor> load_weight_concat(std::span<const HostWeight> parts) override {
    ++concats;
    return Backend::load_weight_concat(parts);
  }
  void rope_kv_write_qkv(Tensor q_out, const Tensor& qkv, Tensor k_cache, Tensor v_cache,
                         const Tensor& positions, const Tensor& inv_freq, const Tensor& slots,
                         int n_heads, int n_kv_heads, int head_dim, RopeStyle style) override {
    ++qkv_ops;
    Backend::rope_kv_write_qkv(q_out, qkv, k_cache, v_cache, positions, inv_freq, slots, n_heads,
                               n_kv_heads, head_dim, style);
  }
  void swiglu_fused(Tensor out, const Tensor& gate_up) override {
    ++swiglu_ops;
    Backend::swiglu_fused(out, gate_up);
  }

  int matmuls = 0, concats = 0, qkv_ops = 0, swiglu_ops = 0;

 private:
  std::unique_ptr<Backend> cpu_;
};

// A tiny Llama-style model with random weights of `dtype` (norms and biases F32).
struct TinySource {
  ModelSource src;
  std::vector<std::vector<uint8_t>> bytes;

  // v_dtype: attn_v's type (default: dtype), as Q4_K_M files keep attn_v wider.
  TinySource(DType dtype, bool qkv_bias, uint32_t seed, std::optional<DType> v_dtype = {}) {
    ModelConfig& c = src.config;
    c.name = "tiny";
    c.vocab_size = 96;
    c.hidden_size = 64;
    c.intermediate_size = 160;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 16;
    c.qkv_bias = qkv_bias;
    c.rope_style = RopeStyle::kNeox;
    std::mt19937 gen(seed);
    const int64_t h = c.hidden_size, ff = c.intermediate_size, q = c.n_heads * c.head_dim,
                  kv = c.n_kv_heads * c.head_dim;
    add("token_embd.weight", dtype, c.vocab_size, h, 1.f, gen);
    add("output_norm.weight", DType::kF32, 1, h, 0.f, gen);
    add("output.weight", dtype, c.vocab_size, h, 0.125f, gen);
    for (int i = 0; i < c.n_layers; ++i) {
      const std::string p = "blk." + std::to_string(i) + ".";
      add(p + "attn_norm.weight", DType::kF32, 1, h, 0.f, gen);
      add(p + "attn_q.weight", dtype, q, h, 0.125f, gen);
      add(p + "attn_k.weight", dtype, kv, h, 0.125f, gen);
      add(p + "attn_v.weight", v_dtype.value_or(dtype), kv, h, 0.125f, gen);
      add(p + "attn_output.weight", dtype, h, q, 0.125f, gen);
      if (qkv_bias) {
        add(p + "attn_q.bias", DType::kF32, 1, q, 0.1f, gen);
        add(p + "attn_k.bias", DType::kF32, 1, kv, 0.1f, gen);
        add(p + "attn_v.bias", DType::kF32, 1, kv, 0.1f, gen);
      }
      add(p + "ffn_norm.weight", DType::kF32, 1, h, 0.f, gen);
      add(p + "ffn_gate.weight", dtype, ff, h, 0.125f, gen);
      add(p + "ffn_up.weight", dtype, ff, h, 0.125f, gen);
      add(p + "ffn_down.weight", dtype, h, ff, 0.08f, gen);
    }
  }

  // scale 0: a norm weight (values near 1).
  void add(const std::string& name, DType dtype, int64_t rows, int64_t cols, float scale,
           std::mt19937& gen) {
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    std::vector<float> f(static_cast<size_t>(rows * cols));
    for (float& x : f) x = scale == 0.f ? 1.f + 0.1f * u(gen) : scale * u(gen);
    std::vector<uint8_t> b(dtype_row_bytes(dtype, cols) * static_cast<size_t>(rows));
    if (dtype == DType::kF32) {
      std::memcpy(b.data(), f.data(), b.size());
    } else {
      ASSERT_EQ(dtype, DType::kQ8_0);  // blocks of 32: one f16 scale, 32 int8
      for (size_t blk = 0; blk < f.size() / 32; ++blk) {
        float amax = 0;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(f[blk * 32 + j]));
        const float d = amax / 127.f;
        auto* out = reinterpret_cast<BlockQ8_0*>(b.data()) + blk;
        out->d = f32_to_f16(d);
        for (int j = 0; j < 32; ++j)
          out->qs[j] = static_cast<int8_t>(d == 0 ? 0 : std::lround(f[blk * 32 + j] / d));
      }
    }
    bytes.push_back(std::move(b));
    src.weights[name] = HostWeight{dtype, bytes.back().data(), rows, cols};
  }
};

// Runs a 7-token prefill and 3 decode steps of one sequence (block size 16); returns every
// step's logits and the KV cache rows written.
std::vector<float> run(Backend& be, const ModelSource& src) {
  ModelLimits lim;
  lim.max_batch_tokens = 16;
  lim.max_seqs = 2;
  lim.max_logit_rows = 2;
  lim.max_blocks_per_seq = 2;
  auto m = LlamaModel::load(be, src, lim);
  EXPECT_TRUE(m.is_ok()) << m.status().message();
  if (!m.is_ok()) return {};
  auto kv = (*m)->alloc_kv_cache(2, 16);
  EXPECT_TRUE(kv.is_ok());
  std::vector<float> all;
  std::vector<int32_t> ids = {5, 17, 3, 90, 41, 8, 66}, pos, slots;
  const std::vector<int32_t> btab = {1, 0};
  int32_t len = 0;
  for (int step = 0; step < 4; ++step) {
    pos.clear();
    slots.clear();
    for (size_t i = 0; i < ids.size(); ++i) {
      pos.push_back(len + static_cast<int32_t>(i));
      slots.push_back(16 + len + static_cast<int32_t>(i));  // block 1 holds positions 0..15
    }
    len += static_cast<int32_t>(ids.size());
    const std::vector<int32_t> qs = {0, static_cast<int32_t>(ids.size())}, kvl = {len};
    const std::vector<int32_t> lrows = {static_cast<int32_t>(ids.size()) - 1};
    ForwardBatch b{ids, pos, slots, qs, kvl, btab, 2, lrows};
    auto logits = (*m)->forward(b, *kv);
    EXPECT_TRUE(logits.is_ok()) << logits.status().message();
    if (!logits.is_ok()) return {};
    std::vector<float> host(static_cast<size_t>(logits->numel()));
    be.download(host.data(), *logits, host.size() * sizeof(float));
    all.insert(all.end(), host.begin(), host.end());
    int best = 0;
    for (size_t i = 1; i < host.size(); ++i)
      if (host[i] > host[best]) best = static_cast<int>(i);
    ids = {best};
  }
  for (const std::vector<Tensor>* side : {&kv->k, &kv->v}) {
    for (const Tensor& t : *side) {
      // Block 1 holds the sequence's 10 positions; block 0 stays unwritten.
      for (int64_t slot = 16; slot < 26; ++slot) {
        const std::vector<float> row = be.kv_cache_row(t, slot);
        all.insert(all.end(), row.begin(), row.end());
      }
    }
  }
  be.free_kv(*kv);
  return all;
}

void expect_fused_matches(DType dtype, bool qkv_bias) {
  TinySource tiny(dtype, qkv_bias, 7);
  auto plain = make_cpu_backend(exact_options());
  FusedCpuBackend fused;
  const std::vector<float> want = run(*plain, tiny.src);
  const std::vector<float> got = run(fused, tiny.src);
  ASSERT_EQ(want.size(), got.size());
  ASSERT_FALSE(want.empty());
  float scale = 0;
  for (float x : want) scale = std::max(scale, std::fabs(x));
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_NEAR(got[i], want[i], 1e-5f * scale) << "element " << i;
  // The fused path really ran: 2 or 3 stacked weights per layer, one fused op of each kind per
  // layer and step, and 3 matmuls per layer and step (qkv, output, gate_up; down) plus logits.
  const int layers = 2, steps = 4;
  EXPECT_EQ(fused.concats, layers * (qkv_bias ? 3 : 2));
  EXPECT_EQ(fused.qkv_ops, layers * steps);
  EXPECT_EQ(fused.swiglu_ops, layers * steps);
  EXPECT_EQ(fused.matmuls, steps * (layers * 4 + 1));
}

TEST(FusedProjections, F32MatchesSeparateProjections) {
  expect_fused_matches(DType::kF32, false);
}

TEST(FusedProjections, F32WithQkvBias) {
  expect_fused_matches(DType::kF32, true);
}

TEST(FusedProjections, Q8_0MatchesSeparateProjections) {
  expect_fused_matches(DType::kQ8_0, false);
}

TEST(FusedProjections, DefaultConcatRejectsMixedTypes) {
  FusedCpuBackend be;
  std::vector<float> f(64, 0.5f);
  std::vector<uint8_t> q(dtype_row_bytes(DType::kQ8_0, 64), 0);
  const HostWeight parts[] = {{DType::kF32, f.data(), 1, 64}, {DType::kQ8_0, q.data(), 1, 64}};
  auto r = be.load_weight_concat(parts);
  EXPECT_FALSE(r.is_ok());
  const HostWeight narrow[] = {{DType::kF32, f.data(), 1, 64}, {DType::kF32, f.data(), 2, 32}};
  EXPECT_FALSE(be.load_weight_concat(narrow).is_ok());
}

TEST(FusedProjections, CpuBackendFusesUnlessTurnedOff) {
  EXPECT_TRUE(make_cpu_backend()->prefers_fused_projections());
  EXPECT_FALSE(make_cpu_backend(exact_options(false))->prefers_fused_projections());
  EXPECT_FALSE(make_cpu_backend()->stacks_mixed_weight_types());
}

// The CPU backend's own fused path against its separate projections, same options otherwise.
void expect_cpu_fused_matches(const TinySource& tiny, bool quantize_activations, float tol) {
  CpuBackendOptions sep = exact_options(false), fused = exact_options(true);
  sep.quantize_activations = fused.quantize_activations = quantize_activations;
  sep.n_threads = fused.n_threads = 2;
  auto a = make_cpu_backend(sep);
  auto b = make_cpu_backend(fused);
  const std::vector<float> want = run(*a, tiny.src);
  const std::vector<float> got = run(*b, tiny.src);
  ASSERT_EQ(want.size(), got.size());
  ASSERT_FALSE(want.empty());
  float scale = 0;
  for (float x : want) scale = std::max(scale, std::fabs(x));
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * scale) << "element " << i;
}

TEST(FusedProjections, CpuFusedPathMatchesSeparateExact) {
  expect_cpu_fused_matches(TinySource(DType::kF32, false, 3), false, 1e-5f);
  expect_cpu_fused_matches(TinySource(DType::kF32, true, 4), false, 1e-5f);
  expect_cpu_fused_matches(TinySource(DType::kQ8_0, true, 5), false, 1e-5f);
}

TEST(FusedProjections, CpuFusedPathMatchesSeparateWithQuantizedActivations) {
  // One activation quantization per stack instead of one per part: the same values.
  expect_cpu_fused_matches(TinySource(DType::kQ8_0, false, 6), true, 1e-5f);
}

TEST(FusedProjections, CpuStacksOnlyPartsOfOneType) {
  // attn_v F32 beside Q8_0 q and k: q, k, v stay separate, gate|up is stacked.
  TinySource tiny(DType::kQ8_0, false, 8, DType::kF32);
  expect_cpu_fused_matches(tiny, false, 1e-5f);
  expect_cpu_fused_matches(tiny, true, 1e-5f);
}

TEST(FusedProjections, CpuConcatInPlaceOrCopied) {
  auto be = make_cpu_backend(exact_options(true));
  std::vector<float> f(5 * 64);
  for (size_t i = 0; i < f.size(); ++i) f[i] = static_cast<float>(i);
  // Back to back: the stacked weight is the parts' own memory.
  const HostWeight adjacent[] = {{DType::kF32, f.data(), 2, 64},
                                 {DType::kF32, f.data() + 128, 3, 64}};
  auto t = be->load_weight_concat(adjacent);
  ASSERT_TRUE(t.is_ok()) << t.error();
  EXPECT_EQ(t->data, f.data());
  EXPECT_EQ(t->rows, 5);
  // Apart (and out of order): a copy holding the parts in the order given.
  const HostWeight apart[] = {{DType::kF32, f.data() + 192, 2, 64}, {DType::kF32, f.data(), 1, 64}};
  auto c = be->load_weight_concat(apart);
  ASSERT_TRUE(c.is_ok()) << c.error();
  EXPECT_NE(c->data, f.data() + 192);
  ASSERT_EQ(c->rows, 3);
  std::vector<float> got(3 * 64);
  be->download(got.data(), *c, got.size() * sizeof(float));
  for (int j = 0; j < 64; ++j) {
    EXPECT_EQ(got[j], f[192 + j]);
    EXPECT_EQ(got[64 + j], f[256 + j]);
    EXPECT_EQ(got[128 + j], f[j]);
  }
  // Mixed types, different widths, empty parts and no parts are refused.
  std::vector<uint8_t> q(dtype_row_bytes(DType::kQ8_0, 64), 0);
  const HostWeight mixed[] = {{DType::kF32, f.data(), 1, 64}, {DType::kQ8_0, q.data(), 1, 64}};
  EXPECT_FALSE(be->load_weight_concat(mixed).is_ok());
  const HostWeight narrow[] = {{DType::kF32, f.data(), 1, 64}, {DType::kF32, f.data(), 2, 32}};
  EXPECT_FALSE(be->load_weight_concat(narrow).is_ok());
  const HostWeight empty[] = {{DType::kF32, f.data(), 1, 64}, {DType::kF32, nullptr, 0, 64}};
  EXPECT_FALSE(be->load_weight_concat(empty).is_ok());
  EXPECT_FALSE(be->load_weight_concat(std::span<const HostWeight>()).is_ok());
}

// A copied stack that will only ever be read from its packed form (fast mode, rows a multiple of
// 16, packing available) gives its pages back once packed: only the packed copy counts as weight
// memory, the copy's pages are no longer resident, and the matmul still equals the separate ones.
TEST(FusedProjections, CpuConcatCopyGivesItsPagesBackOncePacked) {
  const int64_t cols = 2048, rows_a = 1024, rows_b = 512;  // Q8_0: 3.2 MiB stacked
  std::mt19937 gen(9);
  std::uniform_int_distribution<int> q(-127, 127);
  const size_t row_bytes = dtype_row_bytes(DType::kQ8_0, cols);
  std::vector<uint8_t> a(row_bytes * rows_a), b(row_bytes * rows_b);
  for (std::vector<uint8_t>* v : {&a, &b}) {
    auto* blocks = reinterpret_cast<BlockQ8_0*>(v->data());
    for (size_t i = 0; i < v->size() / sizeof(BlockQ8_0); ++i) {
      blocks[i].d = f32_to_f16(0.01f + 0.001f * static_cast<float>(i % 7));
      for (int8_t& x : blocks[i].qs) x = static_cast<int8_t>(q(gen));
    }
  }
  CpuBackendOptions o;
  o.n_threads = 2;
  auto be = make_cpu_backend(o);
  const size_t before = be->memory_info().weights_bytes;
  const HostWeight parts[] = {{DType::kQ8_0, b.data(), rows_b, cols},
                              {DType::kQ8_0, a.data(), rows_a, cols}};
  auto t = be->load_weight_concat(parts);
  ASSERT_TRUE(t.is_ok()) << t.error();
  const size_t raw = row_bytes * (rows_a + rows_b);
  const size_t added = be->memory_info().weights_bytes - before;
  const bool packs = cpu_isa() >= CpuIsa::kAvx2;  // quantized weights pack with AVX2 or better
  if (packs) {
    EXPECT_LT(added, raw + raw / 4) << "only the packed copy counts";
    const long page = sysconf(_SC_PAGESIZE);
    std::vector<unsigned char> resident((raw + page - 1) / page);
    ASSERT_EQ(mincore(t->data, raw, resident.data()), 0);
    size_t n_resident = 0;
    for (unsigned char r : resident) n_resident += r & 1;
    EXPECT_EQ(n_resident, 0u) << "of " << resident.size() << " pages";
  } else {
    EXPECT_EQ(added, raw);
  }
  // Still the separate weights' results.
  auto wa = be->load_weight({DType::kQ8_0, a.data(), rows_a, cols});
  auto wb = be->load_weight({DType::kQ8_0, b.data(), rows_b, cols});
  ASSERT_TRUE(wa.is_ok() && wb.is_ok());
  const int64_t m = 3;
  std::vector<float> x(m * cols);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (float& v : x) v = u(gen);
  auto tx = be->alloc(DType::kF32, m, cols).value();
  be->upload(tx, x.data(), x.size() * 4);
  auto y = be->alloc(DType::kF32, m, rows_a + rows_b).value();
  auto ya = be->alloc(DType::kF32, m, rows_a).value();
  auto yb = be->alloc(DType::kF32, m, rows_b).value();
  be->matmul(y, tx, *t, nullptr);
  be->matmul(ya, tx, *wa, nullptr);
  be->matmul(yb, tx, *wb, nullptr);
  std::vector<float> hy(m * (rows_a + rows_b)), ha(m * rows_a), hb(m * rows_b);
  be->download(hy.data(), y, hy.size() * 4);
  be->download(ha.data(), ya, ha.size() * 4);
  be->download(hb.data(), yb, hb.size() * 4);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t j = 0; j < rows_b; ++j)
      ASSERT_EQ(hy[r * (rows_a + rows_b) + j], hb[r * rows_b + j]) << r << " " << j;
    for (int64_t j = 0; j < rows_a; ++j)
      ASSERT_EQ(hy[r * (rows_a + rows_b) + rows_b + j], ha[r * rows_a + j]) << r << " " << j;
  }
}

}  // namespace
}  // namespace carpool
