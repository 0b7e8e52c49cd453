// ChatTemplate: a parsed, sandboxed Jinja chat template (the subset that Hugging Face chat
// templates use), rendered the way transformers' apply_chat_template renders it:
// trim_blocks and lstrip_blocks on, `raise_exception` and `strftime_now` globals, and `tojson` as
// json.dumps(ensure_ascii=False) with keys in insertion order.
//
// The template can read only the context it is given; every render runs under RenderLimits
// (operation budget, loop iterations, macro recursion, output size) and every violation, like
// every template error, comes back as an error Status, never a crash or a hang.
//
// Thread-safety: a parsed ChatTemplate is immutable; render() may be called concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chat/render_limits.h"
#include "util/status.h"

namespace carpool::chat {

struct Stmt;

// Largest template source parse() accepts.
inline constexpr size_t kMaxTemplateBytes = 1u << 20;
// Deepest nesting of arrays/objects accepted in the render context.
inline constexpr int kMaxContextDepth = 64;

struct RenderOptions {
  RenderLimits limits;
  // The time strftime_now() formats, as Unix seconds (UTC). Unset: the current time.
  std::optional<int64_t> now_unix_s;
};

// One chat message with plain-text content.
struct ChatMessage {
  std::string role;
  std::string content;
};

class ChatTemplate {
 public:
  // Parses template source. Errors name the line.
  static Result<ChatTemplate> parse(std::string_view source);
  // The source it was parsed from.
  const std::string& source() const;

  // Renders with `context` (a JSON object) as the template's variables. Object key order is kept,
  // so `tojson` prints keys as given.
  Result<std::string> render(const nlohmann::ordered_json& context,
                             const RenderOptions& options = {}) const;
  // Same, for an unordered json object (keys are then seen in sorted order).
  Result<std::string> render(const nlohmann::json& context,
                             const RenderOptions& options = {}) const;

  // The usual apply_chat_template variables: messages (a JSON array of message objects),
  // add_generation_prompt, bos_token, eos_token.
  Result<std::string> render_chat(const nlohmann::ordered_json& messages,
                                  bool add_generation_prompt, std::string_view bos_token,
                                  std::string_view eos_token,
                                  const RenderOptions& options = {}) const;
  // Same, with more variables for the template (chat_template_kwargs, e.g. Qwen3's
  // enable_thinking); the four above take precedence over any of the same name.
  Result<std::string> render_chat(const nlohmann::ordered_json& messages,
                                  bool add_generation_prompt, std::string_view bos_token,
                                  std::string_view eos_token,
                                  const nlohmann::ordered_json& extra_vars,
                                  const RenderOptions& options = {}) const;
  Result<std::string> render_chat(const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt, std::string_view bos_token,
                                  std::string_view eos_token,
                                  const RenderOptions& options = {}) const;

 private:
  struct Impl;
  explicit ChatTemplate(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace carpool::chat
