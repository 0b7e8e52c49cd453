// Unit tests of the server's pure parts: stop strings, request validation, API-key check, JSON
// limits, the router's net under handlers. (The HTTP routes are tested end to end in
// tests/integration.)
#include <gtest/gtest.h>

#include <limits>
#include <nlohmann/json.hpp>

#include "server/auth.h"
#include "server/http_types.h"
#include "server/json_io.h"
#include "server/openai_request.h"
#include "server/router.h"
#include "server/stop_matcher.h"

namespace carpool::server {
namespace {

// Feeds `pieces` one at a time; returns everything emitted (push + flush when unmatched).
std::string run_stops(std::vector<std::string> stops, std::vector<std::string> pieces,
                      bool* matched = nullptr) {
  StopMatcher m(std::move(stops));
  std::string out;
  for (const auto& p : pieces) out += m.push(p);
  out += m.flush();
  if (matched) *matched = m.matched();
  return out;
}

TEST(StopMatcher, CutsAcrossPieces) {
  bool matched = false;
  EXPECT_EQ(run_stops({"END"}, {"hello E", "N", "D world"}, &matched), "hello ");
  EXPECT_TRUE(matched);
}

TEST(StopMatcher, HoldsBackOnlyWhileAPrefixCouldMatch) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.push("abc ST"), "abc ");  // "ST" held back
  EXPECT_EQ(m.push("AR"), "STAR");      // no longer a prefix
  EXPECT_EQ(m.push("S"), "");
  EXPECT_EQ(m.flush(), "S");
  EXPECT_FALSE(m.matched());
}

TEST(StopMatcher, EarliestStopWinsAndLaterTextIsDropped) {
  StopMatcher m({"world", "lo"});
  EXPECT_EQ(m.push("hello world"), "hel");
  EXPECT_TRUE(m.matched());
  EXPECT_EQ(m.matched_stop(), "lo");
  EXPECT_EQ(m.push("more"), "");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, NoStopsPassesThrough) {
  EXPECT_EQ(run_stops({}, {"a", "b"}), "ab");
  EXPECT_EQ(run_stops({""}, {"a", "b"}), "ab");
}

TEST(StopMatcher, MultiByteStop) {
  bool matched = false;
  // "é" split across pieces as raw bytes.
  EXPECT_EQ(run_stops({"\xC3\xA9t\xC3\xA9"}, {"un \xC3", "\xA9t\xC3\xA9 chaud"}, &matched), "un ");
  EXPECT_TRUE(matched);
}

RequestLimits limits() {
  RequestLimits l;
  l.vocab_size = 100;
  return l;
}

std::optional<ApiError> parse_completion(const char* body, GenerationRequest* r) {
  return parse_completion_request(nlohmann::json::parse(body), limits(), r);
}

TEST(CompletionRequest, Defaults) {
  GenerationRequest r;
  ASSERT_FALSE(parse_completion(R"({"prompt": "hi"})", &r));
  EXPECT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0].text, "hi");
  EXPECT_EQ(*r.max_tokens, 16);
  EXPECT_EQ(r.sampling.temperature, 1.f);
  EXPECT_EQ(r.n, 1);
  EXPECT_EQ(r.logprobs, -1);
}

TEST(CompletionRequest, PromptForms) {
  GenerationRequest r;
  ASSERT_FALSE(parse_completion(R"({"prompt": [1, 2, 3]})", &r));
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_TRUE(r.prompts[0].is_ids);
  EXPECT_EQ(r.prompts[0].ids, (std::vector<int32_t>{1, 2, 3}));
  ASSERT_FALSE(parse_completion(R"({"prompt": ["a", [4, 5]]})", &r));
  ASSERT_EQ(r.prompts.size(), 2u);
  EXPECT_EQ(r.prompts[0].text, "a");
  EXPECT_EQ(r.prompts[1].ids, (std::vector<int32_t>{4, 5}));
}

// A top_p too small for a float is still positive: kept as the smallest normal float (only the
// most likely token), not refused with "got 0".
TEST(CompletionRequest, TinyTopPIsKept) {
  GenerationRequest r;
  ASSERT_FALSE(parse_completion_request(
      nlohmann::json::parse(R"({"prompt": "x", "top_p": 1e-300})"), limits(), &r));
  EXPECT_GT(r.sampling.top_p, 0.f);
  EXPECT_TRUE(r.sampling.validate());
}

TEST(CompletionRequest, ErrorsNameTheField) {
  struct Case {
    const char* body;
    const char* param;
  } cases[] = {
      {R"({})", "prompt"},
      {R"({"prompt": [100]})", "prompt"},
      {R"({"prompt": [18446744073709551615]})", "prompt"},
      {R"({"prompt": "x", "max_tokens": -1})", "max_tokens"},
      {R"({"prompt": "x", "max_tokens": 9223372036854775808})", "max_tokens"},
      {R"({"prompt": "x", "temperature": "1"})", "temperature"},
      {R"({"prompt": "x", "top_p": 0})", "top_p"},
      {R"({"prompt": "x", "top_p": "0.5"})", "top_p"},
      {R"({"prompt": "x", "top_p": 1.0000001})", "top_p"},
      {R"({"prompt": "x", "stop": ["a", 3]})", "stop"},
      {R"({"prompt": "x", "n": 17})", "n"},
      {R"({"prompt": "x", "stream_options": {"include_usage": true}})", "stream_options"},
      {R"({"prompt": "x", "max_tokens": 0})", "max_tokens"},
      {R"({"prompt": "x", "echo": true, "max_tokens": -1})", "max_tokens"},
      {R"({"prompt": "x", "echo": true, "logprobs": 21})", "logprobs"},
  };
  for (const auto& c : cases) {
    GenerationRequest r;
    auto e = parse_completion(c.body, &r);
    ASSERT_TRUE(e) << c.body;
    EXPECT_EQ(e->status, 400);
    EXPECT_EQ(e->param, c.param) << c.body << ": " << e->message;
  }
}

TEST(CompletionRequest, EchoWithLogprobsAndMaxTokensZero) {
  GenerationRequest r;
  ASSERT_FALSE(parse_completion(R"({"prompt": "x", "echo": true, "logprobs": 3})", &r));
  EXPECT_TRUE(r.echo);
  EXPECT_EQ(r.logprobs, 3);
  EXPECT_EQ(*r.max_tokens, 16);
  // With echo, max_tokens 0 scores the prompt alone.
  ASSERT_FALSE(
      parse_completion(R"({"prompt": "x", "echo": true, "logprobs": 0, "max_tokens": 0})", &r));
  EXPECT_EQ(*r.max_tokens, 0);
  EXPECT_EQ(r.logprobs, 0);
  auto e = parse_completion(R"({"prompt": "x", "max_tokens": 0})", &r);
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("echo"), std::string::npos) << e->message;
  // Chat has no echo: max_tokens 0 stays an error.
  e = parse_chat_request(
      nlohmann::json::parse(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0})"),
      limits(), &r);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "max_tokens");
}

TEST(CompletionRequest, NullMeansAbsent) {
  GenerationRequest r;
  ASSERT_FALSE(parse_completion(R"({"prompt": "x", "temperature": null, "stop": null})", &r));
  EXPECT_EQ(r.sampling.temperature, 1.f);
  EXPECT_TRUE(r.stop.empty());
}

TEST(CompletionRequest, WholeNumberFloatsAreIntegersAndSeedsSpanInt64) {
  GenerationRequest r;
  ASSERT_FALSE(
      parse_completion(R"({"prompt": "x", "max_tokens": 2.0, "n": 3.0, "best_of": 3.0})", &r));
  EXPECT_EQ(*r.max_tokens, 2);
  EXPECT_EQ(r.n, 3);
  for (const char* body :
       {R"({"prompt": "x", "max_tokens": 2.5})", R"({"prompt": "x", "max_tokens": 1e300})",
        R"({"prompt": "x", "seed": 9223372036854775808.0})", R"({"prompt": "x", "seed": -1})"}) {
    auto e = parse_completion(body, &r);
    ASSERT_TRUE(e) << body;
    EXPECT_TRUE(e->param == "max_tokens" || e->param == "seed") << body;
  }
  ASSERT_FALSE(parse_completion(R"({"prompt": "x", "seed": 9223372036854775807})", &r));
  EXPECT_EQ(r.sampling.seed, std::numeric_limits<int64_t>::max());
}

TEST(CompletionRequest, VllmExtensionsAreHonouredOrRefused) {
  GenerationRequest r;
  ASSERT_FALSE(parse_completion(
      R"({"prompt": "x", "stop_token_ids": [5, 7], "include_stop_str_in_output": true,
          "min_tokens": 4, "use_beam_search": false, "bad_words": [], "prompt_logprobs": null})",
      &r));
  EXPECT_EQ(r.stop_token_ids, (std::vector<int32_t>{5, 7}));
  EXPECT_TRUE(r.include_stop_str_in_output);
  EXPECT_EQ(r.min_tokens, 4);
  // guided_json, as an object or as a string: JSON mode with that schema.
  for (
      const char* body :
      {R"({"prompt": "x", "guided_json": {"type": "object", "properties": {"a": {"type": "integer"}}}})",
       R"({"prompt": "x", "guided_json": "{\"type\": \"object\"}"})"}) {
    ASSERT_FALSE(parse_completion(body, &r)) << body;
    EXPECT_TRUE(r.json_object && r.json_schema) << body;
  }
  struct Case {
    const char* body;
    const char* param;
  } cases[] = {
      {R"({"prompt": "x", "stop_token_ids": [100]})", "stop_token_ids"},  // outside the vocabulary
      {R"({"prompt": "x", "stop_token_ids": 5})", "stop_token_ids"},
      {R"({"prompt": "x", "guided_json": {"type": "object"},
           "response_format": {"type": "json_object"}})",
       "guided_json"},
      {R"({"prompt": "x", "guided_json": "not json"})", "guided_json"},
      {R"({"prompt": "x", "guided_json": "{\"a\": 1e400}"})", "guided_json"},
      {R"({"prompt": "x", "guided_json": {"anyOf": []}})", "guided_json"},
      {R"({"prompt": "x", "guided_choice": ["a", "b"]})", "guided_choice"},
      {R"({"prompt": "x", "guided_regex": "a+"})", "guided_regex"},
      {R"({"prompt": "x", "guided_grammar": "root ::= x"})", "guided_grammar"},
      {R"({"prompt": "x", "structured_outputs": {"choice": ["a"]}})", "structured_outputs"},
      {R"({"prompt": "x", "prompt_logprobs": 1})", "prompt_logprobs"},
      {R"({"prompt": "x", "bad_words": ["a"]})", "bad_words"},
      {R"({"prompt": "x", "allowed_token_ids": [1]})", "allowed_token_ids"},
      {R"({"prompt": "x", "truncate_prompt_tokens": 4})", "truncate_prompt_tokens"},
      {R"({"prompt": "x", "min_tokens": 17})", "min_tokens"},  // above max_tokens (16)
      {R"({"prompt": "x", "min_tokens": 2, "response_format": {"type": "json_object"}})",
       "min_tokens"},
      {R"({"prompt": "x", "use_beam_search": true})", "use_beam_search"},
      {R"({"prompt": "x", "return_tokens_as_token_ids": true})", "return_tokens_as_token_ids"},
  };
  for (const auto& c : cases) {
    auto e = parse_completion(c.body, &r);
    ASSERT_TRUE(e) << c.body;
    EXPECT_EQ(e->param, c.param) << c.body << ": " << e->message;
  }
  // JSON inside a string is bounded as a body is (the schema compiler recurses): well-formed and
  // 200,000 deep, this overflowed the stack.
  for (const char* key : {"required", "enum", "const"}) {
    const std::string deep = std::string("{\"type\": \"object\", \"") + key + "\": [" +
                             std::string(200000, '[') + std::string(200000, ']') + "]}";
    nlohmann::json body = {{"prompt", "x"}, {"guided_json", deep}};
    auto e = parse_completion_request(body, limits(), &r);
    ASSERT_TRUE(e) << key;
    EXPECT_EQ(e->param, "guided_json");
    EXPECT_NE(e->message.find("nests deeper"), std::string::npos) << e->message;
  }
}

TEST(ChatRequest, VllmChatExtensions) {
  GenerationRequest r;
  auto parse = [&](const char* body) {
    return parse_chat_request(nlohmann::json::parse(body), limits(), &r);
  };
  ASSERT_FALSE(parse(R"({"messages": [{"role": "user", "content": "x"}],
                         "add_generation_prompt": false,
                         "chat_template_kwargs": {"enable_thinking": false}})"));
  EXPECT_FALSE(r.add_generation_prompt);
  EXPECT_EQ(r.chat_template_kwargs, nlohmann::ordered_json::parse(R"({"enable_thinking": false})"));
  // top_logprobs 0 without logprobs asks for nothing (as vLLM); above 0 it needs logprobs.
  ASSERT_FALSE(parse(R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 0})"));
  EXPECT_EQ(r.logprobs, -1);
  auto e = parse(R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "top_logprobs");
  e = parse(R"({"messages": [{"role": "user", "content": "x"}], "chat_template_kwargs": [1]})");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "chat_template_kwargs");
  e = parse(R"({"messages": [{"role": "user", "content": "x"}], "chat_template": "{{ 1 }}"})");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "chat_template");
  e = parse(R"({"messages": [{"role": "user", "content": "x"}], "echo": true})");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "echo");
  e = parse(R"({"messages": [{"role": "user", "content": "x"}],
                "chat_template_kwargs": {"tools": [{"type": "function"}]}})");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "chat_template_kwargs");
  ASSERT_FALSE(
      parse(R"({"messages": [{"role": "user", "content": "x"}], "skip_special_tokens": false})"));
  EXPECT_FALSE(r.skip_special_tokens);
  e = parse(R"({"messages": [{"role": "user", "content": "x"}], "continue_final_message": true})");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "continue_final_message");
}

TEST(ChatRequest, MessagesAndLogprobs) {
  GenerationRequest r;
  auto body = nlohmann::json::parse(R"({
    "messages": [{"role": "system", "content": "be brief"},
                 {"role": "user", "content": [{"type": "text", "text": "a"},
                                              {"type": "text", "text": "b"}]},
                 {"role": "assistant", "content": null}],
    "max_completion_tokens": 5, "logprobs": true, "top_logprobs": 2})");
  ASSERT_FALSE(parse_chat_request(body, limits(), &r));
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[1]["content"], "ab");
  EXPECT_EQ(r.messages[2]["content"], "");
  EXPECT_EQ(*r.max_tokens, 5);
  EXPECT_EQ(r.logprobs, 2);
  EXPECT_TRUE(r.chat);
}

TEST(ChatRequest, BadRole) {
  GenerationRequest r;
  auto e = parse_chat_request(
      nlohmann::json::parse(R"({"messages": [{"role": "function", "content": "x"}]})"), limits(),
      &r);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "messages[0].role");
}

TEST(Auth, ConstantTimeEqual) {
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abd", "abc"));
  EXPECT_FALSE(constant_time_equal("ab", "abc"));
  EXPECT_FALSE(constant_time_equal("abcd", "abc"));
  EXPECT_FALSE(constant_time_equal("", "abc"));
}

TEST(Auth, BearerHeader) {
  EXPECT_TRUE(authorized("Bearer k1", "k1"));
  EXPECT_TRUE(authorized("bearer  k1 ", "k1"));
  EXPECT_FALSE(authorized("Basic k1", "k1"));
  EXPECT_FALSE(authorized("Bearer k2", "k1"));
  EXPECT_FALSE(authorized("", "k1"));
  EXPECT_FALSE(authorized("Bearer ", "k1"));
}

TEST(JsonIo, DepthLimitAndErrors) {
  nlohmann::json j;
  EXPECT_FALSE(parse_json_object(R"({"a": [[1]], "s": "[[[[[[["})", &j));
  std::string deep = std::string(1000, '[') + std::string(1000, ']');
  auto e = parse_json_object(deep, &j);
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("nests deeper"), std::string::npos);
  EXPECT_TRUE(parse_json_object("", &j));
  EXPECT_TRUE(parse_json_object("[1]", &j));
  EXPECT_TRUE(parse_json_object("{\"a\":", &j));
}

// Numbers beyond double's range are a 400, not an exception out of the handler (which ended
// the server).
TEST(JsonIo, NumberOverflowIsAnError) {
  nlohmann::json j;
  for (const char* body :
       {R"({"x": 1e400})", R"({"temperature": -1e999})", R"({"a": [1, 2, 123456789e999999]})"}) {
    std::optional<ApiError> e;
    EXPECT_NO_THROW(e = parse_json_object(body, &j)) << body;
    ASSERT_TRUE(e) << body;
    EXPECT_EQ(e->status, 400);
    EXPECT_NE(e->message.find("range"), std::string::npos) << e->message;
  }
  EXPECT_FALSE(parse_json_object(R"({"x": 1.7e308, "y": -4.9e-324, "z": 1e-400})", &j));
}

TEST(JsonIo, InvalidUtf8IsReplacedNotThrown) {
  nlohmann::json j = {{"t", std::string("a\xC3")}};
  EXPECT_EQ(dump_json(j), "{\"t\":\"a\xEF\xBF\xBD\"}");
}

// An exchange that records what a handler did with it, as the HTTP server's does: respond() is
// ignored once a stream has started, end_stream() unless one has.
class RecordingExchange : public Exchange {
 public:
  explicit RecordingExchange(HttpRequest r) : req_(std::move(r)) {}
  const HttpRequest& request() const override { return req_; }
  void respond(HttpResponse r) override {
    if (!streaming && status == 0) status = r.status;
  }
  void start_stream(int s, std::string, std::vector<std::pair<std::string, std::string>>) override {
    streaming = true;
    status = s;
  }
  void write(std::string) override {}
  void end_stream() override { ended = streaming; }
  void post(std::function<void()> fn) override { fn(); }
  void on_close(std::function<void()>) override {}
  bool closed() const override { return false; }

  int status = 0;
  bool streaming = false;
  bool ended = false;

 private:
  HttpRequest req_;
};

TEST(Router, AHandlerThatThrowsAnswers500) {
  Router router;
  router.add("POST", "/boom", [](std::shared_ptr<Exchange>) { throw std::runtime_error("x"); });
  router.add("POST", "/stream-boom", [](std::shared_ptr<Exchange> ex) {
    ex->start_stream(200, "text/event-stream");
    throw std::out_of_range("y");
  });
  auto a = std::make_shared<RecordingExchange>(HttpRequest{"POST", "/boom", "", {}, "{}"});
  EXPECT_NO_THROW(router.dispatch(a));
  EXPECT_EQ(a->status, 500);
  auto b = std::make_shared<RecordingExchange>(HttpRequest{"POST", "/stream-boom", "", {}, "{}"});
  EXPECT_NO_THROW(router.dispatch(b));
  EXPECT_EQ(b->status, 200);  // the stream's head went out first
  EXPECT_TRUE(b->ended);
  auto c = std::make_shared<RecordingExchange>(HttpRequest{"GET", "/boom", "", {}, ""});
  router.dispatch(c);
  EXPECT_EQ(c->status, 405);
}

TEST(Router, HeadTakesTheGetRoutesAnd405NamesTheMethods) {
  Router router;
  router.add("GET", "/health", [](std::shared_ptr<Exchange> ex) { ex->respond({}); });
  router.add("GET", "/v1/models/*", [](std::shared_ptr<Exchange> ex) { ex->respond({}); });
  router.add("POST", "/v1/completions", [](std::shared_ptr<Exchange> ex) { ex->respond({}); });
  auto head = std::make_shared<RecordingExchange>(HttpRequest{"HEAD", "/health", "", {}, ""});
  router.dispatch(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(router.allowed_methods("/health"), "GET, HEAD, OPTIONS");
  EXPECT_EQ(router.allowed_methods("/v1/models/org/name"), "GET, HEAD, OPTIONS");
  EXPECT_EQ(router.allowed_methods("/v1/completions"), "POST, OPTIONS");
  EXPECT_EQ(router.allowed_methods("/nope"), "");
  auto wrong =
      std::make_shared<RecordingExchange>(HttpRequest{"GET", "/v1/completions", "", {}, ""});
  router.dispatch(wrong);
  EXPECT_EQ(wrong->status, 405);
  auto post_head =
      std::make_shared<RecordingExchange>(HttpRequest{"HEAD", "/v1/completions", "", {}, ""});
  router.dispatch(post_head);
  EXPECT_EQ(post_head->status, 405);
}

TEST(HttpTypes, DecodePathDecodesEscapesAndKeepsBadOnes) {
  EXPECT_EQ(decode_path("/v1/models/HuggingFaceTB%2FSmolLM2-135M"),
            "/v1/models/HuggingFaceTB/SmolLM2-135M");
  EXPECT_EQ(decode_path("/v1/%6dodels"), "/v1/models");
  EXPECT_EQ(decode_path("/a%20b%zz%4"), "/a b%zz%4");
  EXPECT_EQ(decode_path("/%"), "/%");
  EXPECT_EQ(decode_path("/x+y"), "/x+y");  // '+' is a space only in query strings
  EXPECT_EQ(decode_path(""), "");
  EXPECT_EQ(decode_path("/v1/models/"), "/v1/models");  // one trailing slash dropped
  EXPECT_EQ(decode_path("/health//"), "/health/");
  EXPECT_EQ(decode_path("/"), "/");
}

TEST(HttpTypes, CorsAllowOrigin) {
  const std::vector<std::string> any = {"*"}, some = {"http://localhost:3000", "https://a.b"};
  EXPECT_EQ(cors_allow_origin("http://evil.example", any), "*");
  EXPECT_EQ(cors_allow_origin("", any), "*");  // the same answer with or without an Origin
  EXPECT_EQ(cors_allow_origin("", some), "");
  EXPECT_EQ(cors_allow_origin("https://a.b", some), "https://a.b");
  EXPECT_EQ(cors_allow_origin("http://localhost:3001", some), "");
  EXPECT_EQ(cors_allow_origin("http://localhost:3000", {}), "");
}

}  // namespace
}  // namespace carpool::server
