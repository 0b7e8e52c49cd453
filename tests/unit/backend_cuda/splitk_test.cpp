// splitk_count: the split-K plan of the CUDA backend's cuBLAS matmuls (pure logic, no device).
#include <gtest/gtest.h>

#include "backend/cuda/kernels.h"

namespace carpool::cuda {
namespace {

constexpr int kH200Sms = 132;

TEST(SplitK, NarrowDecodeProjectionsAreSplit) {
  // Llama-3.1-8B at batch 64: o (4096 -> 4096) has 32 tiles of 128 x 128 for 132 SMs.
  EXPECT_EQ(splitk_count(64, 4096, 4096, kH200Sms), 4);
  EXPECT_EQ(splitk_count(64, 6144, 4096, kH200Sms), 2);   // q|k|v: 48 tiles
  EXPECT_EQ(splitk_count(64, 4096, 14336, kH200Sms), 4);  // down: 14336 = 4 x 3584
  EXPECT_EQ(splitk_count(256, 4096, 4096, kH200Sms), 2);  // 64 tiles
}

TEST(SplitK, WideOrLargeMatmulsAreNot) {
  EXPECT_EQ(splitk_count(64, 28672, 4096, kH200Sms), 1);   // gate|up: 224 tiles
  EXPECT_EQ(splitk_count(64, 14336, 4096, kH200Sms), 1);   // 112 tiles: more than half busy
  EXPECT_EQ(splitk_count(4096, 4096, 4096, kH200Sms), 1);  // prefill
  EXPECT_EQ(splitk_count(64, 128256, 4096, kH200Sms), 1);  // LM head
}

TEST(SplitK, SlicesStayAlignedAndBounded) {
  // k must split into multiples of 64: 4160 = 65 x 64 has no split of 2..8 that divides it.
  EXPECT_EQ(splitk_count(64, 4096, 4160, kH200Sms), 1);
  EXPECT_EQ(splitk_count(64, 4096, 6144, kH200Sms), 4);        // 6144 = 4 x 1536
  EXPECT_EQ(splitk_count(64, 4096, 4096 + 192, kH200Sms), 1);  // 4288 = 67 x 64, 67 prime
  EXPECT_LE(splitk_count(1, 128, 1 << 20, 1000), 8);
  EXPECT_EQ(splitk_count(1, 128, 4096, 1), 1);
  for (int64_t bad : {0, -1}) {
    EXPECT_EQ(splitk_count(bad, 4096, 4096, kH200Sms), 1);
    EXPECT_EQ(splitk_count(64, bad, 4096, kH200Sms), 1);
    EXPECT_EQ(splitk_count(64, 4096, bad, kH200Sms), 1);
  }
}

}  // namespace
}  // namespace carpool::cuda
