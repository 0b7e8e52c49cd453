// JSON helpers for the format readers (nlohmann/json behind a forward declaration, so only the
// readers' .cpp files pay for the full header).
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

#include "util/status.h"

namespace carpool {

// Parses `text` into `out`. Refuses, with a one-line error that starts with `what`:
// invalid JSON (nlohmann's message, with position), containers nested deeper than `max_depth`
// (checked by a scan before parsing, so deep input allocates nothing), and duplicate keys in any
// object (DOM parsers keep the last one silently, so two readers could see different values).
Status parse_json_strict(std::string_view text, int max_depth, std::string_view what,
                         nlohmann::json& out);

// Deepest array/object nesting of a JSON text, counting brackets outside strings only. Stops
// scanning once the depth exceeds `stop_above` (then the result is stop_above + 1).
int json_nesting_depth(std::string_view text, int stop_above);

// `s` in single quotes, cut to 80 bytes: untrusted names in error messages stay one short line.
std::string quote_name(std::string_view s);

}  // namespace carpool
