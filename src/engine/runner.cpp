#include "engine/runner.h"

#include <algorithm>
#include <cmath>

#include "util/check.h"

namespace carpool {

Runner::Runner(LlamaModel& model, const KvCache& kv) : model_(model), kv_(kv) {}

Runner::~Runner() {
  if (argmax_ids_.data != nullptr) model_.backend().free(argmax_ids_);
  if (draw_params_.data != nullptr) model_.backend().free(draw_params_);
}

void Runner::add(SeqId id, const SamplingParams& params, std::span<const int32_t> prompt,
                 int logprobs, int prompt_logprobs) {
  auto s = std::make_unique<SeqSampling>(SeqSampling{Sampler(params, prompt), logprobs});
  if (prompt_logprobs >= 0) {
    s->prompt_logprobs = prompt_logprobs;
    s->num_prompt = static_cast<int>(prompt.size());
    s->prompt.resize(prompt.empty() ? 0 : prompt.size() - 1);
    for (size_t i = 0; i < s->prompt.size(); ++i) s->prompt[i].token = prompt[i + 1];
  }
  sampling_[id] = std::move(s);
}

void Runner::remove(SeqId id) {
  sampling_.erase(id);
}

Status Runner::score_prompt_rows() {
  const size_t vocab = static_cast<size_t>(model_.config().vocab_size);
  const size_t chunk = static_cast<size_t>(model_.limits().max_logit_rows);
  for (size_t begin = 0; begin < prompt_rows_.size(); begin += chunk) {
    const size_t n = std::min(chunk, prompt_rows_.size() - begin);
    row_ids_.clear();
    for (size_t i = 0; i < n; ++i) row_ids_.push_back(prompt_rows_[begin + i].row);
    auto out = model_.row_logits(row_ids_);
    if (!out) return out.status();
    logits_.resize(n * vocab);
    model_.backend().download(logits_.data(), out.value(), n * vocab * sizeof(float));
    for (size_t i = 0; i < n; ++i) {
      const PromptRow& r = prompt_rows_[begin + i];
      std::span<const float> logits(logits_.data() + i * vocab, vocab);
      // The same arithmetic as a sampled token's logprobs (a recompute overwrites the entry).
      TokenLogprob& e = r.seq->prompt[r.pos];
      TokenLogprob lp = logprobs_of(logits, r.next_token, r.seq->prompt_logprobs);
      e.logprob = lp.logprob;
      e.top = std::move(lp.top);
    }
  }
  return Status::ok();
}

Runner::DeviceSampling Runner::device_sampling(const StepPlan& plan) {
  host_only_.clear();
  if (!device_greedy_) return DeviceSampling::kNone;
  bool greedy = true;
  bool any_device = false;
  for (const ScheduledSeq& e : plan.seqs) {
    if (!e.needs_logits) continue;
    auto it = sampling_.find(e.id);
    CARPOOL_CHECK(it != sampling_.end());
    const SeqSampling& ss = *it->second;
    if (ss.prompt_logprobs >= 0) return DeviceSampling::kNone;
    // Sampler::sample at temperature 0 applies the penalties, then takes the argmax; top_k,
    // top_p, min_p and the seed are not read. Penalties need the token counts, logprobs the
    // logits, JSON mode its state and the vocabulary's bytes, logit bias and min_tokens the
    // logits: the host.
    const SamplingParams& p = ss.sampler.params();
    const bool host = p.repetition_penalty != 1.f || p.frequency_penalty != 0.f ||
                      p.presence_penalty != 0.f || ss.logprobs >= 0 || p.json_vocab != nullptr ||
                      !p.logit_bias.empty() || p.min_tokens > 0;
    host_only_.push_back(host ? 1 : 0);
    if (host) continue;
    any_device = true;
    greedy = greedy && p.greedy();
  }
  if (!any_device) return DeviceSampling::kNone;
  if (greedy) return device_argmax_missing_ ? DeviceSampling::kNone : DeviceSampling::kGreedy;
  return device_draws_ == 0 ? DeviceSampling::kNone : DeviceSampling::kDraw;
}

void Runner::sample_host_only_rows(const Tensor& logits, std::vector<SampledToken>& sampled) {
  Backend& be = model_.backend();
  const size_t vocab = static_cast<size_t>(model_.config().vocab_size);
  logits_.resize(vocab);
  scratch_.resize(std::max<size_t>(scratch_.size(), 1));
  for (size_t row = 0; row < host_only_.size(); ++row) {
    if (host_only_[row] == 0) continue;
    be.download(logits_.data(), logits.rows_view(static_cast<int64_t>(row), 1),
                vocab * sizeof(float));
    sample_row(*host_rows_[row], {logits_.data(), vocab}, scratch_[0], sampled[row]);
  }
}

Status Runner::ensure_device_ids() {
  if (argmax_ids_.data != nullptr) return Status::ok();
  auto ids = model_.backend().alloc(DType::kI32, model_.limits().max_logit_rows, 1);
  if (!ids) return ids.status();
  argmax_ids_ = ids.value();
  return Status::ok();
}

void Runner::take_device_ids(const StepPlan& plan, int64_t n, std::vector<SampledToken>& sampled) {
  argmax_host_.resize(static_cast<size_t>(n));
  model_.backend().download(argmax_host_.data(), argmax_ids_.rows_view(0, n),
                            argmax_host_.size() * sizeof(int32_t));
  size_t row = 0;
  host_rows_.clear();
  for (const ScheduledSeq& e : plan.seqs) {
    if (!e.needs_logits) continue;
    SeqSampling& ss = *sampling_.find(e.id)->second;
    host_rows_.push_back(&ss);
    SampledToken t;
    t.token = argmax_host_[row];
    // A host-only row's device token is dropped: sample_host_only_rows picks it.
    if (row >= host_only_.size() || host_only_[row] == 0) ss.sampler.accept(t.token);
    ++row;
    sampled.push_back(std::move(t));
  }
}

Result<bool> Runner::sample_greedy_on_device(const StepPlan& plan, const Tensor& logits,
                                             std::vector<SampledToken>& sampled) {
  const int64_t n = static_cast<int64_t>(logit_rows_.size());
  CARPOOL_CHECK(logits.rows == n);
  CARPOOL_RETURN_IF_ERROR(ensure_device_ids());
  CARPOOL_CHECK(n <= argmax_ids_.rows);
  if (!model_.backend().argmax_rows(argmax_ids_.rows_view(0, n), logits)) {
    device_argmax_missing_ = true;
    return false;
  }
  take_device_ids(plan, n, sampled);
  ++device_greedy_steps_;
  return true;
}

Result<bool> Runner::sample_draws_on_device(const StepPlan& plan, const Tensor& logits,
                                            std::vector<SampledToken>& sampled) {
  Backend& be = model_.backend();
  constexpr int kF = Backend::kRowSamplingFloats;
  const int64_t n = static_cast<int64_t>(logit_rows_.size());
  CARPOOL_CHECK(logits.rows == n);
  CARPOOL_RETURN_IF_ERROR(ensure_device_ids());
  if (draw_params_.data == nullptr) {
    auto p = be.alloc(DType::kF32, model_.limits().max_logit_rows, kF);
    if (!p) return p.status();
    draw_params_ = p.value();
  }
  CARPOOL_CHECK(n <= argmax_ids_.rows && n <= draw_params_.rows);
  if (device_draws_ < 0) {  // zero rows: whether the backend draws at all
    device_draws_ = be.sample_rows(argmax_ids_.rows_view(0, 0), logits.rows_view(0, 0),
                                   draw_params_.rows_view(0, 0))
                        ? 1
                        : 0;
  }
  if (device_draws_ == 0) return false;
  const int64_t vocab = logits.cols;
  draw_host_.resize(static_cast<size_t>(n * kF));
  size_t row = 0;
  for (const ScheduledSeq& e : plan.seqs) {
    if (!e.needs_logits) continue;
    Sampler& s = sampling_.find(e.id)->second->sampler;
    const SamplingParams& p = s.params();
    float* f = &draw_host_[row * kF];
    if (row < host_only_.size() && host_only_[row] != 0) {  // sampled on the host afterwards:
      f[0] = 0.f;                                           // a plain argmax, no draw taken
      f[1] = 0.f;
      f[2] = 1.f;
      f[3] = 0.f;
      f[4] = 0.f;
      ++row;
      continue;
    }
    ++row;
    f[0] = p.greedy() ? 0.f : p.temperature;
    f[1] = p.top_k > 0 && p.top_k < vocab ? static_cast<float>(p.top_k) : 0.f;
    f[2] = p.top_p;
    f[3] = p.min_p;
    // Sampler::sample takes one uniform for a draw and none for greedy: so does this.
    f[4] = !p.greedy() ? std::min(static_cast<float>(s.draw_uniform()), std::nextafter(1.f, 0.f))
                       : 0.f;
  }
  const Tensor params = draw_params_.rows_view(0, n);
  be.upload(params, draw_host_.data(), draw_host_.size() * sizeof(float));
  CARPOOL_CHECK(be.sample_rows(argmax_ids_.rows_view(0, n), logits, params));
  take_device_ids(plan, n, sampled);
  ++device_draw_steps_;
  return true;
}

void Runner::sample_on_host(const StepPlan& plan, const Tensor& logits_dev,
                            std::vector<SampledToken>& sampled) {
  Backend& be = model_.backend();
  const size_t vocab = static_cast<size_t>(model_.config().vocab_size);
  logits_.resize(logit_rows_.size() * vocab);
  be.download(logits_.data(), logits_dev, logits_.size() * sizeof(float));
  host_rows_.clear();
  for (const ScheduledSeq& e : plan.seqs) {
    if (!e.needs_logits) continue;
    auto it = sampling_.find(e.id);
    CARPOOL_CHECK(it != sampling_.end());
    host_rows_.push_back(it->second.get());
  }
  const size_t first = sampled.size();
  sampled.resize(first + host_rows_.size());
  scratch_.resize(static_cast<size_t>(be.host_workers()));
  // Rows are independent (each sequence has its own sampler and generator, and its own row and
  // result): they are sampled on the backend's host threads.
  be.host_parallel_for(static_cast<int64_t>(host_rows_.size()), [&](int64_t begin, int64_t end,
                                                                    int worker) {
    for (int64_t r = begin; r < end; ++r) {
      sample_row(*host_rows_[static_cast<size_t>(r)],
                 {logits_.data() + static_cast<size_t>(r) * vocab, vocab},
                 scratch_[static_cast<size_t>(worker)], sampled[first + static_cast<size_t>(r)]);
    }
  });
  for (size_t r = 0; r < host_rows_.size(); ++r) {
    if (host_rows_[r]->prompt_logprobs >= 0) handover_.emplace_back(first + r, host_rows_[r]);
  }
}

void Runner::sample_row(SeqSampling& ss, std::span<float> logits, std::vector<float>& scratch,
                        SampledToken& t) {
  if (ss.logprobs >= 0) {
    scratch.assign(logits.begin(), logits.end());  // sample() modifies its input
    t.token = ss.sampler.sample(scratch);
    TokenLogprob lp = logprobs_of(logits, t.token, ss.logprobs);
    t.logprob = lp.logprob;
    t.top_logprobs = std::move(lp.top);
  } else {
    t.token = ss.sampler.sample(logits);
  }
  ss.sampler.accept(t.token);
}

Result<std::vector<SampledToken>> Runner::execute(const StepPlan& plan,
                                                  const std::function<void()>& while_device_runs) {
  CARPOOL_CHECK(!plan.empty());
  const int bs = kv_.config.block_size;
  const int n_seqs = static_cast<int>(plan.seqs.size());

  // --- the ragged batch ---
  ids_.clear();
  positions_.clear();
  slots_.clear();
  logit_rows_.clear();
  query_start_.assign(1, 0);
  kv_len_.clear();
  int max_blocks = 1;
  for (const ScheduledSeq& e : plan.seqs) {
    max_blocks = std::max(max_blocks, static_cast<int>(e.seq->blocks.blocks.size()));
  }
  block_tables_.assign(static_cast<size_t>(n_seqs) * max_blocks, 0);
  prompt_rows_.clear();
  for (int s = 0; s < n_seqs; ++s) {
    const ScheduledSeq& e = plan.seqs[s];
    const Sequence& seq = *e.seq;
    const std::vector<int32_t>& table = seq.blocks.blocks;
    CARPOOL_CHECK(static_cast<int>(table.size()) * bs >= e.start + e.num_tokens);
    if (e.is_prefill && e.start < seq.num_prompt_tokens - 1) {
      // Prompt positions [start, min(end, n_prompt - 1)) predict prompt tokens: score them when
      // asked (the last prompt position predicts the first generated token: sampled below).
      auto it = sampling_.find(e.id);
      CARPOOL_CHECK(it != sampling_.end());
      SeqSampling* ss = it->second.get();
      if (ss->prompt_logprobs >= 0) {
        CARPOOL_CHECK(ss->num_prompt == seq.num_prompt_tokens);
        const int end = std::min(e.start + e.num_tokens, seq.num_prompt_tokens - 1);
        const int32_t first_row = static_cast<int32_t>(ids_.size());
        for (int p = e.start; p < end; ++p) {
          prompt_rows_.push_back(PromptRow{ss, first_row + (p - e.start), p, seq.tokens[p + 1]});
        }
      }
    }
    for (int p = e.start; p < e.start + e.num_tokens; ++p) {
      ids_.push_back(seq.tokens[p]);
      positions_.push_back(p);
      slots_.push_back(table[p / bs] * bs + p % bs);
    }
    query_start_.push_back(static_cast<int32_t>(ids_.size()));
    kv_len_.push_back(e.start + e.num_tokens);
    std::copy(table.begin(), table.end(),
              block_tables_.begin() + static_cast<size_t>(s) * max_blocks);
    if (e.needs_logits) logit_rows_.push_back(static_cast<int32_t>(ids_.size()) - 1);
  }
  const bool any_logits = !logit_rows_.empty();
  // The model always computes at least one logits row; a step of prompt chunks only ignores it.
  if (!any_logits) logit_rows_.push_back(0);

  ForwardBatch b;
  b.token_ids = ids_;
  b.positions = positions_;
  b.slots = slots_;
  b.query_start = query_start_;
  b.kv_len = kv_len_;
  b.block_tables = block_tables_;
  b.max_blocks_per_seq = max_blocks;
  b.logit_rows = logit_rows_;
  // Device timing marks the forward; sampling on the device (argmax_rows, sample_rows) moves the
  // end mark after itself, so a step's device time holds its sampling kernels too.
  model_.backend().begin_device_timing();
  auto out = model_.forward(b, kv_);
  model_.backend().end_device_timing();
  if (while_device_runs) while_device_runs();
  if (!out) return out.status();
  std::vector<SampledToken> sampled;
  if (!any_logits) {
    if (!prompt_rows_.empty()) CARPOOL_RETURN_IF_ERROR(score_prompt_rows());
    return sampled;
  }

  // --- sampling: on the device where it can, the others on the host ---
  sampled.reserve(logit_rows_.size());
  handover_.clear();
  bool on_device = false;
  switch (device_sampling(plan)) {
    case DeviceSampling::kGreedy: {
      auto r = sample_greedy_on_device(plan, out.value(), sampled);
      if (!r) return r.status();
      on_device = r.value();
      break;
    }
    case DeviceSampling::kDraw: {
      auto r = sample_draws_on_device(plan, out.value(), sampled);
      if (!r) return r.status();
      on_device = r.value();
      break;
    }
    case DeviceSampling::kNone:
      break;
  }
  if (!on_device) {
    sample_on_host(plan, out.value(), sampled);
  } else if (std::find(host_only_.begin(), host_only_.end(), 1) != host_only_.end()) {
    sample_host_only_rows(out.value(), sampled);
  }
  // Prompt rows after sampling: row_logits() reuses the buffer the sampled logits came from.
  if (!prompt_rows_.empty()) CARPOOL_RETURN_IF_ERROR(score_prompt_rows());
  // A sequence's first sampled token follows its whole prompt: hand over its prompt logprobs.
  for (const auto& [index, ssp] : handover_) {
    SeqSampling& ss = *ssp;
    sampled[index].prompt_logprobs = std::move(ss.prompt);
    ss.prompt = {};
    ss.prompt_logprobs = -1;  // delivered: a later recompute of the prompt is not scored again
  }
  return sampled;
}

}  // namespace carpool
