// CUDA backend tests. Where there is no GPU (CI, development machines) only the graceful-failure
// test runs and the rest skip; on a GPU machine the whole conformance suite runs as well.
#include "backend/cuda/cuda_backend.h"

#include <gtest/gtest.h>

#include <vector>

#include "conformance/conformance.h"

namespace carpool {
namespace {

TEST(CudaBackend, WithoutDeviceReturnsClearError) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  auto b = make_cuda_backend();
  ASSERT_FALSE(b.is_ok());
  EXPECT_NE(b.error().find("no CUDA device"), std::string::npos) << b.error();
  // Asking again gives the same answer (no sticky state, no crash).
  auto again = make_cuda_backend();
  EXPECT_FALSE(again.is_ok());
}

TEST(CudaBackend, BadDeviceOrdinalIsAnError) {
  CudaBackendOptions o;
  o.device = 1000;
  auto b = make_cuda_backend(o);
  ASSERT_FALSE(b.is_ok());
  EXPECT_NE(b.error().find("no CUDA device"), std::string::npos) << b.error();
}

class CudaDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
    CudaBackendOptions o;
    o.debug_sync = true;
    auto b = make_cuda_backend(o);
    ASSERT_TRUE(b.is_ok()) << b.error();
    backend_ = std::move(*b);
  }
  std::unique_ptr<Backend> backend_;
};

TEST_F(CudaDeviceTest, ReportsDeviceAndMemory) {
  EXPECT_EQ(backend_->name(), "cuda");
  EXPECT_EQ(backend_->activation_dtype(), DType::kBF16);
  BackendMemoryInfo m = backend_->memory_info();
  EXPECT_GT(m.total_bytes, 0u);
  EXPECT_LE(m.free_bytes, m.total_bytes);
  auto t = backend_->alloc(DType::kBF16, 3, 5);
  ASSERT_TRUE(t.is_ok());
  EXPECT_GE(backend_->memory_info().other_bytes, 30u);
  backend_->free(*t);
}

TEST_F(CudaDeviceTest, RejectsBadWeights) {
  HostWeight w{static_cast<DType>(77), nullptr, 4, 32};
  EXPECT_FALSE(backend_->load_weight(w).is_ok());
  std::vector<uint8_t> bytes(64);
  HostWeight odd{DType::kQ8_0, bytes.data(), 1, 33};  // not a multiple of the block size
  EXPECT_FALSE(backend_->load_weight(odd).is_ok());
  EXPECT_FALSE(backend_->alloc(DType::kF32, -1, 4).is_ok());
}

TEST_F(CudaDeviceTest, PassesConformanceSuite) {
  conformance::Options o;
  o.tol = conformance::default_tolerances(backend_->activation_dtype(), false);
  auto results = conformance::run_conformance(*backend_, o);
  ASSERT_FALSE(results.empty());
  EXPECT_EQ(conformance::print_results(results, stdout), 0);
}

}  // namespace
}  // namespace carpool
