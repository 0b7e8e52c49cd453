// Small-batch matmul for decode: y[m, n] = x[m, k] w[n, k]^T (+ bias), bf16 x and w, m <= 8.
//
// At a few activation rows a linear layer is a stream over its weights: every weight byte is read
// once and used m times, so the kernel's only job is to keep enough loads in flight to hold the
// memory bus busy. Each warp owns R consecutive weight rows; its lanes walk k in 16-byte chunks
// (8 bf16), U chunks per lane at a time, all loads of a round issued before any arithmetic.
// (Issuing the next round's loads before this round's arithmetic was 2-6% slower on every decode
// shape on an H200: bench/RESULTS.md.) The weights are read with an evict-first hint (they never
// fit in L2); the activations (m x k, a few KB to 200 KB) stay in L1/L2 and are re-read per weight
// row group, with coherent loads (under PDL they are written by the kernel still running when this
// one starts). Products accumulate in f32 per lane, in the same order for every row of x, then a
// warp shuffle tree sums the lanes: a row's result does not depend on how many other rows share the
// launch.
//
// With LaunchCtx::pdl (Hopper and newer, CARPOOL_CUDA_PDL=1) the kernel is launched as a
// programmatic dependent of the previous kernel on the stream: its blocks start while that kernel
// drains and load their first weights before waiting for its results.
#include "backend/cuda/device_utils.cuh"
#include "util/check.h"

namespace carpool::cuda {
namespace {

constexpr int kGemvThreads = 128;  // 4 warps per block
constexpr int kUnroll = 4;         // 16-byte chunks per lane and round

template <int M, int R>
__global__ void __launch_bounds__(kGemvThreads)
    gemv_bf16_kernel(const uint4* __restrict__ w, const uint4* x, void* y, DType y_dtype,
                     const void* bias, DType bias_dtype, int64_t n, int64_t k8) {
  const int lane = threadIdx.x % 32;
  const int64_t row0 = (blockIdx.x * int64_t(kGemvThreads) + threadIdx.x) / 32 * R;
  if (row0 >= n) return;  // whole warps exit together
  float acc[R][M];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int i = 0; i < M; ++i) acc[r][i] = 0.f;
  // Rows past n (the last warp of a matrix whose n is not a multiple of R) read row n - 1 again
  // and are not stored.
  const uint4* wr[R];
#pragma unroll
  for (int r = 0; r < R; ++r) wr[r] = w + min(row0 + r, n - 1) * k8;

  constexpr int64_t kRound = 32 * kUnroll;  // chunks of a row per round, over the warp
  uint4 wa[kUnroll][R];
  const auto load_round = [&](uint4(&wv)[kUnroll][R], int64_t c0) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t c = c0 + 32 * u;
#pragma unroll
      for (int r = 0; r < R; ++r) wv[u][r] = c < k8 ? __ldcs(wr[r] + c) : make_uint4(0, 0, 0, 0);
    }
  };
  const auto use_round = [&](const uint4(&wv)[kUnroll][R], int64_t c0) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t c = c0 + 32 * u;
      if (c >= k8) break;
      float wf[R][8];
#pragma unroll
      for (int r = 0; r < R; ++r) bf16x8_to_f32(wv[u][r], wf[r]);
#pragma unroll
      for (int i = 0; i < M; ++i) {
        float xf[8];
        bf16x8_to_f32(x[i * k8 + c], xf);  // coherent load: x may be fresh (PDL)
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[r][i] = fmaf(wf[r][e], xf[e], acc[r][i]);
      }
    }
  };
  // The weights do not depend on the previous kernel: with programmatic dependent launch the
  // first round is in flight while that kernel finishes; x is read only after the wait.
  load_round(wa, lane);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cudaGridDependencySynchronize();  // returns at once without a programmatic dependency
#endif
  for (int64_t c0 = lane; c0 < k8; c0 += kRound) {
    if (c0 != lane) load_round(wa, c0);
    use_round(wa, c0);
  }
  // Every lane gets the sums; lane r * M + i stores row r of the warp's weights for x's row i.
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int i = 0; i < M; ++i) acc[r][i] = warp_sum(acc[r][i]);
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int i = 0; i < M; ++i) {
      if (lane == (r * M + i) % 32 && row0 + r < n) {
        float v = acc[r][i];
        if (bias != nullptr) v += load_f(bias, row0 + r, bias_dtype);
        store_f(y, i * n + row0 + r, y_dtype, v);
      }
    }
  }
}

template <int M, int R>
void launch_mr(const LaunchCtx& ctx, const uint4* w, const uint4* x, void* y, DType y_dtype,
               const void* bias, DType bias_dtype, int64_t n, int64_t k8) {
  constexpr int rows_per_block = kGemvThreads / 32 * R;
  const unsigned blocks = static_cast<unsigned>(ceil_div(n, rows_per_block));
  if (!ctx.pdl) {
    gemv_bf16_kernel<M, R>
        <<<blocks, kGemvThreads, 0, ctx.stream>>>(w, x, y, y_dtype, bias, bias_dtype, n, k8);
    return;
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(blocks);
  cfg.blockDim = dim3(kGemvThreads);
  cfg.stream = ctx.stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  CUDA_CHECK(
      cudaLaunchKernelEx(&cfg, gemv_bf16_kernel<M, R>, w, x, y, y_dtype, bias, bias_dtype, n, k8));
}

template <int M>
void launch_m(const LaunchCtx& ctx, const uint4* w, const uint4* x, void* y, DType y_dtype,
              const void* bias, DType bias_dtype, int64_t n, int64_t k8) {
  // More rows per warp at one or two activation rows: more weight bytes in flight per warp. At
  // one row, 2 rows per warp for matrices of at most 8192 rows (LaunchCtx::gemv_rows_m1): twice
  // the blocks, where 4-row blocks number only 2-3 per SM.
  if constexpr (M == 1) {
    const int rows = ctx.gemv_rows_m1 != 0 ? ctx.gemv_rows_m1 : (n <= 8192 ? 2 : 4);
    if (rows == 2) {
      launch_mr<1, 2>(ctx, w, x, y, y_dtype, bias, bias_dtype, n, k8);
      return;
    }
    if (rows == 1) {  // (A/B: four times the blocks of 4 rows, for the narrowest matrices)
      launch_mr<1, 1>(ctx, w, x, y, y_dtype, bias, bias_dtype, n, k8);
      return;
    }
  }
  launch_mr<M, (M <= 2 ? 4 : 2)>(ctx, w, x, y, y_dtype, bias, bias_dtype, n, k8);
}

}  // namespace

bool gemv_bf16_fits(int64_t m, int64_t k, const void* w, const void* x) {
  return m >= 1 && m <= kGemvMaxRows && k > 0 && k % 8 == 0 && aligned16(w) && aligned16(x);
}

void launch_gemv_bf16(const LaunchCtx& ctx, void* y, DType y_dtype, const void* x, const void* w,
                      const void* bias, DType bias_dtype, int64_t m, int64_t n, int64_t k) {
  const auto* w4 = static_cast<const uint4*>(w);
  const auto* x4 = static_cast<const uint4*>(x);
  const int64_t k8 = k / 8;
  using Launch = void (*)(const LaunchCtx&, const uint4*, const uint4*, void*, DType, const void*,
                          DType, int64_t, int64_t);
  static constexpr Launch kByRows[kGemvMaxRows] = {launch_m<1>, launch_m<2>, launch_m<3>,
                                                   launch_m<4>, launch_m<5>, launch_m<6>,
                                                   launch_m<7>, launch_m<8>};
  CARPOOL_CHECK(m >= 1 && m <= kGemvMaxRows);
  kByRows[m - 1](ctx, w4, x4, y, y_dtype, bias, bias_dtype, n, k8);
  check_launch(ctx);
}

}  // namespace carpool::cuda
