// CpuBackend memory, weight loading and fused ops (the ops are covered by conformance_test).
#include "backend/cpu/cpu_backend.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/cpu_features.h"
#include "random_quant_weights.h"

namespace carpool {
namespace {

TEST(CpuBackend, AllocRejectsBadShapes) {
  std::unique_ptr<Backend> b = make_cpu_backend({.n_threads = 1});
  EXPECT_FALSE(b->alloc(DType::kF32, -1, 4).is_ok());
  EXPECT_FALSE(b->alloc(DType::kQ4_0, 2, 31).is_ok());  // not a multiple of the block size
  EXPECT_FALSE(b->alloc(DType::kF32, int64_t{1} << 40, int64_t{1} << 40).is_ok());
  Result<Tensor> ok = b->alloc(DType::kF32, 3, 5);
  ASSERT_TRUE(ok.is_ok());
  EXPECT_EQ(ok->bytes(), 60u);
  EXPECT_GE(b->memory_info().other_bytes, 60u);
  b->free(*ok);
  EXPECT_EQ(ok->data, nullptr);
}

TEST(CpuBackend, LoadWeightIsZeroCopy) {
  std::unique_ptr<Backend> b = make_cpu_backend({.n_threads = 1});
  std::vector<uint8_t> bytes(sizeof(BlockQ4_1) * 4);
  Result<Tensor> w = b->load_weight(HostWeight{DType::kQ4_1, bytes.data(), 2, 64});
  ASSERT_TRUE(w.is_ok());
  EXPECT_EQ(w->data, bytes.data());
  EXPECT_EQ(b->memory_info().weights_bytes, bytes.size());
  EXPECT_FALSE(b->load_weight(HostWeight{DType::kQ4_1, bytes.data(), 2, 63}).is_ok());
  EXPECT_FALSE(b->load_weight(HostWeight{DType::kI32, bytes.data(), 2, 4}).is_ok());
}

// Biases as Hugging Face half-precision checkpoints store them (Qwen2's q/k/v biases in bf16 or
// f16): the same outputs as the f32 bias holding the same values (it aborted on the type check).
TEST(CpuBackend, MatmulTakesHalfPrecisionBiases) {
  std::unique_ptr<Backend> b = make_cpu_backend({.n_threads = 1});
  const int64_t m = 3, k = 32, n = 5;
  std::vector<float> wv(static_cast<size_t>(n * k)), xv(static_cast<size_t>(m * k));
  for (size_t i = 0; i < wv.size(); ++i) wv[i] = static_cast<float>(i % 7) * 0.25f - 0.5f;
  for (size_t i = 0; i < xv.size(); ++i) xv[i] = static_cast<float>(i % 5) * 0.5f - 1.f;
  const std::vector<float> bias = {0.5f, -1.25f, 2.f, 0.f, -0.75f};  // exact in bf16 and f16
  std::vector<uint16_t> bias_bf16, bias_f16;
  for (float v : bias) bias_bf16.push_back(f32_to_bf16(v)), bias_f16.push_back(f32_to_f16(v));
  Tensor w = b->load_weight(HostWeight{DType::kF32, wv.data(), n, k}).value();
  Tensor x = b->alloc(DType::kF32, m, k).value();
  b->upload(x, xv.data(), xv.size() * 4);
  auto run = [&](DType t, const void* data) {
    Tensor bt = b->load_weight(HostWeight{t, data, 1, n}).value();
    Tensor y = b->alloc(DType::kF32, m, n).value();
    b->matmul(y, x, w, &bt);
    std::vector<float> out(static_cast<size_t>(m * n));
    b->download(out.data(), y, out.size() * 4);
    b->free(y);
    return out;
  };
  const std::vector<float> want = run(DType::kF32, bias.data());
  EXPECT_EQ(run(DType::kBF16, bias_bf16.data()), want);
  EXPECT_EQ(run(DType::kF16, bias_f16.data()), want);
  b->free(x);
}

// Q5_0 in groups of 16 rows is packed as it is; with rows past the last group it is re-encoded
// as Q8_0 (exact). Both give the same integer sums and scale them alike: the outputs they share
// are bit for bit equal.
TEST(CpuBackend, Q5_0IsPackedAsItIsOrReencodedAsQ8_0) {
  std::unique_ptr<Backend> b = make_cpu_backend({.n_threads = 2});
  std::mt19937 g(21);
  constexpr int64_t k = 96, m = 3;
  const std::vector<uint8_t> bytes = random_quant_weights(g, DType::kQ5_0, 33, k);
  Tensor grouped = b->load_weight(HostWeight{DType::kQ5_0, bytes.data(), 32, k}).value();
  Tensor ragged = b->load_weight(HostWeight{DType::kQ5_0, bytes.data(), 33, k}).value();
  EXPECT_EQ(grouped.dtype, DType::kQ5_0);
  EXPECT_EQ(grouped.data, bytes.data());  // zero copy
  EXPECT_EQ(ragged.dtype, DType::kQ8_0);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> xs(m * k);
  for (float& v : xs) v = nd(g);
  Tensor x = b->alloc(DType::kF32, m, k).value();
  b->upload(x, xs.data(), xs.size() * 4);
  Tensor y32 = b->alloc(DType::kF32, m, 32).value(), y33 = b->alloc(DType::kF32, m, 33).value();
  b->matmul(y32, x, grouped, nullptr);
  b->matmul(y33, x, ragged, nullptr);
  std::vector<float> a(m * 32), c(m * 33);
  b->download(a.data(), y32, a.size() * 4);
  b->download(c.data(), y33, c.size() * 4);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t j = 0; j < 32; ++j) ASSERT_EQ(a[r * 32 + j], c[r * 33 + j]) << r << " " << j;
  }
  for (Tensor* t : {&x, &y32, &y33}) b->free(*t);
}

TEST(CpuBackend, KvCacheTypeFollowsTheArithmeticUnlessSet) {
  EXPECT_EQ(make_cpu_backend({.n_threads = 1})->kv_cache_dtype(), DType::kF16);
  EXPECT_EQ(make_cpu_backend({.n_threads = 1, .quantize_activations = false})->kv_cache_dtype(),
            DType::kF32);
  EXPECT_EQ(make_cpu_backend({.n_threads = 1, .kv_dtype = DType::kF32})->kv_cache_dtype(),
            DType::kF32);
  EXPECT_EQ(
      make_cpu_backend({.n_threads = 1, .quantize_activations = false, .kv_dtype = DType::kF16})
          ->kv_cache_dtype(),
      DType::kF16);
}

TEST(CpuBackend, KvCacheGeometryAndAccounting) {
  std::unique_ptr<Backend> b = make_cpu_backend({.n_threads = 2});
  KvCacheConfig c{.n_layers = 3, .num_blocks = 4, .block_size = 8, .n_kv_heads = 2, .head_dim = 16};
  Result<KvCache> kv = b->alloc_kv(c);
  ASSERT_TRUE(kv.is_ok());
  ASSERT_EQ(kv->k.size(), 3u);
  ASSERT_EQ(kv->v.size(), 3u);
  EXPECT_EQ(kv->k[0].rows, 32);
  EXPECT_EQ(kv->k[0].cols, 32);
  EXPECT_EQ(kv->k[0].dtype, DType::kF16);
  EXPECT_EQ(b->memory_info().kv_bytes, 6u * 32 * 32 * 2);
  // A layer's K and V share its memory, which goes with the second of them.
  for (Tensor& t : kv->k) b->free(t);
  EXPECT_EQ(b->memory_info().kv_bytes, 6u * 32 * 32 * 2);
  for (Tensor& t : kv->v) b->free(t);
  EXPECT_EQ(b->memory_info().kv_bytes, 0u);
  c.head_dim = 0;
  EXPECT_FALSE(b->alloc_kv(c).is_ok());
}

TEST(CpuBackend, DescribesItself) {
  std::unique_ptr<Backend> b = make_cpu_backend({.n_threads = 2});
  EXPECT_EQ(b->name(), "cpu");
  EXPECT_EQ(b->activation_dtype(), DType::kF32);
  EXPECT_NE(b->device_name().find("(2 threads, "), std::string::npos);
  EXPECT_NE(b->device_name().find(std::string(cpu_isa_name(cpu_isa())) + " "), std::string::npos);
  EXPECT_GT(b->memory_info().total_bytes, 0u);
}

// The one-pass rope_kv_write and rope_kv_write_qkv against rope, rope and kv_write (bitwise:
// same angles, same rotation, same rounding to the cache type), for both cache types and both
// rotation styles, with several tokens on two threads.
TEST(CpuBackend, FusedRopeKvWriteEqualsTheSeparateOps) {
  const int n = 13, nh = 6, nkv = 2, hd = 8, bs = 4, blocks = 5;
  const int64_t q_dim = nh * hd, kv_dim = nkv * hd, qkv_cols = q_dim + 2 * kv_dim;
  std::mt19937 gen(17);
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  std::vector<float> qkv(static_cast<size_t>(n * qkv_cols)), freq(hd / 2);
  for (float& x : qkv) x = u(gen);
  for (int j = 0; j < hd / 2; ++j) freq[j] = std::pow(10000.f, -2.f * j / hd);
  std::vector<int32_t> pos(n), slots(n);
  for (int i = 0; i < n; ++i) {
    pos[i] = 3 * i + 1;
    slots[i] = (i * 7) % (bs * blocks);  // distinct, scattered over the blocks
  }
  for (DType kv_t : {DType::kF16, DType::kF32}) {
    for (RopeStyle style : {RopeStyle::kNeox, RopeStyle::kInterleaved}) {
      std::unique_ptr<Backend> b = make_cpu_backend({.n_threads = 2, .kv_dtype = kv_t});
      auto t = [&](DType d, int64_t r, int64_t c, const void* src) {
        Tensor x = b->alloc(d, r, c).value();
        if (src != nullptr) b->upload(x, src, x.bytes());
        return x;
      };
      Tensor tp = t(DType::kI32, 1, n, pos.data()), ts = t(DType::kI32, 1, n, slots.data());
      Tensor tf = t(DType::kF32, 1, hd / 2, freq.data());
      Tensor tqkv = t(DType::kF32, n, qkv_cols, qkv.data());
      KvCacheConfig cfg{1, blocks, bs, nkv, hd};
      KvCache sep = b->alloc_kv(cfg).value(), one = b->alloc_kv(cfg).value(),
              fused = b->alloc_kv(cfg).value();
      // The separate ops on separate q, k, v.
      std::vector<float> q(n * q_dim), k(n * kv_dim), v(n * kv_dim);
      for (int i = 0; i < n; ++i) {
        std::memcpy(&q[i * q_dim], &qkv[i * qkv_cols], q_dim * 4);
        std::memcpy(&k[i * kv_dim], &qkv[i * qkv_cols + q_dim], kv_dim * 4);
        std::memcpy(&v[i * kv_dim], &qkv[i * qkv_cols + q_dim + kv_dim], kv_dim * 4);
      }
      Tensor q0 = t(DType::kF32, n, q_dim, q.data()), k0 = t(DType::kF32, n, kv_dim, k.data()),
             v0 = t(DType::kF32, n, kv_dim, v.data());
      b->rope(q0, tp, tf, nh, hd, style);
      b->rope(k0, tp, tf, nkv, hd, style);
      b->kv_write(sep.k[0], sep.v[0], k0, v0, ts);
      // rope_kv_write on fresh copies.
      Tensor q1 = t(DType::kF32, n, q_dim, q.data()), k1 = t(DType::kF32, n, kv_dim, k.data()),
             v1 = t(DType::kF32, n, kv_dim, v.data());
      b->rope_kv_write(q1, k1, v1, one.k[0], one.v[0], tp, tf, ts, nh, nkv, hd, style);
      // rope_kv_write_qkv from the stacked rows.
      Tensor q2 = t(DType::kF32, n, q_dim, nullptr);
      b->rope_kv_write_qkv(q2, tqkv, fused.k[0], fused.v[0], tp, tf, ts, nh, nkv, hd, style);
      auto bytes = [&](const Tensor& x) {
        std::vector<uint8_t> h(x.bytes());
        b->download(h.data(), x, h.size());
        return h;
      };
      const std::string what =
          std::string(dtype_name(kv_t)) + (style == RopeStyle::kNeox ? " neox" : " interleaved");
      EXPECT_EQ(bytes(q1), bytes(q0)) << what;
      EXPECT_EQ(bytes(k1), bytes(k0)) << what;  // rope_kv_write leaves k rotated, as rope does
      EXPECT_EQ(bytes(q2), bytes(q0)) << what;
      EXPECT_EQ(bytes(tqkv),
                std::vector<uint8_t>(reinterpret_cast<const uint8_t*>(qkv.data()),
                                     reinterpret_cast<const uint8_t*>(qkv.data()) + qkv.size() * 4))
          << what << ": qkv is left unchanged";
      for (const KvCache* c : {&one, &fused}) {
        for (int64_t slot = 0; slot < bs * blocks; ++slot) {
          EXPECT_EQ(b->kv_cache_row(c->k[0], slot), b->kv_cache_row(sep.k[0], slot)) << what;
          EXPECT_EQ(b->kv_cache_row(c->v[0], slot), b->kv_cache_row(sep.v[0], slot)) << what;
        }
      }
    }
  }
}

TEST(CpuBackend, SwigluFusedEqualsSwiglu) {
  const int64_t rows = 5, f = 700;  // pieces of a row cross the 4096-element chunks
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> u(-6.f, 6.f);
  std::vector<float> gu(static_cast<size_t>(rows * 2 * f)), g(rows * f), up(rows * f);
  for (float& x : gu) x = u(gen);
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(&g[r * f], &gu[r * 2 * f], f * 4);
    std::memcpy(&up[r * f], &gu[r * 2 * f + f], f * 4);
  }
  std::unique_ptr<Backend> b = make_cpu_backend({.n_threads = 2});
  auto t = [&](int64_t r, int64_t c, const float* src) {
    Tensor x = b->alloc(DType::kF32, r, c).value();
    if (src != nullptr) b->upload(x, src, x.bytes());
    return x;
  };
  Tensor tgu = t(rows, 2 * f, gu.data()), tg = t(rows, f, g.data()), tu = t(rows, f, up.data());
  Tensor a = t(rows, f, nullptr), c = t(rows, f, nullptr);
  b->swiglu(a, tg, tu);
  b->swiglu_fused(c, tgu);
  std::vector<float> ha(rows * f), hc(rows * f);
  b->download(ha.data(), a, a.bytes());
  b->download(hc.data(), c, c.bytes());
  EXPECT_EQ(std::memcmp(ha.data(), hc.data(), a.bytes()), 0);
  for (int64_t i = 0; i < rows * f; ++i) {
    const float x = g[i], want = x / (1.f + std::exp(-x)) * up[i];
    ASSERT_NEAR(ha[i], want, 1e-5f * (1.f + std::fabs(want))) << i;
  }
}

// Op timing: off by default; while on, each op is recorded under its key with the counted bytes
// and FLOPs; a take returns the totals and starts afresh.
TEST(CpuBackend, OpTimingRecordsEachOpWhileOn) {
  std::unique_ptr<Backend> b = make_cpu_backend({.n_threads = 2});
  constexpr int64_t m = 2, k = 64, n = 32;
  std::vector<float> ones(static_cast<size_t>(n * k), 1.f);
  Tensor w = b->alloc(DType::kF32, n, k).value();
  b->upload(w, ones.data(), w.bytes());
  Tensor x = b->alloc(DType::kF32, m, k).value();
  b->upload(x, ones.data(), x.bytes());
  Tensor y = b->alloc(DType::kF32, m, n).value();
  Tensor norm_w = b->alloc(DType::kF32, 1, k).value();
  b->upload(norm_w, ones.data(), norm_w.bytes());
  Tensor xn = b->alloc(DType::kF32, m, k).value();

  b->matmul(y, x, w, nullptr);
  EXPECT_TRUE(b->take_op_times().empty());  // off

  b->set_op_timing(true);
  b->matmul(y, x, w, nullptr);
  b->matmul(y, x, w, nullptr);
  b->rmsnorm(xn, x, norm_w, 1e-5f);
  b->set_op_timing(false);
  b->matmul(y, x, w, nullptr);  // not recorded
  const std::vector<OpTime> ops = b->take_op_times();
  ASSERT_EQ(ops.size(), 2u);
  const OpTime* mm = nullptr;
  const OpTime* rn = nullptr;
  for (const OpTime& o : ops) (o.op == "rmsnorm" ? rn : mm) = &o;
  ASSERT_NE(mm, nullptr);
  ASSERT_NE(rn, nullptr);
  EXPECT_EQ(mm->op, "matmul m2 64->32 f32");
  EXPECT_EQ(mm->calls, 2);
  EXPECT_GT(mm->seconds, 0.0);
  EXPECT_DOUBLE_EQ(mm->bytes, 2.0 * n * k * 4);
  EXPECT_DOUBLE_EQ(mm->flops, 2.0 * 2 * m * n * k);
  EXPECT_EQ(rn->calls, 1);
  EXPECT_EQ(rn->bytes, 0.0);
  EXPECT_TRUE(b->take_op_times().empty());  // taken
  std::vector<float> out(static_cast<size_t>(m * n));
  b->download(out.data(), y, y.bytes());
  EXPECT_EQ(out[0], static_cast<float>(k));  // timing does not change results
}

}  // namespace
}  // namespace carpool
