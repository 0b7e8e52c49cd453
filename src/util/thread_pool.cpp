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
    // while an index of this job is unfinished, which a successful claim below guarantees.
    const int64_t n = job.n.load(std::memory_order_relaxed);
    const int64_t begin = static_cast<int64_t>(cur & 0xffffffffu);
    if (begin >= n) return;
    const int64_t grain = job.grain.load(std::memory_order_relaxed);
    int64_t size = std::max((n - begin) / job.shares.load(std::memory_order_relaxed),
                            job.min_chunk.load(std::memory_order_relaxed));
    size = (size + grain - 1) / grain * grain;
    const int64_t end = std::min(n, begin + size);
    if (!next_.compare_exchange_weak(cur, tag(generation) | static_cast<uint64_t>(end),
                                     std::memory_order_acq_rel)) {
      continue;
    }
    job.thunk.load(std::memory_order_relaxed)(job.ctx.load(std::memory_order_relaxed), begin, end,
                                              thread_index);
    if (done_.fetch_add(end - begin, std::memory_order_acq_rel) + (end - begin) == n) {
      std::lock_guard<std::mutex> lock(mu_);  // pairs with the caller's predicate check
      done_cv_.notify_one();
    }
  }
}

namespace {

// A job larger than kMaxJob indices runs as consecutive jobs; this shifts their ranges.
struct Offset {
  void (*thunk)(void*, int64_t, int64_t, int);
  void* ctx;
  int64_t offset;
};
void offset_thunk(void* ctx, int64_t b, int64_t e, int t) {
  const Offset& o = *static_cast<const Offset*>(ctx);
  o.thunk(o.ctx, o.offset + b, o.offset + e, t);
}
constexpr int64_t kMaxJob = int64_t{1} << 31;

}  // namespace

void ThreadPool::run(int64_t n, int64_t grain, Thunk thunk, void* ctx, Claims claims) {
  grain = std::max<int64_t>(grain, 1);
  const int64_t max_parallel = std::min<int64_t>(n_threads(), (n + grain - 1) / grain);
  if (max_parallel <= 1) {
    thunk(ctx, 0, n, 0);
    return;
  }
  if (n <= kMaxJob) return run_job(n, grain, max_parallel, thunk, ctx, claims);
  const int64_t step = kMaxJob / grain * grain;
  for (int64_t off = 0; off < n; off += step) {
    Offset o{thunk, ctx, off};
    run_job(std::min(step, n - off), grain, max_parallel, offset_thunk, &o, claims);
  }
}

void ThreadPool::run_job(int64_t n, int64_t grain, int64_t max_parallel, Thunk thunk, void* ctx,
                         Claims claims) {
  // Guided chunks: a claim takes half of a thread's fair share of what is left (kCoarse: all of
  // it), so the early chunks are large (few claims) and the last ones small (the threads end
  // close together); the floor, 1/16 of a thread's share of the whole job, bounds the number of
  // claims.
  const int64_t shares = claims == Claims::kCoarse ? max_parallel : 2 * max_parallel;
  const int64_t min_chunk = std::max(grain, (n + 16 * max_parallel - 1) / (16 * max_parallel));
  const uint64_t g = generation_.load(std::memory_order_relaxed) + 1;
  Job& job = jobs_[g & 1];
  job.thunk.store(thunk, std::memory_order_relaxed);
  job.ctx.store(ctx, std::memory_order_relaxed);
  job.n.store(n, std::memory_order_relaxed);
  job.grain.store(grain, std::memory_order_relaxed);
  job.min_chunk.store(min_chunk, std::memory_order_relaxed);
  job.shares.store(shares, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  next_.store(tag(g), std::memory_order_release);
  {
    // Under the mutex so that a worker about to sleep cannot miss the bump.
    std::lock_guard<std::mutex> lock(mu_);
    generation_.store(g, std::memory_order_release);
  }
  start_cv_.notify_all();  // cheap when every worker is still spinning
  claim_and_run(g, 0);
  for (int i = 0; i < kSpinIterations; ++i) {
    if (done_.load(std::memory_order_acquire) == n) return;
    CARPOOL_PAUSE();
  }
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return done_.load(std::memory_order_acquire) == n; });
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
