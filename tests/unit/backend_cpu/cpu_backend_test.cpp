// CpuBackend memory handling and the thread pool (the ops are covered by conformance_test).
#include "backend/cpu/cpu_backend.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "backend/cpu/thread_pool.h"

namespace carpool {
namespace {

TEST(ThreadPool, EveryIndexRunsExactlyOnce) {
  for (int threads : {1, 2, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.n_threads(), threads);
    for (int64_t n : {0, 1, 2, 7, 64, 1000, 4097}) {
      for (int64_t grain : {1, 3, 100}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::atomic<int> bad_thread{0};
        pool.parallel_for(n, grain, [&](int64_t b, int64_t e, int t) {
          if (t < 0 || t >= threads || b >= e) bad_thread++;
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
        });
        EXPECT_EQ(bad_thread.load(), 0);
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << i;
      }
    }
  }
}

TEST(ThreadPool, ManyBackToBackJobs) {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  for (int job = 0; job < 2000; ++job) {
    pool.parallel_for(10, 1, [&](int64_t b, int64_t e, int) { total += e - b; });
  }
  EXPECT_EQ(total.load(), 20000);
}

// More threads than cores: workers often wake after the caller has run every chunk itself, and
// a late worker must not run a chunk of a finished job or miss one of the next.
TEST(ThreadPool, OversubscribedBackToBackJobsRunEveryIndexOnce) {
  ThreadPool pool(8);
  std::vector<std::atomic<int>> hits(64);
  for (int job = 0; job < 20000; ++job) {
    const int64_t n = 1 + job % 64;
    pool.parallel_for(n, 1, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
    });
    for (int64_t i = 0; i < 64; ++i) {
      ASSERT_EQ(hits[static_cast<size_t>(i)].exchange(0), i < n ? 1 : 0) << job << " " << i;
    }
  }
}

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
  for (Tensor& t : kv->k) b->free(t);
  for (Tensor& t : kv->v) b->free(t);
  EXPECT_EQ(b->memory_info().kv_bytes, 0u);
  c.head_dim = 0;
  EXPECT_FALSE(b->alloc_kv(c).is_ok());
}

TEST(CpuBackend, DescribesItself) {
  std::unique_ptr<Backend> b = make_cpu_backend({.n_threads = 2});
  EXPECT_EQ(b->name(), "cpu");
  EXPECT_EQ(b->activation_dtype(), DType::kF32);
  EXPECT_NE(b->device_name().find("(2 threads)"), std::string::npos);
  EXPECT_GT(b->memory_info().total_bytes, 0u);
}

}  // namespace
}  // namespace carpool
