// A small persistent thread pool for data-parallel kernels.
//
// Workers are created once. Between jobs a worker spins briefly (a bounded number of pause
// instructions, tens of microseconds: the gap between two ops of one forward pass) and then
// sleeps on a condition variable, so back-to-back ops start without a wake-up system call and an
// idle pool burns no CPU. The caller waits for the last chunk the same way. parallel_for splits
// [0, n) into contiguous chunks that shrink as the job drains (each claim takes a fixed share of
// what is left, down to a floor), so the threads finish within a small chunk of each other without
// a claim per grain; the calling thread runs chunks too and returns as soon as every index is
// done, without waiting for workers that were not scheduled in time (on an oversubscribed machine
// the caller may run every chunk itself).
//
// Thread-safety: parallel_for must be called by one thread at a time (the backend's owner).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace carpool {

class ThreadPool {
 public:
  // n_threads counts the calling thread: n_threads = 1 runs everything inline.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int n_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // How a job's indices are claimed. kFine: each claim takes half of a thread's fair share of
  // what is left (a quarter at two threads), so the threads end close together on long jobs.
  // kCoarse: a whole fair share of what is left (half at two threads), for jobs of a few
  // microseconds, where each claim's trip of the shared counter between cores costs more than
  // the imbalance it saves (decode-sized matmuls and decode attention on the Xeon VM, default
  // model, 7 alternations: b1 step 3.34-3.50 -> 3.12-3.43 ms, b16 within noise; the same claims
  // on every job made 512-token prefill 6-8% slower).
  enum class Claims { kFine, kCoarse };

  // Calls fn(begin, end, thread_index) over disjoint chunks covering [0, n). `grain` is the
  // smallest chunk worth handing to another thread. thread_index < n_threads() identifies the
  // executing thread (for per-thread scratch).
  template <typename Fn>
  void parallel_for(int64_t n, int64_t grain, Fn&& fn, Claims claims = Claims::kFine) {
    if (n <= 0) return;
    auto thunk = [](void* ctx, int64_t b, int64_t e, int t) { (*static_cast<Fn*>(ctx))(b, e, t); };
    run(n, grain, thunk, &fn, claims);
  }

 private:
  using Thunk = void (*)(void* ctx, int64_t begin, int64_t end, int thread_index);
  // One job's description. Two slots alternate by generation, so a worker that wakes late for an
  // old job never reads a slot while it is rewritten (see claim_and_run).
  struct Job {
    std::atomic<Thunk> thunk{nullptr};
    std::atomic<void*> ctx{nullptr};
    std::atomic<int64_t> n{0};
    std::atomic<int64_t> grain{1};      // chunk sizes are multiples of it (but the last)
    std::atomic<int64_t> min_chunk{1};  // the floor of a claim
    std::atomic<int64_t> shares{1};     // a claim takes 1/shares of what is left
  };

  void run(int64_t n, int64_t grain, Thunk thunk, void* ctx, Claims claims);
  // One job of at most kMaxJob indices (claims keep an index in 32 bits).
  void run_job(int64_t n, int64_t grain, int64_t max_parallel, Thunk thunk, void* ctx,
               Claims claims);
  void worker_loop(int thread_index);
  // Claims and runs chunks of job `generation` until none is left or a newer job started.
  void claim_and_run(uint64_t generation, int thread_index);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  std::atomic<uint64_t> generation_{0};  // bumped per job (under mu_, read without it)
  std::atomic<bool> stop_{false};
  Job jobs_[2];
  // (generation mod 2^32) << 32 | first unclaimed index of the current job. A claim is a
  // compare-exchange on both halves, so it can only take a chunk of the job it read.
  std::atomic<uint64_t> next_{0};
  std::atomic<int64_t> done_{0};  // indices of the current job finished
};

}  // namespace carpool
