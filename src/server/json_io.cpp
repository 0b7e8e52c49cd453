#include "server/json_io.h"

#include "formats/json_util.h"

namespace carpool::server {

std::optional<ApiError> parse_json_object(std::string_view body, nlohmann::json* out) {
  if (body.empty()) return bad_request("the request body is empty; expected a JSON object");
  if (json_nesting_depth(body, kMaxJsonDepth) > kMaxJsonDepth) {
    return bad_request("the request JSON nests deeper than " + std::to_string(kMaxJsonDepth) +
                       " levels");
  }
  try {
    *out = nlohmann::json::parse(body);
  } catch (const nlohmann::json::parse_error& e) {
    return bad_request("malformed JSON at byte " + std::to_string(e.byte) + " of the request body");
  } catch (const nlohmann::json::out_of_range&) {
    // A number beyond double's range (1e400): the parser reports it as out_of_range.406.
    return bad_request("a number in the request body is beyond the range of a 64-bit float");
  } catch (const nlohmann::json::exception&) {
    return bad_request("the request body is not valid JSON");
  }
  if (!out->is_object()) return bad_request("the request body must be a JSON object");
  return std::nullopt;
}

std::optional<ApiError> parse_json_text(std::string_view text, const char* param,
                                        nlohmann::ordered_json* out) {
  if (json_nesting_depth(text, kMaxJsonDepth) > kMaxJsonDepth) {
    return bad_request(
        std::string(param) + " nests deeper than " + std::to_string(kMaxJsonDepth) + " levels",
        param);
  }
  try {
    *out = nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception&) {  // malformed, or a number beyond double
    return bad_request(std::string(param) + " does not hold valid JSON", param);
  }
  return std::nullopt;
}

std::string dump_json(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string dump_json(const nlohmann::ordered_json& value) {
  return value.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace carpool::server
