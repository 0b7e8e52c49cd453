// Parsing and validation of /v1/completions and /v1/chat/completions request bodies into one
// GenerationRequest. Every error is a 400 naming the field (ApiError::param). Prompts are not yet
// tokenized here (see the handlers); token-id prompts are range-checked against the vocabulary.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/sampler.h"
#include "server/api_error.h"
#include "server/tool_calls.h"

namespace carpool::server {

struct RequestLimits {
  int max_n = 16;               // choices per prompt
  int max_prompts = 64;         // prompts in one completions request
  int max_choices = 128;        // prompts x n
  int max_stop = 16;            // stop strings
  size_t max_stop_bytes = 256;  // bytes per stop string
  int max_logprobs = 20;        // top logprobs per token
  int max_logit_bias = 1024;    // entries of logit_bias
  int max_messages = 4096;
  int32_t vocab_size = 0;  // token ids must be in [0, vocab_size)
};

// A completions prompt: text, or token ids.
struct PromptInput {
  std::string text;
  std::vector<int32_t> ids;
  bool is_ids = false;
};

struct GenerationRequest {
  bool chat = false;
  std::string model;                 // empty: not given
  std::vector<PromptInput> prompts;  // completions
  nlohmann::ordered_json messages;   // chat: [{"role", "content": string}]
  std::optional<int> max_tokens;     // not given: completions 16, chat the rest of the context;
                                     // 0 only for completions with echo (the prompt alone)
  SamplingParams sampling;           // temperature defaults to 1 as in the OpenAI API
  std::vector<std::string> stop;
  int n = 1;
  int logprobs = -1;  // -1: none; k: chosen token plus top k
  // completions: prepend the prompt to the text; with logprobs, the prompt tokens' logprobs
  // come first (the first token's null), as in OpenAI's legacy API and vLLM
  bool echo = false;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool ignore_eos = false;
  bool json_object = false;  // response_format json_object or json_schema: JSON mode
  std::shared_ptr<const JsonSchema> json_schema;  // json_schema: the compiled schema
  std::string user;
  // vLLM's extensions (the ones that would change the answer are either honoured here or refused
  // with a 400, never ignored):
  std::vector<int32_t> stop_token_ids;      // also end with reason stop after one of these
  bool include_stop_str_in_output = false;  // keep a matched stop string at the text's end
  bool skip_special_tokens = true;          // false: special tokens' text is in the answer
  int min_tokens = 0;                 // the stop ids cannot end the answer before this many tokens
  bool add_generation_prompt = true;  // chat: the template's generation prompt
  nlohmann::ordered_json chat_template_kwargs = nlohmann::ordered_json::object();  // chat
  ToolRequest tools;  // chat: tools, tool_choice, parallel_tool_calls (tool_calls.h)
};

// raw_body: the body's text, for the parts whose member order matters (a json_schema's
// properties); empty: nlohmann::json's (sorted) order.
std::optional<ApiError> parse_completion_request(const nlohmann::json& body,
                                                 const RequestLimits& limits,
                                                 GenerationRequest* out,
                                                 std::string_view raw_body = {});
std::optional<ApiError> parse_chat_request(const nlohmann::json& body, const RequestLimits& limits,
                                           GenerationRequest* out, std::string_view raw_body = {});

// chat_template_kwargs (also used by /tokenize): an object of more template variables, not
// tools (those go in `tools`). Absent: an empty object.
std::optional<ApiError> parse_template_kwargs(const nlohmann::json& body,
                                              nlohmann::ordered_json* out);

// Chat messages alone (also used by /tokenize; chat_messages.cpp): checks roles and flattens text
// parts.
std::optional<ApiError> parse_messages(const nlohmann::json& messages, const RequestLimits& limits,
                                       nlohmann::ordered_json* out);

}  // namespace carpool::server
