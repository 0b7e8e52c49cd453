#include "server/handlers.h"
#include "server/json_io.h"

namespace carpool::server {

const ModelService* serving_or_respond(const ServerState& state, Exchange& ex) {
  if (state.draining.load()) {
    ex.respond(error_response(unavailable("the server is shutting down")));
    return nullptr;
  }
  const ModelService* m = state.serving();
  if (!m) ex.respond(error_response(unavailable("the model is loading; retry when /ready is 200")));
  return m;
}

std::optional<ApiError> check_model_name(const std::string& requested, const ModelService& model) {
  if (requested.empty() || requested == model.model_name) return std::nullopt;
  ApiError e = not_found(
      "the model '" + requested + "' does not exist; this server serves '" + model.model_name + "'",
      "model_not_found");
  e.param = "model";
  return e;
}

void respond_json(Exchange& ex, const nlohmann::ordered_json& body, int status) {
  HttpResponse r;
  r.status = status;
  r.body = dump_json(body);
  ex.respond(std::move(r));
}

std::optional<ApiError> chat_prompt_ids(const ModelService& model,
                                        const nlohmann::ordered_json& messages,
                                        bool add_generation_prompt, std::vector<int32_t>* ids,
                                        const nlohmann::ordered_json& template_vars) {
  if (!model.chat_template) {
    return bad_request("this model has no usable chat template (" + model.chat_template_error +
                           "); use /v1/completions",
                       "messages");
  }
  const Tokenizer& tok = *model.tokenizer;
  std::string bos = tok.bos_id() >= 0 ? std::string(tok.token_text(tok.bos_id())) : "";
  std::string eos = tok.eos_id() >= 0 ? std::string(tok.token_text(tok.eos_id())) : "";
  auto text =
      model.chat_template->render_chat(messages, add_generation_prompt, bos, eos, template_vars);
  if (!text) return bad_request("chat template: " + text.error(), "messages");
  // The template writes the special tokens itself, as transformers' apply_chat_template does.
  *ids = tok.encode(text.value(), /*add_bos=*/false, /*parse_special=*/true);
  if (ids->empty()) return bad_request("the rendered chat prompt is empty", "messages");
  return std::nullopt;
}

std::optional<ApiError> check_tool_format(const ModelService& model, const ToolRequest& tools) {
  if (tools.choice != ToolChoice::kAuto || model.tool_format != ToolFormat::kNone) {
    return std::nullopt;
  }
  return bad_request(
      "tool_choice \"auto\" (the default with tools) needs a chat template that shows the model "
      "its tools and a format for calling them (this model's does not); use tool_choice "
      "\"required\" or name a function (the answer is then constrained to calls), or serve with "
      "--chat-template",
      "tool_choice");
}

std::optional<ApiError> check_context(const ModelService& model, int prompt_tokens, int max_tokens,
                                      const char* param) {
  const int64_t total = static_cast<int64_t>(prompt_tokens) + max_tokens;
  if (total <= model.max_model_len) return std::nullopt;
  ApiError e = bad_request(
      "this model's maximum context length is " + std::to_string(model.max_model_len) +
          " tokens, but " + std::to_string(total) + " were requested (" +
          std::to_string(prompt_tokens) + " in the prompt plus " + std::to_string(max_tokens) +
          " to generate); shorten the prompt or lower max_tokens",
      param);
  e.code = "context_length_exceeded";
  return e;
}

}  // namespace carpool::server
