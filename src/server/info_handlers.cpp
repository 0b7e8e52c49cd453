// GET /health, /ready, /v1/models, /v1/models/{id} and /v1/internal/engine.
#include "server/handlers.h"

namespace carpool::server {

void handle_health(const ServerState&, const std::shared_ptr<Exchange>& ex) {
  respond_json(*ex, {{"status", "ok"}});
}

void handle_ready(const ServerState& state, const std::shared_ptr<Exchange>& ex) {
  if (state.draining.load()) return respond_json(*ex, {{"status", "draining"}}, 503);
  if (!state.ready()) return respond_json(*ex, {{"status", "loading"}}, 503);
  respond_json(*ex, {{"status", "ready"}});
}

namespace {

nlohmann::ordered_json model_json(const ModelService& model) {
  nlohmann::ordered_json m;
  m["id"] = model.model_name;
  m["object"] = "model";
  m["created"] = model.created;
  m["owned_by"] = "carpool";
  m["max_model_len"] = model.max_model_len;
  return m;
}

}  // namespace

void handle_models(const ServerState& state, const std::shared_ptr<Exchange>& ex) {
  const ModelService* model = serving_or_respond(state, *ex);
  if (!model) return;
  nlohmann::ordered_json out;
  out["object"] = "list";
  out["data"] = nlohmann::ordered_json::array({model_json(*model)});
  respond_json(*ex, out);
}

void handle_model(const ServerState& state, const std::shared_ptr<Exchange>& ex) {
  const ModelService* model = serving_or_respond(state, *ex);
  if (!model) return;
  constexpr std::string_view kPrefix = "/v1/models/";
  const std::string id = ex->request().path.substr(kPrefix.size());
  if (auto e = check_model_name(id, *model)) return ex->respond(error_response(*e));
  respond_json(*ex, model_json(*model));
}

void handle_engine_stats(const ServerState& state, const std::shared_ptr<Exchange>& ex) {
  // Also while draining: operators watch the drain here.
  const ModelService* model = state.model.load(std::memory_order_acquire);
  if (!model) {
    return ex->respond(error_response(unavailable("the model is loading")));
  }
  const EngineStats s = model->engine->stats();
  nlohmann::ordered_json out;
  out["running"] = s.running;
  out["waiting"] = s.waiting;
  out["kv_blocks_total"] = s.kv_blocks_total;
  out["kv_blocks_used"] = s.kv_blocks_used;
  out["steps"] = s.steps;
  out["preemptions"] = s.preemptions;
  out["prompt_tokens"] = s.prompt_tokens;
  out["generated_tokens"] = s.generated_tokens;
  out["prefix_cache_hit_tokens"] = s.prefix_cache_hit_tokens;
  respond_json(*ex, out);
}

}  // namespace carpool::server
