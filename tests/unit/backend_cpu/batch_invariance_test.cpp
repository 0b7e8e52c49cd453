// Batch invariance: a row's matmul result must be bit-identical whether it is computed alone or
// at any position among other rows (the engine's answers must not depend on the batch a request
// lands in). Checked for every weight type on the CPU backend's default (fast) path.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/cpu_backend.h"

namespace carpool {
namespace {

class BatchInvariance : public ::testing::TestWithParam<DType> {};

TEST_P(BatchInvariance, RowResultDoesNotDependOnItsBatch) {
  const DType dtype = GetParam();
  auto backend = make_cpu_backend({.n_threads = 2});
  // n: 6 packed groups of 16 and 3 rows more. Batches up to 10 rows at every position, then a
  // few larger ones (several tiles of rows; Q5_K and Q6_K unpack a group once for 16 rows or
  // more) at their first, middle and last positions.
  const int64_t k = 768, n = 99, max_m = 33;
  auto w = backend->alloc_random_weight(dtype, n, k, 7, 0.5f);
  ASSERT_TRUE(w.is_ok()) << w.error();
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.f, 1.f);
  // Activations of every row; the probe row is row 0 of `rows`.
  std::vector<float> rows(max_m * k);
  for (float& v : rows) v = dist(rng);
  auto x = backend->alloc(DType::kF32, max_m, k);
  auto out = backend->alloc(DType::kF32, max_m, n);
  ASSERT_TRUE(x.is_ok() && out.is_ok());
  auto run = [&](int64_t m, int64_t probe_pos) {
    // Place the probe row at probe_pos, the others around it.
    std::vector<float> batch(m * k);
    for (int64_t r = 0, other = 1; r < m; ++r) {
      const int64_t src = r == probe_pos ? 0 : other++;
      std::memcpy(&batch[r * k], &rows[src * k], k * sizeof(float));
    }
    Tensor xv = x->rows_view(0, m), ov = out->rows_view(0, m);
    backend->upload(xv, batch.data(), batch.size() * sizeof(float));
    backend->matmul(ov, xv, w.value(), nullptr);
    std::vector<float> all(m * n);
    backend->download(all.data(), ov, all.size() * sizeof(float));
    return std::vector<float>(all.begin() + probe_pos * n, all.begin() + (probe_pos + 1) * n);
  };
  const std::vector<float> alone = run(1, 0);
  for (int64_t m = 2; m <= max_m; m += m < 10 ? 1 : 7) {
    for (int64_t pos = 0; pos < m; pos += m <= 10 ? 1 : (m - 1) / 2) {
      const std::vector<float> got = run(m, pos);
      ASSERT_EQ(std::memcmp(got.data(), alone.data(), n * sizeof(float)), 0)
          << dtype_name(dtype) << ": row at position " << pos << " of " << m
          << " differs from the same row alone";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllWeightTypes, BatchInvariance,
                         ::testing::Values(DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0,
                                           DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1,
                                           DType::kQ2_K, DType::kQ3_K, DType::kQ4_K, DType::kQ5_K,
                                           DType::kQ6_K, DType::kIQ4_NL, DType::kIQ4_XS),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace carpool
