// Runner: executes a scheduler StepPlan on a LlamaModel and samples the next tokens.
//
// One ragged batch per step: every scheduled token of every sequence is flattened into one list,
// so each weight is read once per step for all sequences (the backend's matmuls take all rows),
// and attention reads each sequence's KV through its block table (paged attention, prefill and
// decode alike). Logits are computed only for the rows that need them (the last token of each
// sequence whose computed tokens catch up with its known tokens), downloaded once per step, and
// sampled on the host with each sequence's own Sampler.
//
// Batching does not change answers on the CPU backend: every op computes each row (and each
// attention head of each token) on its own, in an order that does not depend on the other rows.
//
// Thread-safety: none; the engine loop thread owns it. The model and the cache must outlive it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "model/llama.h"
#include "util/status.h"

namespace carpool {

struct SampledToken {
  int32_t token = -1;
  float logprob = 0.f;                                  // when logprobs >= 0
  std::vector<std::pair<int32_t, float>> top_logprobs;  // [k] when logprobs = k > 0
};

class Runner {
 public:
  Runner(LlamaModel& model, const KvCache& kv);

  // Registers a sequence's sampling state. logprobs: -1 none; k >= 0 the chosen token's
  // log-probability and the top k (from the model's distribution, before penalties and
  // temperature, as OpenAI and vLLM report them).
  void add(SeqId id, const SamplingParams& params, std::span<const int32_t> prompt, int logprobs);
  void remove(SeqId id);

  // Runs one forward over the plan and samples one token per entry with needs_logits, in plan
  // order. PRECONDITION: the plan comes from the scheduler that owns these sequences, and fits
  // the model's limits (the engine sizes them together).
  Result<std::vector<SampledToken>> execute(const StepPlan& plan);

 private:
  struct SeqSampling {
    Sampler sampler;
    int logprobs = -1;
  };

  LlamaModel& model_;
  const KvCache& kv_;
  std::unordered_map<SeqId, std::unique_ptr<SeqSampling>> sampling_;
  // Step buffers, reused.
  std::vector<int32_t> ids_, positions_, slots_, query_start_, kv_len_, block_tables_, logit_rows_;
  std::vector<float> logits_;   // [n_logits, vocab]
  std::vector<float> scratch_;  // [vocab]
};

}  // namespace carpool
