// Scheduler: continuous batching as pure logic (no threads, no I/O, the clock injected).
//
//   StepPlan plan = scheduler.schedule();       // which sequences run, how many tokens each
//   ... the runner computes the plan's tokens and samples one token per logits row ...
//   auto outputs = scheduler.update(plan, tokens);  // append, finish, free blocks
//
// Policy (vLLM v1's shape):
//  - One model for prefill and decode: a sequence is scheduled for min(uncomputed tokens,
//    remaining token budget) tokens, so long prompts run in chunks and mix with decodes.
//  - Budgets per step: max_num_batched_tokens tokens; at most max_num_seqs running sequences.
//  - Running sequences first, in admission order (a decode never waits behind a later prompt);
//    then waiting sequences, first come first served: when the head of the queue does not fit,
//    nothing behind it is admitted.
//  - When a running sequence needs a block and none is free, the most recently admitted running
//    sequence is preempted by recompute: its blocks are freed (full blocks stay in the prefix
//    cache), it goes back to the front of the queue with its tokens, and later recomputes them
//    as a prefill. Nothing is admitted in a step that preempted.
//  - Prefix reuse: an admitted sequence takes the cached blocks of its longest cached prefix
//    (whole blocks, at least one token left to compute), unless it asked to compute every
//    position (SequenceParams::reuse_cached_prefix = false, for prompt logprobs).
//  - Never a deadlock: as long as the cache holds one max_model_len sequence (the engine checks
//    this), the oldest running sequence can always grow by preempting the others, and with no
//    running sequence the head of the queue always fits.
//
// Thread-safety: none; the engine loop thread owns it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "engine/block_manager.h"
#include "engine/sequence.h"

namespace carpool {

// Seconds on a monotonic clock; tests pass a fake one.
using Clock = std::function<double()>;

struct SchedulerConfig {
  int max_num_seqs = 64;
  int max_num_batched_tokens = 512;
  int max_model_len = 2048;  // prompt + generated tokens at most
  int num_blocks = 0;
  int block_size = 16;
  bool enable_prefix_caching = true;
};

// One sequence's share of a step.
struct ScheduledSeq {
  SeqId id = 0;
  const Sequence* seq = nullptr;  // valid until update() for this plan
  int start = 0;                  // first position computed (num_computed_tokens at schedule)
  int num_tokens = 0;             // tokens [start, start + num_tokens) are computed
  bool needs_logits = false;      // computed catches up to known: sample a token
  bool is_prefill = false;        // not one decode token: a prompt chunk or a recompute
};

struct StepPlan {
  std::vector<ScheduledSeq> seqs;  // batch order
  std::vector<SeqId> preempted;    // sent back to the queue this step
  int num_batched_tokens = 0;
  int num_prefill_tokens = 0;  // tokens of entries with is_prefill
  int num_decode_tokens = 0;   // entries without is_prefill (one token each)
  int num_logit_rows() const;
  bool empty() const { return seqs.empty(); }
};

// The result for one sequence of a step that sampled a token for it.
struct SeqOutput {
  SeqId id = 0;
  int32_t token = -1;
  bool finished = false;
  SeqFinish finish = SeqFinish::kNone;
  const Sequence* seq = nullptr;  // valid until the next schedule() (finished ones too)
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, Clock clock);
  ~Scheduler();

  // Queues a sequence (stamped with the clock). PRECONDITIONS: unique id, non-empty prompt,
  // max_tokens >= 1, prompt + max_tokens - 1 <= max_model_len (the last token sampled is never
  // computed; the engine validates requests).
  void add(SequenceParams params);
  // Removes a waiting or running sequence and frees its blocks. Returns false for unknown ids.
  // Must not be called between schedule() and update() of the same plan.
  bool abort(SeqId id);

  StepPlan schedule();
  // Applies a computed plan: `sampled` holds one token per entry of plan.seqs with
  // needs_logits, in plan order. Returns one output per sampled token.
  std::vector<SeqOutput> update(const StepPlan& plan, std::span<const int32_t> sampled);

  const Sequence* find(SeqId id) const;
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  int num_running() const { return static_cast<int>(running_.size()); }
  bool has_unfinished() const { return !waiting_.empty() || !running_.empty(); }
  // Waiting sequences that have generated nothing (never run, or preempted before their first
  // token), in queue order.
  std::vector<SeqId> unstarted() const;
  int64_t num_preemptions() const { return num_preemptions_; }
  const BlockManager& block_manager() const { return blocks_; }
  const SchedulerConfig& config() const { return config_; }

 private:
  void preempt(Sequence* seq);
  void finish(Sequence* seq, SeqFinish why);

  SchedulerConfig config_;
  Clock clock_;
  BlockManager blocks_;
  std::unordered_map<SeqId, std::unique_ptr<Sequence>> seqs_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;                   // admission order
  std::vector<std::unique_ptr<Sequence>> finished_;  // kept until the next schedule()
  int64_t num_preemptions_ = 0;
};

}  // namespace carpool
