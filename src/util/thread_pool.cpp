#include "util/thread_pool.h"

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

uint64_t tag(uint64_t generation) {
  return (generation & 0xffffffffu) << 32;
}

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

void ThreadPool::claim_and_run(uint64_t generation, int thread_index) {
  const Job& job = jobs_[generation & 1];
  for (;;) {
    uint64_t cur = next_.load(std::memory_order_acquire);
    if ((cur & ~uint64_t{0xffffffffu}) != tag(generation)) return;  // a newer job started
    // The slot was written before next_ got this tag (release/acquire), and it is not rewritten
    // while a chunk of this job is unfinished, which a successful claim below guarantees.
    const int64_t n_chunks = job.n_chunks.load(std::memory_order_relaxed);
    const int64_t c = static_cast<int64_t>(cur & 0xffffffffu);
    if (c >= n_chunks) return;
    if (!next_.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel)) continue;
    const int64_t chunk = job.chunk.load(std::memory_order_relaxed);
    const int64_t begin = c * chunk;
    const int64_t end = std::min(job.n.load(std::memory_order_relaxed), begin + chunk);
    job.thunk.load(std::memory_order_relaxed)(job.ctx.load(std::memory_order_relaxed), begin, end,
                                              thread_index);
    if (done_chunks_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_chunks) {
      std::lock_guard<std::mutex> lock(mu_);  // pairs with the caller's predicate check
      done_cv_.notify_one();
    }
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
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  const uint64_t g = generation_.load(std::memory_order_relaxed) + 1;
  Job& job = jobs_[g & 1];
  job.thunk.store(thunk, std::memory_order_relaxed);
  job.ctx.store(ctx, std::memory_order_relaxed);
  job.n.store(n, std::memory_order_relaxed);
  job.chunk.store(chunk, std::memory_order_relaxed);
  job.n_chunks.store(n_chunks, std::memory_order_relaxed);
  done_chunks_.store(0, std::memory_order_relaxed);
  next_.store(tag(g), std::memory_order_release);
  {
    // Under the mutex so that a worker about to sleep cannot miss the bump.
    std::lock_guard<std::mutex> lock(mu_);
    generation_.store(g, std::memory_order_release);
  }
  start_cv_.notify_all();  // cheap when every worker is still spinning
  claim_and_run(g, 0);
  for (int i = 0; i < kSpinIterations; ++i) {
    if (done_chunks_.load(std::memory_order_acquire) == n_chunks) return;
    CARPOOL_PAUSE();
  }
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return done_chunks_.load(std::memory_order_acquire) == n_chunks; });
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
    claim_and_run(g, thread_index);
  }
}

}  // namespace carpool
