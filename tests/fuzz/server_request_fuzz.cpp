// libFuzzer target for request bodies of the OpenAI routes: the bytes a client sends go through
// parse_json_object (the HTTP handlers' first step), then the completions and the chat parsers,
// and the messages parser /tokenize uses. Errors are expected (each must be a 4xx naming a
// cause); crashes, exceptions, sanitizer reports and accepted values out of range are bugs.
// A chat request with tools also has the bytes read as a model's answer in every tool-call format
// (tool_calls.h), whole and streamed in pieces, which must give the same content; and a
// constrained choice's schema follows them. json_text.h's compact form of the bytes must read as
// the same value.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/json_io.h"
#include "server/json_text.h"
#include "server/openai_request.h"
#include "server/tool_calls.h"

namespace {

void check_error(const std::optional<carpool::server::ApiError>& e) {
  if (e && (e->status < 400 || e->status > 499 || e->message.empty())) __builtin_trap();
}

void check_request(const carpool::server::GenerationRequest& r,
                   const carpool::server::RequestLimits& l) {
  if (r.n < 1 || r.n > l.max_n) __builtin_trap();
  if (r.logprobs < -1 || r.logprobs > l.max_logprobs) __builtin_trap();
  if (r.max_tokens && *r.max_tokens < 0) __builtin_trap();
  if (static_cast<int>(r.stop.size()) > l.max_stop) __builtin_trap();
  if (static_cast<int>(r.prompts.size()) > l.max_prompts) __builtin_trap();
  for (const auto& p : r.prompts) {
    for (int32_t id : p.ids) {
      if (id < 0 || id >= l.vocab_size) __builtin_trap();
    }
  }
  const auto& s = r.sampling;
  if (!(s.temperature >= 0) || !(s.top_p > 0 && s.top_p <= 1) || s.top_k < -1) __builtin_trap();
}

// The bytes as a model's answer to a request with tools.
void check_tool_answers(const carpool::server::ToolRequest& req, std::string_view text) {
  using namespace carpool::server;
  for (ToolFormat f : {ToolFormat::kHermes, ToolFormat::kJson, ToolFormat::kMistral}) {
    const ToolAnswer whole = read_tool_answer(req, f, text);
    ToolStreamFilter stream(req, f);
    std::string sent;
    for (size_t i = 0; i < text.size(); i += 3) sent += stream.push(text.substr(i, 3));
    const ToolAnswer end = stream.finish();
    if (end.content) sent += *end.content;
    if (end.calls.size() != whole.calls.size()) __builtin_trap();
    if (req.choice != ToolChoice::kNamed && sent != whole.content.value_or("")) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace carpool::server;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto compact = carpool::server::compact_json(text)) {
    const auto a = nlohmann::json::parse(text, nullptr, false);  // (depth <= 64: compact_json's)
    const auto b = nlohmann::json::parse(*compact, nullptr, false);
    if (a.is_discarded() != b.is_discarded() || a != b) __builtin_trap();
    if (!a.is_discarded() && a.is_object() && !carpool::server::json_members(*compact)) {
      __builtin_trap();
    }
    if (!a.is_discarded() && a.is_array() && !carpool::server::json_elements(*compact)) {
      __builtin_trap();
    }
  }
  nlohmann::json body;
  const auto e = parse_json_object(text, &body);
  check_error(e);
  if (e) return 0;
  RequestLimits limits;
  limits.vocab_size = 49152;
  GenerationRequest completion;
  const auto ce = parse_completion_request(body, limits, &completion, text);
  check_error(ce);
  if (!ce) check_request(completion, limits);
  GenerationRequest chat;
  const auto he = parse_chat_request(body, limits, &chat, text);
  check_error(he);
  if (!he) check_request(chat, limits);
  if (!he && chat.tools.choice != ToolChoice::kNone) {
    check_tool_answers(chat.tools, text);
    if (chat.json_schema) {
      carpool::SchemaState state(chat.json_schema.get());
      (void)state.feed(text);
    }
  }
  if (auto it = body.find("messages"); it != body.end()) {
    nlohmann::ordered_json messages;
    check_error(parse_messages(*it, limits, &messages));
  }
  return 0;
}
