// JSON text as written, without converting its numbers: a model's tool-call arguments keep their
// digits (a parsed double would turn 123456789012345678901234567890 into 1.2345678901234568e+29
// and refuse 5e400). compact_json checks one value's syntax (RFC 8259) and drops the whitespace
// between tokens; json_members and json_elements split a compact object or array into the text
// of its parts.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace carpool::server {

// One JSON value (whitespace around it allowed), compact: numbers, strings and literals as
// written. nullopt if the text is not one JSON value or nests deeper than max_depth.
std::optional<std::string> compact_json(std::string_view text, int max_depth = 64);

// The members of a compact object (as compact_json writes it): each key decoded, and its value's
// text. nullopt if `object` is not an object.
std::optional<std::vector<std::pair<std::string, std::string_view>>> json_members(
    std::string_view object);

// The elements' texts of a compact array; nullopt if `array` is not an array.
std::optional<std::vector<std::string_view>> json_elements(std::string_view array);

// The end (one past) of the object or array that opens at text[0], by its brackets outside
// strings (whitespace may stand anywhere: the text need not be compact), or npos if it is not
// closed. Its syntax is not checked.
size_t json_container_end(std::string_view text);

// Whether every integer (a number without fraction or exponent) of a compact text fits in 64
// bits, so that a parsed value (nlohmann::json) holds it exactly rather than as a double.
bool json_integers_fit(std::string_view compact);

// A compact JSON string's value; nullopt if `text` is not a string.
std::optional<std::string> json_string(std::string_view text);

}  // namespace carpool::server
