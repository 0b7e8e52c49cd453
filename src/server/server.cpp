#include "server/server.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <future>
#include <thread>

#include "server/auth.h"
#include "server/handlers.h"
#include "telemetry/telemetry.h"

namespace carpool::server {
namespace {

// An exchange counted as one inference request in flight from the handler's first call until
// the last reference to it is gone (the answer is complete and no engine sink holds it).
class InFlightExchange final : public Exchange {
 public:
  InFlightExchange(std::shared_ptr<Exchange> inner, telemetry::Telemetry* t)
      : inner_(std::move(inner)), telemetry_(t) {
    telemetry_->add_requests_in_flight(1);
  }
  ~InFlightExchange() override { telemetry_->add_requests_in_flight(-1); }

  const HttpRequest& request() const override { return inner_->request(); }
  void respond(HttpResponse response) override { inner_->respond(std::move(response)); }
  void start_stream(int status, std::string content_type,
                    std::vector<std::pair<std::string, std::string>> headers) override {
    inner_->start_stream(status, std::move(content_type), std::move(headers));
  }
  void write(std::string data) override { inner_->write(std::move(data)); }
  void end_stream() override { inner_->end_stream(); }
  void post(std::function<void()> fn) override { inner_->post(std::move(fn)); }
  void on_close(std::function<void()> fn) override { inner_->on_close(std::move(fn)); }
  bool closed() const override { return inner_->closed(); }

 private:
  std::shared_ptr<Exchange> inner_;
  telemetry::Telemetry* telemetry_;
};

// The dashboard's static files hold no data; the browser loads them without a key and sends the
// key with its API calls.
bool is_public_path(const std::string& path) {
  return path == "/health" || path == "/" || path.rfind("/assets/", 0) == 0;
}

// Routes of monitoring (scrapes, probes, the dashboard and its series), not of the API.
bool is_monitoring_path(std::string_view path) {
  return path == "/metrics" || path == "/health" || path == "/ready" || path == "/" ||
         path.rfind("/assets/", 0) == 0 || path.rfind("/api/", 0) == 0;
}

}  // namespace

Server::Server(ServerOptions options) : options_(std::move(options)) {
  state_.limits = options_.limits;
  if (options_.telemetry) {
    // The API's answers, not the monitoring's: scrapes, probes and the dashboard's own polls
    // would otherwise read as traffic (vLLM leaves /metrics and /health out the same way).
    options_.http.on_response = [t = options_.telemetry](std::string_view path, int status) {
      if (!is_monitoring_path(path)) t->record_http_response(status);
    };
  }
  auto route = [this](const char* method, const char* path,
                      void (*fn)(const ServerState&, const std::shared_ptr<Exchange>&)) {
    router_.add(method, path, [this, fn](std::shared_ptr<Exchange> ex) { fn(state_, ex); });
  };
  route("GET", "/health", handle_health);
  route("GET", "/ready", handle_ready);
  route("GET", "/v1/models", handle_models);
  route("GET", "/v1/models/*", handle_model);
  route("POST", "/v1/completions", handle_completions);
  route("POST", "/v1/chat/completions", handle_chat_completions);
  route("POST", "/tokenize", handle_tokenize);
  route("POST", "/detokenize", handle_detokenize);
  route("GET", "/v1/internal/engine", handle_engine_stats);
  http_ = std::make_unique<HttpServer>(options_.http,
                                       [this](std::shared_ptr<Exchange> ex) { handle(ex); });
}

Server::~Server() {
  http_->stop();
}

Status Server::start() {
  if (options_.handle_signals) {
    http_->on_signal([this](int) { request_shutdown(); });
  }
  return http_->start();
}

// OPTIONS: the methods a path takes, and a browser's CORS preflight (which carries no API key,
// so it is answered before the key is checked); the HTTP server adds
// Access-Control-Allow-Origin where the Origin is allowed, without which the browser refuses.
void Server::answer_options(const std::shared_ptr<Exchange>& ex) const {
  static constexpr const char* kAllMethods = "GET, HEAD, POST, OPTIONS";  // the server's
  const HttpRequest& req = ex->request();
  const bool preflight = !req.header("access-control-request-method").empty();
  std::string methods = req.path == "*" ? kAllMethods : router_.allowed_methods(req.path);
  // A preflight is answered whatever the path and method, so that the request itself gets its
  // readable 404 or 405 (a failed preflight reads as an opaque network error in the page).
  if (methods.empty() && !preflight) {
    ex->respond(error_response(not_found("no route for OPTIONS " + req.path)));
    return;
  }
  HttpResponse r;
  r.status = 204;
  r.content_type.clear();
  if (!methods.empty()) r.headers.emplace_back("Allow", methods);
  if (preflight) {
    std::string asked_method(req.header("access-control-request-method").substr(0, 32));
    bool token = !asked_method.empty();
    for (const char c : asked_method) token = token && std::isalpha(static_cast<unsigned char>(c));
    std::string allowed = methods.empty() ? kAllMethods : methods;
    if (token && (", " + allowed + ",").find(", " + asked_method + ",") == std::string::npos) {
      allowed += ", " + asked_method;
    }
    r.headers.emplace_back("Access-Control-Allow-Methods", allowed);
    const std::string_view asked = req.header("access-control-request-headers");
    if (!asked.empty()) {
      r.headers.emplace_back("Access-Control-Allow-Headers", std::string(asked));
      r.headers.emplace_back("Vary", "Access-Control-Request-Headers");
    }
    r.headers.emplace_back("Access-Control-Max-Age", "600");
  }
  ex->respond(std::move(r));
}

// Whether a request's Origin may use the API: any when CORS allows any origin ("*"), else one
// of the allowed origins. Requests without an Origin (not from a page of another origin: the
// dashboard's own fetches are same-origin GETs, which carry none) always may. No exception for
// an Origin naming the Host it was sent to: a DNS-rebinding page would pass it.
bool Server::origin_allowed(const HttpRequest& req) const {
  const std::string_view origin = req.header("origin");
  return origin.empty() || !cors_allow_origin(origin, options_.http.allowed_origins).empty();
}

void Server::handle(const std::shared_ptr<Exchange>& ex) {
  const HttpRequest& req = ex->request();
  if (req.method == "OPTIONS") {
    answer_options(ex);
    return;
  }
  // CORS only keeps a page from reading the answer; a page of another origin could still make the
  // server work (a POST with a text/plain body needs no preflight). With a list of origins (or
  // none), such requests are refused before anything runs.
  if (!origin_allowed(req)) {
    ApiError e;
    e.status = 403;
    e.type = "permission_error";
    e.message = "requests from this origin are not allowed (--allowed-origins)";
    ex->respond(error_response(e));
    return;
  }
  if (!options_.api_key.empty() && !is_public_path(req.path) &&
      !authorized(req.header("authorization"), options_.api_key)) {
    ApiError e;
    e.status = 401;
    e.type = "invalid_request_error";  // as OpenAI's API answers a wrong key
    e.code = "invalid_api_key";
    e.message = "a valid API key is required (Authorization: Bearer KEY)";
    e.headers.emplace_back("WWW-Authenticate", "Bearer");
    ex->respond(error_response(e));
    return;
  }
  // A compressed body would read as malformed JSON; say what is wrong instead.
  if (const std::string_view enc = req.header("content-encoding");
      !enc.empty() && enc != "identity" && !req.body.empty()) {
    ApiError e;
    e.status = 415;
    e.message = "Content-Encoding '" + std::string(enc.substr(0, 64)) +
                "' is not supported; send the request body uncompressed";
    ex->respond(error_response(e));
    return;
  }
  if (options_.telemetry && req.method == "POST") {
    router_.dispatch(std::make_shared<InFlightExchange>(ex, options_.telemetry));
    return;
  }
  router_.dispatch(ex);
}

void Server::publish_model(std::unique_ptr<ModelService> model) {
  model_ = std::move(model);
  state_.limits.vocab_size = model_->tokenizer->vocab_size();
  state_.model.store(model_.get(), std::memory_order_release);
}

void Server::request_shutdown() {
  bool again = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    again = shutdown_requested_;
    shutdown_requested_ = true;
  }
  cv_.notify_all();
  // A second signal during the drain ends it now (what is still running is aborted), as a second
  // Ctrl-C does for other servers.
  if (again) {
    std::fprintf(stderr, "carpool: second signal: ending the drain now\n");
    if (const ModelService* m = state_.model.load(std::memory_order_acquire)) {
      m->engine->shutdown_now();
    }
  }
}

bool Server::shutdown_requested() {
  std::lock_guard<std::mutex> lock(mu_);
  return shutdown_requested_;
}

void Server::wait_for_shutdown_request() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return shutdown_requested_; });
}

void Server::drain_and_stop() {
  if (stopped_) return;
  stopped_ = true;
  state_.draining.store(true, std::memory_order_release);
  http_->set_draining();
  if (model_) model_->engine->shutdown(options_.shutdown_timeout_s);
  // The engine has delivered every final event; give the connections a moment to write them.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (http_->active_exchanges() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  http_->stop_accepting();
  http_->stop();
}

Status warm_up(Engine& engine, const Tokenizer& tokenizer) {
  RequestParams p;
  p.prompt = tokenizer.encode("Hello", tokenizer.add_bos_default(), true);
  if (p.prompt.empty()) p.prompt.push_back(0);
  p.sampling.temperature = 0;
  p.max_tokens = 2;
  p.ignore_eos = true;
  p.count_in_telemetry = false;  // not user traffic: no request, latency or step figures
  auto done = std::make_shared<std::promise<TokenEvent>>();
  auto future = done->get_future();
  auto id = engine.submit(std::move(p), [done](const TokenEvent& ev) {
    if (ev.finished) done->set_value(ev);
  });
  if (!id) return Status::error("warm-up request refused: " + id.error());
  TokenEvent ev = future.get();
  if (ev.finish_reason == FinishReason::kError) return Status::error("warm-up failed: " + ev.error);
  return Status::ok();
}

}  // namespace carpool::server
