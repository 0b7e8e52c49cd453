// Sampling kernels: argmax_rows (greedy tokens on the device) and sample_rows (temperature,
// top-k, top-p and min-p draws on the device; the rule in backend/sample_rows_rule.h).
#include <cmath>
#include <cstdint>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "backend/cuda/device_utils.cuh"
#include "backend/sample_rows_rule.h"

namespace carpool::cuda {
namespace {

constexpr int kArgmaxThreads = 1024;

// (v, i) beats (best, best_i): larger, or equal and at a lower index. A NaN v never beats
// anything (both comparisons are false), and best is never NaN, so NaNs are skipped.
__device__ __forceinline__ bool beats(float v, int32_t i, float best, int32_t best_i) {
  return v > best || (v == best && i < best_i);
}

// One block per row: out[row] = the index std::max_element would return for logits[row, :].
// std::max_element keeps its first element until a strictly larger one comes, and x < NaN and
// NaN < x are both false: so a NaN at index 0 is the answer, and any other NaN is ignored.
__global__ void argmax_rows_kernel(int32_t* out, const void* logits, DType dtype, int64_t vocab) {
  const int64_t base = static_cast<int64_t>(blockIdx.x) * vocab;
  if (isnan(load_f(logits, base, dtype))) {  // uniform across the block
    if (threadIdx.x == 0) out[blockIdx.x] = 0;
    return;
  }
  float best = -INFINITY;
  int32_t best_i = INT32_MAX;  // loses every tie, so any -inf element replaces it
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    const float v = load_f(logits, base + i, dtype);
    if (beats(v, static_cast<int32_t>(i), best, best_i)) {
      best = v;
      best_i = static_cast<int32_t>(i);
    }
  }
  // Warp, then block reduction of (value, index) pairs.
  for (int o = 16; o > 0; o >>= 1) {
    const float v = __shfl_xor_sync(0xffffffffu, best, o);
    const int32_t i = __shfl_xor_sync(0xffffffffu, best_i, o);
    if (beats(v, i, best, best_i)) {
      best = v;
      best_i = i;
    }
  }
  __shared__ float warp_best[32];
  __shared__ int32_t warp_best_i[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) {
    warp_best[warp] = best;
    warp_best_i[warp] = best_i;
  }
  __syncthreads();
  if (warp != 0) return;
  const int n_warps = blockDim.x / 32;
  best = lane < n_warps ? warp_best[lane] : -INFINITY;
  best_i = lane < n_warps ? warp_best_i[lane] : INT32_MAX;
  for (int o = 16; o > 0; o >>= 1) {
    const float v = __shfl_xor_sync(0xffffffffu, best, o);
    const int32_t i = __shfl_xor_sync(0xffffffffu, best_i, o);
    if (beats(v, i, best, best_i)) {
      best = v;
      best_i = i;
    }
  }
  if (lane == 0) out[blockIdx.x] = best_i;
}

// --- sample_rows: one block of kSampleThreads per row running the rule of sample_rows_rule.h;
// thread t owns the ids of one contiguous chunk, so that per-chunk results taken in id order and
// a block scan give each id's place in id order. Every pass reads the row again (it stays in L2).

constexpr int kSampleThreads = 512;
constexpr int kSampleWarps = kSampleThreads / 32;
// Thresholds per pass of the top-k and top-p searches (sample_rows_rule.h): 8 passes each
// instead of bisection's ~30 (LaunchCtx::bisect_sampling keeps bisection for A/B).
constexpr int kSampleWays = 16;

struct MaxOf {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
  __device__ int64_t operator()(int64_t a, int64_t b) const { return a > b ? a : b; }
};
struct MinOf {
  __device__ int64_t operator()(int64_t a, int64_t b) const { return a < b ? a : b; }
};
struct SumOf {
  __device__ int64_t operator()(int64_t a, int64_t b) const { return a + b; }
};

struct SampleShared {
  union {
    cub::BlockReduce<double, kSampleThreads>::TempStorage sum_d;
    cub::BlockReduce<int64_t, kSampleThreads>::TempStorage red_l;
    cub::BlockReduce<float, kSampleThreads>::TempStorage max_f;
    cub::BlockScan<double, kSampleThreads>::TempStorage scan_d;
    cub::BlockScan<int64_t, kSampleThreads>::TempStorage scan_l;
  } tmp;
  double d;
  float f;
  int64_t l;
  unsigned long long pick;
  // sums<N>: per-warp totals, then the block's (8-byte slots: double or int64_t).
  unsigned long long parts[kSampleWarps * kSampleWays];
  unsigned long long totals[kSampleWays];
};

// The block of sample_rows_rule.h: every method is called by all threads of the block together.
struct DeviceBlock {
  SampleShared& sh;
  const void* logits;
  int64_t base;
  DType dtype;
  int64_t i0, i1;  // this thread's ids

  __device__ float load(int64_t i) const { return load_f(logits, base + i, dtype); }
  // The fast intrinsic: relative error about 1e-6 at x = -20, far below what a draw can tell
  // apart, and the same value in every pass.
  __device__ float exp(float x) const { return __expf(x); }

  // Thread 0's v (where CUB leaves a block reduction), given to every thread through `slot`.
  template <class T>
  __device__ T broadcast(T v, T& slot) {
    if (threadIdx.x == 0) slot = v;
    __syncthreads();
    const T out = slot;
    __syncthreads();
    return out;
  }
  template <class Fn>
  __device__ float max_f(Fn fn) {
    return broadcast(
        cub::BlockReduce<float, kSampleThreads>(sh.tmp.max_f).Reduce(fn(i0, i1), MaxOf()), sh.f);
  }
  template <class Fn>
  __device__ double sum_d(Fn fn) {
    return broadcast(cub::BlockReduce<double, kSampleThreads>(sh.tmp.sum_d).Sum(fn(i0, i1)), sh.d);
  }
  template <class Op>
  __device__ int64_t reduce_l(int64_t v, Op op) {
    return broadcast(cub::BlockReduce<int64_t, kSampleThreads>(sh.tmp.red_l).Reduce(v, op), sh.l);
  }
  template <class Fn>
  __device__ int64_t sum_l(Fn fn) {
    return reduce_l(fn(i0, i1), SumOf());
  }
  template <class Fn>
  __device__ int64_t min_l(Fn fn) {
    return reduce_l(fn(i0, i1), MinOf());
  }
  template <class Fn>
  __device__ int64_t max_l(Fn fn) {
    return reduce_l(fn(i0, i1), MaxOf());
  }

  // N sums at once (sample_rows_rule.h): per-thread terms in registers, a butterfly within each
  // warp, then the warps' totals in warp order: the same order on every call.
  template <int N, class T, class Fn>
  __device__ void sums(Fn fn, T* out) {
    static_assert(N <= kSampleWays && sizeof(T) == 8, "8-byte sums, at most kSampleWays");
    T acc[N];
#pragma unroll
    for (int j = 0; j < N; ++j) acc[j] = 0;
    fn(i0, i1, acc);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    T* parts = reinterpret_cast<T*>(sh.parts);
    T* totals = reinterpret_cast<T*>(sh.totals);
#pragma unroll
    for (int j = 0; j < N; ++j) {
      T v = acc[j];
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == 0) parts[warp * N + j] = v;
    }
    __syncthreads();
    if (threadIdx.x < N) {
      T t = 0;
      for (int w = 0; w < kSampleWarps; ++w) t += parts[w * N + threadIdx.x];
      totals[threadIdx.x] = t;
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < N; ++j) out[j] = totals[j];
    __syncthreads();  // the next call rewrites parts and totals
  }

  // This thread's sum of f over its ids (*mine) and the sum over the threads before it.
  template <class T, class Storage, class F>
  __device__ T sum_before(Storage& storage, F f, T* mine) {
    T m = 0;
    for (int64_t i = i0; i < i1; ++i) m += f(i);
    T before, total;
    cub::BlockScan<T, kSampleThreads>(storage).ExclusiveSum(m, before, total);
    __syncthreads();
    *mine = m;
    return before;
  }

  template <class Pred>
  __device__ int64_t nth_match(int64_t n, Pred pred) {
    int64_t mine;
    const int64_t before = sum_before<int64_t>(sh.tmp.scan_l, pred, &mine);
    if (threadIdx.x == 0) sh.l = -1;
    __syncthreads();
    if (before < n && n <= before + mine) {
      int64_t seen = before;
      for (int64_t i = i0; i < i1; ++i) {
        if (pred(i) && ++seen == n) {
          sh.l = i;
          break;
        }
      }
    }
    __syncthreads();
    const int64_t out = sh.l;
    __syncthreads();
    return out;
  }

  template <class W>
  __device__ int64_t draw(double r, W w) {
    double mine;
    const double before = sum_before<double>(sh.tmp.scan_d, w, &mine);
    if (threadIdx.x == 0) sh.pick = ~0ull;
    __syncthreads();
    if (mine > 0 && before <= r && r < before + mine) {
      double left = r - before;
      int64_t last = -1;
      for (int64_t i = i0; i < i1; ++i) {
        const double wi = w(i);
        if (!(wi > 0)) continue;
        last = i;
        left -= wi;
        if (left < 0) break;
      }
      atomicMin(&sh.pick, static_cast<unsigned long long>(last));
    }
    __syncthreads();
    const unsigned long long pick = sh.pick;
    __syncthreads();
    return pick == ~0ull ? -1 : static_cast<int64_t>(pick);
  }
};

template <int kWays>
__global__ void __launch_bounds__(kSampleThreads)
    sample_rows_kernel(int32_t* out, const void* logits, DType dtype, int64_t vocab,
                       const float* params) {
  __shared__ SampleShared sh;
  const float* p = params + static_cast<int64_t>(blockIdx.x) * 5;
  const int64_t chunk = (vocab + kSampleThreads - 1) / kSampleThreads;
  const int64_t first = static_cast<int64_t>(threadIdx.x) * chunk;
  const int64_t i0 = first < vocab ? first : vocab;
  DeviceBlock b{sh,    logits, static_cast<int64_t>(blockIdx.x) * vocab,
                dtype, i0,     i0 + chunk < vocab ? i0 + chunk : vocab};
  const double u = fmin(fmax(static_cast<double>(p[4]), 0.0), 1.0);
  const int64_t token =
      sample_rule::sample<kWays>(b, vocab, p[0], static_cast<int64_t>(p[1]), p[2], p[3], u);
  if (threadIdx.x == 0) out[blockIdx.x] = static_cast<int32_t>(token);
}

}  // namespace

void launch_sample_rows(const LaunchCtx& ctx, int32_t* out, const void* logits, DType dtype,
                        int64_t rows, int64_t vocab, const float* params) {
  if (rows == 0) return;
  if (ctx.bisect_sampling) {
    sample_rows_kernel<2><<<static_cast<unsigned>(rows), kSampleThreads, 0, ctx.stream>>>(
        out, logits, dtype, vocab, params);
  } else {
    sample_rows_kernel<kSampleWays><<<static_cast<unsigned>(rows), kSampleThreads, 0, ctx.stream>>>(
        out, logits, dtype, vocab, params);
  }
  check_launch(ctx);
}

void launch_argmax_rows(const LaunchCtx& ctx, int32_t* out, const void* logits, DType dtype,
                        int64_t rows, int64_t vocab) {
  if (rows == 0) return;
  // Fewer threads for short rows (every thread's first element is in the row).
  int threads = 32;
  while (threads < kArgmaxThreads && threads < vocab) threads *= 2;
  argmax_rows_kernel<<<static_cast<unsigned>(rows), threads, 0, ctx.stream>>>(out, logits, dtype,
                                                                              vocab);
  check_launch(ctx);
}

}  // namespace carpool::cuda
