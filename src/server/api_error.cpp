#include "server/api_error.h"

#include "server/json_io.h"

namespace carpool::server {

ApiError bad_request(std::string message, std::string param) {
  ApiError e;
  e.status = 400;
  e.message = std::move(message);
  e.param = std::move(param);
  return e;
}

ApiError not_found(std::string message, std::string code) {
  ApiError e;
  e.status = 404;
  e.message = std::move(message);
  e.type = "invalid_request_error";  // as OpenAI's API (the code says what was not found)
  e.code = std::move(code);
  return e;
}

ApiError unavailable(std::string message) {
  ApiError e;
  e.status = 503;
  e.message = std::move(message);
  e.type = "service_unavailable";
  e.headers.emplace_back("Retry-After", "1");
  return e;
}

std::string error_json(const ApiError& e) {
  nlohmann::ordered_json err;
  err["message"] = e.message;
  err["type"] = e.type;
  err["param"] =
      e.param.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(e.param);
  err["code"] = e.code.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(e.code);
  nlohmann::ordered_json j;
  j["error"] = std::move(err);
  return dump_json(j);
}

HttpResponse error_response(const ApiError& e) {
  HttpResponse r;
  r.status = e.status;
  r.headers = e.headers;
  r.body = error_json(e);
  return r;
}

}  // namespace carpool::server
