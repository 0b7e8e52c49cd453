// Generator: runs one sequence to completion on a LlamaModel with its own paged KV cache:
// chunked prefill, then one decode step per token. The CLI's `generate` and the golden tests
// use it; the server's continuous-batching engine drives the same model through the runner.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "engine/sampler.h"
#include "model/llama.h"
#include "util/status.h"

namespace carpool {

struct GenerateOptions {
  int max_tokens = 64;
  SamplingParams sampling;
  std::vector<int32_t> stop_ids;  // generation ends after emitting one of these
  int block_size = 16;
};

struct GenerateStats {
  int prompt_tokens = 0;
  int generated_tokens = 0;
  double prefill_s = 0;  // wall time to the first generated token's logits
  double decode_s = 0;   // wall time of the remaining steps
};

// Called with each generated token; return false to stop early.
using TokenCallback = std::function<bool(int32_t token)>;

class Generator {
 public:
  explicit Generator(LlamaModel& model) : model_(model) {}

  Result<GenerateStats> run(const std::vector<int32_t>& prompt, const GenerateOptions& options,
                            const TokenCallback& on_token);

  // Logits [vocab] after feeding all of `tokens` (for golden tests).
  Result<std::vector<float>> last_logits(const std::vector<int32_t>& tokens);

 private:
  // Feeds tokens [begin, end) of `tokens`; when `want_logits`, copies the last row's logits.
  Status feed(const std::vector<int32_t>& tokens, int begin, int end, const KvCache& kv,
              int block_size, std::vector<float>* logits);
  LlamaModel& model_;
};

}  // namespace carpool
