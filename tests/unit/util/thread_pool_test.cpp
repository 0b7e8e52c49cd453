// ThreadPool: every index once, back-to-back jobs, oversubscribed threads.
#include "util/thread_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <utility>
#include <vector>

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
          if (t < 0 || t >= threads || b >= e || b % grain != 0) bad_thread++;
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
        });
        EXPECT_EQ(bad_thread.load(), 0);
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << i;
      }
    }
  }
}

// Guided chunks: large first claims, small last ones, a bounded number of claims.
TEST(ThreadPool, ChunksShrinkTowardTheEndOfAJob) {
  ThreadPool pool(2);
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> chunks;
  pool.parallel_for(1000, 1, [&](int64_t b, int64_t e, int) {
    std::lock_guard<std::mutex> lock(mu);
    chunks.emplace_back(b, e);
  });
  std::sort(chunks.begin(), chunks.end());
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(chunks.front().first, 0);
  EXPECT_EQ(chunks.front().second, 250);  // a quarter of the job: half of one thread's share
  EXPECT_EQ(chunks.back().second, 1000);
  EXPECT_LE(chunks.back().second - chunks.back().first, 32);  // the floor: 1000 / (16 * 2)
  EXPECT_LE(chunks.size(), 24u);
  for (size_t i = 1; i < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i].first, chunks[i - 1].second);
    EXPECT_LE(chunks[i].second - chunks[i].first, chunks[i - 1].second - chunks[i - 1].first);
  }
}

TEST(ThreadPool, CoarseClaimsTakeAFairShareOfWhatIsLeft) {
  ThreadPool pool(2);
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> chunks;
  pool.parallel_for(
      1000, 1,
      [&](int64_t b, int64_t e, int) {
        std::lock_guard<std::mutex> lock(mu);
        chunks.emplace_back(b, e);
      },
      ThreadPool::Claims::kCoarse);
  std::sort(chunks.begin(), chunks.end());
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(chunks.front().first, 0);
  EXPECT_EQ(chunks.front().second, 500);  // half of the job: one thread's share
  EXPECT_EQ(chunks.back().second, 1000);
  EXPECT_LE(chunks.back().second - chunks.back().first, 32);  // the same floor
  EXPECT_LE(chunks.size(), 14u);
  for (size_t i = 1; i < chunks.size(); ++i) EXPECT_EQ(chunks[i].first, chunks[i - 1].second);
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

}  // namespace
}  // namespace carpool
