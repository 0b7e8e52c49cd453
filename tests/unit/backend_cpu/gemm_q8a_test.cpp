// The tiled multi-row kernels (gemm_q8a.h) at every instruction-set level this machine runs,
// against a double-precision dot of the dequantized weights with the dequantized 8-bit
// activations. Both sides see the same quantized activations, so only f32 summation order may
// differ. Row counts cover full tiles and every remainder; levels the CPU lacks are skipped. For
// the kernels that can read offset activations (x_u) or scale arrays (x_d, x_s), odd row counts
// use them, even ones not.
#include "backend/cpu/gemm_q8a.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/dtype.h"
#include "random_quant_weights.h"

namespace carpool {
namespace {

struct Case {
  DType type;
  CpuIsa isa;
};

class GemmQ8a : public ::testing::TestWithParam<Case> {};

TEST_P(GemmQ8a, MatchesDequantizedReference) {
  const auto [t, isa] = GetParam();
  if (!cpu_supports(isa)) GTEST_SKIP() << cpu_isa_name(isa) << " not supported here";
  std::mt19937 g(11);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t block = dtype_info(t).block_elems;
  const int64_t n = 7;
  for (int64_t k : {block, 3 * block, (1024 / block + 1) * block}) {
    for (int64_t m : {1, 2, 3, 4, 5, 7, 8, 9, 13, 17}) {
      std::vector<uint8_t> w = random_quant_weights(g, t, n, k);
      std::vector<float> x(static_cast<size_t>(m * k)), bias(static_cast<size_t>(n));
      for (float& v : x) v = nd(g) * (g() % 4 == 0 ? 10.f : 1.f);
      for (float& v : bias) v = nd(g);
      std::vector<BlockQ8A> xq(static_cast<size_t>(m * k / kQK));
      for (int64_t r = 0; r < m; ++r)
        quantize_row_q8a(x.data() + r * k, xq.data() + r * k / kQK, k);
      // Output with a row stride wider than n: columns outside [1, n) must stay untouched.
      const int64_t ldy = n + 3;
      std::vector<float> y(static_cast<size_t>(m * ldy), -12345.f);
      GemmQ8aArgs a;
      a.wtype = t;
      a.w = reinterpret_cast<const char*>(w.data());
      a.w_row_bytes = dtype_row_bytes(t, k);
      a.x = xq.data();
      a.m = m;
      a.k = k;
      a.y = y.data();
      a.ldy = ldy;
      a.bias = bias.data();
      std::vector<BlockQ8A> xu(xq.size());
      offset_q8a(xq.data(), xu.data(), static_cast<int64_t>(xq.size()));
      // With the offset activations where the kernels take them, else without.
      if (gemm_q8a_uses_offset_acts(isa, t) && m % 2 == 1) a.x_u = xu.data();
      std::vector<float> xd(xq.size()), xs(xq.size());
      split_q8a_scales(xq.data(), xd.data(), xs.data(), static_cast<int64_t>(xq.size()));
      if (m % 2 == 1) {
        a.x_d = xd.data();
        a.x_s = xs.data();
      }
      gemm_q8a(isa, a, 1, n);
      std::vector<float> wf(static_cast<size_t>(k));
      for (int64_t j = 0; j < ldy; ++j) {
        if (j < 1 || j >= n) {
          for (int64_t r = 0; r < m; ++r) ASSERT_EQ(y[r * ldy + j], -12345.f);
          continue;
        }
        dequantize_row(t, w.data() + a.w_row_bytes * j, wf.data(), k);
        for (int64_t r = 0; r < m; ++r) {
          double scale = 0;
          const double ref = q8a_reference_dot(wf.data(), xq.data(), r, k, bias[j], &scale);
          ASSERT_NEAR(y[r * ldy + j], ref, 1e-5 * scale)
              << dtype_name(t) << " " << cpu_isa_name(isa) << " k=" << k << " m=" << m << " row "
              << r << " col " << j;
        }
      }
    }
  }
}

std::vector<Case> all_cases() {
  std::vector<Case> out;
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    for (DType t : {DType::kQ4_0, DType::kQ4_1, DType::kQ8_0, DType::kQ2_K, DType::kQ3_K,
                    DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kIQ4_NL, DType::kIQ4_XS}) {
      out.push_back({t, isa});
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(TypesAndLevels, GemmQ8a, ::testing::ValuesIn(all_cases()),
                         [](const auto& info) {
                           return std::string(dtype_name(info.param.type)) + "_" +
                                  cpu_isa_name(info.param.isa);
                         });

TEST(OffsetQ8a, FlipsTheSignBitOnly) {
  BlockQ8A b;
  b.d = 0.5f;
  b.s = 3.f;
  for (int j = 0; j < kQK; ++j) b.qs[j] = static_cast<int8_t>(j * 8 - 127);
  BlockQ8A u;
  offset_q8a(&b, &u, 1);
  EXPECT_EQ(u.d, b.d);
  EXPECT_EQ(u.s, b.s);
  for (int j = 0; j < kQK; ++j) EXPECT_EQ(static_cast<uint8_t>(u.qs[j]), b.qs[j] + 128);
}

TEST(CpuFeatures, LevelsAreConsistent) {
  EXPECT_TRUE(cpu_supports(CpuIsa::kScalar));
  EXPECT_TRUE(cpu_supports(cpu_isa()));
  if (cpu_supports(CpuIsa::kAvx512)) {
    EXPECT_TRUE(cpu_supports(CpuIsa::kAvx2));
  }
  const CpuFeatures& f = cpu_features();
  EXPECT_EQ(f.avx512_vnni && f.avx512, cpu_supports(CpuIsa::kAvx512));
}

}  // namespace
}  // namespace carpool
