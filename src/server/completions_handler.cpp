// POST /v1/completions: validate, tokenize each prompt, check the context, start the job.
#include <algorithm>
#include <chrono>

#include "server/generation.h"
#include "server/handlers.h"
#include "server/json_io.h"

namespace carpool::server {

void handle_completions(const ServerState& state, const std::shared_ptr<Exchange>& ex) {
  const ModelService* model = serving_or_respond(state, *ex);
  if (!model) return;
  nlohmann::json body;
  if (auto e = parse_json_object(ex->request().body, &body)) return ex->respond(error_response(*e));
  GenerationInput in;
  if (auto e = parse_completion_request(body, state.limits, &in.request, ex->request().body)) {
    return ex->respond(error_response(*e));
  }
  GenerationRequest& req = in.request;
  if (auto e = check_model_name(req.model, *model)) return ex->respond(error_response(*e));

  const Tokenizer& tok = *model->tokenizer;
  for (const PromptInput& p : req.prompts) {
    std::vector<int32_t> ids =
        p.is_ids ? p.ids : tok.encode(p.text, tok.add_bos_default(), /*parse_special=*/true);
    if (ids.empty()) return ex->respond(error_response(bad_request("prompt is empty", "prompt")));
    const int max_tokens = *req.max_tokens;
    // Scoring a prompt (echo, max_tokens 0) fits a prompt of the whole context.
    if (auto e = check_context(*model, static_cast<int>(ids.size()), max_tokens, "prompt")) {
      return ex->respond(error_response(*e));
    }
    if (req.echo) in.echo.push_back(p.is_ids ? tok.decode(ids, /*skip_special=*/false) : p.text);
    in.prompts.push_back(std::move(ids));
    in.max_tokens.push_back(max_tokens);
  }
  in.meta.chat = false;
  in.meta.id = make_request_id("cmpl");
  in.meta.created = std::chrono::duration_cast<std::chrono::seconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  in.meta.model = model->model_name;
  start_generation(ex, *model, std::move(in));
}

}  // namespace carpool::server
