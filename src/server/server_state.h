// What the handlers share: the served model (published once it is loaded and warm), readiness,
// draining, and request limits.
//
// Thread-safety: `model` is published once with release order and then immutable; the flags are
// atomics; everything else is set before the server starts.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "chat/chat_template.h"
#include "engine/engine.h"
#include "engine/json_constraint.h"
#include "server/openai_request.h"
#include "tokenizer/tokenizer.h"

namespace carpool::server {

struct ModelService {
  Engine* engine = nullptr;  // outlives the server's request handling
  const Tokenizer* tokenizer = nullptr;
  std::optional<chat::ChatTemplate> chat_template;  // unset: chat answers 400 with the reason
  std::string chat_template_error;
  // How the template has the model write tool calls (from its source): tool_choice auto.
  ToolFormat tool_format = ToolFormat::kNone;
  std::string model_name;  // the served name (--served-model-name)
  int max_model_len = 0;
  int max_queued_requests = 0;  // 0: no server-side check (the engine still refuses)
  int64_t created = 0;          // Unix seconds, for /v1/models
  // The vocabulary's bytes for JSON mode (response_format json_object): json_token_bytes.
  std::shared_ptr<const TokenBytes> json_vocab;
};

struct ServerState {
  std::atomic<const ModelService*> model{nullptr};
  std::atomic<bool> draining{false};
  RequestLimits limits;  // vocab_size filled when the model is published

  // The model when it is ready and the server is not draining; otherwise null.
  const ModelService* serving() const {
    if (draining.load(std::memory_order_acquire)) return nullptr;
    return model.load(std::memory_order_acquire);
  }
  bool ready() const { return serving() != nullptr; }
};

}  // namespace carpool::server
