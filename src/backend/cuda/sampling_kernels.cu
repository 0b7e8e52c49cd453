// Sampling kernels: argmax_rows (greedy tokens on the device) and sample_rows (temperature,
// top-k, top-p and min-p draws on the device; the rule in backend/sample_rows_rule.h).
#include <cooperative_groups.h>

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

// --- sample_rows: P blocks of kSampleThreads per row (a thread block cluster when P > 1, on
// compute capability 9.0+) running the rule of sample_rows_rule.h. Block r of the P owns the r-th
// contiguous part of the row's ids, and its thread t the t-th contiguous chunk of that part, so
// that per-chunk results taken in id order and a scan give each id's place in id order. Every
// block-wide result is combined across the cluster's blocks through distributed shared memory,
// in block order (the same order on every call). Every pass reads the row again (it stays in
// L2). With one block per row a batch of 64 rows used 64 of an H200's 132 SMs, each at about 0.4
// instructions per cycle and scheduler (its 128 registers per thread allow one block per SM):
// the cluster spreads a row over P SMs.

constexpr int kSampleThreads = 512;
constexpr int kSampleWarps = kSampleThreads / 32;
// Thresholds per pass of the top-k and top-p searches (sample_rows_rule.h): 8 passes each
// instead of bisection's ~30 (bisection measured 18% slower in a batch-64 decode step).
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
  unsigned long long xchg;  // this block's value of a cluster-wide combine
  // sums<N>: per-warp totals, then the block's (8-byte slots: double or int64_t).
  unsigned long long parts[kSampleWarps * kSampleWays];
  unsigned long long totals[kSampleWays];
};

// The block of sample_rows_rule.h: every method is called by all threads of the cluster (P
// blocks; P = 1: one block) together.
template <int P>
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

  // Every block's v (the same on all its threads) combined with op in block order; P = 1: v.
  template <class T, class Op>
  __device__ T across(T v, Op op) {
    if constexpr (P == 1) {
      return v;
    } else {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
      static_assert(sizeof(T) <= sizeof(unsigned long long), "8-byte slot");
      namespace cg = cooperative_groups;
      cg::cluster_group cluster = cg::this_cluster();
      if (threadIdx.x == 0) *reinterpret_cast<T*>(&sh.xchg) = v;
      cluster.sync();
      T out = *reinterpret_cast<const T*>(cluster.map_shared_rank(&sh.xchg, 0));
      for (int r = 1; r < P; ++r)
        out = op(out, *reinterpret_cast<const T*>(cluster.map_shared_rank(&sh.xchg, r)));
      cluster.sync();  // no block rewrites its slot before every block has read it
      return out;
#else
      __trap();  // clusters are launched on compute capability 9.0+ only
      return v;
#endif
    }
  }
  // The sum of the blocks before this one in the cluster of their v (0 for the first).
  template <class T>
  __device__ T sum_of_blocks_before(T v) {
    if constexpr (P == 1) {
      return T(0);
    } else {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
      namespace cg = cooperative_groups;
      cg::cluster_group cluster = cg::this_cluster();
      if (threadIdx.x == 0) *reinterpret_cast<T*>(&sh.xchg) = v;
      cluster.sync();
      T out = 0;
      const int me = static_cast<int>(cluster.block_rank());
      for (int r = 0; r < me; ++r)
        out += *reinterpret_cast<const T*>(cluster.map_shared_rank(&sh.xchg, r));
      cluster.sync();
      return out;
#else
      __trap();
      return v;
#endif
    }
  }

  // Thread 0's v (where CUB leaves a block reduction), given to every thread through `slot`.
  template <class T>
  __device__ T broadcast(T v, T& slot) {
    if (threadIdx.x == 0) slot = v;
    __syncthreads();
    const T out = slot;
    __syncthreads();
    return out;
  }
  struct Plus {
    template <class T>
    __device__ T operator()(T a, T b) const {
      return a + b;
    }
  };
  template <class Fn>
  __device__ float max_f(Fn fn) {
    return across(
        broadcast(cub::BlockReduce<float, kSampleThreads>(sh.tmp.max_f).Reduce(fn(i0, i1), MaxOf()),
                  sh.f),
        MaxOf());
  }
  template <class Fn>
  __device__ double sum_d(Fn fn) {
    return across(
        broadcast(cub::BlockReduce<double, kSampleThreads>(sh.tmp.sum_d).Sum(fn(i0, i1)), sh.d),
        Plus());
  }
  template <class Op>
  __device__ int64_t reduce_l(int64_t v, Op op) {
    return across(
        broadcast(cub::BlockReduce<int64_t, kSampleThreads>(sh.tmp.red_l).Reduce(v, op), sh.l), op);
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
    if constexpr (P == 1) {
      __syncthreads();
#pragma unroll
      for (int j = 0; j < N; ++j) out[j] = totals[j];
      __syncthreads();  // the next call rewrites parts and totals
    } else {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
      // The blocks' totals, added in block order.
      namespace cg = cooperative_groups;
      cg::cluster_group cluster = cg::this_cluster();
      cluster.sync();
#pragma unroll
      for (int j = 0; j < N; ++j) out[j] = 0;
      for (int r = 0; r < P; ++r) {
        const T* tr = cluster.map_shared_rank(totals, r);
#pragma unroll
        for (int j = 0; j < N; ++j) out[j] += tr[j];
      }
      cluster.sync();  // the next call rewrites parts and totals
#else
      __trap();
#endif
    }
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
    if constexpr (P > 1) before += sum_of_blocks_before(total);  // total: the same in every thread
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
    return across(out, MaxOf());  // -1 in every block but the one that found it
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
    const unsigned long long pick = across(sh.pick, MinPick());
    __syncthreads();
    return pick == ~0ull ? -1 : static_cast<int64_t>(pick);
  }
  struct MinPick {
    __device__ unsigned long long operator()(unsigned long long a, unsigned long long b) const {
      return a < b ? a : b;
    }
  };
};

// grid rows * P blocks; the P blocks of a row are consecutive (one cluster when P > 1).
template <int P>
__global__ void __launch_bounds__(kSampleThreads)
    sample_rows_kernel(int32_t* out, const void* logits, DType dtype, int64_t vocab,
                       const float* params) {
  __shared__ SampleShared sh;
  const int64_t row = blockIdx.x / P;
  const int part = static_cast<int>(blockIdx.x % P);
  const float* p = params + row * 5;
  const int64_t part_len = (vocab + P - 1) / P;
  const int64_t part0 = part * part_len < vocab ? part * part_len : vocab;
  const int64_t part1 = part0 + part_len < vocab ? part0 + part_len : vocab;
  const int64_t chunk = (part_len + kSampleThreads - 1) / kSampleThreads;
  const int64_t first = part0 + static_cast<int64_t>(threadIdx.x) * chunk;
  const int64_t i0 = first < part1 ? first : part1;
  DeviceBlock<P> b{sh, logits, row * vocab, dtype, i0, i0 + chunk < part1 ? i0 + chunk : part1};
  const double u = fmin(fmax(static_cast<double>(p[4]), 0.0), 1.0);
  const int64_t token =
      sample_rule::sample<kSampleWays>(b, vocab, p[0], static_cast<int64_t>(p[1]), p[2], p[3], u);
  if (threadIdx.x == 0 && part == 0) out[row] = static_cast<int32_t>(token);
}

template <int P>
void launch_sample_p(const LaunchCtx& ctx, int32_t* out, const void* logits, DType dtype,
                     int64_t rows, int64_t vocab, const float* params) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(rows * P));
  cfg.blockDim = dim3(kSampleThreads);
  cfg.stream = ctx.stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = P;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  CUDA_CHECK(cudaLaunchKernelEx(&cfg, sample_rows_kernel<P>, out, logits, dtype, vocab, params));
}

}  // namespace

void launch_sample_rows(const LaunchCtx& ctx, int32_t* out, const void* logits, DType dtype,
                        int64_t rows, int64_t vocab, const float* params) {
  if (rows == 0) return;
  // Clusters need compute capability 9.0 (LaunchCtx::sampling_ctas is 1 below it).
  if (ctx.sampling_ctas == 4) {
    launch_sample_p<4>(ctx, out, logits, dtype, rows, vocab, params);
  } else if (ctx.sampling_ctas == 2) {
    launch_sample_p<2>(ctx, out, logits, dtype, rows, vocab, params);
  } else {
    sample_rows_kernel<1><<<static_cast<unsigned>(rows), kSampleThreads, 0, ctx.stream>>>(
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
