// Largest values of float rows, vectorized: the greedy pick of the host sampler and of the CPU
// backend's argmax_rows, which must agree token for token.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>

namespace carpool {

// Largest value of l[0, n) (NaN never is; -inf for n == 0 or all NaN).
float max_of(const float* l, size_t n);

// The index std::max_element gives (the first of the largest; a NaN never beats an earlier value
// and one at index 0 is never beaten), n > 0.
int32_t first_of_largest(const float* l, size_t n);

}  // namespace carpool
