// Tool calls for /v1/chat/completions (OpenAI's `tools`, `tool_choice`, `parallel_tool_calls`).
//
// The tools are handed to the chat template (its `tools` variable, as transformers'
// apply_chat_template does), and the answer becomes tool calls in one of two ways:
//   - tool_choice "required" or a named function: the answer is constrained (JSON mode with a
//     schema, engine/json_schema.h) to calls of the given tools with arguments that follow their
//     parameter schemas: a named function's arguments object, or for "required" a list
//     [{"name": ..., "arguments": {...}}, ...] (one call unless parallel_tool_calls). This works
//     with any model and any template.
//   - tool_choice "auto" (the default with tools): the model writes calls in the format its chat
//     template taught it, found in the template's source (ToolFormat), and the answer is read for
//     them; where the template shows no known format the request is refused, since the model
//     could never call a tool.
// "none" shows the model no tools and answers with text.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/json_schema.h"
#include "server/api_error.h"

namespace carpool::server {

// How a chat template has the model write a tool call.
enum class ToolFormat {
  kNone,     // the template shows no tools (or none of the formats below)
  kHermes,   // <tool_call>{"name": ..., "arguments": {...}}</tool_call>, one per call (Qwen2.5,
             // Qwen3, Hermes)
  kJson,     // {"name": ..., "parameters": {...}} objects, separated by ';' (Llama 3.1 - 3.3)
  kMistral,  // [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...] (Mistral)
};

ToolFormat detect_tool_format(std::string_view template_source);
const char* tool_format_name(ToolFormat f);

enum class ToolChoice { kNone, kAuto, kRequired, kNamed };

struct ToolRequest {
  ToolChoice choice = ToolChoice::kNone;  // also kNone without tools
  nlohmann::ordered_json tools;           // as given, for the template; null when not shown
  std::vector<std::string> names;         // in the order given
  std::string named;                      // kNamed: the function's name
  bool parallel = true;                   // parallel_tool_calls
  bool constrained() const {
    return choice == ToolChoice::kRequired || choice == ToolChoice::kNamed;
  }
};

struct ToolLimits {
  size_t max_tools = 128;
  size_t max_name_bytes = 64;  // OpenAI's limit; names are [A-Za-z0-9_.-]
};

// Reads `tools`, `tool_choice` and `parallel_tool_calls` from the parsed body. `raw_body`: its
// text, read again (only when tools are shown) for the tools in their declared member order, in
// which the parameters' properties are written; empty: nlohmann::json's sorted order. `schema`
// gets the constraint of a required or named choice (null otherwise). Errors are 400s naming the
// field.
std::optional<ApiError> parse_tool_request(const nlohmann::json& body, std::string_view raw_body,
                                           const ToolLimits& limits, ToolRequest* out,
                                           std::shared_ptr<const JsonSchema>* schema);

struct ToolCall {
  std::string id;  // "call_" and 24 hex digits
  std::string name;
  std::string arguments;  // a JSON object's text
};

// An answer read for tool calls: `content` the text beside them (nullopt: none).
struct ToolAnswer {
  std::optional<std::string> content;
  std::vector<ToolCall> calls;
};

// The answer of a request as the client gets it. Text that does not hold well-formed calls stays
// text (a model may answer in words; a constrained answer cut short by max_tokens keeps its
// partial arguments, as OpenAI's API does).
ToolAnswer read_tool_answer(const ToolRequest& req, ToolFormat format, std::string_view text);

// Streaming: which part of the text so far can be sent as content now. Text that may begin a
// tool call (a tag's prefix, the opening bracket of a JSON call) and whitespace that may precede
// one are held back until the answer ends; read_tool_answer then decides, so that the content
// streamed equals the content of the same answer not streamed.
class ToolStreamFilter {
 public:
  ToolStreamFilter(const ToolRequest& req, ToolFormat format) : req_(req), format_(format) {}
  // Appends `delta`; returns the content that can be sent now (a named choice: the arguments,
  // without the whitespace around them, as read_tool_answer gives them).
  std::string push(std::string_view delta);
  // The answer has ended: the content still to send (nullopt: none) and the calls.
  ToolAnswer finish() const;

 private:
  size_t sendable();  // bytes of text_ that are content for certain

  const ToolRequest& req_;
  ToolFormat format_;
  std::string text_;
  size_t sent_ = 0;       // bytes of content sent
  bool plain_ = false;    // JSON formats: the answer began with text, not a call
  bool in_call_ = false;  // a call has begun at call_at_: nothing after it is content
  size_t call_at_ = 0;
};

std::string make_tool_call_id();

}  // namespace carpool::server
