// libFuzzer target for the chat-template engine: parses the input as a template and renders it
// with a small fixed conversation under tight limits. Any crash, hang, sanitizer report or
// unbounded allocation is a bug; template errors are expected and ignored.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

#include "chat/chat_template.h"

namespace {

const nlohmann::ordered_json& fuzz_context() {
  static const nlohmann::ordered_json context = nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "You are terse."},
      {"role": "user", "content": "Hi <b>there</b> \u00e9"},
      {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nHello.",
       "tool_calls": [{"type": "function",
                       "function": {"name": "f", "arguments": {"x": [1, 2.5, null, true]}}}]},
      {"role": "tool", "content": "{\"ok\": 1}"},
      {"role": "user", "content": [{"type": "text", "text": "parts"}, {"type": "image"}]}
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "add_generation_prompt": true,
    "bos_token": "<s>",
    "eos_token": "</s>"
  })");
  return context;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view source(reinterpret_cast<const char*>(data), size);
  auto tmpl = carpool::chat::ChatTemplate::parse(source);
  if (!tmpl.is_ok()) return 0;
  carpool::chat::RenderOptions options;
  options.limits.max_steps = 20000;
  options.limits.max_loop_iterations = 2000;
  options.limits.max_recursion_depth = 16;
  options.limits.max_output_bytes = 64 << 10;
  options.now_unix_s = 1735787045;
  auto out = tmpl->render(fuzz_context(), options);
  (void)out;
  return 0;
}
