// BlockManager: the paged KV cache's bookkeeping (which block holds which tokens), host side.
//
// The cache is `num_blocks` fixed-size blocks of `block_size` token slots. A sequence's
// BlockTable lists its blocks in position order: position p lives in slot
// blocks[p / block_size] * block_size + p % block_size.
//
// Prefix reuse: once a block is full of computed tokens it gets a hash chained over its parent's
// hash and its own token ids, so equal hashes mean equal whole prefixes. A new sequence whose
// prompt starts with cached blocks takes them (reference count + 1) instead of computing them.
// The block's token ids and its parent's hash are kept beside the hash and compared on a hit, so
// a wrong hit needs two different prefixes whose 64-bit chain hashes agree at two consecutive
// blocks with equal token ids in the second.
//
// Free list and eviction (LRU): a block whose reference count drops to 0 goes on the free list.
// Blocks with no hash go to the front (they hold nothing worth keeping and are reused first);
// hashed blocks go to the back and keep their hash, so a later request can still hit them. When
// a sequence frees its table, its blocks are released last-to-first, so a chain's tail is evicted
// before its head (the tail is useless without the head). Allocation takes the front block and
// drops its hash (eviction). A hit on a free cached block takes it off the list. So among cached
// blocks the least recently released is evicted first.
//
// Thread-safety: none; owned by the scheduler (the engine loop thread).
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

namespace carpool {

// A sequence's KV blocks. Owned by the sequence; filled and emptied only by a BlockManager.
struct BlockTable {
  std::vector<int32_t> blocks;  // [ceil(covered positions / block_size)] block ids
  int num_hashed = 0;           // leading blocks whose hash is registered (full, computed)
  uint64_t last_hash = 0;       // hash of block num_hashed - 1 (the chain's parent)
};

class BlockManager {
 public:
  BlockManager(int num_blocks, int block_size, bool enable_prefix_caching);

  int num_blocks() const { return num_blocks_; }
  int block_size() const { return block_size_; }
  // Blocks on the free list (including cached blocks that may still be hit).
  int num_free_blocks() const { return num_free_; }
  // Blocks referenced by at least one sequence.
  int num_used_blocks() const { return num_blocks_ - num_free_; }
  // Free blocks that still hold a cached prefix block.
  int num_cached_free_blocks() const;
  int blocks_for(int num_tokens) const { return (num_tokens + block_size_ - 1) / block_size_; }

  // --- admission of a sequence with an empty table ---
  // Tokens at the start of `tokens` found in the cache: whole blocks, at most `max_tokens`
  // (callers pass tokens.size() - 1 so that at least one token is computed and gives logits).
  int cached_prefix_tokens(std::span<const int32_t> tokens, int max_tokens) const;
  // Whether allocate() can cover positions [0, num_tokens) after taking `num_cached_tokens`
  // (from cached_prefix_tokens) from the cache.
  bool can_allocate(std::span<const int32_t> tokens, int num_cached_tokens, int num_tokens) const;
  // PRECONDITIONS: table is empty; can_allocate(tokens, num_cached_tokens, num_tokens).
  // Takes the cached prefix blocks, then fresh blocks up to num_tokens positions.
  void allocate(BlockTable& table, std::span<const int32_t> tokens, int num_cached_tokens,
                int num_tokens);

  // --- growth of a running sequence ---
  // Whether the table can grow to cover positions [0, num_tokens).
  bool can_append(const BlockTable& table, int num_tokens) const;
  // PRECONDITION: can_append(table, num_tokens).
  void append(BlockTable& table, int num_tokens);

  // Registers the hashes of the table's blocks that are full of computed tokens:
  // `tokens[0, num_computed)` have their KV in the cache.
  void commit(BlockTable& table, std::span<const int32_t> tokens, int num_computed);

  // Releases the table's blocks (cached ones stay reusable until evicted); leaves it empty.
  void free(BlockTable& table);

  int ref_count(int32_t block) const { return blocks_[block].ref_count; }

 private:
  struct Block {
    int ref_count = 0;
    bool hashed = false;
    uint64_t hash = 0;
    uint64_t parent_hash = 0;      // when hashed (collision check)
    std::vector<int32_t> tokens;   // [block_size] when hashed (collision check)
    int32_t prev = -1, next = -1;  // free-list links
    bool on_free_list = false;
  };
  static uint64_t chain_hash(uint64_t parent, std::span<const int32_t> tokens);
  // The cached block holding `tokens` after the chain `parent`, or -1.
  int32_t lookup(uint64_t parent, std::span<const int32_t> tokens) const;
  void list_remove(int32_t b);
  void list_push_front(int32_t b);
  void list_push_back(int32_t b);
  int32_t take_free_block();  // pops the front, evicting its hash

  int num_blocks_;
  int block_size_;
  bool prefix_caching_;
  std::vector<Block> blocks_;
  int32_t head_ = -1, tail_ = -1;
  int num_free_ = 0;
  std::unordered_multimap<uint64_t, int32_t> cached_;  // hash -> block
};

}  // namespace carpool
