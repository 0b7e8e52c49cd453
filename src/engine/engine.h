// Engine: continuous batching over a paged KV cache. Many requests share every step.
//
//   submit() -> waiting queue -> each step: scheduler.schedule() -> runner executes the ragged
//   batch on the model -> sample -> scheduler.update() -> events on each request's sink.
//
// submit() returns at once; the engine loop thread produces each request's tokens and calls its
// sink from that thread (the sink must not block: hand the event to another thread or an I/O
// loop; it may call submit() or abort(), never shutdown()). abort() frees the request's KV blocks
// within one step. When a sink receives a final event, stats() already counts it as finished.
//
// The model must be loaded with engine_model_limits(options, config) (below); create() checks.
// KV sizing: kv_cache_bytes when set; else on a GPU free memory × gpu_memory_utilization, on the
// CPU a fixed 512 MiB (at most half the free memory); see engine/engine_options.h.
//
// Thread-safety: submit, abort, stats and shutdown may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "model/llama.h"
#include "util/status.h"

namespace carpool {

namespace telemetry {
class Telemetry;
}

struct EngineOptions {
  int max_num_seqs = 64;             // sequences per step
  int max_num_batched_tokens = 512;  // tokens per step (prefill chunks + decode tokens)
  int block_size = 16;               // tokens per KV block
  int64_t kv_cache_bytes = 0;        // memory for the KV cache; 0: from the backend's free memory
  double gpu_memory_utilization = 0.9;  // fraction of device memory to use when kv_cache_bytes = 0
  int max_model_len = 0;                // 0: the model's context length
  bool enable_prefix_caching = true;    // requests sharing a prompt prefix share its blocks
  int max_queued_requests = 1024;       // waiting requests beyond this are refused
  // Receives every step's roofline accounting, each finished request's latencies and the
  // engine's state (not owned; must outlive the engine; null: no telemetry).
  telemetry::Telemetry* telemetry = nullptr;
  // Called on the engine thread around each batch of events it hands to the sinks (once per
  // engine iteration that has events): true, then the sinks, then false. The server gathers the
  // sinks' work in between and wakes its IO threads once per step. Null: not called.
  std::function<void(bool begin)> delivery_hook;
  // Hand a step's events to the sinks while the device computes the next step (after its
  // forward is enqueued) instead of before the next step is scheduled, so the sinks' host work
  // (detokenizing, streaming) overlaps the device. Unset: on when the backend runs ops
  // asynchronously (Backend::asynchronous: a GPU), off on the CPU, whose ops run on the engine
  // thread (there it would only deliver each token a step later).
  std::optional<bool> overlap_delivery;
};

// The ModelLimits a model must be loaded with to serve these options: max_batch_tokens =
// max_num_batched_tokens, max_seqs = max_logit_rows = max_num_seqs, max_blocks_per_seq =
// ceil(max_model_len / block_size) (max_model_len 0: the model's context length). Load the model
// with them, then call Engine::create with the same options (it checks that they match).
ModelLimits engine_model_limits(const EngineOptions& options, const ModelConfig& config);

enum class FinishReason { kNone, kStop, kLength, kAbort, kError };
const char* finish_reason_name(FinishReason r);  // "stop", "length", "abort", "error"

struct RequestParams {
  std::vector<int32_t> prompt;  // token ids (non-empty)
  SamplingParams sampling;
  // Tokens to generate at most. 0: none, only compute the prompt (to score it with
  // prompt_logprobs); the request ends with reason "length" and no token, like OpenAI's and
  // vLLM's echo with max_tokens 0.
  int max_tokens = 16;
  std::vector<int32_t> stop_ids;  // finish with reason "stop" after one of these
  bool ignore_eos = false;        // ignore stop_ids
  int logprobs = -1;              // -1: none; k >= 0: the chosen token's logprob and top k
  // -1: none; k >= 0: every prompt token's logprob (after the first) and the top k at its
  // position, from the same raw distribution as `logprobs`, on the request's first event. Such
  // a request computes its whole prompt: it takes no cached prefix blocks.
  int prompt_logprobs = -1;
  // False: kept out of telemetry (request counters, latencies, and steps that run nothing else),
  // for the server's own warm-up request, which is no user's traffic.
  bool count_in_telemetry = true;
};

// One generated token (or the end of the request) delivered to the request's sink.
struct TokenEvent {
  int32_t token = -1;   // -1 for a final event without a token (abort, error, max_tokens 0)
  float logprob = 0.f;  // when logprobs >= 0
  std::vector<std::pair<int32_t, float>> top_logprobs;
  // With prompt_logprobs >= 0, on the first event (the first token's, or the final event when
  // max_tokens is 0): [n_prompt - 1], entry i scores prompt token i + 1 given tokens [0, i].
  // Empty on every other event, and when the request ended before its prompt was computed.
  std::vector<TokenLogprob> prompt_logprobs;
  bool finished = false;
  FinishReason finish_reason = FinishReason::kNone;
  // With reason kAbort: the request had not started (queued, nothing generated) when shutdown()
  // began, and was ended then so that its client can retry elsewhere.
  bool refused_at_shutdown = false;
  std::string error;  // when finish_reason == kError
  // Counts, filled on the final event (cached_prompt_tokens on every event with a token too).
  int prompt_tokens = 0;
  int generated_tokens = 0;
  int cached_prompt_tokens = 0;  // prompt tokens served from the prefix cache
};

using TokenSink = std::function<void(const TokenEvent&)>;
using RequestId = uint64_t;

// A snapshot for /metrics, the dashboard and tests.
struct EngineStats {
  int running = 0;
  int waiting = 0;
  int kv_blocks_total = 0;
  int kv_blocks_used = 0;  // referenced by a running or cached-and-pinned sequence
  int64_t steps = 0;
  int64_t preemptions = 0;
  int64_t prompt_tokens = 0;  // counted when computed (cache hits excluded)
  int64_t generated_tokens = 0;
  int64_t prefix_cache_hit_tokens = 0;
};

class Engine {
 public:
  // Sizes the KV cache (logs how many tokens fit and the largest batch they allow) and starts
  // the engine loop thread. The model must outlive the engine.
  static Result<std::unique_ptr<Engine>> create(LlamaModel& model, const EngineOptions& options);
  virtual ~Engine() = default;

  // Validates and queues a request; returns its id at once. Errors: empty prompt, prompt plus
  // max_tokens beyond max_model_len (the message gives both numbers; with max_tokens 0 a prompt
  // of max_model_len tokens is scored), queue full (the caller answers 429), engine shutting
  // down.
  virtual Result<RequestId> submit(RequestParams params, TokenSink sink) = 0;
  // Aborts a request; its sink gets a final event with reason kAbort (unless already finished).
  virtual void abort(RequestId id) = 0;
  // Ends a request its caller has found complete (a stop string in its text) as abort() does
  // (its KV blocks are freed within one step), but counted in telemetry as finished with reason
  // "stop" and `kept_tokens` generated tokens (those its answer kept: the engine may have
  // generated one or two more before this call reached it). Its sink gets a final event with
  // reason kStop (unless already finished).
  virtual void stop(RequestId id, int kept_tokens) = 0;
  virtual EngineStats stats() const = 0;
  virtual const EngineOptions& options() const = 0;  // with the sizes actually used
  virtual int max_model_len() const = 0;
  // Stops accepting requests and ends the ones not yet started (refused_at_shutdown); returns
  // when the running ones have finished, `timeout_s` has passed or shutdown_now() was called
  // (then aborts what is left). Stops the loop thread.
  virtual void shutdown(double timeout_s) = 0;
  // Ends a shutdown's wait now (a second signal): what is left is aborted. Safe from any thread,
  // before or during shutdown().
  virtual void shutdown_now() = 0;
};

}  // namespace carpool
