// Sampling kernels: argmax_rows (greedy tokens on the device) and sample_rows (temperature,
// top-k, top-p and min-p draws on the device; Backend::sample_rows states the rule).
#include <cmath>
#include <cstdint>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "backend/cuda/device_utils.cuh"

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

// --- sample_rows: one block of kSampleThreads per row; thread t owns the ids of one contiguous
// chunk, so that per-thread partial results taken in id order and a block scan give each id's
// place in id order. Every pass reads the row again (it stays in L2); thresholds are found by
// bisection over the bits of the value they apply to (32 passes for top-k's scaled logit, about
// 30 for top-p's weight), the ties at a threshold resolved in id order by one scan.

constexpr int kSampleThreads = 512;

struct SampleBest {
  float v;
  int64_t i;
};
struct BetterOf {
  __device__ SampleBest operator()(const SampleBest& a, const SampleBest& b) const {
    return b.v > a.v || (b.v == a.v && b.i < a.i) ? b : a;  // a NaN b.v never wins
  }
};
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
    cub::BlockReduce<SampleBest, kSampleThreads>::TempStorage best;
    cub::BlockScan<double, kSampleThreads>::TempStorage scan_d;
    cub::BlockScan<int64_t, kSampleThreads>::TempStorage scan_l;
  } tmp;
  double d;
  float f;
  int64_t l;
  unsigned long long pick;
};

// Block-wide results: every thread of the block calls these together and gets the same value.
__device__ double block_sum(SampleShared& sh, double v) {
  const double r = cub::BlockReduce<double, kSampleThreads>(sh.tmp.sum_d).Sum(v);
  if (threadIdx.x == 0) sh.d = r;
  __syncthreads();
  const double out = sh.d;
  __syncthreads();
  return out;
}
template <typename Op>
__device__ int64_t block_reduce(SampleShared& sh, int64_t v, Op op) {
  const int64_t r = cub::BlockReduce<int64_t, kSampleThreads>(sh.tmp.red_l).Reduce(v, op);
  if (threadIdx.x == 0) sh.l = r;
  __syncthreads();
  const int64_t out = sh.l;
  __syncthreads();
  return out;
}
__device__ float block_max(SampleShared& sh, float v) {
  const float r = cub::BlockReduce<float, kSampleThreads>(sh.tmp.max_f).Reduce(v, MaxOf());
  if (threadIdx.x == 0) sh.f = r;
  __syncthreads();
  const float out = sh.f;
  __syncthreads();
  return out;
}
// Sum of the v of the threads before this one; *total: of all.
template <typename T, typename Storage>
__device__ T block_exclusive_sum(Storage& storage, T v, T* total) {
  T before;
  cub::BlockScan<T, kSampleThreads>(storage).ExclusiveSum(v, before, *total);
  __syncthreads();
  return before;
}

// Larger float, larger key (-0 as +0; no NaN comes here).
__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t b = __float_as_uint(f == 0.f ? 0.f : f);
  return (b & 0x80000000u) != 0 ? ~b : (b | 0x80000000u);
}

// One row of sample_rows and its filters as they are decided.
struct SampleRow {
  const void* logits;
  int64_t base;
  DType dtype;
  float inv_t;
  int64_t i0, i1;   // this thread's ids
  float max = 0.f;  // of the scaled logits
  // top-k: key > key_k, or key == key_k and id <= cut_k (all: key_k 0, cut_k INT64_MAX).
  uint32_t key_k = 0;
  int64_t cut_k = INT64_MAX;
  float min_p = 0.f;
  // top-p: weight > w_p, or weight == w_p and id <= cut_p (all: w_p -1).
  float w_p = -1.f;
  int64_t cut_p = INT64_MAX;

  __device__ float scaled(int64_t i) const {
    const float l = load_f(logits, base + i, dtype);
    return isnan(l) ? -INFINITY : l * inv_t;
  }
  // exp(s - max) by the fast intrinsic (relative error about 1e-6 at s - max = -20, far below
  // what a draw can tell apart; every pass computes the same value).
  __device__ float weight(float s) const { return __expf(s - max); }
  __device__ bool in_top_k(int64_t i, float s) const {
    const uint32_t k = order_key(s);
    return k > key_k || (k == key_k && i <= cut_k);
  }
  // After top-k and min-p (weight w of scaled logit s).
  __device__ bool in_min_p(int64_t i, float s, float w) const {
    return w > 0.f && w >= min_p && in_top_k(i, s);
  }
  __device__ bool kept(int64_t i, float s, float w) const {
    return in_min_p(i, s, w) && (w > w_p || (w == w_p && i <= cut_p));
  }
};

// The id of the n-th (from 1) id in id order for which pred holds, given each thread's count of
// them in its chunk; -1 if there are fewer than n.
template <typename Pred>
__device__ int64_t nth_match(SampleShared& sh, const SampleRow& row, int64_t mine, int64_t n,
                             Pred pred) {
  int64_t total;
  const int64_t before = block_exclusive_sum(sh.tmp.scan_l, mine, &total);
  if (threadIdx.x == 0) sh.l = -1;
  __syncthreads();
  if (before < n && n <= before + mine) {
    int64_t seen = before;
    for (int64_t i = row.i0; i < row.i1; ++i) {
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

__device__ int64_t sample_greedy(SampleShared& sh, const SampleRow& row) {
  if (isnan(load_f(row.logits, row.base, row.dtype))) return 0;  // std::max_element keeps it
  SampleBest b{-INFINITY, INT64_MAX};
  for (int64_t i = row.i0; i < row.i1; ++i)
    b = BetterOf()(b, {load_f(row.logits, row.base + i, row.dtype), i});
  b = cub::BlockReduce<SampleBest, kSampleThreads>(sh.tmp.best).Reduce(b, BetterOf());
  if (threadIdx.x == 0) sh.l = b.i;
  __syncthreads();
  const int64_t out = sh.l;
  __syncthreads();
  return out;
}

__device__ int64_t sample_draw(SampleShared& sh, SampleRow& row, int64_t vocab, int64_t top_k,
                               float top_p, double u) {
  float m = -INFINITY;
  for (int64_t i = row.i0; i < row.i1; ++i) m = fmaxf(m, row.scaled(i));
  m = block_max(sh, m);
  if (!isfinite(m)) {  // all -inf, or some +inf: the first of the largest, as the host
    int64_t first = INT64_MAX;
    for (int64_t i = row.i0; i < row.i1; ++i) {
      if (row.scaled(i) == m) {
        first = i;
        break;
      }
    }
    return block_reduce(sh, first, MinOf());
  }
  row.max = m;

  // top-k: the largest key with at least k keys at or above it, then its ties in id order.
  if (top_k > 0 && top_k < vocab) {
    uint64_t lo = 0, hi = uint64_t{1} << 32;  // count(key >= lo) >= k > count(key >= hi)
    while (hi - lo > 1) {
      const uint64_t mid = lo + (hi - lo) / 2;
      int64_t c = 0;
      for (int64_t i = row.i0; i < row.i1; ++i) c += order_key(row.scaled(i)) >= mid;
      if (block_reduce(sh, c, SumOf()) >= top_k) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
    const uint32_t key = static_cast<uint32_t>(lo);
    int64_t above = 0, equal = 0;
    for (int64_t i = row.i0; i < row.i1; ++i) {
      const uint32_t k = order_key(row.scaled(i));
      above += k > key;
      equal += k == key;
    }
    above = block_reduce(sh, above, SumOf());
    row.cut_k = nth_match(sh, row, equal, top_k - above,
                          [&](int64_t i) { return order_key(row.scaled(i)) == key; });
    row.key_k = key;
  }

  // The softmax over what top-k left (those min-p then drops included).
  double z = 0;
  for (int64_t i = row.i0; i < row.i1; ++i) {
    const float s = row.scaled(i);
    if (row.in_top_k(i, s)) z += row.weight(s);
  }
  z = block_sum(sh, z);

  // top-p over what min-p left: the largest weight t whose tokens at least t heavy hold
  // top_p * z, then ties at t in id order until the prefix does (all, if min-p left less).
  if (top_p < 1.f) {
    const double target = static_cast<double>(top_p) * z;
    auto mass_at_least = [&](float t) {
      double a = 0;
      for (int64_t i = row.i0; i < row.i1; ++i) {
        const float s = row.scaled(i), w = row.weight(s);
        if (w >= t && row.in_min_p(i, s, w)) a += w;
      }
      return block_sum(sh, a);
    };
    if (mass_at_least(0.f) >= target) {
      uint32_t lo = 0, hi = __float_as_uint(1.f) + 1;  // mass(lo) >= target > mass(hi) = 0
      while (hi - lo > 1) {
        const uint32_t mid = lo + (hi - lo) / 2;
        if (mass_at_least(__uint_as_float(mid)) >= target) {
          lo = mid;
        } else {
          hi = mid;
        }
      }
      const float t = __uint_as_float(lo);
      double heavier = 0;
      int64_t equal = 0;
      for (int64_t i = row.i0; i < row.i1; ++i) {
        const float s = row.scaled(i), w = row.weight(s);
        if (!row.in_min_p(i, s, w)) continue;
        if (w > t) heavier += w;
        equal += w == t;
      }
      heavier = block_sum(sh, heavier);
      const int64_t n_equal = block_reduce(sh, equal, SumOf());
      if (t > 0.f && n_equal > 0) {
        // The host adds tied weights one at a time until the prefix reaches the target.
        int64_t n = static_cast<int64_t>(ceil((target - heavier) / t));
        n = n < 1 ? 1 : (n > n_equal ? n_equal : n);
        while (n > 1 && heavier + static_cast<double>(n - 1) * t >= target) --n;
        while (n < n_equal && heavier + static_cast<double>(n) * t < target) ++n;
        row.cut_p = nth_match(sh, row, equal, n, [&](int64_t i) {
          const float s = row.scaled(i), w = row.weight(s);
          return w == t && row.in_min_p(i, s, w);
        });
        row.w_p = t;
      }
    }
  }

  // The draw: kept tokens in id order, the first whose cumulative weight passes u * total.
  double mine = 0;
  for (int64_t i = row.i0; i < row.i1; ++i) {
    const float s = row.scaled(i), w = row.weight(s);
    if (row.kept(i, s, w)) mine += w;
  }
  double total;
  const double before = block_exclusive_sum(sh.tmp.scan_d, mine, &total);
  const double r = u * total;
  if (threadIdx.x == 0) sh.pick = ~0ull;
  __syncthreads();
  if (mine > 0 && before <= r && r < before + mine) {
    double left = r - before;
    int64_t last = -1;
    for (int64_t i = row.i0; i < row.i1; ++i) {
      const float s = row.scaled(i), w = row.weight(s);
      if (!row.kept(i, s, w)) continue;
      last = i;
      left -= w;
      if (left < 0) break;
    }
    atomicMin(&sh.pick, static_cast<unsigned long long>(last));
  }
  __syncthreads();
  const unsigned long long pick = sh.pick;
  __syncthreads();
  if (pick != ~0ull) return static_cast<int64_t>(pick);
  // u * total at or past the total (rounding): the last kept token.
  int64_t last = -1;
  for (int64_t i = row.i0; i < row.i1; ++i) {
    const float s = row.scaled(i), w = row.weight(s);
    if (row.kept(i, s, w)) last = i;
  }
  return block_reduce(sh, last, MaxOf());
}

__global__ void __launch_bounds__(kSampleThreads)
    sample_rows_kernel(int32_t* out, const void* logits, DType dtype, int64_t vocab,
                       const float* params) {
  __shared__ SampleShared sh;
  const float* p = params + static_cast<int64_t>(blockIdx.x) * 5;
  const int64_t chunk = (vocab + kSampleThreads - 1) / kSampleThreads;
  SampleRow row;
  row.logits = logits;
  row.base = static_cast<int64_t>(blockIdx.x) * vocab;
  row.dtype = dtype;
  const int64_t first = static_cast<int64_t>(threadIdx.x) * chunk;
  row.i0 = first < vocab ? first : vocab;
  row.i1 = row.i0 + chunk < vocab ? row.i0 + chunk : vocab;
  const float temperature = p[0];
  int64_t token;
  if (!(temperature > 0.f)) {
    token = sample_greedy(sh, row);
  } else {
    row.inv_t = 1.f / temperature;
    row.min_p = p[3];
    const double u = fmin(fmax(static_cast<double>(p[4]), 0.0), 1.0);
    token = sample_draw(sh, row, vocab, static_cast<int64_t>(p[1]), p[2], u);
  }
  if (threadIdx.x == 0) out[blockIdx.x] = static_cast<int32_t>(token);
}

}  // namespace

void launch_sample_rows(const LaunchCtx& ctx, int32_t* out, const void* logits, DType dtype,
                        int64_t rows, int64_t vocab, const float* params) {
  if (rows == 0) return;
  sample_rows_kernel<<<static_cast<unsigned>(rows), kSampleThreads, 0, ctx.stream>>>(
      out, logits, dtype, vocab, params);
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
