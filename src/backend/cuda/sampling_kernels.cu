// Sampling kernels: argmax_rows (greedy tokens on the device).
#include <cmath>
#include <cstdint>

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

}  // namespace

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
