#include "backend/cpu/kv_int8.h"

#include <algorithm>
#include <cmath>

namespace carpool {
namespace {

// x rounded to the nearest integer, ties to even, for |x| <= 2^22: adding and subtracting 1.5 *
// 2^23 leaves no fraction bits (f32 arithmetic in the default rounding mode; no libm call, so the
// loops below vectorize).
inline float round_small(float x) {
  constexpr float kShift = 12582912.f;
  return (x + kShift) - kShift;
}

// The quantized values of x[0, n) with 127 / max|x| = inv, in [-127, 127] (NaN: -127).
void quantize_values(const float* x, int n, float inv, int8_t* q) {
  for (int i = 0; i < n; ++i) {
    float v = x[i] * inv;
    v = v > 127.f ? 127.f : (v >= -127.f ? v : -127.f);
    q[i] = static_cast<int8_t>(static_cast<int>(round_small(v)));
  }
}

}  // namespace

float quantize_kv_head(const float* x, int n, int8_t* q, int64_t stride) {
  float amax = 0.f;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float inv = amax > 0.f ? 127.f / amax : 0.f;
  if (stride == 1) {
    quantize_values(x, n, inv, q);
  } else {
    constexpr int kChunk = 256;
    int8_t tmp[kChunk];
    for (int c0 = 0; c0 < n; c0 += kChunk) {
      const int m = std::min(kChunk, n - c0);
      quantize_values(x + c0, m, inv, tmp);
      for (int i = 0; i < m; ++i) q[(c0 + i) * stride] = tmp[i];
    }
  }
  return amax / 127.f;
}

}  // namespace carpool
