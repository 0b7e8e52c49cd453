#include "engine/scheduler.h"

#include <algorithm>

#include "util/check.h"

namespace carpool {

int StepPlan::num_logit_rows() const {
  int n = 0;
  for (const ScheduledSeq& s : seqs) n += s.needs_logits ? 1 : 0;
  return n;
}

Scheduler::Scheduler(const SchedulerConfig& config, Clock clock)
    : config_(config),
      clock_(std::move(clock)),
      blocks_(config.num_blocks, config.block_size, config.enable_prefix_caching) {
  CARPOOL_CHECK(config.max_num_seqs > 0 && config.max_num_batched_tokens > 0);
  CARPOOL_CHECK(config.max_model_len > 0);
  // One max_model_len sequence must fit, or the oldest sequence could wait forever.
  CARPOOL_CHECK(blocks_.blocks_for(config.max_model_len) <= config.num_blocks);
  CARPOOL_CHECK(clock_ != nullptr);
}

Scheduler::~Scheduler() = default;

void Scheduler::add(SequenceParams params) {
  CARPOOL_CHECK(!params.prompt.empty() && params.max_tokens >= 1);
  // The last token sampled is never computed, so it needs no place in the context (a prompt
  // of max_model_len tokens can be scored with max_tokens 1; the engine refuses a prompt plus
  // max_tokens beyond max_model_len for generation).
  CARPOOL_CHECK(static_cast<int64_t>(params.prompt.size()) + params.max_tokens - 1 <=
                config_.max_model_len);
  CARPOOL_CHECK(seqs_.count(params.id) == 0);
  auto seq = std::make_unique<Sequence>();
  seq->id = params.id;
  seq->num_prompt_tokens = static_cast<int>(params.prompt.size());
  seq->tokens = std::move(params.prompt);
  seq->max_tokens = params.max_tokens;
  seq->stop_ids = std::move(params.stop_ids);
  seq->ignore_eos = params.ignore_eos;
  seq->reuse_cached_prefix = params.reuse_cached_prefix;
  seq->arrival_s = clock_();
  waiting_.push_back(seq.get());
  seqs_.emplace(seq->id, std::move(seq));
}

const Sequence* Scheduler::find(SeqId id) const {
  auto it = seqs_.find(id);
  return it == seqs_.end() ? nullptr : it->second.get();
}

std::vector<SeqId> Scheduler::unstarted() const {
  std::vector<SeqId> ids;
  for (const Sequence* s : waiting_) {
    if (s->num_generated() == 0) ids.push_back(s->id);
  }
  return ids;
}

bool Scheduler::abort(SeqId id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return false;
  Sequence* s = it->second.get();
  if (s->status == SeqStatus::kWaiting) {
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), s));
  } else {
    running_.erase(std::find(running_.begin(), running_.end(), s));
  }
  blocks_.free(s->blocks);
  seqs_.erase(it);
  return true;
}

void Scheduler::preempt(Sequence* seq) {
  CARPOOL_CHECK(!running_.empty() && running_.back() == seq);
  running_.pop_back();
  blocks_.free(seq->blocks);
  seq->num_computed_tokens = 0;
  seq->status = SeqStatus::kWaiting;
  seq->num_preemptions += 1;
  waiting_.push_front(seq);
  ++num_preemptions_;
}

void Scheduler::finish(Sequence* seq, SeqFinish why) {
  running_.erase(std::find(running_.begin(), running_.end(), seq));
  blocks_.free(seq->blocks);
  seq->status = SeqStatus::kFinished;
  seq->finish = why;
  seq->finish_s = clock_();
  auto it = seqs_.find(seq->id);
  finished_.push_back(std::move(it->second));
  seqs_.erase(it);
}

namespace {
void add_entry(StepPlan& plan, const Sequence* s, int n) {
  ScheduledSeq e;
  e.id = s->id;
  e.seq = s;
  e.start = s->num_computed_tokens;
  e.num_tokens = n;
  e.needs_logits = e.start + n == s->num_tokens();
  e.is_prefill = !(n == 1 && e.needs_logits && e.start >= s->num_prompt_tokens);
  plan.seqs.push_back(e);
  plan.num_batched_tokens += n;
  (e.is_prefill ? plan.num_prefill_tokens : plan.num_decode_tokens) += n;
}
}  // namespace

StepPlan Scheduler::schedule() {
  finished_.clear();
  StepPlan plan;
  const double now = clock_();
  int budget = config_.max_num_batched_tokens;

  // --- running sequences, oldest first; preempt from the newest when blocks run out ---
  bool preempted = false;
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence* s = running_[i];
    const int n = std::min(s->num_uncomputed(), budget);
    CARPOOL_CHECK(n > 0);
    const int target = s->num_computed_tokens + n;
    bool self = false;
    while (!blocks_.can_append(s->blocks, target)) {
      Sequence* victim = running_.back();
      self = victim == s;
      preempt(victim);
      plan.preempted.push_back(victim->id);
      preempted = true;
      if (self) break;
    }
    if (self) break;  // s was the newest: nothing after it
    blocks_.append(s->blocks, target);
    add_entry(plan, s, n);
    budget -= n;
  }

  // --- waiting sequences, first come first served ---
  while (!preempted && !waiting_.empty() && budget > 0 &&
         static_cast<int>(running_.size()) < config_.max_num_seqs) {
    Sequence* s = waiting_.front();
    // At least the last known token is computed, so that the step yields its logits.
    const int cached =
        s->reuse_cached_prefix ? blocks_.cached_prefix_tokens(s->tokens, s->num_tokens() - 1) : 0;
    const int n = std::min(s->num_tokens() - cached, budget);
    if (!blocks_.can_allocate(s->tokens, cached, cached + n)) break;
    blocks_.allocate(s->blocks, s->tokens, cached, cached + n);
    s->num_computed_tokens = cached;
    if (!s->admitted_once) {
      s->admitted_once = true;
      s->num_cached_prompt_tokens = cached;
      s->first_scheduled_s = now;
    }
    s->status = SeqStatus::kRunning;
    waiting_.pop_front();
    running_.push_back(s);
    add_entry(plan, s, n);
    budget -= n;
  }
  return plan;
}

std::vector<SeqOutput> Scheduler::update(const StepPlan& plan, std::span<const int32_t> sampled) {
  std::vector<SeqOutput> outputs;
  size_t k = 0;
  double now = -1;
  for (const ScheduledSeq& e : plan.seqs) {
    auto it = seqs_.find(e.id);
    CARPOOL_CHECK(it != seqs_.end());
    Sequence* s = it->second.get();
    CARPOOL_CHECK(s->status == SeqStatus::kRunning && s->num_computed_tokens == e.start);
    s->num_computed_tokens += e.num_tokens;
    blocks_.commit(s->blocks, s->tokens, s->num_computed_tokens);
    if (!e.needs_logits) continue;
    CARPOOL_CHECK(k < sampled.size());
    const int32_t token = sampled[k++];
    s->tokens.push_back(token);
    if (s->first_token_s < 0) s->first_token_s = now < 0 ? (now = clock_()) : now;
    SeqOutput out;
    out.id = s->id;
    out.token = token;
    out.seq = s;
    const bool stop = !s->ignore_eos &&
                      std::find(s->stop_ids.begin(), s->stop_ids.end(), token) != s->stop_ids.end();
    if (stop) {
      out.finish = SeqFinish::kStop;
    } else if (s->num_generated() >= s->max_tokens || s->num_tokens() >= config_.max_model_len) {
      out.finish = SeqFinish::kLength;
    }
    if (out.finish != SeqFinish::kNone) {
      out.finished = true;
      finish(s, out.finish);
    }
    outputs.push_back(out);
  }
  CARPOOL_CHECK(k == sampled.size());
  return outputs;
}

}  // namespace carpool
