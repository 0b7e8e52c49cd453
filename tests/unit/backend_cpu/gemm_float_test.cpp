// The tiled float-weight kernels (gemm_float.h) against a double-precision reference, for every
// tile remainder and row lengths with and without a tail shorter than one vector.
#include "backend/cpu/gemm_float.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/quants.h"
#include "random_quant_weights.h"

namespace carpool {
namespace {

class GemmFloat : public ::testing::TestWithParam<DType> {};

TEST_P(GemmFloat, MatchesDoubleReference) {
  const DType t = GetParam();
  if (!cpu_supports(CpuIsa::kAvx2)) GTEST_SKIP() << "no AVX2 here";
  std::mt19937 g(21);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t n = 6;
  for (int64_t k : {1, 7, 8, 33, 64, 130, 577}) {
    for (int64_t m : {1, 2, 3, 4, 5, 8, 9}) {
      const size_t row_bytes = dtype_row_bytes(t, k);
      std::vector<uint8_t> w;
      std::vector<float> wf;
      random_float_weights(g, nd, t, n, k, &w, &wf);
      std::vector<float> x(static_cast<size_t>(m * k)), bias(n);
      for (float& v : x) v = nd(g);
      for (float& v : bias) v = nd(g);
      std::vector<float> y(static_cast<size_t>(m * n), -7.f);
      GemmFloatArgs a;
      a.wtype = t;
      a.w = reinterpret_cast<const char*>(w.data());
      a.w_row_bytes = row_bytes;
      a.x = x.data();
      a.m = m;
      a.k = k;
      a.y = y.data();
      a.ldy = n;
      a.bias = bias.data();
      ASSERT_TRUE(gemm_float_avx2(a, 0, n));
      for (int64_t r = 0; r < m; ++r) {
        for (int64_t j = 0; j < n; ++j) {
          double ref = bias[j], scale = std::fabs(bias[j]);
          for (int64_t i = 0; i < k; ++i) {
            ref += static_cast<double>(wf[j * k + i]) * x[r * k + i];
            scale += std::fabs(static_cast<double>(wf[j * k + i]) * x[r * k + i]);
          }
          ASSERT_NEAR(y[r * n + j], ref, 1e-6 * scale + 1e-30)
              << dtype_name(t) << " k=" << k << " m=" << m << " row " << r << " col " << j;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(FloatTypes, GemmFloat,
                         ::testing::Values(DType::kF32, DType::kF16, DType::kBF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(GemmFloat, RejectsQuantizedTypes) {
  GemmFloatArgs a;
  a.wtype = DType::kQ8_0;
  EXPECT_FALSE(gemm_float_avx2(a, 0, 0));
}

}  // namespace
}  // namespace carpool
