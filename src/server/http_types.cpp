#include "server/http_types.h"

namespace carpool::server {

std::string_view HttpRequest::header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return value;
  }
  return {};
}

int hex_digit_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string decode_path(std::string_view path) {
  std::string out;
  out.reserve(path.size());
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '%' && i + 2 < path.size()) {
      const int hi = hex_digit_value(path[i + 1]), lo = hex_digit_value(path[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(path[i]);
  }
  if (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

std::string cors_allow_origin(std::string_view origin, const std::vector<std::string>& allowed) {
  for (const std::string& a : allowed) {
    if (a == "*") return "*";  // with or without an Origin: one answer for every cache
    if (!origin.empty() && a == origin) return std::string(origin);
  }
  return {};
}

}  // namespace carpool::server
