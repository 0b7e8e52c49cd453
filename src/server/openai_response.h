// JSON bodies of OpenAI responses: complete completions / chat completions, their streamed
// chunks (SSE "data:" events), usage, and logprobs in both endpoints' shapes.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "server/tool_calls.h"

namespace carpool {
class Tokenizer;
}

namespace carpool::server {

struct ResponseMeta {
  bool chat = false;
  std::string id;       // "cmpl-..." / "chatcmpl-..."
  int64_t created = 0;  // Unix seconds
  std::string model;
};

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_tokens = 0;  // prompt tokens served from the prefix cache
};

// Logprobs of generated tokens, or of an echoed prompt's tokens (parallel arrays).
struct TokenLogprobs {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<std::vector<std::pair<int32_t, float>>> top;  // [token][k] (id, logprob)
  // Leading tokens without a logprob (a prompt's first token: no context predicts it); their
  // token_logprobs and top_logprobs are null in completions JSON.
  size_t num_unscored = 0;
  // Generated tokens whose text leaves control tokens out (skip_special_tokens): those add
  // nothing to the following tokens' text_offset.
  bool text_skips_special = false;
  bool empty() const { return tokens.empty(); }
  void clear() { tokens.clear(), logprobs.clear(), top.clear(), num_unscored = 0; }
};

// One finished choice of a non-streamed response.
struct ChoiceResult {
  int index = 0;
  std::string text;
  const char* finish_reason = "stop";
  bool with_logprobs = false;
  TokenLogprobs logprobs;
  // completions: offset of the first generated token (after an echo), in characters
  size_t text_offset = 0;
  // completions with echo and logprobs: the prompt's, listed before the generated tokens'
  bool with_prompt_logprobs = false;
  TokenLogprobs prompt_logprobs;
  // chat with tools: the message's content (null when nullopt) and tool_calls, in place of text
  bool tool_answer = false;
  ToolAnswer tool;
};

nlohmann::ordered_json usage_json(const Usage& usage);

// Characters that token i of `lp` adds to the answer's text (0 for a control token the text
// leaves out: TokenLogprobs::text_skips_special): what its successor's text_offset counts.
size_t token_text_chars(const Tokenizer& tokenizer, const TokenLogprobs& lp, size_t i);

// completions: {"tokens", "token_logprobs", "top_logprobs", "text_offset"} (offsets in characters
// of the text, from text_offset);
// chat: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}.
nlohmann::ordered_json logprobs_json(bool chat, const Tokenizer& tokenizer, const TokenLogprobs& lp,
                                     size_t text_offset);
// completions with echo: the prompt's tokens (text offsets from 0) then the generated ones (from
// generated_offset, the echoed text's length) in one {"tokens", ...} object.
nlohmann::ordered_json echo_logprobs_json(const Tokenizer& tokenizer, const TokenLogprobs& prompt,
                                          const TokenLogprobs& generated, size_t generated_offset);

// The whole non-streamed response.
std::string full_response(const ResponseMeta& meta, const Tokenizer& tokenizer,
                          const std::vector<ChoiceResult>& choices, const Usage& usage);

// One streamed chunk for one choice, framed as an SSE event. `delta_text` may be empty;
// `finish_reason` null for none; `role` adds the assistant role (first chat chunk);
// `logprobs` null for none; `usage_null` adds "usage": null (when include_usage is on);
// `tool_calls` (chat) a list of tool call deltas for the delta's "tool_calls".
std::string chunk_event(const ResponseMeta& meta, int index, const std::string& delta_text,
                        bool role, const nlohmann::ordered_json& logprobs,
                        const char* finish_reason, bool usage_null,
                        const nlohmann::ordered_json* tool_calls = nullptr);
// A tool call as a message's tool_calls entry, or as a streamed delta's (with its index).
nlohmann::ordered_json tool_call_json(const ToolCall& call, int index = -1);
// The final usage chunk (choices: []).
std::string usage_event(const ResponseMeta& meta, const Usage& usage);
std::string sse_event(const std::string& json);
inline constexpr const char* kSseDone = "data: [DONE]\n\n";

}  // namespace carpool::server
