// POST /v1/chat/completions: validate, render the chat template, tokenize, start the job.
#include <chrono>

#include "server/generation.h"
#include "server/handlers.h"
#include "server/json_io.h"

namespace carpool::server {

void handle_chat_completions(const ServerState& state, const std::shared_ptr<Exchange>& ex) {
  const ModelService* model = serving_or_respond(state, *ex);
  if (!model) return;
  nlohmann::json body;
  if (auto e = parse_json_object(ex->request().body, &body)) return ex->respond(error_response(*e));
  GenerationInput in;
  if (auto e = parse_chat_request(body, state.limits, &in.request, ex->request().body)) {
    return ex->respond(error_response(*e));
  }
  GenerationRequest& req = in.request;
  if (auto e = check_model_name(req.model, *model)) return ex->respond(error_response(*e));

  if (auto e = check_tool_format(*model, req.tools)) return ex->respond(error_response(*e));
  nlohmann::ordered_json vars = req.chat_template_kwargs;
  if (req.tools.choice != ToolChoice::kNone) vars["tools"] = req.tools.tools;
  std::vector<int32_t> ids;
  if (auto e = chat_prompt_ids(*model, req.messages, req.add_generation_prompt, &ids, vars)) {
    return ex->respond(error_response(*e));
  }
  const int prompt_len = static_cast<int>(ids.size());
  // Without a limit, a chat answer may use the rest of the context.
  const int max_tokens = req.max_tokens ? *req.max_tokens : model->max_model_len - prompt_len;
  if (max_tokens < 1 || req.max_tokens) {
    if (auto e = check_context(*model, prompt_len, std::max(max_tokens, 1), "messages")) {
      return ex->respond(error_response(*e));
    }
  }
  in.prompts.push_back(std::move(ids));
  in.max_tokens.push_back(max_tokens);
  in.meta.chat = true;
  in.meta.id = make_request_id("chatcmpl");
  in.meta.created = std::chrono::duration_cast<std::chrono::seconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  in.meta.model = model->model_name;
  start_generation(ex, *model, std::move(in));
}

}  // namespace carpool::server
