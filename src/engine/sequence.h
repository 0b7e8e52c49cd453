// Sequence: one request's state inside the scheduler.
//
// One model for prefill and decode: `tokens` holds every known token (the prompt, then each
// sampled token); `num_computed_tokens` counts those whose KV is in the cache. Each step computes
// some of the rest (a prefill chunk, or the one token sampled last step); when computed catches
// up to known, the step's last row gives logits and a new token is sampled.
//
// Thread-safety: none; owned by the scheduler (the engine loop thread).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/block_manager.h"

namespace carpool {

using SeqId = uint64_t;

enum class SeqStatus { kWaiting, kRunning, kFinished };

// Why a sequence ended (the engine maps it to FinishReason).
enum class SeqFinish { kNone, kStop, kLength, kAbort };

// What the scheduler needs to know about a request.
struct SequenceParams {
  SeqId id = 0;
  std::vector<int32_t> prompt;    // [n_prompt] token ids, non-empty
  int max_tokens = 16;            // generated tokens at most (>= 1)
  std::vector<int32_t> stop_ids;  // finish with kStop after sampling one of these
  bool ignore_eos = false;        // ignore stop_ids
  // false: never take cached prefix blocks, compute every position (prompt logprobs need the
  // logits of each prompt position). The sequence's own blocks are still cached for others.
  bool reuse_cached_prefix = true;
};

struct Sequence {
  SeqId id = 0;
  std::vector<int32_t> tokens;  // [num_prompt_tokens + generated] known tokens
  int num_prompt_tokens = 0;
  int num_computed_tokens = 0;  // tokens[0, num_computed_tokens) have KV in the cache
  int max_tokens = 16;
  std::vector<int32_t> stop_ids;
  bool ignore_eos = false;
  bool reuse_cached_prefix = true;

  SeqStatus status = SeqStatus::kWaiting;
  SeqFinish finish = SeqFinish::kNone;
  BlockTable blocks;
  int num_cached_prompt_tokens = 0;  // prefix-cache hit at first admission
  bool admitted_once = false;
  int num_preemptions = 0;

  // Clock stamps (seconds on the scheduler's injected clock; -1: not yet).
  double arrival_s = -1;
  double first_scheduled_s = -1;
  double first_token_s = -1;
  double finish_s = -1;

  int num_tokens() const { return static_cast<int>(tokens.size()); }
  int num_generated() const { return num_tokens() - num_prompt_tokens; }
  int num_uncomputed() const { return num_tokens() - num_computed_tokens; }
};

}  // namespace carpool
