// Plain HTTP request/response values and the Exchange through which a handler answers one
// request. Handlers never see the HTTP library (it stays inside http_server.cpp).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace carpool::server {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // target without the query string: "/v1/completions"
  std::string query;   // after '?', may be empty
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;

  // The first header with this (lower-case) name, or empty.
  std::string_view header(std::string_view lower_name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  std::string body;
};

// One request being answered, shared by the connection and the handler working on it.
//
// Thread-safety: every method except post() must run on the exchange's executor: the handler is
// first called there, and work from other threads (engine sinks) gets there through post().
// Exactly one of respond() or start_stream()...end_stream() answers a request.
class Exchange {
 public:
  virtual ~Exchange() = default;
  virtual const HttpRequest& request() const = 0;

  // A complete response.
  virtual void respond(HttpResponse response) = 0;
  // A streamed response (chunked transfer): the status line and headers, then write() any number
  // of times, then end_stream().
  virtual void start_stream(int status, std::string content_type,
                            std::vector<std::pair<std::string, std::string>> headers = {}) = 0;
  virtual void write(std::string data) = 0;
  virtual void end_stream() = 0;

  // Runs `fn` on this exchange's executor. Safe from any thread; `fn` runs even after the client
  // has gone (check closed()).
  virtual void post(std::function<void()> fn) = 0;
  // `fn` runs (on the executor) if the client disconnects before the answer is complete.
  virtual void on_close(std::function<void()> fn) = 0;
  // The client has gone; writes are dropped.
  virtual bool closed() const = 0;
};

using Handler = std::function<void(std::shared_ptr<Exchange>)>;

// The value of a hex digit, -1 for any other character.
int hex_digit_value(char c);

// A request target's path with its %XX escapes decoded (as ASGI servers present it, so that
// /v1/models/org%2Fname names the model "org/name"; a '%' not followed by two hex digits stays
// as it is) and one trailing slash dropped (/v1/models/ is /v1/models, where FastAPI servers
// redirect it; "/" stays).
std::string decode_path(std::string_view path);

// CORS: the Access-Control-Allow-Origin value for a request's Origin under `allowed` ("*": any
// origin, "*" then also without an Origin; else exact origins such as "http://localhost:3000");
// empty: none (no Origin header, or one not allowed).
std::string cors_allow_origin(std::string_view origin, const std::vector<std::string>& allowed);

}  // namespace carpool::server
