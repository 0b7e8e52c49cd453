#include "server/generation.h"

#include <algorithm>
#include <limits>
#include <mutex>
#include <utility>
#include <vector>

#include "server/json_io.h"
#include "server/stop_matcher.h"
#include "tokenizer/stream_decoder.h"
#include "util/random_id.h"
#include "util/utf8.h"

namespace carpool::server {
namespace {

const char* reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kError:
      return "error";
    default:
      return "stop";
  }
}

// Maps an engine submit() refusal to an HTTP answer.
ApiError submit_error(const std::string& message) {
  if (message.find("queue") != std::string::npos || message.find("full") != std::string::npos) {
    ApiError e;
    e.status = 429;
    e.type = "rate_limit_error";
    e.code = "rate_limit_exceeded";
    e.message = "the server is busy (" + message + "); retry shortly";
    e.headers.emplace_back("Retry-After", "1");
    return e;
  }
  if (message.find("shut") != std::string::npos) return unavailable("the server is shutting down");
  return bad_request(message);
}

class GenerationJob : public std::enable_shared_from_this<GenerationJob> {
 public:
  GenerationJob(std::shared_ptr<Exchange> ex, const ModelService& model, GenerationInput in)
      : ex_(std::move(ex)), model_(model), in_(std::move(in)) {}

  void start();

 private:
  struct Choice {
    int index = 0;
    int prompt = 0;
    RequestId rid = 0;
    bool submitted = false;
    bool finished = false;
    FinishReason reason = FinishReason::kNone;
    std::unique_ptr<StreamDecoder> decoder;
    std::unique_ptr<StopMatcher> stop;
    std::string text;
    // Streamed logprobs: the text_offset of the next listed token, in characters from the
    // start of the choice's text (the echo's length first): the listed tokens' pieces summed,
    // as the whole answer's offsets are, however the text itself was held back.
    size_t next_offset = 0;
    TokenLogprobs logprobs;
    int completion_tokens = 0;
    int cached_prompt_tokens = 0;  // from the final event
    bool prompt_scored = false;    // the echoed prompt's logprobs arrived (want_prompt_logprobs)
    TokenLogprobs prompt_logprobs;
    bool refused = false;  // ended unstarted by the engine's shutdown (refused_at_shutdown)
    // chat with tools shown: streamed content held back where a call may begin (tool_calls.h)
    std::unique_ptr<ToolStreamFilter> tools;
  };

  void on_event(int i, const TokenEvent& ev);
  // A streamed event of a choice with tools: content, held back where a call may begin, or a
  // named function's arguments; at the end the calls, then the finish reason.
  void stream_tools(Choice& c, const std::string& delta, const nlohmann::ordered_json& lp);
  // "tool_calls" when the answer made calls of the model's choice (auto, required).
  const char* finish_reason(const Choice& c, bool calls) const {
    if (calls && c.reason == FinishReason::kStop &&
        in_.request.tools.choice != ToolChoice::kNamed) {
      return "tool_calls";
    }
    return reason_name(c.reason);
  }
  void finish_choice(Choice& c, FinishReason reason);
  void on_client_gone();
  void complete();
  bool want_logprobs() const { return in_.request.logprobs >= 0; }
  // completions with echo and logprobs: the prompt's logprobs come first (streamed: with the
  // echoed text, in the choice's first chunk, once the engine has computed the prompt).
  bool want_prompt_logprobs() const {
    return !in_.meta.chat && in_.request.echo && in_.request.logprobs >= 0;
  }
  // The choice's prompt logprobs from its first engine event.
  void take_prompt_logprobs(Choice& c, const TokenEvent& ev);

  // The engine's events of a request that nothing needs before it ends (not streamed, no stop
  // strings: EOS and the stop tokens end it in the engine) are kept here by the engine thread and
  // handed to the IO thread once, when a choice ends, instead of waking it every step (which
  // preempts a compute thread: about a tenth of a one-request decode step on two cores).
  bool defer_events() const { return !in_.request.stream && in_.request.stop.empty(); }
  void defer_event(int i, const TokenEvent& ev);
  void drain_deferred();

  std::shared_ptr<Exchange> ex_;
  const ModelService& model_;
  GenerationInput in_;
  std::mutex deferred_mu_;
  std::vector<std::pair<int, TokenEvent>> deferred_;  // in arrival order
  std::vector<Choice> choices_;
  int unfinished_ = 0;
  bool done_ = false;
  std::string error_;  // an engine error on any choice
};

void GenerationJob::start() {
  const GenerationRequest& req = in_.request;
  Engine& engine = *model_.engine;
  const Tokenizer& tok = *model_.tokenizer;
  const int n_choices = static_cast<int>(in_.prompts.size()) * req.n;

  if (model_.max_queued_requests > 0) {
    // More choices than the queue holds can never be admitted: a 400, not a 429 to retry forever.
    if (n_choices > model_.max_queued_requests) {
      ApiError e =
          bad_request("this request asks for " + std::to_string(n_choices) +
                          " choices (prompts x n), more than the server's queue holds (" +
                          std::to_string(model_.max_queued_requests) + ", --max-queued-requests)",
                      "n");
      ex_->respond(error_response(e));
      return;
    }
    EngineStats s = engine.stats();
    if (s.waiting + n_choices > model_.max_queued_requests) {
      ex_->respond(error_response(submit_error("waiting queue full: " + std::to_string(s.waiting) +
                                               " of " + std::to_string(model_.max_queued_requests) +
                                               " requests waiting")));
      return;
    }
  }

  if (req.json_object && model_.json_vocab == nullptr) {
    ex_->respond(error_response(bad_request(
        "JSON mode (response_format) is not available for this model", "response_format")));
    return;
  }
  choices_.resize(n_choices);
  for (int p = 0; p < static_cast<int>(in_.prompts.size()); ++p) {
    for (int j = 0; j < req.n; ++j) {
      Choice& c = choices_[p * req.n + j];
      c.index = p * req.n + j;
      c.prompt = p;
      c.decoder = std::make_unique<StreamDecoder>(tok, req.skip_special_tokens);
      c.stop = std::make_unique<StopMatcher>(req.stop);
      if (!in_.echo.empty()) c.next_offset = utf8_length(in_.echo[p]);
      if (in_.meta.chat && req.tools.choice != ToolChoice::kNone) {
        c.tools = std::make_unique<ToolStreamFilter>(req.tools, model_.tool_format);
      }
    }
  }

  auto self = shared_from_this();
  for (Choice& c : choices_) {
    RequestParams params;
    params.prompt = in_.prompts[c.prompt];
    params.sampling = req.sampling;
    // Each choice of a seeded request gets its own, reproducible, stream of random numbers.
    // (seed + j, wrapped within [0, 2^63): any seed the API takes.)
    if (req.sampling.seed >= 0) {
      params.sampling.seed = static_cast<int64_t>(
          (static_cast<uint64_t>(req.sampling.seed) + static_cast<uint64_t>(c.index % req.n)) &
          static_cast<uint64_t>(std::numeric_limits<int64_t>::max()));
    }
    params.max_tokens = in_.max_tokens[c.prompt];
    // ignore_eos drops the end-of-generation tokens, not the request's stop_token_ids.
    if (!req.ignore_eos) params.stop_ids = tok.end_of_generation_ids();
    params.stop_ids.insert(params.stop_ids.end(), req.stop_token_ids.begin(),
                           req.stop_token_ids.end());
    if (req.min_tokens > 0) {  // (vLLM's min_tokens: no stop id before that many tokens)
      params.sampling.min_tokens = req.min_tokens;
      params.sampling.min_tokens_banned = params.stop_ids;
    }
    if (req.json_object) {
      params.sampling.json_vocab = model_.json_vocab;
      params.sampling.json_schema = req.json_schema;
    }
    params.logprobs = req.logprobs;
    if (want_prompt_logprobs()) params.prompt_logprobs = req.logprobs;
    const int i = c.index;
    TokenSink sink;
    if (defer_events()) {
      sink = [self, i](const TokenEvent& ev) { self->defer_event(i, ev); };
    } else {
      sink = [self, i](const TokenEvent& ev) {
        self->ex_->post([self, i, ev] { self->on_event(i, ev); });
      };
    }
    auto rid = engine.submit(std::move(params), std::move(sink));
    if (!rid) {
      for (Choice& done : choices_) {
        if (done.submitted) engine.abort(done.rid);
        done.finished = true;
      }
      done_ = true;
      ex_->respond(error_response(submit_error(rid.error())));
      return;
    }
    c.rid = rid.value();
    c.submitted = true;
  }
  unfinished_ = n_choices;
  // A weak reference: the exchange must not keep the job (which holds the exchange) alive.
  ex_->on_close([weak = std::weak_ptr<GenerationJob>(self)] {
    if (auto job = weak.lock()) job->on_client_gone();
  });

  if (req.stream) {
    ex_->start_stream(200, "text/event-stream",
                      {{"Cache-Control", "no-cache"},
                       {"X-Accel-Buffering", "no"},
                       {"X-Request-Id", in_.meta.id}});
    for (Choice& c : choices_) {
      const std::string& echo = in_.echo.empty() ? std::string() : in_.echo[c.prompt];
      // With prompt logprobs the echo waits for them (take_prompt_logprobs).
      if (in_.meta.chat || (!echo.empty() && !want_prompt_logprobs())) {
        ex_->write(chunk_event(in_.meta, c.index, in_.meta.chat ? "" : echo, in_.meta.chat, nullptr,
                               nullptr, req.include_usage));
      }
      if (c.tools && req.tools.choice == ToolChoice::kNamed) {  // the call, arguments to follow
        ToolCall call;
        call.id = make_tool_call_id();
        call.name = req.tools.named;
        const auto calls = nlohmann::ordered_json::array({tool_call_json(call, 0)});
        ex_->write(
            chunk_event(in_.meta, c.index, "", false, nullptr, nullptr, req.include_usage, &calls));
      }
    }
  }
}

void GenerationJob::take_prompt_logprobs(Choice& c, const TokenEvent& ev) {
  c.prompt_scored = true;
  const std::vector<int32_t>& prompt = in_.prompts[c.prompt];
  TokenLogprobs& lp = c.prompt_logprobs;
  lp.tokens = prompt;
  lp.logprobs.assign(prompt.size(), 0.f);
  lp.top.assign(prompt.size(), {});
  if (ev.prompt_logprobs.size() + 1 == prompt.size()) {
    lp.num_unscored = 1;  // no context predicts the first token
    for (size_t k = 0; k < ev.prompt_logprobs.size(); ++k) {
      lp.logprobs[k + 1] = ev.prompt_logprobs[k].logprob;
      lp.top[k + 1] = ev.prompt_logprobs[k].top;
    }
  } else {
    lp.num_unscored = prompt.size();  // ended (aborted) before the prompt was computed
  }
  if (in_.request.stream && !ex_->closed()) {
    ex_->write(chunk_event(in_.meta, c.index, in_.echo[c.prompt], false,
                           logprobs_json(false, *model_.tokenizer, lp, 0), nullptr,
                           in_.request.include_usage));
  }
}

void GenerationJob::defer_event(int i, const TokenEvent& ev) {
  bool post = false;
  {
    std::lock_guard<std::mutex> lock(deferred_mu_);
    deferred_.emplace_back(i, ev);
    post = ev.finished;
  }
  if (post) ex_->post([self = shared_from_this()] { self->drain_deferred(); });
}

void GenerationJob::drain_deferred() {
  std::vector<std::pair<int, TokenEvent>> events;
  {
    std::lock_guard<std::mutex> lock(deferred_mu_);
    events.swap(deferred_);
  }
  for (const auto& [i, ev] : events) on_event(i, ev);
}

void GenerationJob::on_event(int i, const TokenEvent& ev) {
  Choice& c = choices_[i];
  if (done_ || c.finished) return;
  const GenerationRequest& req = in_.request;
  if (want_prompt_logprobs() && !c.prompt_scored) take_prompt_logprobs(c, ev);
  std::string delta;
  TokenLogprobs fresh;
  if (ev.token >= 0) {
    ++c.completion_tokens;
    // The end-of-generation token that ends the answer is not part of its text, so it is not
    // listed with the text's tokens either (OpenAI's logprobs rebuild the text from them); nor is
    // a stop_token_ids token that ends it (unless include_stop_str_in_output), as a stop string.
    const bool stopped = ev.finished && ev.finish_reason == FinishReason::kStop;
    const bool end_token = stopped && model_.tokenizer->is_end_of_generation(ev.token);
    const bool stop_token = stopped && !end_token && !req.include_stop_str_in_output &&
                            std::find(req.stop_token_ids.begin(), req.stop_token_ids.end(),
                                      ev.token) != req.stop_token_ids.end();
    if (want_logprobs() && !end_token && !stop_token) {
      fresh.tokens.push_back(ev.token);
      fresh.logprobs.push_back(ev.logprob);
      fresh.top.push_back(ev.top_logprobs);
    }
    if (!stop_token && !end_token) delta = c.stop->push(c.decoder->push(ev.token));
    if (c.stop->matched()) {
      if (req.include_stop_str_in_output) delta += c.stop->matched_stop();
      if (!ev.finished) model_.engine->stop(c.rid, c.completion_tokens);
      finish_choice(c, FinishReason::kStop);
    }
  }
  c.cached_prompt_tokens = ev.cached_prompt_tokens;
  if (!c.finished && ev.finished) {
    c.refused = ev.refused_at_shutdown && c.completion_tokens == 0;
    FinishReason reason = ev.finish_reason;
    if (reason == FinishReason::kError) {
      error_ = ev.error.empty() ? "the engine failed on this request" : ev.error;
    } else {
      delta += c.stop->push(c.decoder->finish());
      if (c.stop->matched()) {
        if (req.include_stop_str_in_output) delta += c.stop->matched_stop();
        reason = FinishReason::kStop;
      } else {
        delta += c.stop->flush();
      }
    }
    finish_choice(c, reason == FinishReason::kNone ? FinishReason::kStop : reason);
  }
  c.text += delta;
  if (want_logprobs()) {
    for (size_t k = 0; k < fresh.tokens.size(); ++k) {
      c.logprobs.tokens.push_back(fresh.tokens[k]);
      c.logprobs.logprobs.push_back(fresh.logprobs[k]);
      c.logprobs.top.push_back(fresh.top[k]);
    }
  }
  // A refused choice's end waits for complete(): the whole request may get a 503 instead.
  if (req.stream && !ex_->closed() && !c.refused &&
      (!delta.empty() || c.finished || !fresh.empty())) {
    nlohmann::ordered_json lp = nullptr;
    const bool tools = c.tools != nullptr;
    if (want_logprobs() && !fresh.empty()) {
      fresh.text_skips_special = req.skip_special_tokens;
      lp = logprobs_json(in_.meta.chat, *model_.tokenizer, fresh, c.next_offset);
      for (size_t k = 0; k < fresh.tokens.size(); ++k) {
        c.next_offset += token_text_chars(*model_.tokenizer, fresh, k);
      }
    }
    if (tools) {
      stream_tools(c, delta, lp);
    } else {
      ex_->write(chunk_event(in_.meta, c.index, delta, false, lp,
                             c.finished ? reason_name(c.reason) : nullptr, req.include_usage));
    }
  }
  if (c.finished && --unfinished_ == 0) complete();
}

void GenerationJob::stream_tools(Choice& c, const std::string& delta,
                                 const nlohmann::ordered_json& lp) {
  const GenerationRequest& req = in_.request;
  if (req.tools.choice == ToolChoice::kNamed) {
    const std::string args = c.tools->push(delta);
    nlohmann::ordered_json calls = nlohmann::ordered_json::array();
    if (!args.empty()) calls.push_back({{"index", 0}, {"function", {{"arguments", args}}}});
    if (calls.empty() && lp.is_null() && !c.finished) return;
    ex_->write(chunk_event(in_.meta, c.index, "", false, lp,
                           c.finished ? finish_reason(c, true) : nullptr, req.include_usage,
                           calls.empty() ? nullptr : &calls));
    return;
  }
  std::string content = c.tools->push(delta);
  ToolAnswer end;
  if (c.finished) {
    end = c.tools->finish();
    if (end.content) content += *end.content;
  }
  const bool calls = !end.calls.empty();
  const char* reason = c.finished ? finish_reason(c, calls) : nullptr;
  if (!content.empty() || !lp.is_null() || (c.finished && !calls)) {
    ex_->write(chunk_event(in_.meta, c.index, content, false, lp, calls ? nullptr : reason,
                           req.include_usage));
  }
  if (calls) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (size_t k = 0; k < end.calls.size(); ++k) {
      list.push_back(tool_call_json(end.calls[k], static_cast<int>(k)));
    }
    ex_->write(
        chunk_event(in_.meta, c.index, "", false, nullptr, nullptr, req.include_usage, &list));
    ex_->write(chunk_event(in_.meta, c.index, "", false, nullptr, reason, req.include_usage));
  }
}

void GenerationJob::finish_choice(Choice& c, FinishReason reason) {
  c.finished = true;
  c.reason = reason;
}

void GenerationJob::on_client_gone() {
  if (done_) return;
  done_ = true;
  for (Choice& c : choices_) {
    if (!c.finished) model_.engine->abort(c.rid);
    c.finished = true;
  }
}

void GenerationJob::complete() {
  done_ = true;
  if (ex_->closed()) return;
  const GenerationRequest& req = in_.request;
  Usage usage;
  for (const auto& p : in_.prompts) usage.prompt_tokens += static_cast<int>(p.size());
  for (const Choice& c : choices_) usage.completion_tokens += c.completion_tokens;
  // Prompt tokens served from the prefix cache, per prompt as it was first computed: the fewest
  // among its choices (a later choice of n may reuse what the first one computed).
  for (size_t p = 0; p < in_.prompts.size(); ++p) {
    int cached = -1;
    for (const Choice& c : choices_) {
      if (c.prompt == static_cast<int>(p)) {
        cached = cached < 0 ? c.cached_prompt_tokens : std::min(cached, c.cached_prompt_tokens);
      }
    }
    usage.cached_tokens += std::max(cached, 0);
  }
  // Shutting down before any choice started: 503 with Retry-After, so that the client (or its
  // load balancer) sends it to another replica rather than taking an empty answer for one.
  const bool refused =
      std::all_of(choices_.begin(), choices_.end(), [](const Choice& c) { return c.refused; });
  if (refused && error_.empty()) {
    const ApiError e = unavailable("the server is shutting down; the request was not started");
    if (!req.stream) return ex_->respond(error_response(e));
    ex_->write(sse_event(error_json(e)));
    ex_->write(kSseDone);
    return ex_->end_stream();
  }
  if (req.stream) {
    for (const Choice& c : choices_) {
      if (c.refused) {
        ex_->write(chunk_event(in_.meta, c.index, "", false, nullptr, reason_name(c.reason),
                               req.include_usage));
      }
    }
    if (!error_.empty()) {
      ApiError e;
      e.status = 500;
      e.type = "server_error";
      e.message = error_;
      ex_->write(sse_event(error_json(e)));
    }
    if (req.include_usage) ex_->write(usage_event(in_.meta, usage));
    ex_->write(kSseDone);
    ex_->end_stream();
    return;
  }
  if (!error_.empty()) {
    ApiError e;
    e.status = 500;
    e.type = "server_error";
    e.message = error_;
    ex_->respond(error_response(e));
    return;
  }
  std::vector<ChoiceResult> results;
  results.reserve(choices_.size());
  for (Choice& c : choices_) {
    ChoiceResult r;
    r.index = c.index;
    const std::string& echo = in_.echo.empty() ? std::string() : in_.echo[c.prompt];
    r.text = echo + c.text;
    r.text_offset = utf8_length(echo);
    r.finish_reason = reason_name(c.reason);
    r.with_logprobs = want_logprobs();
    r.logprobs = std::move(c.logprobs);
    r.logprobs.text_skips_special = req.skip_special_tokens;
    r.with_prompt_logprobs = want_prompt_logprobs();
    r.prompt_logprobs = std::move(c.prompt_logprobs);
    if (c.tools) {
      r.tool_answer = true;
      r.tool = read_tool_answer(req.tools, model_.tool_format, c.text);
      r.finish_reason = finish_reason(c, !r.tool.calls.empty());
    }
    results.push_back(std::move(r));
  }
  HttpResponse resp;
  resp.body = full_response(in_.meta, *model_.tokenizer, results, usage);
  resp.headers.emplace_back("X-Request-Id", in_.meta.id);  // the openai SDK's request_id
  ex_->respond(std::move(resp));
}

}  // namespace

void start_generation(std::shared_ptr<Exchange> exchange, const ModelService& model,
                      GenerationInput input) {
  std::make_shared<GenerationJob>(std::move(exchange), model, std::move(input))->start();
}

std::string make_request_id(const char* prefix) {
  return std::string(prefix) + "-" + random_hex_id();
}

}  // namespace carpool::server
