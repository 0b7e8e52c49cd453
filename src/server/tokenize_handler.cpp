// POST /tokenize and POST /detokenize.
#include "server/handlers.h"
#include "server/json_io.h"

namespace carpool::server {

void handle_tokenize(const ServerState& state, const std::shared_ptr<Exchange>& ex) {
  const ModelService* model = serving_or_respond(state, *ex);
  if (!model) return;
  nlohmann::json body;
  if (auto e = parse_json_object(ex->request().body, &body)) return ex->respond(error_response(*e));
  auto model_it = body.find("model");
  if (model_it != body.end() && !model_it->is_null()) {
    if (!model_it->is_string()) {
      return ex->respond(error_response(bad_request("model must be a string", "model")));
    }
    if (auto e = check_model_name(model_it->get<std::string>(), *model)) {
      return ex->respond(error_response(*e));
    }
  }
  const Tokenizer& tok = *model->tokenizer;
  std::vector<int32_t> ids;
  auto flag = [&](const char* name, bool fallback, bool* out) -> std::optional<ApiError> {
    auto it = body.find(name);
    *out = fallback;
    if (it == body.end() || it->is_null()) return std::nullopt;
    if (!it->is_boolean()) return bad_request(std::string(name) + " must be a boolean", name);
    *out = it->get<bool>();
    return std::nullopt;
  };
  auto prompt = body.find("prompt");
  auto messages = body.find("messages");
  if (prompt != body.end() && !prompt->is_null()) {
    if (!prompt->is_string()) {
      return ex->respond(error_response(bad_request("prompt must be a string", "prompt")));
    }
    bool add_special = true;
    if (auto e = flag("add_special_tokens", true, &add_special)) {
      return ex->respond(error_response(*e));
    }
    ids = tok.encode(prompt->get<std::string>(), add_special && tok.add_bos_default(), true);
  } else if (messages != body.end() && !messages->is_null()) {
    nlohmann::ordered_json msgs;
    if (auto e = parse_messages(*messages, state.limits, &msgs)) {
      return ex->respond(error_response(*e));
    }
    bool add_generation_prompt = true;
    if (auto e = flag("add_generation_prompt", true, &add_generation_prompt)) {
      return ex->respond(error_response(*e));
    }
    nlohmann::ordered_json vars;
    if (auto e = parse_template_kwargs(body, &vars)) return ex->respond(error_response(*e));
    // The tools as a chat request shows them (tool_choice none: not shown), so that the count
    // is that request's prompt.
    ToolRequest tools;
    std::shared_ptr<const JsonSchema> unused;
    if (auto e = parse_tool_request(body, ex->request().body, ToolLimits{}, &tools, &unused)) {
      return ex->respond(error_response(*e));
    }
    if (auto e = check_tool_format(*model, tools)) return ex->respond(error_response(*e));
    if (tools.choice != ToolChoice::kNone) vars["tools"] = tools.tools;
    if (auto e = chat_prompt_ids(*model, msgs, add_generation_prompt, &ids, vars)) {
      return ex->respond(error_response(*e));
    }
  } else {
    return ex->respond(error_response(bad_request("prompt or messages is required", "prompt")));
  }
  bool strs = false;  // vLLM's return_token_strs: each token's text too
  if (auto e = flag("return_token_strs", false, &strs)) return ex->respond(error_response(*e));
  nlohmann::ordered_json out;
  out["tokens"] = ids;
  out["count"] = ids.size();
  out["max_model_len"] = model->max_model_len;
  if (strs) {
    nlohmann::ordered_json pieces = nlohmann::ordered_json::array();
    // The vocabulary's own strings ("Ġworld", "<0x0A>"), as vLLM's convert_ids_to_tokens:
    // lossless where a character is split over tokens.
    for (const int32_t id : ids) pieces.push_back(std::string(tok.token_text(id)));
    out["token_strs"] = std::move(pieces);
  }
  respond_json(*ex, out);
}

void handle_detokenize(const ServerState& state, const std::shared_ptr<Exchange>& ex) {
  const ModelService* model = serving_or_respond(state, *ex);
  if (!model) return;
  nlohmann::json body;
  if (auto e = parse_json_object(ex->request().body, &body)) return ex->respond(error_response(*e));
  auto tokens = body.find("tokens");
  if (tokens == body.end() || !tokens->is_array()) {
    return ex->respond(error_response(bad_request("tokens must be a list of token ids", "tokens")));
  }
  const int32_t vocab = model->tokenizer->vocab_size();
  std::vector<int32_t> ids;
  ids.reserve(tokens->size());
  for (const auto& t : *tokens) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= vocab ||
        (t.is_number_unsigned() && t.get<uint64_t>() >= static_cast<uint64_t>(vocab))) {
      return ex->respond(error_response(bad_request(
          "tokens must hold integer token ids in [0, " + std::to_string(vocab) + ")", "tokens")));
    }
    ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  nlohmann::ordered_json out;
  out["prompt"] = model->tokenizer->decode(ids);
  respond_json(*ex, out);
}

}  // namespace carpool::server
