// Router: (method, path) -> handler. Unknown paths answer 404 and known paths with another
// method 405, both as OpenAI error objects.
#pragma once

#include <string>
#include <vector>

#include "server/http_types.h"

namespace carpool::server {

class Router {
 public:
  void add(std::string method, std::string path, Handler handler);
  void dispatch(const std::shared_ptr<Exchange>& exchange) const;

 private:
  struct Route {
    std::string method, path;
    Handler handler;
  };
  std::vector<Route> routes_;
};

}  // namespace carpool::server
