// splitk_count: how many k-slices a cuBLAS matmul is cut into (kernels.h).
#include <algorithm>
#include <cstdint>

#include "backend/cuda/kernels.h"

namespace carpool::cuda {

int splitk_count(int64_t m, int64_t n, int64_t k, int sm_count) {
  constexpr int64_t kTile = 128;       // output tile edge assumed for cuBLAS's kernels
  constexpr int64_t kSliceAlign = 64;  // each slice's k, so the slices start 128-byte aligned
  constexpr int kMaxSplits = 8;
  if (m <= 0 || n <= 0 || k <= 0 || sm_count <= 0) return 1;
  const int64_t tiles = ((m + kTile - 1) / kTile) * ((n + kTile - 1) / kTile);
  if (2 * tiles > sm_count) return 1;  // at least half the SMs busy already
  int splits = static_cast<int>(std::min<int64_t>(kMaxSplits, sm_count / tiles));
  while (splits > 1 && k % (int64_t{splits} * kSliceAlign) != 0) --splits;
  return splits;
}

}  // namespace carpool::cuda
