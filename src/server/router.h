// Router: (method, path) -> handler; a path ending in '*' matches every longer path with that
// prefix (GET /v1/models/*), the others match exactly, and HEAD takes the GET routes (the HTTP
// server drops the body). Unknown paths answer 404 and known paths with another method 405 (with
// an Allow header), both as OpenAI error objects; a handler that throws answers 500 (its stream,
// if it started one, ends) and the server goes on.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "server/http_types.h"

namespace carpool::server {

class Router {
 public:
  void add(std::string method, std::string path, Handler handler);
  void dispatch(const std::shared_ptr<Exchange>& exchange) const;
  // The methods a path takes ("GET, HEAD, OPTIONS"), empty for an unknown path.
  std::string allowed_methods(std::string_view path) const;

 private:
  struct Route {
    std::string method, path;
    Handler handler;
  };
  static bool matches(std::string_view pattern, std::string_view path);
  void call_handler(const Route& r, const std::shared_ptr<Exchange>& ex) const;
  std::vector<Route> routes_;
};

}  // namespace carpool::server
