// Random quantized weight rows for the CPU kernel tests: random quant bytes with sane f16 scales
// (random bytes there would give infinities and NaNs).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "backend/dtype.h"

namespace carpool {

inline std::vector<uint8_t> random_quant_weights(std::mt19937& g, DType t, int64_t rows,
                                                 int64_t k) {
  const DTypeInfo& info = dtype_info(t);
  std::vector<uint8_t> bytes(dtype_row_bytes(t, k) * static_cast<size_t>(rows));
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(g());
  std::uniform_real_distribution<float> u(-0.02f, 0.02f);
  for (size_t blk = 0; blk < bytes.size() / info.block_bytes; ++blk) {
    uint8_t* p = bytes.data() + blk * info.block_bytes;
    const size_t off = t == DType::kQ6_K ? offsetof(BlockQ6_K, d) : 0;
    const int n_halves =
        (t == DType::kQ4_1 || t == DType::kQ5_1 || t == DType::kQ4_K || t == DType::kQ5_K) ? 2 : 1;
    for (int h = 0; h < n_halves; ++h) {
      const uint16_t v = f32_to_f16(u(g));
      std::memcpy(p + off + 2 * h, &v, 2);
    }
  }
  return bytes;
}

}  // namespace carpool
