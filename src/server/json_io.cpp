#include "server/json_io.h"

namespace carpool::server {
namespace {

// Deepest nesting of arrays/objects in `text`, stopping early past `limit`. Brackets inside
// strings do not count.
int nesting_depth(std::string_view text, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

}  // namespace

std::optional<ApiError> parse_json_object(std::string_view body, nlohmann::json* out) {
  if (body.empty()) return bad_request("the request body is empty; expected a JSON object");
  if (nesting_depth(body, kMaxJsonDepth) > kMaxJsonDepth) {
    return bad_request("the request JSON nests deeper than " + std::to_string(kMaxJsonDepth) +
                       " levels");
  }
  try {
    *out = nlohmann::json::parse(body);
  } catch (const nlohmann::json::parse_error& e) {
    return bad_request("malformed JSON at byte " + std::to_string(e.byte) + " of the request body");
  }
  if (!out->is_object()) return bad_request("the request body must be a JSON object");
  return std::nullopt;
}

std::string dump_json(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string dump_json(const nlohmann::ordered_json& value) {
  return value.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace carpool::server
