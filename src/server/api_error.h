// OpenAI-style error answers: {"error": {"message", "type", "param", "code"}}.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "server/http_types.h"

namespace carpool::server {

struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // the request field at fault; empty: null
  std::string code;   // machine-readable code; empty: null
  std::vector<std::pair<std::string, std::string>> headers;  // e.g. Retry-After
};

ApiError bad_request(std::string message, std::string param = "");
ApiError not_found(std::string message, std::string code = "");
// 503 while the model loads or the server drains.
ApiError unavailable(std::string message);

// The error object alone (also used inside an SSE stream).
std::string error_json(const ApiError& error);
HttpResponse error_response(const ApiError& error);

}  // namespace carpool::server

// Returns the error of `expr` (a std::optional<ApiError>) from the calling parser, if it has one.
#define CARPOOL_API_TRY(expr)        \
  do {                               \
    if (auto _e = (expr)) return _e; \
  } while (0)
