#include "backend/cpu/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CARPOOL_PAUSE() _mm_pause()
#else
#define CARPOOL_PAUSE() std::this_thread::yield()
#endif

namespace carpool {
namespace {

// Pause instructions spent polling before sleeping (tens of microseconds on current x86 cores).
constexpr int kSpinIterations = 4000;

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  const int n_workers = std::max(n_threads, 1) - 1;
  workers_.reserve(static_cast<size_t>(n_workers));
  for (int i = 0; i < n_workers; ++i) workers_.emplace_back([this, i] { worker_loop(i + 1); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  start_cv_.notify_all();
  for (std::thread& w : workers_) w.join();
}

void ThreadPool::run_chunks(int thread_index) {
  for (;;) {
    const int64_t c = next_chunk_.fetch_add(1, std::memory_order_relaxed);
    if (c >= n_chunks_) return;
    const int64_t begin = c * chunk_;
    const int64_t end = std::min(n_, begin + chunk_);
    thunk_(ctx_, begin, end, thread_index);
  }
}

void ThreadPool::run(int64_t n, int64_t grain, Thunk thunk, void* ctx) {
  grain = std::max<int64_t>(grain, 1);
  const int64_t max_parallel = std::min<int64_t>(n_threads(), (n + grain - 1) / grain);
  if (max_parallel <= 1) {
    thunk(ctx, 0, n, 0);
    return;
  }
  // A few chunks per thread balance uneven work without much scheduling overhead.
  const int64_t target_chunks = std::min<int64_t>(max_parallel * 4, (n + grain - 1) / grain);
  const int64_t chunk = (n + target_chunks - 1) / target_chunks;
  thunk_ = thunk;
  ctx_ = ctx;
  n_ = n;
  chunk_ = chunk;
  n_chunks_ = (n + chunk - 1) / chunk;
  next_chunk_.store(0, std::memory_order_relaxed);
  pending_workers_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  {
    // Under the mutex so that a worker about to sleep cannot miss the bump.
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  start_cv_.notify_all();  // cheap when every worker is still spinning
  run_chunks(0);
  for (int i = 0; i < kSpinIterations; ++i) {
    if (pending_workers_.load(std::memory_order_acquire) == 0) return;
    CARPOOL_PAUSE();
  }
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [this] { return pending_workers_.load(std::memory_order_acquire) == 0; });
}

void ThreadPool::worker_loop(int thread_index) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t g = generation_.load(std::memory_order_acquire);
    for (int i = 0; g == seen && i < kSpinIterations; ++i) {
      CARPOOL_PAUSE();
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      start_cv_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
      g = generation_.load(std::memory_order_acquire);
    }
    if (stop_.load()) return;
    seen = g;
    run_chunks(thread_index);
    if (pending_workers_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mu_);  // pairs with the caller's predicate check
      done_cv_.notify_one();
    }
  }
}

}  // namespace carpool
