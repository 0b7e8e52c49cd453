// exp(x) for x <= 0 in float, written so that a loop over an array compiles to SIMD code (no
// branches, no library call): the sampler's softmax weights over a whole vocabulary.
//
// Range reduction x = n ln2 + r with |r| <= ln2 / 2 (ln2 in two parts, Cody-Waite), exp(r) by its
// Taylor polynomial of degree 7, times 2^n built in the exponent bits. Relative error below 2e-7
// (tested against std::exp over [-87, 0]); x < -87 (including -inf) gives 0, as exp would
// underflow to a denormal or 0 there, and so does NaN. Positive x is clamped to 0 (gives 1): no
// input reaches an undefined float-to-int conversion.
#pragma once

#include <bit>
#include <cstdint>

namespace carpool {

inline float exp_nonpositive(float x) {
  const float xc = x >= -87.f ? (x <= 0.f ? x : 0.f) : -87.f;  // NaN: -87
  // Round to nearest by adding and removing 1.5 * 2^23 (std::floor stops the vectorizer).
  constexpr float kRound = 12582912.f;
  const float n = (xc * 1.44269504f + kRound) - kRound;
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.f / 5040.f;
  p = p * r + 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const float scale =
      std::bit_cast<float>(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
  return x >= -87.f ? p * scale : 0.f;
}

}  // namespace carpool
