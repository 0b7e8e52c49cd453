// The CPU backend's int8 KV cache (CpuBackendOptions::kv_dtype = kI8): each token's K or V row
// holds n_kv_heads heads of head_dim int8 values, and each (token, KV head) one f32 scale, the
// head's largest |x| / 127 (0 for a head of zeros), so that a value is its int8 times the scale
// (rounded to nearest, an error of at most half a scale step). K's values sit in their block
// column-major as in the f32 and f16 caches; the scales of one block and KV head are contiguous
// in key order, so one vector load gives the scales of consecutive keys, K's as V's.
#pragma once

#include <cstdint>

namespace carpool {

struct KvScales {
  float* data = nullptr;  // null: not an I8 cache
  int block_size = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  // The scale of (slot, head): blocks of n_kv_heads runs of block_size scales.
  int64_t index(int64_t slot, int head) const {
    return (slot / block_size * n_kv_heads + head) * block_size + slot % block_size;
  }
};

// An I8 cache layer's K and V scales (data null in both for float caches).
struct KvCacheScales {
  KvScales k, v;
};

// Quantizes n values x to q[0], q[stride], ... and returns their scale (max |x| / 127). A NaN or
// infinite x gives a deterministic but meaningless head (its model is broken); never UB.
float quantize_kv_head(const float* x, int n, int8_t* q, int64_t stride);

}  // namespace carpool
