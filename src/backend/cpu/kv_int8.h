// The CPU backend's int8 KV cache (CpuBackendOptions::kv_dtype = kI8): each token's K or V row
// holds n_kv_heads heads of head_dim int8 values, and each (token, KV head) one f32 scale, the
// head's largest |x| / 127 (0 for a head of zeros), so that a value is its int8 times the scale
// (rounded to nearest, an error of at most half a scale step). Where values and scales sit:
// kv_layout.h.
#pragma once

#include <cstdint>

namespace carpool {

// Quantizes n values x to q[0], q[stride], ... and returns their scale (max |x| / 127). A NaN or
// infinite x gives a deterministic but meaningless head (its model is broken); never UB.
float quantize_kv_head(const float* x, int n, int8_t* q, int64_t stride);

}  // namespace carpool
