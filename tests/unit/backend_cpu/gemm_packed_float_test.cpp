// The packed float kernels (gemm_packed_float.h) against a double-precision reference: F32, F16
// and BF16 weights with f32 activations (exact products, only the f32 summation order differs),
// and BF16 weights with bf16 activation pairs (vdpbf16ps) against the same sum over the rounded
// activations. Row lengths with and without a pair tail, one row, tiles of rows and remainders, a
// bias, and a group range that starts past zero (other groups' columns stay untouched). Also the
// activation conversion to bf16 pairs.
#include "backend/cpu/gemm_packed_float.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/packed_weights.h"
#include "backend/cpu/quants.h"
#include "backend/dtype.h"
#include "random_quant_weights.h"

namespace carpool {
namespace {

struct Case {
  DType type;
  bool bf16_activations;
  bool amx = false;  // gemm_packed_bf16_amx instead of gemm_packed_float_avx512
};

class GemmPackedFloat : public ::testing::TestWithParam<Case> {};

TEST_P(GemmPackedFloat, MatchesDoubleReference) {
  const auto [t, bf16_x, amx] = GetParam();
  if (!cpu_supports(CpuIsa::kAvx512)) GTEST_SKIP() << "no AVX-512 here";
  if (bf16_x && !cpu_features().avx512_bf16) GTEST_SKIP() << "no AVX512_BF16 here";
  if (amx && !cpu_amx_bf16()) GTEST_SKIP() << "no usable AMX-BF16 here";
  std::mt19937 g(9);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t n = 4 * kPackRows;  // four groups
  for (int64_t k : {1, 7, 32, 33, 130, 577}) {
    const size_t row_bytes = dtype_row_bytes(t, k);
    std::vector<uint8_t> w;
    std::vector<float> wf;
    random_float_weights(g, nd, t, n, k, &w, &wf);
    PackedWeight p = make_packed(t, n, k);
    pack_groups(p, w.data(), row_bytes, 0, p.groups);
    for (int64_t m : {1, 2, 3, 8, 9, 16, 17, 20, 40}) {
      std::vector<float> x(static_cast<size_t>(m * k)), bias(n);
      for (float& v : x) v = nd(g);
      for (float& v : bias) v = nd(g);
      std::vector<uint32_t> xb(static_cast<size_t>(m * p.blocks));
      std::vector<float> xr = x;  // the activations the kernel multiplies
      if (bf16_x) {
        for (int64_t r = 0; r < m; ++r) f32_to_bf16_pairs(&x[r * k], k, &xb[r * p.blocks]);
        for (float& v : xr) v = bf16_to_f32(f32_to_bf16(v));
      }
      const int64_t ldy = n + 3;
      std::vector<float> y(static_cast<size_t>(m * ldy), -7.f);
      GemmPackedFloatArgs a;
      a.w = &p;
      a.x = x.data();
      a.x_bf16 = bf16_x ? xb.data() : nullptr;
      a.m = m;
      a.y = y.data();
      a.ldy = ldy;
      a.bias = bias.data();
      // Group 0 stays untouched.
      ASSERT_TRUE(amx ? gemm_packed_bf16_amx(a, 1, p.groups)
                      : gemm_packed_float_avx512(a, 1, p.groups));
      for (int64_t r = 0; r < m; ++r) {
        for (int64_t j = 0; j < ldy; ++j) {
          if (j < kPackRows || j >= n) {
            ASSERT_EQ(y[r * ldy + j], -7.f) << "column " << j << " written";
            continue;
          }
          double ref = bias[j], scale = std::fabs(bias[j]);
          for (int64_t i = 0; i < k; ++i) {
            const double prod = static_cast<double>(wf[j * k + i]) * xr[r * k + i];
            ref += prod;
            scale += std::fabs(prod);
          }
          // f32 products are exact (F16/BF16 weights widen exactly); vdpbf16ps rounds its pair
          // sums to f32 like an FMA chain does.
          ASSERT_NEAR(y[r * ldy + j], ref, 2e-6 * scale + 1e-30)
              << dtype_name(t) << (bf16_x ? " bf16 x" : "") << (amx ? " amx" : "") << " k=" << k
              << " m=" << m << " row " << r << " col " << j;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, GemmPackedFloat,
                         ::testing::Values(Case{DType::kF32, false}, Case{DType::kF16, false},
                                           Case{DType::kBF16, false}, Case{DType::kBF16, true},
                                           Case{DType::kBF16, true, true}),
                         [](const auto& info) {
                           return std::string(dtype_name(info.param.type)) +
                                  (info.param.bf16_activations ? "_dot" : "") +
                                  (info.param.amx ? "_amx" : "");
                         });

TEST(GemmPackedFloat, Bf16PairsRoundToNearestEvenAndPadOddLengths) {
  std::mt19937 g(3);
  std::normal_distribution<float> nd(0.f, 10.f);
  for (int64_t n : {1, 2, 31, 32, 33, 64, 95}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = nd(g);
    x[0] = 1.00390625f;  // exactly halfway between two bf16 values: rounds to the even one (1.0)
    std::vector<uint32_t> pairs(static_cast<size_t>((n + 1) / 2), 0xdeadbeefu);
    f32_to_bf16_pairs(x.data(), n, pairs.data());
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t got = static_cast<uint16_t>(pairs[i / 2] >> (16 * (i % 2)));
      ASSERT_EQ(got, f32_to_bf16(x[i])) << "n=" << n << " element " << i;
    }
    if (n % 2 != 0) {
      EXPECT_EQ(pairs[n / 2] >> 16, 0u) << "n=" << n;
    }
    EXPECT_EQ(static_cast<uint16_t>(pairs[0]), 0x3f80) << "1 + 2^-8 rounds to 1";
  }
}

}  // namespace
}  // namespace carpool
