// Quantized dot products: the integer kernels (SIMD and scalar) against a double-precision dot of
// the dequantized weights with the dequantized 8-bit activations. Both sides see the same
// quantized activations, so the only difference allowed is f32 summation order.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/quants.h"
#include "backend/dtype.h"
#include "random_quant_weights.h"

namespace carpool {
namespace {

class VecDot : public ::testing::TestWithParam<DType> {};

TEST_P(VecDot, IntegerKernelsMatchDequantizedDot) {
  const DType t = GetParam();
  std::mt19937 g(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t block = dtype_info(t).block_elems;
  for (int64_t n : {block, 3 * block, 1024 / block * block + block}) {
    std::vector<uint8_t> w = random_quant_weights(g, t, 1, n);
    std::vector<float> x(static_cast<size_t>(n)), wf(static_cast<size_t>(n));
    for (float& v : x) v = nd(g) * (g() % 4 == 0 ? 10.f : 1.f);
    std::vector<BlockQ8A> xq(static_cast<size_t>(n / kQK));
    quantize_row_q8a(x.data(), xq.data(), n);
    dequantize_row(t, w.data(), wf.data(), n);
    double ref = 0, scale = 0;
    for (int64_t i = 0; i < n; ++i) {
      const BlockQ8A& b = xq[static_cast<size_t>(i / kQK)];
      const double xv = static_cast<double>(b.d) * b.qs[i % kQK];
      ref += wf[i] * xv;
      scale += std::fabs(wf[i] * xv);
      // The activation rounding itself is within half a step.
      EXPECT_LE(std::fabs(xv - x[i]), 0.5 * b.d * 1.0001 + 1e-30);
    }
    const float fast = vec_dot_q8a(t, w.data(), xq.data(), n);
    const float scalar = vec_dot_q8a_scalar(t, w.data(), xq.data(), n);
    EXPECT_NEAR(fast, ref, 1e-5 * scale) << dtype_name(t) << " n=" << n;
    EXPECT_NEAR(scalar, ref, 1e-5 * scale) << dtype_name(t) << " n=" << n;
  }
}

INSTANTIATE_TEST_SUITE_P(QuantTypes, VecDot,
                         ::testing::Values(DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1,
                                           DType::kQ8_0, DType::kQ2_K, DType::kQ3_K, DType::kQ4_K,
                                           DType::kQ5_K, DType::kQ6_K, DType::kIQ4_NL,
                                           DType::kIQ4_XS),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(VecDotF32, MatchesDouble) {
  std::mt19937 g(3);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (int64_t n : {1, 7, 8, 31, 33, 100, 577}) {
    std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
    double ref = 0, scale = 0;
    for (int64_t i = 0; i < n; ++i) {
      a[i] = nd(g);
      b[i] = nd(g);
      ref += static_cast<double>(a[i]) * b[i];
      scale += std::fabs(static_cast<double>(a[i]) * b[i]);
    }
    EXPECT_NEAR(vec_dot_f32(a.data(), b.data(), n), ref, 1e-6 * scale) << n;
  }
}

}  // namespace
}  // namespace carpool

namespace carpool {
namespace {

// quantize_row_q8a (vectorized where the build allows) gives exactly the blocks of the plain
// definition: d = max|x| / 127, q = round-half-even(x / d), s = d * sum(q).
TEST(QuantizeQ8a, MatchesDefinitionExactly) {
  std::mt19937 g(5);
  std::normal_distribution<float> nd(0.f, 3.f);
  const int64_t n = 32 * 37;
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = nd(g);
  for (int i = 0; i < 32; ++i) x[static_cast<size_t>(i)] = 0.f;               // an all-zero block
  for (int i = 32; i < 64; ++i) x[static_cast<size_t>(i)] = (i - 48) * 0.5f;  // exact halves
  std::vector<BlockQ8A> q(static_cast<size_t>(n / kQK));
  quantize_row_q8a(x.data(), q.data(), n);
  for (int64_t b = 0; b < n / kQK; ++b) {
    float amax = 0.f;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(x[b * kQK + j]));
    const float d = amax / 127.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      const int want = static_cast<int>(std::nearbyint(x[b * kQK + j] * id));
      ASSERT_EQ(q[b].qs[j], want) << "block " << b << " element " << j;
      sum += want;
    }
    EXPECT_EQ(q[b].d, d);
    EXPECT_EQ(q[b].s, d * static_cast<float>(sum));
  }
}

}  // namespace
}  // namespace carpool

namespace carpool {
namespace {

TEST(KScales, AllAtOnceMatchesOneByOne) {
  std::mt19937 g(9);
  for (int trial = 0; trial < 1000; ++trial) {
    uint8_t q[12];
    for (uint8_t& b : q) b = static_cast<uint8_t>(g());
    uint8_t sc[8], mn[8];
    k_scales_mins(q, sc, mn);
    for (int j = 0; j < 8; ++j) {
      uint8_t s, m;
      k_scale_min(j, q, &s, &m);
      ASSERT_EQ(sc[j], s) << j;
      ASSERT_EQ(mn[j], m) << j;
    }
  }
}

}  // namespace
}  // namespace carpool
