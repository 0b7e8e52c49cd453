// Route handlers. Each runs on the exchange's executor and answers through the Exchange.
// They read the served model from ServerState and answer 503 while it loads or the server drains.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "server/api_error.h"
#include "server/http_types.h"
#include "server/server_state.h"

namespace carpool::server {

// POST /v1/completions
void handle_completions(const ServerState& state, const std::shared_ptr<Exchange>& ex);
// POST /v1/chat/completions
void handle_chat_completions(const ServerState& state, const std::shared_ptr<Exchange>& ex);
// POST /tokenize: {"prompt": text, "add_special_tokens": bool} or {"messages": [...],
// "add_generation_prompt": bool} -> {"tokens", "count", "max_model_len"}
void handle_tokenize(const ServerState& state, const std::shared_ptr<Exchange>& ex);
// POST /detokenize: {"tokens": [ids]} -> {"prompt": text}
void handle_detokenize(const ServerState& state, const std::shared_ptr<Exchange>& ex);
// GET /health: 200 while the process runs (liveness).
void handle_health(const ServerState& state, const std::shared_ptr<Exchange>& ex);
// GET /ready: 200 once the model is loaded and warm, 503 before that and while draining.
void handle_ready(const ServerState& state, const std::shared_ptr<Exchange>& ex);
// GET /v1/models
void handle_models(const ServerState& state, const std::shared_ptr<Exchange>& ex);
// GET /v1/models/{id}: the served model's entry, or 404 (model_not_found) for another id.
void handle_model(const ServerState& state, const std::shared_ptr<Exchange>& ex);
// GET /v1/internal/engine: the engine's EngineStats as JSON (running, waiting, KV blocks...).
void handle_engine_stats(const ServerState& state, const std::shared_ptr<Exchange>& ex);

// --- shared by the handlers ---

// The served model, or the 503 to answer.
const ModelService* serving_or_respond(const ServerState& state, Exchange& ex);
// 404 when the request names a model other than the served one (no name is accepted).
std::optional<ApiError> check_model_name(const std::string& requested, const ModelService& model);
void respond_json(Exchange& ex, const nlohmann::ordered_json& body, int status = 200);
// The chat template applied to validated messages (with more template variables:
// chat_template_kwargs), tokenized.
std::optional<ApiError> chat_prompt_ids(
    const ModelService& model, const nlohmann::ordered_json& messages, bool add_generation_prompt,
    std::vector<int32_t>* ids,
    const nlohmann::ordered_json& template_vars = nlohmann::ordered_json::object());
// 400 with both numbers when the prompt plus max_tokens exceed the context.
// tool_choice auto with a template that shows the model no tools (it could never call one).
std::optional<ApiError> check_tool_format(const ModelService& model, const ToolRequest& tools);

std::optional<ApiError> check_context(const ModelService& model, int prompt_tokens, int max_tokens,
                                      const char* param);

}  // namespace carpool::server
