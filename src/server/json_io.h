// JSON in and out for request bodies: bounded nesting before parsing (the parser recurses), and
// output that never throws on invalid UTF-8 (token pieces may be partial characters).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "server/api_error.h"

namespace carpool::server {

// Deepest array/object nesting a request body may have.
inline constexpr int kMaxJsonDepth = 64;

// Parses `body` as a JSON object. Errors: empty body, nesting beyond kMaxJsonDepth, malformed
// JSON (with the byte offset), a top-level value that is not an object.
std::optional<ApiError> parse_json_object(std::string_view body, nlohmann::json* out);

// Parses JSON text found inside a request (a string field holding JSON, such as guided_json),
// with the same bounds; errors name `param`.
std::optional<ApiError> parse_json_text(std::string_view text, const char* param,
                                        nlohmann::ordered_json* out);

// Compact JSON; invalid UTF-8 in strings becomes U+FFFD.
std::string dump_json(const nlohmann::json& value);
std::string dump_json(const nlohmann::ordered_json& value);

}  // namespace carpool::server
