#include "util/argmax.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>

namespace carpool {

// A lane-wise loop that the compiler turns into SIMD code (no reduction carried by one scalar);
// out of line: inlined into the sampler, GCC 12 left it scalar.
[[gnu::noinline]] float max_of(const float* l, size_t n) {
  constexpr size_t kLanes = 16;
  float lane[kLanes];
  for (float& m : lane) m = -std::numeric_limits<float>::infinity();
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (size_t j = 0; j < kLanes; ++j) lane[j] = l[i + j] > lane[j] ? l[i + j] : lane[j];
  }
  for (; i < n; ++i) lane[0] = l[i] > lane[0] ? l[i] : lane[0];
  return *std::max_element(std::begin(lane), std::end(lane));
}

// The largest in lanes, then its first place.
int32_t first_of_largest(const float* l, size_t n) {
  if (std::isnan(l[0])) return 0;
  const float m = max_of(l, n);  // not NaN, and l[0] <= m
  return static_cast<int32_t>(std::find(l, l + n, m) - l);
}

}  // namespace carpool
