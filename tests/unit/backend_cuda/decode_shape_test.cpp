// decode_shape: the decode attention launch's CTA shape and context split (pure logic, no device).
#include <gtest/gtest.h>

#include "backend/cuda/kernels.h"

namespace carpool::cuda {
namespace {

// An H200: 132 SMs; 3 CTAs of 4 warps or 6 of 2 warps resident per SM (shared memory bound).
DecodeShapeInput h200(int64_t ctas, int64_t tiles) {
  DecodeShapeInput in;
  in.ctas = ctas;
  in.tiles = tiles;
  in.sm_count = 132;
  in.resident4 = 3;
  in.resident2 = 6;
  return in;
}

TEST(DecodeShape, SmallBatchesTakeFourWarpsAndSplitTheContext) {
  // Llama-3.1-8B (8 KV heads), batch 1, 160 positions (3 tiles): 8 CTAs, one split per tile.
  DecodeShape s = decode_shape(h200(8, 3));
  EXPECT_EQ(s.warps, 4);
  EXPECT_EQ(s.splits, 3);
  // batch 1 at 8192 positions: 396 slots / 8 CTAs = 49 splits (fewer than the 128 tiles).
  s = decode_shape(h200(8, 128));
  EXPECT_EQ(s.warps, 4);
  EXPECT_EQ(s.splits, 49);
  // batch 16 at 4096: 128 CTAs, 3 splits fill 384 of the 396 slots.
  s = decode_shape(h200(128, 64));
  EXPECT_EQ(s.warps, 4);
  EXPECT_EQ(s.splits, 3);
}

TEST(DecodeShape, BatchesPastOneWaveOfFourWarpCtasTakeTwoWarpsUnsplit) {
  // batch 64: 512 CTAs > 396 four-warp slots, <= 792 two-warp slots: one wave, no split.
  DecodeShape s = decode_shape(h200(512, 3));
  EXPECT_EQ(s.warps, 2);
  EXPECT_EQ(s.splits, 1);
  s = decode_shape(h200(512, 32));  // long contexts too: a split would add a wave
  EXPECT_EQ(s.splits, 1);
  // batch 256: 2048 CTAs, several waves whatever the split.
  s = decode_shape(h200(2048, 16));
  EXPECT_EQ(s.warps, 2);
  EXPECT_EQ(s.splits, 1);
  // The edge: 396 CTAs still fit one wave of 4-warp CTAs, 397 do not.
  EXPECT_EQ(decode_shape(h200(396, 8)).warps, 4);
  EXPECT_EQ(decode_shape(h200(397, 8)).warps, 2);
  EXPECT_EQ(decode_shape(h200(397, 8)).splits, 1);
  EXPECT_EQ(decode_shape(h200(396, 8)).splits, 1);
}

TEST(DecodeShape, OverridesWin) {
  DecodeShapeInput in = h200(8, 128);
  in.warps = 2;  // forced: 792 slots / 8 = 99 splits
  DecodeShape s = decode_shape(in);
  EXPECT_EQ(s.warps, 2);
  EXPECT_EQ(s.splits, 99);
  in.ctas_per_sm = 2;  // and 2 CTAs per SM whatever is resident: 264 / 8 = 33
  EXPECT_EQ(decode_shape(in).splits, 33);
  in = h200(512, 3);
  in.warps = 4;  // forced 4 warps at batch 64: no split (396 / 512 = 0, at least 1)
  s = decode_shape(in);
  EXPECT_EQ(s.warps, 4);
  EXPECT_EQ(s.splits, 1);
}

TEST(DecodeShape, DegenerateInputsGiveOneSplit) {
  EXPECT_EQ(decode_shape(h200(0, 10)).splits, 1);  // no decode rows
  EXPECT_EQ(decode_shape(h200(1, 0)).splits, 1);   // no tiles
  DecodeShapeInput in = h200(1, 1 << 20);
  in.resident4 = 1000;  // at most 1024 splits
  EXPECT_EQ(decode_shape(in).splits, 1024);
  in = h200(4, 8);
  in.sm_count = 0;   // treated as one SM
  in.resident4 = 0;  // and at least one resident CTA
  in.resident2 = 0;
  DecodeShape s = decode_shape(in);
  EXPECT_EQ(s.warps, 2);
  EXPECT_EQ(s.splits, 1);
}

}  // namespace
}  // namespace carpool::cuda
