#include "engine/runner.h"

#include <algorithm>

#include "util/check.h"

namespace carpool {

Runner::Runner(LlamaModel& model, const KvCache& kv) : model_(model), kv_(kv) {}

void Runner::add(SeqId id, const SamplingParams& params, std::span<const int32_t> prompt,
                 int logprobs) {
  auto s = std::make_unique<SeqSampling>(SeqSampling{Sampler(params, prompt), logprobs});
  sampling_[id] = std::move(s);
}

void Runner::remove(SeqId id) {
  sampling_.erase(id);
}

Result<std::vector<SampledToken>> Runner::execute(const StepPlan& plan) {
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
  for (int s = 0; s < n_seqs; ++s) {
    const ScheduledSeq& e = plan.seqs[s];
    const Sequence& seq = *e.seq;
    const std::vector<int32_t>& table = seq.blocks.blocks;
    CARPOOL_CHECK(static_cast<int>(table.size()) * bs >= e.start + e.num_tokens);
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
  auto out = model_.forward(b, kv_);
  if (!out) return out.status();
  std::vector<SampledToken> sampled;
  if (!any_logits) return sampled;

  // --- sampling, on the host ---
  const size_t vocab = static_cast<size_t>(model_.config().vocab_size);
  logits_.resize(logit_rows_.size() * vocab);
  model_.backend().download(logits_.data(), out.value(), logits_.size() * sizeof(float));
  sampled.reserve(logit_rows_.size());
  size_t row = 0;
  for (const ScheduledSeq& e : plan.seqs) {
    if (!e.needs_logits) continue;
    auto it = sampling_.find(e.id);
    CARPOOL_CHECK(it != sampling_.end());
    SeqSampling& ss = *it->second;
    std::span<float> logits(logits_.data() + row * vocab, vocab);
    ++row;
    SampledToken t;
    if (ss.logprobs >= 0) {
      scratch_.assign(logits.begin(), logits.end());  // sample() modifies its input
      t.token = ss.sampler.sample(scratch_);
      t.logprob = token_logprob(logits, t.token);
      if (ss.logprobs > 0) t.top_logprobs = top_logprobs(logits, ss.logprobs);
    } else {
      t.token = ss.sampler.sample(logits);
    }
    ss.sampler.accept(t.token);
    sampled.push_back(std::move(t));
  }
  return sampled;
}

}  // namespace carpool
