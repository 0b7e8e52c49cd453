// The packed-weight kernels (packed_weights.h, gemm_packed.h) against a double-precision dot of
// the dequantized weights with the dequantized 8-bit activations: both sides see the same
// quantized activations, so only f32 summation order may differ. Every packable type, full tiles
// of activation rows and every remainder, a row stride wider than the output, a bias, and a group
// range that starts past zero (the columns of other groups stay untouched).
#include "backend/cpu/gemm_packed.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/gemm_packed_float.h"
#include "backend/cpu/gemm_q8a.h"
#include "backend/cpu/packed_weights.h"
#include "backend/dtype.h"
#include "random_quant_weights.h"

namespace carpool {
namespace {

struct Case {
  DType type;
  CpuIsa isa;
};

class GemmPacked : public ::testing::TestWithParam<Case> {};

// The m activation rows at x quantized, and the outputs of groups [g0, g1) of p for them at level
// isa, one row per ldy (columns of other groups left at -12345).
struct PackedRun {
  std::vector<BlockQ8A> xq;
  std::vector<float> y;
};
PackedRun run_packed(CpuIsa isa, const PackedWeight& p, const float* x, int64_t m, int64_t k,
                     int64_t g0, int64_t g1, int64_t ldy, const float* bias) {
  auto gemm = isa == CpuIsa::kAvx512 ? gemm_packed_avx512 : gemm_packed_avx2;
  const int64_t nb_x = k / kQK;
  PackedRun run;
  run.xq.resize(static_cast<size_t>(m * nb_x));
  for (int64_t r = 0; r < m; ++r) quantize_row_q8a(x + r * k, run.xq.data() + r * nb_x, k);
  const int parts = gemm_packed_sums_per_block(p.type);
  std::vector<int32_t> sums(run.xq.size() * 2);
  if (parts > 0) sum_q8a(run.xq.data(), sums.data(), static_cast<int64_t>(run.xq.size()), parts);
  run.y.assign(static_cast<size_t>(m * ldy), -12345.f);
  GemmPackedArgs a;
  a.w = &p;
  a.x = run.xq.data();
  a.x_sum = parts > 0 ? sums.data() : nullptr;
  a.m = m;
  a.y = run.y.data();
  a.ldy = ldy;
  a.bias = bias;
  EXPECT_TRUE(gemm(a, g0, g1));
  return run;
}

// Runs groups 1 and 2 of weights w (n = 3 groups plus five rows, k columns) on the m activation
// rows x at level isa and compares every output with the reference; the other columns must stay
// untouched.
void expect_matches_reference(DType t, CpuIsa isa, const std::vector<uint8_t>& w,
                              const std::vector<float>& x, int64_t n, int64_t m, int64_t k,
                              const std::vector<float>& bias) {
  const size_t row_bytes = dtype_row_bytes(t, k);
  PackedWeight p = make_packed(t, n, k);
  ASSERT_EQ(p.groups, 3);
  pack_groups(p, w.data(), row_bytes, 0, p.groups);
  const int64_t ldy = n + 3;
  const PackedRun run = run_packed(isa, p, x.data(), m, k, 1, 3, ldy, bias.data());
  const std::vector<float>& y = run.y;
  const std::vector<BlockQ8A>& xq = run.xq;
  std::vector<float> wf(static_cast<size_t>(k));
  for (int64_t j = 0; j < ldy; ++j) {
    if (j < kPackRows || j >= 3 * kPackRows) {
      for (int64_t r = 0; r < m; ++r) ASSERT_EQ(y[r * ldy + j], -12345.f) << "col " << j;
      continue;
    }
    dequantize_row(t, w.data() + row_bytes * j, wf.data(), k);
    for (int64_t r = 0; r < m; ++r) {
      double scale = 0;
      const double ref = q8a_reference_dot(wf.data(), xq.data(), r, k, bias[j], &scale);
      ASSERT_NEAR(y[r * ldy + j], ref, 1e-5 * scale)
          << dtype_name(t) << " " << cpu_isa_name(isa) << " k=" << k << " m=" << m << " row " << r
          << " col " << j;
    }
  }
}

TEST_P(GemmPacked, MatchesDequantizedReference) {
  const auto [t, isa] = GetParam();
  if (!cpu_supports(isa)) GTEST_SKIP() << cpu_isa_name(isa) << " not supported here";
  ASSERT_TRUE(packable(t));
  std::mt19937 g(5);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t block = dtype_info(t).block_elems;
  const int64_t n = 3 * kPackRows + 5;  // three groups and five unpacked rows
  for (int64_t k : {block, 3 * block}) {
    for (int64_t m : {1, 2, 7, 8, 9, 12, 16, 17, 33}) {
      std::vector<uint8_t> w = random_quant_weights(g, t, n, k);
      std::vector<float> x(static_cast<size_t>(m * k)), bias(static_cast<size_t>(n));
      for (float& v : x) v = nd(g) * (g() % 4 == 0 ? 10.f : 1.f);
      for (float& v : bias) v = nd(g);
      expect_matches_reference(t, isa, w, x, n, m, k, bias);
      if (HasFatalFailure()) return;
    }
  }
}

// Every quant bit set (the unsigned types' largest values: 15 for 4-bit types, 31 for 5-bit, 63
// for Q6_K, 7 for Q3_K, 45 for Q2_K's scaled values; Q8_0 and the IQ4 types get one fixed value)
// against activations of one sign at full scale: the largest integer sums the kernels form, which
// must not wrap (AVX2 adds runs of parts in 16 bits).
TEST_P(GemmPacked, LargestValuesStayExact) {
  const auto [t, isa] = GetParam();
  if (!cpu_supports(isa)) GTEST_SKIP() << cpu_isa_name(isa) << " not supported here";
  std::mt19937 g(7);
  const int64_t k = 2 * dtype_info(t).block_elems;
  const int64_t n = 3 * kPackRows + 5;
  const std::vector<uint8_t> w = saturated_quant_weights(g, t, n, k);
  const std::vector<float> bias(static_cast<size_t>(n), 0.f);
  for (float sign : {1.f, -1.f}) {
    for (int64_t m : {1, 4, 16}) {
      std::vector<float> x(static_cast<size_t>(m * k), 3.f * sign);
      expect_matches_reference(t, isa, w, x, n, m, k, bias);
      if (HasFatalFailure()) return;
    }
  }
}

// A row's outputs do not depend on the rows beside it: the kernels take different tiles for one
// row, two, a full tile and a remainder (AVX2: one and two rows share each activation broadcast
// between a group's two halves), and each must give the same bits, so that a request's tokens at
// temperature 0 are the same alone or in a batch.
TEST_P(GemmPacked, RowsAgreeBitForBitAtEveryBatchSize) {
  const auto [t, isa] = GetParam();
  if (!cpu_supports(isa)) GTEST_SKIP() << cpu_isa_name(isa) << " not supported here";
  std::mt19937 g(11);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t k = 2 * dtype_info(t).block_elems, n = 3 * kPackRows, m = 19;
  const std::vector<uint8_t> w = random_quant_weights(g, t, n, k);
  PackedWeight p = make_packed(t, n, k);
  pack_groups(p, w.data(), dtype_row_bytes(t, k), 0, p.groups);
  std::vector<float> x(static_cast<size_t>(m * k));
  for (float& v : x) v = nd(g);
  const std::vector<float> all = run_packed(isa, p, x.data(), m, k, 0, p.groups, n, nullptr).y;
  for (int64_t rows : {1, 2, 3, 5}) {
    for (int64_t r0 = 0; r0 + rows <= m; r0 += rows) {
      const std::vector<float> some =
          run_packed(isa, p, x.data() + r0 * k, rows, k, 0, p.groups, n, nullptr).y;
      ASSERT_EQ(0, std::memcmp(some.data(), all.data() + r0 * n, some.size() * sizeof(float)))
          << dtype_name(t) << " " << cpu_isa_name(isa) << ": rows " << r0 << ".." << r0 + rows
          << " alone differ from the same rows among " << m;
    }
  }
}

std::vector<Case> all_cases() {
  std::vector<Case> out;
  for (CpuIsa isa : {CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    for (DType t :
         {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kQ8_0, DType::kQ2_K,
          DType::kQ3_K, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kIQ4_NL, DType::kIQ4_XS}) {
      out.push_back({t, isa});
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(TypesAndLevels, GemmPacked, ::testing::ValuesIn(all_cases()),
                         [](const auto& info) {
                           return std::string(dtype_name(info.param.type)) + "_" +
                                  cpu_isa_name(info.param.isa);
                         });

// Both levels form the same exact integer sums and apply the same f32 operations per column, so
// they agree bit for bit (a model gives the same answers on AVX2 and AVX-512 machines).
TEST(GemmPackedLevels, Avx2EqualsAvx512) {
  if (!cpu_supports(CpuIsa::kAvx512)) GTEST_SKIP() << "needs both levels";
  std::mt19937 g(9);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (DType t :
       {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kQ8_0, DType::kQ2_K,
        DType::kQ3_K, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kIQ4_NL, DType::kIQ4_XS}) {
    const int64_t k = 2 * dtype_info(t).block_elems, n = 32, m = 5;
    std::vector<uint8_t> w = random_quant_weights(g, t, n, k);
    PackedWeight p = make_packed(t, n, k);
    pack_groups(p, w.data(), dtype_row_bytes(t, k), 0, p.groups);
    std::vector<float> x(static_cast<size_t>(m * k));
    for (float& v : x) v = nd(g);
    std::vector<BlockQ8A> xq(static_cast<size_t>(m * k / kQK));
    for (int64_t r = 0; r < m; ++r) quantize_row_q8a(x.data() + r * k, xq.data() + r * k / kQK, k);
    std::vector<int32_t> sums(xq.size() * 2);
    const int parts = gemm_packed_sums_per_block(t);
    if (parts > 0) sum_q8a(xq.data(), sums.data(), static_cast<int64_t>(xq.size()), parts);
    std::vector<float> y2(static_cast<size_t>(m * n)), y5(y2.size());
    GemmPackedArgs a;
    a.w = &p;
    a.x = xq.data();
    a.x_sum = parts > 0 ? sums.data() : nullptr;
    a.m = m;
    a.ldy = n;
    a.y = y2.data();
    ASSERT_TRUE(gemm_packed_avx2(a, 0, p.groups));
    a.y = y5.data();
    ASSERT_TRUE(gemm_packed_avx512(a, 0, p.groups));
    for (size_t i = 0; i < y2.size(); ++i) ASSERT_EQ(y2[i], y5[i]) << dtype_name(t) << " " << i;
  }
}

// The AMX tiles form the same exact integer sums as VNNI and scale them with the same f32
// operations, so they agree with the AVX-512 kernels bit for bit: every type, full chunks of 16
// activation rows and short last chunks (padded to 8 or 16), an odd number of blocks, a bias, a
// wider row stride and a group range that starts past zero. Too few rows are declined.
TEST(GemmPackedLevels, AmxEqualsAvx512) {
  if (!cpu_amx_int8()) GTEST_SKIP() << "no usable AMX-INT8 here";
  std::mt19937 g(11);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (DType t :
       {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kQ8_0, DType::kQ2_K,
        DType::kQ3_K, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kIQ4_NL, DType::kIQ4_XS}) {
    const int64_t block = dtype_info(t).block_elems;
    for (int64_t k : {block, 3 * block}) {
      for (int64_t m : {3, 16, 31, 32, 33, 63, 64, 65, 79, 100}) {
        const int64_t n = 3 * kPackRows, ldy = n + 5;
        std::vector<uint8_t> w = random_quant_weights(g, t, n, k);
        PackedWeight p = make_packed(t, n, k);
        pack_groups(p, w.data(), dtype_row_bytes(t, k), 0, p.groups);
        std::vector<float> x(static_cast<size_t>(m * k)), bias(static_cast<size_t>(n));
        for (float& v : x) v = nd(g) * (g() % 4 == 0 ? 10.f : 1.f);
        for (float& v : bias) v = nd(g);
        std::vector<BlockQ8A> xq(static_cast<size_t>(m * k / kQK));
        for (int64_t r = 0; r < m; ++r)
          quantize_row_q8a(x.data() + r * k, xq.data() + r * k / kQK, k);
        std::vector<int32_t> sums(xq.size() * 2);
        const int parts = gemm_packed_sums_per_block(t);
        if (parts > 0) sum_q8a(xq.data(), sums.data(), static_cast<int64_t>(xq.size()), parts);
        std::vector<float> ya(static_cast<size_t>(m * ldy), -7.f), y5(ya.size(), -7.f);
        GemmPackedArgs a;
        a.w = &p;
        a.x = xq.data();
        a.x_sum = parts > 0 ? sums.data() : nullptr;
        a.m = m;
        a.ldy = ldy;
        a.bias = bias.data();
        a.y = ya.data();
        ASSERT_FALSE(gemm_packed_amx(a, 1, 3)) << "without the AMX layout";
        AmxActivations xa;
        amx_reset(xa, t, m, k / kQK);
        for (int64_t r = 0; r < m; ++r) {
          amx_put_row(xa, r, xq.data() + r * k / kQK, sums.data() + r * k / kQK * parts);
        }
        a.amx = &xa;
        const bool ran = gemm_packed_amx(a, 1, 3);
        ASSERT_EQ(ran, gemm_packed_amx_takes(t, m)) << dtype_name(t) << " m=" << m;
        if (!ran) continue;
        a.amx = nullptr;
        a.y = y5.data();
        ASSERT_TRUE(gemm_packed_avx512(a, 1, 3));
        for (size_t i = 0; i < ya.size(); ++i) {
          ASSERT_EQ(ya[i], y5[i]) << dtype_name(t) << " k=" << k << " m=" << m << " row " << i / ldy
                                  << " col " << i % ldy;
        }
      }
    }
  }
}

// The 8-bit and BF16 AMX kernels load different tile configurations on the same thread (a model
// may mix weight types): taking turns, each must give the same results as when it ran first.
TEST(GemmPackedLevels, AmxKernelsTakeTurnsOnOneThread) {
  if (!cpu_amx_int8() || !cpu_amx_bf16()) GTEST_SKIP() << "needs both AMX kernels";
  std::mt19937 g(13);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t n = 2 * kPackRows, k = 256, m = 64;  // whole chunks: one configuration each
  // 8-bit: Q4_K weights, quantized activations.
  std::vector<uint8_t> wq = random_quant_weights(g, DType::kQ4_K, n, k);
  PackedWeight pq = make_packed(DType::kQ4_K, n, k);
  pack_groups(pq, wq.data(), dtype_row_bytes(DType::kQ4_K, k), 0, pq.groups);
  std::vector<float> x(static_cast<size_t>(m * k));
  for (float& v : x) v = nd(g);
  std::vector<BlockQ8A> xq(static_cast<size_t>(m * k / kQK));
  for (int64_t r = 0; r < m; ++r) quantize_row_q8a(x.data() + r * k, xq.data() + r * k / kQK, k);
  AmxActivations xa;
  amx_reset(xa, DType::kQ4_K, m, k / kQK);
  for (int64_t r = 0; r < m; ++r) amx_put_row(xa, r, xq.data() + r * k / kQK, nullptr);
  GemmPackedArgs a;
  a.w = &pq;
  a.x = xq.data();
  a.m = m;
  a.ldy = n;
  a.amx = &xa;
  // BF16: the same activations as bf16 pairs.
  std::vector<uint16_t> wb(static_cast<size_t>(n * k));
  for (uint16_t& v : wb) v = static_cast<uint16_t>(f32_to_bf16(nd(g)));
  PackedWeight pb = make_packed(DType::kBF16, n, k);
  pack_groups(pb, wb.data(), static_cast<size_t>(k) * 2, 0, pb.groups);
  std::vector<uint32_t> xb(static_cast<size_t>(m * pb.blocks));
  for (int64_t r = 0; r < m; ++r) f32_to_bf16_pairs(&x[r * k], k, &xb[r * pb.blocks]);
  GemmPackedFloatArgs fa;
  fa.w = &pb;
  fa.x = x.data();
  fa.x_bf16 = xb.data();
  fa.m = m;
  fa.ldy = n;
  std::vector<float> q1(static_cast<size_t>(m * n)), q2(q1.size()), b1(q1.size()), b2(q1.size());
  a.y = q1.data();
  ASSERT_TRUE(gemm_packed_amx(a, 0, pq.groups));
  fa.y = b1.data();
  ASSERT_TRUE(gemm_packed_bf16_amx(fa, 0, pb.groups));
  a.y = q2.data();
  ASSERT_TRUE(gemm_packed_amx(a, 0, pq.groups));
  fa.y = b2.data();
  ASSERT_TRUE(gemm_packed_bf16_amx(fa, 0, pb.groups));
  EXPECT_EQ(q1, q2);
  EXPECT_EQ(b1, b2);
}

}  // namespace
}  // namespace carpool
