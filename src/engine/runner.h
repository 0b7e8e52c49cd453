// Runner: executes a scheduler StepPlan on a LlamaModel and samples the next tokens.
//
// One ragged batch per step: every scheduled token of every sequence is flattened into one list,
// so each weight is read once per step for all sequences (the backend's matmuls take all rows),
// and attention reads each sequence's KV through its block table (paged attention, prefill and
// decode alike). Logits are computed only for the rows that need them (the last token of each
// sequence whose computed tokens catch up with its known tokens), and sampled with each
// sequence's own Sampler.
//
// Sampling on the device: a row whose sequence has penalties, logprobs, JSON mode or a logit
// bias reads its logits on the host; the others go to the device. When every device row is plain
// greedy (temperature 0: the token is the argmax of the raw logits), the backend picks the tokens
// (Backend::argmax_rows) and only [rows] int32 ids come back instead of [rows, vocab] floats: the
// host sampler's tokens. When some sample (temperature, top-k, top-p, min-p), the backend draws
// them (Backend::sample_rows) with one uniform per row from each sequence's own generator: the
// host sampler's distribution, and seeded requests stay reproducible on that backend. The host
// rows beside them are then downloaded one by one and sampled on the host. Where no row can use
// the device, a sequence asks for prompt logprobs, or the backend lacks the op (the CPU backend
// draws on the host, with its compute threads), all the logits are downloaded once per step and
// sampled on the host.
//
// Prompt logprobs (scoring the prompt): a sequence registered with prompt_logprobs >= 0 also
// needs the logits of every prompt position, whichever steps compute them (chunked prefill, or
// a recompute after preemption). After each forward the runner asks the model for those rows
// (LlamaModel::row_logits, at most max_logit_rows at a time, from the step's hidden states), and
// keeps only each position's log-probability and top k: memory stays [max_logit_rows, vocab]
// for logits, never [prompt, vocab]. Other sequences' rows are computed as without it. Such a
// sequence must not take cached prefix blocks (the scheduler's reuse_cached_prefix = false),
// since cached positions are never computed.
//
// Batching does not change answers on the CPU backend: every op computes each row (and each
// attention head of each token) on its own, in an order that does not depend on the other rows.
//
// Thread-safety: none; the engine loop thread owns it. The model and the cache must outlive it.
#pragma once

#include <cstdint>
#include <functional>
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
  // The sequence's first sampled token with prompt_logprobs = k >= 0: [n_prompt - 1], entry i
  // scores prompt token i + 1 given tokens [0, i], with the top k at that position (the first
  // prompt token has no context and no entry). Empty otherwise.
  std::vector<TokenLogprob> prompt_logprobs;
};

class Runner {
 public:
  Runner(LlamaModel& model, const KvCache& kv);
  ~Runner();
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  // Registers a sequence's sampling state. logprobs: -1 none; k >= 0 the chosen token's
  // log-probability and the top k (from the model's distribution, before penalties and
  // temperature, as OpenAI and vLLM report them). prompt_logprobs: -1 none; k >= 0 the same for
  // every prompt token after the first, delivered with the first sampled token.
  void add(SeqId id, const SamplingParams& params, std::span<const int32_t> prompt, int logprobs,
           int prompt_logprobs = -1);
  void remove(SeqId id);

  // Runs one forward over the plan and samples one token per entry with needs_logits, in plan
  // order. PRECONDITION: the plan comes from the scheduler that owns these sequences, and fits
  // the model's limits (the engine sizes them together). `while_device_runs`, when given, is
  // called once the forward is enqueued, before the step's results are read (on an
  // asynchronous backend, host work there overlaps the device); it must not use the runner.
  Result<std::vector<SampledToken>> execute(const StepPlan& plan,
                                            const std::function<void()>& while_device_runs = {});
  // The device time of the last execute()'s forward by the backend's own clock
  // (Backend::device_time_ns), or -1 where the backend has none (then the step's wall time is
  // its device time).
  int64_t last_device_ns() { return model_.backend().device_time_ns(); }

  // Sampling on the device (see the top of this file): on by default; off samples every step on
  // the host (A/B checks).
  void set_device_greedy(bool on) { device_greedy_ = on; }
  // Steps whose tokens the device picked by argmax / drew, since construction (tests,
  // diagnostics).
  int64_t device_greedy_steps() const { return device_greedy_steps_; }
  int64_t device_draw_steps() const { return device_draw_steps_; }

 private:
  struct SeqSampling {
    Sampler sampler;
    int logprobs = -1;
    int prompt_logprobs = -1;  // -1: none, or prompt logprobs already delivered
    int num_prompt = 0;
    std::vector<TokenLogprob> prompt{};  // [num_prompt - 1] while prompt_logprobs >= 0
  };
  // One prompt position whose logits this step computed: row `row` of the batch scores prompt
  // token `pos + 1` of `seq`.
  struct PromptRow {
    SeqSampling* seq = nullptr;
    int32_t row = 0;
    int pos = 0;
    int32_t next_token = 0;
  };
  // How the device can sample the entries of `plan` with needs_logits. A row needs the host when
  // its sequence has penalties, logprobs, JSON mode or a logit bias (host_only_[row] = 1); the
  // other rows go to the device: kGreedy where all of them sample plain greedy from the raw
  // logits (the argmax), else kDraw. kNone (every row on the host): no row can use the device,
  // device sampling is off, or a sequence asks for prompt logprobs (their scoring reads the
  // host copy of the logits).
  enum class DeviceSampling { kNone, kGreedy, kDraw };
  DeviceSampling device_sampling(const StepPlan& plan);
  // After a device path: the host_only_ rows sampled on the host (their device tokens dropped),
  // each row's logits downloaded alone.
  void sample_host_only_rows(const Tensor& logits, std::vector<SampledToken>& sampled);
  // The token buffer of the device paths, I32 [max_logit_rows, 1], made at first use.
  Status ensure_device_ids();
  // Appends one token per needs_logits entry of `plan`, picked by Backend::argmax_rows from
  // logits [n_logits, vocab]. Returns false (nothing appended) where the backend lacks the op.
  Result<bool> sample_greedy_on_device(const StepPlan& plan, const Tensor& logits,
                                       std::vector<SampledToken>& sampled);
  // The same with Backend::sample_rows, each row's parameters and uniform draw uploaded first.
  // Returns false (nothing appended, no generator advanced) where the backend lacks the op.
  Result<bool> sample_draws_on_device(const StepPlan& plan, const Tensor& logits,
                                      std::vector<SampledToken>& sampled);
  // Appends the downloaded ids of the device paths, one per needs_logits entry of `plan`.
  void take_device_ids(const StepPlan& plan, int64_t n, std::vector<SampledToken>& sampled);
  // Downloads logits [n_logits, vocab] and appends one token per needs_logits entry of `plan`
  // from each sequence's Sampler (with logprobs where asked), the rows spread over the backend's
  // host threads (Backend::host_parallel_for); fills handover_.
  void sample_on_host(const StepPlan& plan, const Tensor& logits,
                      std::vector<SampledToken>& sampled);
  // One row: the token (logits is used as scratch unless logprobs are asked), its logprobs.
  static void sample_row(SeqSampling& ss, std::span<float> logits, std::vector<float>& scratch,
                         SampledToken& t);
  // Scores this step's prompt rows (prompt_rows_) from the model's row logits, chunk by chunk.
  Status score_prompt_rows();

  LlamaModel& model_;
  const KvCache& kv_;
  std::unordered_map<SeqId, std::unique_ptr<SeqSampling>> sampling_;
  // Step buffers, reused.
  std::vector<int32_t> ids_, positions_, slots_, query_start_, kv_len_, block_tables_, logit_rows_;
  std::vector<float> logits_;                // [n_logits, vocab]
  std::vector<std::vector<float>> scratch_;  // [host worker][vocab]
  std::vector<SeqSampling*> host_rows_;      // the samplers of the rows sampled on the host
  std::vector<PromptRow> prompt_rows_;
  std::vector<int32_t> row_ids_;  // [<= max_logit_rows] one chunk of prompt_rows_
  std::vector<std::pair<size_t, SeqSampling*>> handover_;  // sampled index, prompt logprobs due
  // Greedy on the device.
  bool device_greedy_ = true;
  bool device_argmax_missing_ = false;  // the backend's argmax_rows returned false
  int8_t device_draws_ = -1;            // whether the backend has sample_rows; -1: not asked yet
  int64_t device_greedy_steps_ = 0;
  int64_t device_draw_steps_ = 0;
  Tensor argmax_ids_;                 // I32 [max_logit_rows, 1] backend memory, made at first use
  std::vector<int32_t> argmax_host_;  // [n_logits]
  std::vector<uint8_t> host_only_;    // [n_logits] of the step: 1 where the row needs the host
  Tensor draw_params_;                // F32 [max_logit_rows, kRowSamplingFloats], at first use
  std::vector<float> draw_host_;      // [n_logits * kRowSamplingFloats]
};

}  // namespace carpool
