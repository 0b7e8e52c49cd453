// HttpServer: an asynchronous HTTP/1.1 server (keep-alive, chunked streaming) on a few I/O
// threads. Each connection is served on its own strand, so thousands of open streams need no
// thread each. The HTTP library is hidden in http_server.cpp.
//
// Limits answered by the server itself: headers over max_header_bytes -> 431, bodies over
// max_body_bytes -> 413, malformed requests -> 400; all close the connection.
// While a request is being answered the connection keeps a read pending, so a client that
// disconnects is noticed at once (Exchange::on_close) even when nothing is being written.
//
// Thread-safety: start(), run(), stop_accepting(), stop() and the counters may be called from
// any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "server/http_types.h"
#include "util/status.h"

namespace carpool::server {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;  // 0: any free port (see port())
  int io_threads = 1;
  size_t max_header_bytes = 16 * 1024;  // request line + headers
  size_t max_body_bytes = 8 * 1024 * 1024;
  double idle_timeout_s = 60;                         // keep-alive connection waiting for a request
  size_t max_pending_write_bytes = 16 * 1024 * 1024;  // a client this far behind is dropped
  // Called with the path and status of every answer, the server's own rejections included (with
  // an empty path), on the I/O thread that sends it (must be cheap and thread-safe). Null: none.
  std::function<void(std::string_view path, int status)> on_response;
  // CORS: origins whose browser pages may call the server ("*": any); every answer to a request
  // with an allowed Origin carries Access-Control-Allow-Origin. Empty: no CORS headers.
  std::vector<std::string> allowed_origins;
};

class HttpServer {
 public:
  // `handler` is called on the connection's strand for every well-formed request.
  HttpServer(HttpServerOptions options, Handler handler);
  ~HttpServer();

  // Binds and listens; the I/O threads start serving.
  Status start();
  int port() const;  // the bound port

  // Calls `fn` (on an I/O thread) when the process receives SIGTERM or SIGINT. Call before
  // start(); the signals are then not delivered to default handlers.
  void on_signal(std::function<void(int)> fn);

  // While on, work posted to exchanges from other threads is gathered, and handed to the I/O
  // threads in one wake-up when it is turned off (EngineOptions::delivery_hook). Any thread.
  void hold_posts(bool on);

  // Closes the listening socket; open connections continue.
  void stop_accepting();
  // From now on every answer closes its connection (no keep-alive).
  void set_draining();
  // Requests whose answer is not yet complete.
  int active_exchanges() const;
  // Stops every connection and the I/O threads; returns when they have joined.
  void stop();

  struct Impl;  // defined in http_server.cpp

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace carpool::server
