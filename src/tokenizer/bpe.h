// The BPE merge loop shared by both tokenizer families.
//
// A word arrives as a sequence of initial symbol ids (bytes or characters). Merges are applied in
// rank order, lowest rank first, leftmost first among equal ranks, until no adjacent pair has a
// merge: the same result as the reference implementation. Symbols form a linked list and the
// candidate pairs a priority queue, so a word of n symbols costs O(n log n), not O(n^2).
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace carpool {

class BpeMerges {
 public:
  struct Merge {
    int32_t rank;    // lower merges first
    int32_t result;  // token id of the merged symbol
  };

  // Adds (left, right) -> result at `rank`. A pair added twice keeps its first (lowest) rank.
  void add(int32_t left, int32_t right, int32_t rank, int32_t result);
  const Merge* find(int32_t left, int32_t right) const;
  size_t size() const { return merges_.size(); }

  // Merges `symbols` in place. [n_symbols] -> [n_tokens]
  void apply(std::vector<int32_t>& symbols) const;

 private:
  static uint64_t key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  std::unordered_map<uint64_t, Merge> merges_;
};

}  // namespace carpool
