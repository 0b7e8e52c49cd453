#include "server/router.h"

#include "server/api_error.h"

namespace carpool::server {

void Router::add(std::string method, std::string path, Handler handler) {
  routes_.push_back({std::move(method), std::move(path), std::move(handler)});
}

void Router::dispatch(const std::shared_ptr<Exchange>& ex) const {
  const HttpRequest& req = ex->request();
  bool path_known = false;
  for (const auto& r : routes_) {
    if (r.path != req.path) continue;
    path_known = true;
    if (r.method == req.method) {
      r.handler(ex);
      return;
    }
  }
  if (path_known) {
    ApiError e;
    e.status = 405;
    e.message = "method " + req.method + " is not allowed on " + req.path;
    ex->respond(error_response(e));
    return;
  }
  ex->respond(error_response(not_found("no route for " + req.method + " " + req.path)));
}

}  // namespace carpool::server
