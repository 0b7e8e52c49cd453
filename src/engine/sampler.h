// Sampling of the next token from one row of logits, on the host.
//
// Order (as vLLM applies it): JSON mode's mask -> logit bias -> penalties -> greedy if
// temperature == 0,
// otherwise temperature -> top-k -> top-p -> min-p -> draw from the request's own seeded
// generator.
//
// Cost: a few vectorized passes over the vocabulary, never a sort of it (top-k keeps a heap of
// k, top-p finds its boundary weight by bisection and orders only the tokens it keeps); the
// draw walks the kept tokens in an order fixed by the logits, so a seed gives the same tokens.
// bench/engine/sampler_bench measures it.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/json_constraint.h"
#include "engine/json_schema.h"
#include "util/status.h"

namespace carpool {

// Temperatures below this are greedy, as vLLM's: dividing the logits by one would overflow them
// (a temperature of 1e-39 made every positive logit +inf, and the first of those was taken).
inline constexpr float kGreedyBelowTemperature = 1e-5f;

struct SamplingParams {
  float temperature = 1.f;         // 0 (below kGreedyBelowTemperature): greedy
  int top_k = 0;                   // 0 or -1: off
  float top_p = 1.f;               // (0, 1]
  float min_p = 0.f;               // [0, 1]
  float repetition_penalty = 1.f;  // > 0; 1: off. Applies to prompt and generated tokens
  float frequency_penalty = 0.f;   // [-2, 2]; scaled by the count in generated tokens
  float presence_penalty = 0.f;    // [-2, 2]; once per distinct generated token
  int64_t seed = -1;               // -1: nondeterministic
  // (token, bias) added to the logits before the penalties (OpenAI's logit_bias, [-100, 100]);
  // tokens past the logits are skipped.
  std::vector<std::pair<int32_t, float>> logit_bias;
  // Set: JSON mode (json_constraint.h), the output must be one JSON object; these are the
  // vocabulary's bytes and end ids, shared by every request that asks for it.
  std::shared_ptr<const TokenBytes> json_vocab;
  // Set (with json_vocab): the object must also follow this schema (json_schema.h).
  std::shared_ptr<const JsonSchema> json_schema;
  // vLLM's min_tokens: until this many tokens are generated, the tokens of min_tokens_banned
  // (the request's stop ids) cannot be drawn (their logits are -inf, before everything else).
  int min_tokens = 0;
  std::vector<int32_t> min_tokens_banned;

  // Range checks; the message names the field.
  bool greedy() const { return temperature < kGreedyBelowTemperature; }
  Status validate() const;
};

// Per-sequence sampling state: the generator and token counts for the penalties.
class Sampler {
 public:
  // prompt: the prompt tokens (for the repetition penalty).
  Sampler(const SamplingParams& params, std::span<const int32_t> prompt);

  // Picks the next token from logits [vocab]; `logits` is used as scratch and modified. In JSON
  // mode the tokens that cannot continue the object are masked first.
  int32_t sample(std::span<float> logits);
  // Records a generated token (for the penalties, and JSON mode's state).
  void accept(int32_t token);
  // JSON mode: the logits of tokens that cannot continue the object set to -inf (sample() does
  // this itself; exposed for tests).
  void mask(std::span<float> logits) const;
  // The draw sample() would take (one uniform in [0, 1) from this sequence's generator), for a
  // row the backend samples itself (Backend::sample_rows).
  double draw_uniform();

  const SamplingParams& params() const { return params_; }

 private:
  void apply_penalties(std::span<float> logits) const;

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::unordered_map<int32_t, int32_t> prompt_seen_;    // token -> 1 (repetition penalty)
  std::unordered_map<int32_t, int32_t> output_counts_;  // token -> count in generated text
  int generated_ = 0;                                   // tokens accepted
  std::vector<std::pair<float, int32_t>> candidates_;   // scratch, reused across steps
  JsonState json_;                                      // JSON mode: the text so far
  SchemaState schema_;                                  // with a schema: the text so far
};

// One token's log-probability and the most likely tokens at its position (for logprobs).
struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0.f;
  std::vector<std::pair<int32_t, float>> top;  // [k] (token, logprob), most likely first
};

// log-softmax value of `token` in logits (for logprobs), and the top `k` (token, logprob; NaN
// ranks last, ties to the lower id).
float token_logprob(std::span<const float> logits, int32_t token);
std::vector<std::pair<int32_t, float>> top_logprobs(std::span<const float> logits, int k);
// Both from one log-sum-exp (the same values): `token`'s and the top k (k <= 0: none).
TokenLogprob logprobs_of(std::span<const float> logits, int32_t token, int k);

}  // namespace carpool
