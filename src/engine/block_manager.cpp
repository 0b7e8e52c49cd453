#include "engine/block_manager.h"

#include <algorithm>

#include "util/check.h"

namespace carpool {
namespace {
// splitmix64's finalizer: a cheap, well-mixed 64-bit permutation.
uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}
}  // namespace

BlockManager::BlockManager(int num_blocks, int block_size, bool enable_prefix_caching)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      prefix_caching_(enable_prefix_caching),
      blocks_(static_cast<size_t>(num_blocks)) {
  CARPOOL_CHECK(num_blocks > 0 && block_size > 0);
  for (int32_t b = 0; b < num_blocks; ++b) list_push_back(b);
}

uint64_t BlockManager::chain_hash(uint64_t parent, std::span<const int32_t> tokens) {
  uint64_t h = mix64(parent ^ 0x9e3779b97f4a7c15ULL);
  for (int32_t t : tokens) h = mix64(h ^ static_cast<uint32_t>(t));
  return h;
}

int BlockManager::num_cached_free_blocks() const {
  int n = 0;
  for (int32_t b = head_; b >= 0; b = blocks_[b].next) n += blocks_[b].hashed ? 1 : 0;
  return n;
}

int32_t BlockManager::lookup(uint64_t parent, std::span<const int32_t> tokens) const {
  auto [lo, hi] = cached_.equal_range(chain_hash(parent, tokens));
  for (auto it = lo; it != hi; ++it) {
    const Block& b = blocks_[it->second];
    if (b.parent_hash == parent &&
        std::equal(tokens.begin(), tokens.end(), b.tokens.begin(), b.tokens.end())) {
      return it->second;
    }
  }
  return -1;
}

int BlockManager::cached_prefix_tokens(std::span<const int32_t> tokens, int max_tokens) const {
  if (!prefix_caching_) return 0;
  const int limit = std::min<int>(max_tokens, static_cast<int>(tokens.size())) / block_size_;
  uint64_t parent = 0;
  int n = 0;
  for (; n < limit; ++n) {
    auto chunk = tokens.subspan(static_cast<size_t>(n) * block_size_, block_size_);
    const int32_t b = lookup(parent, chunk);
    if (b < 0) break;
    parent = blocks_[b].hash;
  }
  return n * block_size_;
}

bool BlockManager::can_allocate(std::span<const int32_t> tokens, int num_cached_tokens,
                                int num_tokens) const {
  CARPOOL_CHECK(num_cached_tokens % block_size_ == 0 && num_cached_tokens <= num_tokens);
  const int n_cached = num_cached_tokens / block_size_;
  // Cached blocks on the free list stop being free when taken.
  int cached_free = 0;
  uint64_t parent = 0;
  for (int i = 0; i < n_cached; ++i) {
    const int32_t b =
        lookup(parent, tokens.subspan(static_cast<size_t>(i) * block_size_, block_size_));
    CARPOOL_CHECK(b >= 0);
    cached_free += blocks_[b].ref_count == 0 ? 1 : 0;
    parent = blocks_[b].hash;
  }
  return num_free_ - cached_free >= blocks_for(num_tokens) - n_cached;
}

void BlockManager::allocate(BlockTable& table, std::span<const int32_t> tokens,
                            int num_cached_tokens, int num_tokens) {
  CARPOOL_CHECK(table.blocks.empty());
  CARPOOL_CHECK(can_allocate(tokens, num_cached_tokens, num_tokens));
  const int n_cached = num_cached_tokens / block_size_;
  uint64_t parent = 0;
  for (int i = 0; i < n_cached; ++i) {
    const int32_t b =
        lookup(parent, tokens.subspan(static_cast<size_t>(i) * block_size_, block_size_));
    if (blocks_[b].ref_count == 0) list_remove(b);
    blocks_[b].ref_count += 1;
    table.blocks.push_back(b);
    parent = blocks_[b].hash;
  }
  table.num_hashed = n_cached;
  table.last_hash = parent;
  append(table, num_tokens);
}

bool BlockManager::can_append(const BlockTable& table, int num_tokens) const {
  const int need = blocks_for(num_tokens) - static_cast<int>(table.blocks.size());
  return need <= num_free_;
}

void BlockManager::append(BlockTable& table, int num_tokens) {
  CARPOOL_CHECK(can_append(table, num_tokens));
  while (static_cast<int>(table.blocks.size()) < blocks_for(num_tokens)) {
    const int32_t b = take_free_block();
    blocks_[b].ref_count = 1;
    table.blocks.push_back(b);
  }
}

void BlockManager::commit(BlockTable& table, std::span<const int32_t> tokens, int num_computed) {
  if (!prefix_caching_) return;
  const int full = std::min(num_computed / block_size_, static_cast<int>(table.blocks.size()));
  for (int i = table.num_hashed; i < full; ++i) {
    auto chunk = tokens.subspan(static_cast<size_t>(i) * block_size_, block_size_);
    const uint64_t h = chain_hash(table.last_hash, chunk);
    // When another block already caches this prefix (two equal prompts computed side by side),
    // the first stays the cached copy and this one stays private.
    if (lookup(table.last_hash, chunk) < 0) {
      Block& blk = blocks_[table.blocks[i]];
      CARPOOL_CHECK(!blk.hashed);
      blk.hashed = true;
      blk.hash = h;
      blk.parent_hash = table.last_hash;
      blk.tokens.assign(chunk.begin(), chunk.end());
      cached_.emplace(h, table.blocks[i]);
    }
    table.last_hash = h;
    table.num_hashed = i + 1;
  }
}

void BlockManager::free(BlockTable& table) {
  for (auto it = table.blocks.rbegin(); it != table.blocks.rend(); ++it) {
    Block& b = blocks_[*it];
    CARPOOL_CHECK(b.ref_count > 0);
    if (--b.ref_count == 0) {
      if (b.hashed) {
        list_push_back(*it);
      } else {
        list_push_front(*it);
      }
    }
  }
  table = BlockTable{};
}

int32_t BlockManager::take_free_block() {
  CARPOOL_CHECK(head_ >= 0);
  const int32_t b = head_;
  list_remove(b);
  Block& blk = blocks_[b];
  if (blk.hashed) {
    auto [lo, hi] = cached_.equal_range(blk.hash);
    for (auto it = lo; it != hi; ++it) {
      if (it->second == b) {
        cached_.erase(it);
        break;
      }
    }
    blk.hashed = false;
    blk.tokens.clear();
  }
  return b;
}

void BlockManager::list_remove(int32_t b) {
  Block& blk = blocks_[b];
  CARPOOL_CHECK(blk.on_free_list);
  if (blk.prev >= 0)
    blocks_[blk.prev].next = blk.next;
  else
    head_ = blk.next;
  if (blk.next >= 0)
    blocks_[blk.next].prev = blk.prev;
  else
    tail_ = blk.prev;
  blk.prev = blk.next = -1;
  blk.on_free_list = false;
  --num_free_;
}

void BlockManager::list_push_front(int32_t b) {
  Block& blk = blocks_[b];
  CARPOOL_CHECK(!blk.on_free_list);
  blk.prev = -1;
  blk.next = head_;
  if (head_ >= 0)
    blocks_[head_].prev = b;
  else
    tail_ = b;
  head_ = b;
  blk.on_free_list = true;
  ++num_free_;
}

void BlockManager::list_push_back(int32_t b) {
  Block& blk = blocks_[b];
  CARPOOL_CHECK(!blk.on_free_list);
  blk.next = -1;
  blk.prev = tail_;
  if (tail_ >= 0)
    blocks_[tail_].next = b;
  else
    head_ = b;
  tail_ = b;
  blk.on_free_list = true;
  ++num_free_;
}

}  // namespace carpool
