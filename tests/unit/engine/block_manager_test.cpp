// BlockManager: allocation, reference counts, prefix reuse by chained block hashes, LRU eviction.
#include "engine/block_manager.h"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

namespace carpool {
namespace {

std::vector<int32_t> seq_tokens(int n, int32_t first) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), first);
  return t;
}

TEST(BlockManager, AllocateAppendFreeCounts) {
  BlockManager bm(8, 4, /*enable_prefix_caching=*/true);
  EXPECT_EQ(bm.num_free_blocks(), 8);
  auto toks = seq_tokens(10, 1);
  BlockTable t;
  ASSERT_TRUE(bm.can_allocate(toks, 0, 5));
  bm.allocate(t, toks, 0, 5);  // positions [0, 5): 2 blocks
  EXPECT_EQ(t.blocks.size(), 2u);
  EXPECT_EQ(bm.num_used_blocks(), 2);
  EXPECT_TRUE(bm.can_append(t, 8));  // still 2 blocks
  bm.append(t, 8);
  EXPECT_EQ(t.blocks.size(), 2u);
  bm.append(t, 9);
  EXPECT_EQ(t.blocks.size(), 3u);
  EXPECT_FALSE(bm.can_append(t, 9 + 6 * 4));  // would need 6 more of the 5 free
  EXPECT_TRUE(bm.can_append(t, 8 * 4));
  for (int32_t b : t.blocks) EXPECT_EQ(bm.ref_count(b), 1);
  bm.free(t);
  EXPECT_TRUE(t.blocks.empty());
  EXPECT_EQ(bm.num_free_blocks(), 8);
}

TEST(BlockManager, PrefixReuseSharesFullComputedBlocks) {
  BlockManager bm(8, 4, true);
  // A: 10 tokens computed -> blocks 0 and 1 are full and get hashes; block 2 is partial.
  auto a = seq_tokens(10, 100);
  BlockTable ta;
  bm.allocate(ta, a, 0, 10);
  EXPECT_EQ(bm.cached_prefix_tokens(a, 9), 0);  // nothing computed yet
  bm.commit(ta, a, 10);
  EXPECT_EQ(ta.num_hashed, 2);
  // B shares A's first 8 tokens, then differs.
  auto b = a;
  b[8] = 7;
  b.push_back(8);
  EXPECT_EQ(bm.cached_prefix_tokens(b, static_cast<int>(b.size()) - 1), 8);
  EXPECT_EQ(bm.cached_prefix_tokens(b, 7), 4);  // whole blocks within the limit
  BlockTable tb;
  ASSERT_TRUE(bm.can_allocate(b, 8, 11));
  bm.allocate(tb, b, 8, 11);
  ASSERT_EQ(tb.blocks.size(), 3u);
  EXPECT_EQ(tb.blocks[0], ta.blocks[0]);
  EXPECT_EQ(tb.blocks[1], ta.blocks[1]);
  EXPECT_NE(tb.blocks[2], ta.blocks[2]);
  EXPECT_EQ(bm.ref_count(ta.blocks[0]), 2);
  EXPECT_EQ(bm.num_used_blocks(), 4);
  // Freeing A keeps the shared blocks referenced by B.
  bm.free(ta);
  EXPECT_EQ(bm.ref_count(tb.blocks[0]), 1);
  EXPECT_EQ(bm.num_used_blocks(), 3);
}

TEST(BlockManager, HashIsChainedOverThePrefix) {
  BlockManager bm(8, 4, true);
  auto a = seq_tokens(8, 1);
  BlockTable ta;
  bm.allocate(ta, a, 0, 8);
  bm.commit(ta, a, 8);
  // Same second block, different first block: no hit at all.
  auto b = a;
  b[0] = 99;
  EXPECT_EQ(bm.cached_prefix_tokens(b, 8), 0);
  // Same first block only.
  auto c = a;
  c[5] = 99;
  EXPECT_EQ(bm.cached_prefix_tokens(c, 8), 4);
  EXPECT_EQ(bm.cached_prefix_tokens(a, 8), 8);
}

TEST(BlockManager, FreedCachedBlocksStayReusableUntilEvictedLeastRecentlyUsedFirst) {
  BlockManager bm(4, 4, true);
  auto a = seq_tokens(8, 1);   // 2 full blocks
  auto b = seq_tokens(8, 50);  // 2 full blocks
  BlockTable ta, tb;
  bm.allocate(ta, a, 0, 8);
  bm.commit(ta, a, 8);
  bm.allocate(tb, b, 0, 8);
  bm.commit(tb, b, 8);
  bm.free(ta);  // a released first: least recently used
  bm.free(tb);
  EXPECT_EQ(bm.num_free_blocks(), 4);
  EXPECT_EQ(bm.num_cached_free_blocks(), 4);
  EXPECT_EQ(bm.cached_prefix_tokens(a, 8), 8);
  EXPECT_EQ(bm.cached_prefix_tokens(b, 8), 8);
  // One fresh block evicts a's tail first (a chain's tail goes before its head).
  auto x = seq_tokens(3, 500);
  BlockTable tx;
  bm.allocate(tx, x, 0, 3);
  EXPECT_EQ(bm.cached_prefix_tokens(a, 8), 4);
  EXPECT_EQ(bm.cached_prefix_tokens(b, 8), 8);
  // A second evicts a's head; b is untouched.
  bm.append(tx, 5);
  EXPECT_EQ(bm.cached_prefix_tokens(a, 8), 0);
  EXPECT_EQ(bm.cached_prefix_tokens(b, 8), 8);
  // A hit takes b's blocks off the free list: a 2-block hit plus 1 new block needs 3 of 2 free.
  EXPECT_FALSE(bm.can_allocate(b, 8, 9));
  bm.free(tx);  // unhashed blocks go to the front and are reused first
  EXPECT_TRUE(bm.can_allocate(b, 8, 9));
  BlockTable tb2;
  bm.allocate(tb2, b, 8, 9);
  EXPECT_EQ(bm.num_used_blocks(), 3);
  EXPECT_EQ(bm.cached_prefix_tokens(b, 8), 8);  // still cached (in use now)
}

TEST(BlockManager, CanAllocateCountsHitBlocksThatAreFree) {
  BlockManager bm(4, 4, true);
  auto a = seq_tokens(8, 1);
  BlockTable ta;
  bm.allocate(ta, a, 0, 8);
  bm.commit(ta, a, 8);
  bm.free(ta);                 // 4 free, 2 of them cached
  auto b = seq_tokens(20, 1);  // a's 8 tokens then 12 more: 5 blocks
  EXPECT_EQ(bm.cached_prefix_tokens(b, 19), 8);
  EXPECT_TRUE(bm.can_allocate(b, 8, 16));   // 2 hit + 2 new = 4 blocks
  EXPECT_FALSE(bm.can_allocate(b, 8, 17));  // 2 hit + 3 new
}

TEST(BlockManager, DuplicateComputedBlockStaysPrivate) {
  BlockManager bm(8, 4, true);
  auto a = seq_tokens(4, 1);
  BlockTable t1, t2;
  bm.allocate(t1, a, 0, 4);
  bm.allocate(t2, a, 0, 4);  // computed side by side: no hit yet
  bm.commit(t1, a, 4);
  bm.commit(t2, a, 4);
  EXPECT_EQ(t2.num_hashed, 1);
  const int32_t cached_block = t1.blocks[0];
  bm.free(t1);
  bm.free(t2);
  auto longer = seq_tokens(6, 1);
  BlockTable t3;
  ASSERT_EQ(bm.cached_prefix_tokens(longer, 5), 4);
  bm.allocate(t3, longer, 4, 6);
  EXPECT_EQ(t3.blocks[0], cached_block);
}

TEST(BlockManager, PrefixCachingOff) {
  BlockManager bm(4, 4, false);
  auto a = seq_tokens(8, 1);
  BlockTable ta;
  bm.allocate(ta, a, 0, 8);
  bm.commit(ta, a, 8);
  EXPECT_EQ(bm.cached_prefix_tokens(a, 8), 0);
  bm.free(ta);
  EXPECT_EQ(bm.num_cached_free_blocks(), 0);
}

}  // namespace
}  // namespace carpool
