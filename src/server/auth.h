// API-key check: "Authorization: Bearer KEY", compared in constant time.
#pragma once

#include <string_view>

namespace carpool::server {

// Equal strings, in time that depends only on the lengths (not on where they differ).
bool constant_time_equal(std::string_view a, std::string_view b);

// Whether an Authorization header value carries `api_key` ("Bearer KEY", scheme case-insensitive).
bool authorized(std::string_view authorization_header, std::string_view api_key);

}  // namespace carpool::server
