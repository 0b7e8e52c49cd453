// Server: the OpenAI-compatible HTTP front of one engine. It wires the HTTP listener, API-key
// check, router and handlers, and runs the lifecycle:
//
//   start()          listening; /health answers 200, /ready 503 ("loading")
//   publish_model()  the model is loaded and warm: /ready 200, the API routes serve
//   wait_for_shutdown_request()   until SIGTERM/SIGINT or request_shutdown()
//   drain_and_stop() readiness off, new requests 503, in-flight requests finish (the engine's
//                    shutdown(timeout) aborts what is left at the deadline), answers are flushed,
//                    connections close.
//
// Lifetime: the engine behind the published ModelService must stay alive until drain_and_stop()
// has returned, and be destroyed before the Server (its request sinks refer to connections).
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include "server/http_server.h"
#include "server/router.h"
#include "server/server_state.h"
#include "util/status.h"

namespace carpool::telemetry {
class Telemetry;
}

namespace carpool::server {

struct ServerOptions {
  HttpServerOptions http;
  std::string api_key;  // empty: no authentication
  RequestLimits limits;
  double shutdown_timeout_s = 30;  // how long in-flight requests may take to finish on SIGTERM
  bool handle_signals = true;      // SIGTERM/SIGINT request a shutdown
  // Counts every answer by status class and the inference requests in flight (POST routes).
  // Not owned; must outlive the server. Null: nothing counted.
  telemetry::Telemetry* telemetry = nullptr;
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();

  // The routes, for adding more before start().
  Router& router() { return router_; }

  Status start();
  int port() const { return http_->port(); }
  // See HttpServer::hold_posts: install as the engine's delivery_hook.
  void hold_posts(bool on) { http_->hold_posts(on); }

  // Makes `model` servable. Call once.
  void publish_model(std::unique_ptr<ModelService> model);
  const ServerState& state() const { return state_; }

  void request_shutdown();
  bool shutdown_requested();
  void wait_for_shutdown_request();
  void drain_and_stop();

 private:
  void handle(const std::shared_ptr<Exchange>& ex);
  void answer_options(const std::shared_ptr<Exchange>& ex) const;
  bool origin_allowed(const HttpRequest& req) const;

  ServerOptions options_;
  ServerState state_;
  Router router_;
  std::unique_ptr<ModelService> model_;
  std::unique_ptr<HttpServer> http_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool shutdown_requested_ = false;
  bool stopped_ = false;
};

// Runs one tiny greedy request through the engine and waits for it, so that the first client
// does not pay for first-use costs. Errors if the engine fails it.
Status warm_up(Engine& engine, const Tokenizer& tokenizer);

}  // namespace carpool::server
