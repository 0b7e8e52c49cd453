#include "server/router.h"

#include <cstdio>
#include <exception>

#include "server/api_error.h"

namespace carpool::server {

bool Router::matches(std::string_view pattern, std::string_view path) {
  if (!pattern.empty() && pattern.back() == '*') {
    pattern.remove_suffix(1);
    return path.size() > pattern.size() && path.substr(0, pattern.size()) == pattern;
  }
  return pattern == path;
}

void Router::add(std::string method, std::string path, Handler handler) {
  routes_.push_back({std::move(method), std::move(path), std::move(handler)});
}

// A handler that throws answers 500 (or ends its stream) instead of ending the process: one bad
// request must not take the others down. The handlers check their input and are not meant to
// throw; this is the net under them.
void Router::call_handler(const Route& r, const std::shared_ptr<Exchange>& ex) const {
  try {
    r.handler(ex);
  } catch (const std::exception& e) {
    // The decoded path may hold control characters: not into the log as they are.
    std::string path = ex->request().path.substr(0, 256);
    for (char& c : path) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    }
    std::fprintf(stderr, "carpool: internal error handling %s %s: %s\n",
                 ex->request().method.c_str(), path.c_str(), e.what());
    ApiError err;
    err.status = 500;
    err.type = "server_error";
    err.message = "internal error while handling the request";
    ex->respond(error_response(err));  // ignored once a stream has started
    ex->end_stream();                  // ignored unless one has
  }
}

std::string Router::allowed_methods(std::string_view path) const {
  std::string out;
  auto add = [&out](std::string_view m) {
    if (out.find(m) != std::string::npos) return;
    if (!out.empty()) out += ", ";
    out += m;
  };
  for (const auto& r : routes_) {
    if (!matches(r.path, path)) continue;
    add(r.method);
    if (r.method == "GET") add("HEAD");
  }
  if (!out.empty()) add("OPTIONS");  // the server answers OPTIONS on every route
  return out;
}

void Router::dispatch(const std::shared_ptr<Exchange>& ex) const {
  const HttpRequest& req = ex->request();
  bool path_known = false;
  for (const auto& r : routes_) {
    if (!matches(r.path, req.path)) continue;
    path_known = true;
    // HEAD is answered as GET; the HTTP server sends the head without the body.
    if (r.method == req.method || (req.method == "HEAD" && r.method == "GET")) {
      call_handler(r, ex);
      return;
    }
  }
  if (path_known) {
    ApiError e;
    e.status = 405;
    e.message = "method " + req.method + " is not allowed on " + req.path;
    e.headers.emplace_back("Allow", allowed_methods(req.path));
    ex->respond(error_response(e));
    return;
  }
  ex->respond(error_response(not_found("no route for " + req.method + " " + req.path)));
}

}  // namespace carpool::server
