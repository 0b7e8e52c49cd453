// Engine: the loop thread around scheduler, runner and sampler.
//
// Each iteration takes new submissions and aborts from the mutex-guarded inbox, runs one step
// (schedule -> execute -> update), publishes the stats snapshot, then delivers the step's events
// to the sinks without holding the lock (so when a sink sees a final event, stats() already
// counts the request as finished). With nothing to do the thread sleeps on a condition variable.
#include "engine/engine.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "engine/engine_options.h"
#include "engine/runner.h"
#include "engine/scheduler.h"
#include "telemetry/telemetry.h"
#include "util/check.h"

namespace carpool {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kError:
      return "error";
    case FinishReason::kNone:
      break;
  }
  return "none";
}

namespace {

constexpr int kMaxLogprobs = 20;  // as OpenAI's top_logprobs

double steady_now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

class EngineImpl final : public Engine {
 public:
  EngineImpl(LlamaModel& model, const EngineOptions& options, const KvCachePlan& plan, KvCache kv)
      : model_(model),
        options_(options),
        kv_(std::move(kv)),
        scheduler_(scheduler_config(options, plan), steady_now_s),
        runner_(model, kv_),
        tel_(options.telemetry),
        overlap_(options.overlap_delivery.value_or(model.backend().asynchronous())) {
    stats_.kv_blocks_total = plan.num_blocks;
    if (tel_ != nullptr) setup_telemetry(plan);
    thread_ = std::thread([this] { loop(); });
  }

  ~EngineImpl() override {
    shutdown(0);
    if (tel_ != nullptr) tel_->set_engine_source(nullptr);
    model_.backend().free_kv(kv_);
  }

  Result<RequestId> submit(RequestParams params, TokenSink sink) override;
  void shutdown_now() override;
  void abort(RequestId id) override { end_early({id, FinishReason::kAbort, -1}); }
  void stop(RequestId id, int kept_tokens) override {
    end_early({id, FinishReason::kStop, std::max(0, kept_tokens)});
  }
  EngineStats stats() const override {
    std::lock_guard<std::mutex> lk(mu_);
    return stats_;
  }
  const EngineOptions& options() const override { return options_; }
  int max_model_len() const override { return options_.max_model_len; }
  void shutdown(double timeout_s) override;

 private:
  struct Pending {
    RequestId id;
    RequestParams params;
    TokenSink sink;
  };
  // A request its caller ends before it finishes: abort(), or stop() with the tokens it kept.
  struct EarlyEnd {
    RequestId id;
    FinishReason reason;
    int kept_tokens;  // -1: all it generated
  };
  void end_early(EarlyEnd e) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      early_ends_.push_back(e);
    }
    cv_.notify_one();
  }

  static SchedulerConfig scheduler_config(const EngineOptions& o, const KvCachePlan& plan) {
    SchedulerConfig c;
    c.max_num_seqs = o.max_num_seqs;
    c.max_num_batched_tokens = o.max_num_batched_tokens;
    c.max_model_len = o.max_model_len;
    c.num_blocks = plan.num_blocks;
    c.block_size = plan.block_size;
    c.enable_prefix_caching = o.enable_prefix_caching;
    return c;
  }

  void loop();
  void admit(Pending& p);
  void run_step();
  // Removes a waiting or running request and sends its final event (no token).
  // refused: ended unstarted at shutdown (TokenEvent::refused_at_shutdown). kept_tokens: the
  // generated tokens to count it with (stop(); -1: all it generated).
  void end_request(RequestId id, FinishReason reason, const std::string& error,
                   bool refused = false, int kept_tokens = -1);
  void publish_stats();
  void deliver();
  // --- telemetry (tel_ != null) ---
  void setup_telemetry(const KvCachePlan& plan);
  void record_step(const StepPlan& plan, int64_t start_ns, int64_t device_ns, int64_t generated);
  // generated: the request's generated tokens (-1: the sequence's own count).
  void record_finished(const Sequence* s, FinishReason reason, int generated = -1);

  LlamaModel& model_;
  const EngineOptions options_;
  KvCache kv_;

  // --- loop thread only ---
  Scheduler scheduler_;
  Runner runner_;
  // Shared with the outbox: an event waiting there (delivered inside the next step with
  // overlap_) keeps its sink alive after the request ends and leaves sinks_.
  std::unordered_map<RequestId, std::shared_ptr<TokenSink>> sinks_;
  std::unordered_set<RequestId> prompt_only_;  // max_tokens 0: no token is delivered
  int finished_since_publish_ = 0;
  struct Delivery {
    std::shared_ptr<TokenSink> sink;
    TokenEvent event;
  };
  // Events not yet handed to their sinks: this iteration's (delivered after publish_stats()), or
  // with overlap_ the last step's (delivered while the device runs the next).
  std::vector<Delivery> outbox_;
  EngineStats local_;  // counters, copied to stats_ by publish_stats()

  // --- shared, under mu_ ---
  mutable std::mutex mu_;
  std::condition_variable cv_;          // wakes the loop
  std::condition_variable drained_cv_;  // wakes shutdown()
  std::deque<Pending> pending_;
  std::vector<EarlyEnd> early_ends_;
  bool accepting_ = true;
  bool refuse_unstarted_ = false;  // shutdown(): the loop ends the requests not yet started
  bool hurry_ = false;             // shutdown_now(): shutdown() stops waiting
  bool stop_ = false;
  int unfinished_ = 0;     // submitted and not yet finished
  int sched_waiting_ = 0;  // the scheduler's queue at the last step
  RequestId next_id_ = 1;
  EngineStats stats_;

  std::mutex shutdown_mu_;  // serializes shutdown() callers
  std::thread thread_;

  telemetry::Telemetry* tel_ = nullptr;
  // EngineOptions::overlap_delivery, resolved: events delivered inside the next step.
  const bool overlap_;
  telemetry::CostModel cost_;
  bool idle_before_ = false;                            // the loop slept before this step
  std::unordered_map<RequestId, double> last_token_s_;  // for inter-token gaps
  std::unordered_set<RequestId> uncounted_;             // count_in_telemetry false
  // Whether the step ran only uncounted requests (kept out of telemetry).
  bool uncounted_step(const StepPlan& plan) const {
    if (uncounted_.empty()) return false;
    for (const ScheduledSeq& e : plan.seqs) {
      if (uncounted_.count(e.id) == 0) return false;
    }
    return true;
  }
  std::vector<double> gaps_;  // scratch, reused every step
  std::atomic<int> engine_tid_{0};
  double kv_bytes_per_block_ = 0;
};

void EngineImpl::setup_telemetry(const KvCachePlan& plan) {
  const ModelConfig& c = model_.config();
  const WeightRoleBytes& r = model_.weight_role_bytes();
  telemetry::WeightBytes wb{r.embedding, r.attention, r.ffn, r.norms, r.output};
  const Backend& be = model_.backend();
  const int act = static_cast<int>(dtype_row_bytes(be.activation_dtype(), 1));
  cost_ = telemetry::make_cost_model(c, wb, be.kv_cache_dtype(), act);
  kv_bytes_per_block_ = static_cast<double>(plan.bytes) / std::max(1, plan.num_blocks);
  const double weights = static_cast<double>(model_.weight_bytes());
  const double kv_reserved = static_cast<double>(plan.bytes);
  tel_->set_engine_source([this, weights, kv_reserved] {
    EngineStats st = stats();
    BackendMemoryInfo mem = model_.backend().memory_info();
    telemetry::EngineSnapshot snap;
    snap.running = st.running;
    snap.waiting = st.waiting;
    snap.kv_blocks_used = st.kv_blocks_used;
    snap.kv_blocks_total = st.kv_blocks_total;
    snap.weights_bytes = weights;
    snap.kv_reserved_bytes = kv_reserved;
    snap.kv_used_bytes = st.kv_blocks_used * kv_bytes_per_block_;
    snap.workspace_bytes = static_cast<double>(mem.other_bytes);
    snap.engine_tid = engine_tid_.load();
    snap.preemptions = st.preemptions;
    return snap;
  });
}

void EngineImpl::record_step(const StepPlan& plan, int64_t start_ns, int64_t device_ns,
                             int64_t generated) {
  telemetry::StepStats st;
  st.generated_tokens = generated;
  st.start_ns = start_ns;
  st.end_ns = tel_->clock().now_ns();
  st.device_ns = device_ns;
  st.idle_before = idle_before_;
  for (const ScheduledSeq& e : plan.seqs) {
    st.shape.add_sequence(e.num_tokens, e.start + e.num_tokens, e.is_prefill, e.needs_logits);
  }
  st.cost = telemetry::compute_step_cost(cost_, st.shape);
  tel_->add_engine_self_ns(tel_->clock().now_ns() - st.end_ns);  // the preparation above
  tel_->record(st);
}

void EngineImpl::record_finished(const Sequence* s, FinishReason reason, int generated) {
  const int64_t t0 = tel_->clock().now_ns();
  last_token_s_.erase(s ? s->id : 0);
  telemetry::RequestRecord rec;
  rec.end_ns = t0;
  rec.finish_reason = finish_reason_name(reason);
  if (s != nullptr) {
    const double end = s->finish_s >= 0 ? s->finish_s : steady_now_s();
    if (s->arrival_s >= 0) {
      if (s->first_scheduled_s >= 0) rec.queue_s = s->first_scheduled_s - s->arrival_s;
      if (s->first_token_s >= 0) rec.ttft_s = s->first_token_s - s->arrival_s;
      rec.e2e_s = end - s->arrival_s;
    }
    rec.prompt_tokens = s->num_prompt_tokens;
    rec.generation_tokens = generated >= 0 ? generated : s->num_generated();
  }
  tel_->add_engine_self_ns(tel_->clock().now_ns() - t0);
  tel_->record_request(rec);
}

Result<RequestId> EngineImpl::submit(RequestParams params, TokenSink sink) {
  const int64_t n_prompt = static_cast<int64_t>(params.prompt.size());
  if (n_prompt == 0) return Status::error("prompt is empty");
  if (!sink) return Status::error("submit: no token sink");
  const int64_t vocab = model_.config().vocab_size;
  for (size_t i = 0; i < params.prompt.size(); ++i) {
    if (params.prompt[i] < 0 || params.prompt[i] >= vocab) {
      return Status::error("prompt token id " + std::to_string(params.prompt[i]) + " at position " +
                           std::to_string(i) + " is outside the vocabulary [0, " +
                           std::to_string(vocab) + ")");
    }
  }
  if (params.max_tokens < 0) return Status::error("max_tokens must be at least 0");
  // max_tokens 0 still samples (and drops) one token, the scheduler's shape of a finished
  // prompt; that token is never fed back, so it needs no place in the context.
  if (n_prompt + params.max_tokens > options_.max_model_len) {
    return Status::error("prompt (" + std::to_string(n_prompt) + " tokens) plus max_tokens (" +
                         std::to_string(params.max_tokens) + ") exceeds max_model_len (" +
                         std::to_string(options_.max_model_len) + ")");
  }
  CARPOOL_RETURN_IF_ERROR(params.sampling.validate());
  if (params.logprobs < -1 || params.logprobs > kMaxLogprobs) {
    return Status::error("logprobs must be in [0, " + std::to_string(kMaxLogprobs) + "]");
  }
  if (params.prompt_logprobs < -1 || params.prompt_logprobs > kMaxLogprobs) {
    return Status::error("prompt_logprobs must be in [0, " + std::to_string(kMaxLogprobs) + "]");
  }
  RequestId id;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!accepting_) return Status::error("engine is shutting down");
    if (static_cast<int64_t>(pending_.size()) + sched_waiting_ >= options_.max_queued_requests) {
      return Status::error("too many queued requests (" +
                           std::to_string(options_.max_queued_requests) + ")");
    }
    id = next_id_++;
    pending_.push_back(Pending{id, std::move(params), std::move(sink)});
    ++unfinished_;
  }
  cv_.notify_one();
  return id;
}

void EngineImpl::shutdown(double timeout_s) {
  std::lock_guard<std::mutex> once(shutdown_mu_);
  if (!thread_.joinable()) return;
  {
    std::unique_lock<std::mutex> lk(mu_);
    accepting_ = false;
    refuse_unstarted_ = true;
    cv_.notify_one();
    drained_cv_.wait_for(lk, std::chrono::duration<double>(std::max(0.0, timeout_s)),
                         [&] { return unfinished_ == 0 || hurry_; });
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void EngineImpl::admit(Pending& p) {
  SequenceParams sp;
  sp.id = p.id;
  sp.prompt = p.params.prompt;
  sp.max_tokens = std::max(1, p.params.max_tokens);
  sp.stop_ids = std::move(p.params.stop_ids);
  sp.ignore_eos = p.params.ignore_eos;
  // Prompt logprobs need every prompt position computed: no cached prefix blocks.
  sp.reuse_cached_prefix = p.params.prompt_logprobs < 0;
  if (p.params.max_tokens == 0) prompt_only_.insert(p.id);
  if (!p.params.count_in_telemetry) uncounted_.insert(p.id);
  runner_.add(p.id, p.params.sampling, p.params.prompt, p.params.logprobs,
              p.params.prompt_logprobs);
  scheduler_.add(std::move(sp));
  sinks_.emplace(p.id, std::make_shared<TokenSink>(std::move(p.sink)));
}

void EngineImpl::shutdown_now() {
  std::lock_guard<std::mutex> lk(mu_);
  hurry_ = true;
  drained_cv_.notify_all();
}

void EngineImpl::end_request(RequestId id, FinishReason reason, const std::string& error,
                             bool refused, int kept_tokens) {
  auto it = sinks_.find(id);
  if (it == sinks_.end()) return;  // unknown or already finished
  TokenEvent ev;
  ev.finished = true;
  ev.finish_reason = reason;
  ev.error = error;
  ev.refused_at_shutdown = refused;
  if (const Sequence* s = scheduler_.find(id)) {
    ev.prompt_tokens = s->num_prompt_tokens;
    ev.generated_tokens = s->num_generated();
    if (kept_tokens >= 0) ev.generated_tokens = std::min(ev.generated_tokens, kept_tokens);
    ev.cached_prompt_tokens = s->num_cached_prompt_tokens;
  }
  const bool counted = uncounted_.erase(id) == 0;
  if (tel_ != nullptr && counted) {
    record_finished(scheduler_.find(id), reason, kept_tokens >= 0 ? ev.generated_tokens : -1);
  }
  last_token_s_.erase(id);
  scheduler_.abort(id);
  runner_.remove(id);
  prompt_only_.erase(id);
  outbox_.push_back(Delivery{std::move(it->second), std::move(ev)});
  sinks_.erase(it);
  ++finished_since_publish_;
}

void EngineImpl::run_step() {
  const int64_t start_ns = tel_ != nullptr ? tel_->clock().now_ns() : 0;
  StepPlan plan = scheduler_.schedule();
  // With work left a plan is never empty (the cache holds one max_model_len sequence).
  CARPOOL_CHECK(!plan.empty());
  const int64_t exec_ns = tel_ != nullptr ? tel_->clock().now_ns() : 0;
  // Overlap: the previous step's events go to the sinks while the device runs this one.
  auto sampled = overlap_ ? runner_.execute(plan, [this] { deliver(); }) : runner_.execute(plan);
  // The device's own clock where the backend has one (CUDA events around the forward); else the
  // runner waited for the step's logits, so the device was busy from launch to here.
  int64_t device_ns = 0;
  if (tel_ != nullptr) {
    device_ns = runner_.last_device_ns();
    if (device_ns < 0) device_ns = tel_->clock().now_ns() - exec_ns;
  }
  if (!sampled) {
    std::fprintf(stderr, "carpool: engine step failed: %s\n", sampled.error().c_str());
    for (const ScheduledSeq& e : plan.seqs) {
      end_request(e.id, FinishReason::kError, "engine step failed: " + sampled.error());
    }
    return;
  }
  std::vector<int32_t> tokens;
  tokens.reserve(sampled->size());
  for (const SampledToken& t : sampled.value()) tokens.push_back(t.token);
  std::vector<SeqOutput> outputs = scheduler_.update(plan, tokens);
  CARPOOL_CHECK(outputs.size() == sampled->size());

  if (tel_ != nullptr && !uncounted_step(plan)) {
    int64_t dropped = 0;  // prompt-only requests' tokens, never delivered
    if (!prompt_only_.empty()) {
      for (const SeqOutput& o : outputs) dropped += prompt_only_.count(o.id);
    }
    record_step(plan, start_ns, device_ns, static_cast<int64_t>(outputs.size()) - dropped);
    const int64_t t0 = tel_->clock().now_ns();
    const double now = steady_now_s();
    gaps_.clear();
    for (const SeqOutput& o : outputs) {
      if (uncounted_.count(o.id) != 0) continue;
      auto [it, inserted] = last_token_s_.try_emplace(o.id, now);
      if (!inserted) {
        gaps_.push_back(now - it->second);
        it->second = now;
      }
    }
    const int64_t t1 = tel_->clock().now_ns();
    tel_->add_engine_self_ns(t1 - t0);
    if (!gaps_.empty()) tel_->record_token_gaps(gaps_, t1);
  }
  local_.steps += 1;
  local_.prompt_tokens += plan.num_prefill_tokens;
  local_.generated_tokens += static_cast<int64_t>(outputs.size());
  local_.preemptions = scheduler_.num_preemptions();
  for (size_t i = 0; i < outputs.size(); ++i) {
    const SeqOutput& o = outputs[i];
    SampledToken& st = sampled.value()[i];
    const Sequence& s = *o.seq;
    if (s.num_generated() == 1) local_.prefix_cache_hit_tokens += s.num_cached_prompt_tokens;
    TokenEvent ev;
    ev.token = o.token;
    ev.cached_prompt_tokens = s.num_cached_prompt_tokens;
    ev.logprob = st.logprob;
    ev.top_logprobs = std::move(st.top_logprobs);
    ev.prompt_logprobs = std::move(st.prompt_logprobs);
    auto it = sinks_.find(o.id);
    CARPOOL_CHECK(it != sinks_.end());
    // max_tokens 0: the prompt is computed; the one token the scheduler sampled is dropped.
    const bool prompt_only = !prompt_only_.empty() && prompt_only_.erase(o.id) > 0;
    if (prompt_only) {
      CARPOOL_CHECK(o.finished);  // the scheduler ran it with max_tokens 1
      local_.generated_tokens -= 1;
      ev.token = -1;
      ev.logprob = 0.f;
      ev.top_logprobs.clear();
    }
    if (!o.finished) {
      outbox_.push_back(Delivery{it->second, std::move(ev)});
      continue;
    }
    ev.finished = true;
    ev.finish_reason =
        o.finish == SeqFinish::kStop && !prompt_only ? FinishReason::kStop : FinishReason::kLength;
    ev.prompt_tokens = s.num_prompt_tokens;
    ev.generated_tokens = prompt_only ? 0 : s.num_generated();
    ev.cached_prompt_tokens = s.num_cached_prompt_tokens;
    const bool counted = uncounted_.erase(o.id) == 0;
    if (tel_ != nullptr && counted) record_finished(&s, ev.finish_reason, ev.generated_tokens);
    outbox_.push_back(Delivery{std::move(it->second), std::move(ev)});
    sinks_.erase(it);
    runner_.remove(o.id);
    ++finished_since_publish_;
  }
}

void EngineImpl::deliver() {
  if (outbox_.empty()) return;
  if (options_.delivery_hook) options_.delivery_hook(true);
  for (Delivery& d : outbox_) (*d.sink)(d.event);
  outbox_.clear();
  if (options_.delivery_hook) options_.delivery_hook(false);
}

void EngineImpl::publish_stats() {
  std::lock_guard<std::mutex> lk(mu_);
  sched_waiting_ = scheduler_.num_waiting();
  stats_.running = scheduler_.num_running();
  stats_.waiting = sched_waiting_ + static_cast<int>(pending_.size());
  stats_.kv_blocks_used = scheduler_.block_manager().num_used_blocks();
  stats_.steps = local_.steps;
  stats_.preemptions = local_.preemptions;
  stats_.prompt_tokens = local_.prompt_tokens;
  stats_.generated_tokens = local_.generated_tokens;
  stats_.prefix_cache_hit_tokens = local_.prefix_cache_hit_tokens;
  unfinished_ -= finished_since_publish_;
  finished_since_publish_ = 0;
  if (unfinished_ == 0) drained_cv_.notify_all();
}

void EngineImpl::loop() {
  engine_tid_.store(static_cast<int>(syscall(SYS_gettid)));
  std::deque<Pending> incoming;
  std::vector<EarlyEnd> early_ends;
  for (;;) {
    bool stop = false, refuse = false;
    {
      std::unique_lock<std::mutex> lk(mu_);
      auto has_work = [&] {
        return stop_ || refuse_unstarted_ || !pending_.empty() || !early_ends_.empty() ||
               scheduler_.has_unfinished();
      };
      idle_before_ = !has_work();
      cv_.wait(lk, has_work);
      incoming.swap(pending_);
      early_ends.swap(early_ends_);
      stop = stop_;
      refuse = refuse_unstarted_;
      refuse_unstarted_ = false;
    }
    for (Pending& p : incoming) admit(p);
    incoming.clear();
    for (const EarlyEnd& e : early_ends) end_request(e.id, e.reason, "", false, e.kept_tokens);
    early_ends.clear();
    // Shutting down: what has not started goes back to its client at once (to be retried on
    // another replica) instead of waiting out the drain for an empty answer.
    if (refuse) {
      for (RequestId id : scheduler_.unstarted()) end_request(id, FinishReason::kAbort, "", true);
    }
    if (stop) {
      std::vector<RequestId> left;
      for (const auto& [id, sink] : sinks_) left.push_back(id);
      for (RequestId id : left) end_request(id, FinishReason::kAbort, "");
      publish_stats();
      deliver();
      return;
    }
    if (scheduler_.has_unfinished()) run_step();
    publish_stats();
    // With overlap, a step that another follows leaves its events for that step's run_step.
    if (!overlap_ || !scheduler_.has_unfinished()) deliver();
  }
}

}  // namespace

Result<std::unique_ptr<Engine>> Engine::create(LlamaModel& model, const EngineOptions& options) {
  const ModelConfig& config = model.config();
  CARPOOL_ASSIGN_OR_RETURN(EngineOptions o, resolve_engine_options(options, config));
  const ModelLimits need = engine_model_limits(o, config);
  const ModelLimits& have = model.limits();
  if (have.max_batch_tokens < need.max_batch_tokens || have.max_seqs < need.max_seqs ||
      have.max_logit_rows < need.max_logit_rows ||
      have.max_blocks_per_seq < need.max_blocks_per_seq) {
    return Status::error(
        "the model was loaded with limits (batch tokens " + std::to_string(have.max_batch_tokens) +
        ", sequences " + std::to_string(have.max_seqs) + ", logit rows " +
        std::to_string(have.max_logit_rows) + ", blocks per sequence " +
        std::to_string(have.max_blocks_per_seq) + ") below what the engine options need (" +
        std::to_string(need.max_batch_tokens) + ", " + std::to_string(need.max_seqs) + ", " +
        std::to_string(need.max_logit_rows) + ", " + std::to_string(need.max_blocks_per_seq) +
        "); load it with engine_model_limits(options, config)");
  }
  Backend& backend = model.backend();
  CARPOOL_ASSIGN_OR_RETURN(
      KvCachePlan plan, plan_kv_cache(config, backend.kv_cache_dtype(), o, backend.name() != "cpu",
                                      backend.memory_info()));
  auto kv = model.alloc_kv_cache(plan.num_blocks, plan.block_size);
  if (!kv) {
    return Status::error("kv cache: could not allocate " + std::to_string(plan.bytes >> 20) +
                         " MiB: " + kv.error());
  }
  o.kv_cache_bytes = plan.bytes;
  std::fprintf(stderr, "%s\n", plan.summary().c_str());
  return std::unique_ptr<Engine>(new EngineImpl(model, o, plan, std::move(kv.value())));
}

}  // namespace carpool
