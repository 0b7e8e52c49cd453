// Device helpers shared by the kernel files: element loads/stores by run-time dtype, warp
// reductions, launch checks. Included only by .cu files.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "backend/dtype.h"

namespace carpool::cuda {

// Element i of an F32, F16 or BF16 array as float (`dt` is uniform across a launch).
__device__ __forceinline__ float load_f(const void* p, int64_t i, DType dt) {
  if (dt == DType::kBF16) return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  if (dt == DType::kF16) return __half2float(static_cast<const __half*>(p)[i]);
  return static_cast<const float*>(p)[i];
}

__device__ __forceinline__ void store_f(void* p, int64_t i, DType dt, float v) {
  if (dt == DType::kBF16) {
    static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
  } else if (dt == DType::kF16) {
    static_cast<__half*>(p)[i] = __float2half_rn(v);
  } else {
    static_cast<float*>(p)[i] = v;
  }
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Grid size for a grid-stride loop over n items with `threads` per block.
inline unsigned grid_for(int64_t n, int threads, const LaunchCtx& ctx) {
  int64_t blocks = ceil_div(n, threads);
  int64_t cap = static_cast<int64_t>(ctx.sm_count) * 32;
  if (blocks > cap) blocks = cap;
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks);
}

inline void check_launch(const LaunchCtx& ctx) {
  CUDA_CHECK_LAUNCH(ctx.stream, ctx.debug_sync);
}

}  // namespace carpool::cuda
