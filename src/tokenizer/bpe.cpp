#include "tokenizer/bpe.h"

#include <queue>

namespace carpool {

void BpeMerges::add(int32_t left, int32_t right, int32_t rank, int32_t result) {
  merges_.emplace(key(left, right), Merge{rank, result});
}

const BpeMerges::Merge* BpeMerges::find(int32_t left, int32_t right) const {
  auto it = merges_.find(key(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

void BpeMerges::apply(std::vector<int32_t>& symbols) const {
  const int32_t n = static_cast<int32_t>(symbols.size());
  if (n < 2) return;
  // Symbol i is alive while id[i] >= 0; prev/next link the alive symbols. A merged symbol keeps
  // the index (the position) of its left part.
  std::vector<int32_t> prev(n), next(n);
  for (int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    int32_t rank;
    int32_t pos;   // index of the left symbol
    int32_t left;  // ids expected at pos and next[pos] when popped
    int32_t right;
    int32_t result;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto push = [&](int32_t pos) {
    if (pos < 0 || next[pos] < 0) return;
    const Merge* m = find(symbols[pos], symbols[next[pos]]);
    if (m != nullptr) queue.push({m->rank, pos, symbols[pos], symbols[next[pos]], m->result});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!queue.empty()) {
    Candidate c = queue.top();
    queue.pop();
    int32_t r = next[c.pos];
    // Stale: one side was merged away or changed since this candidate was queued.
    if (symbols[c.pos] != c.left || r < 0 || symbols[r] != c.right) continue;
    symbols[c.pos] = c.result;
    symbols[r] = -1;
    next[c.pos] = next[r];
    if (next[r] >= 0) prev[next[r]] = c.pos;
    push(prev[c.pos]);
    push(c.pos);
  }
  int32_t w = 0;
  for (int32_t i = 0; i < n; ++i) {
    if (symbols[i] >= 0) symbols[w++] = symbols[i];
  }
  symbols.resize(w);
}

}  // namespace carpool
