// JSON Schema "format" for strings that structured output enforces (json_schema.h): whether a
// string's characters so far can still become a value of the format, and whether they are one.
//   date       YYYY-MM-DD (RFC 3339 full-date; years 0001-9999, days within the month, leap years)
//   time       hh:mm:ss[.f] then Z or +hh:mm / -hh:mm (RFC 3339 full-time; 1-6 fraction digits)
//   date-time  date "T" time
//   uuid       8-4-4-4-12 hexadecimal digits
// (Python's datetime, and so pydantic, parse every value these accept.)
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string_view>

namespace carpool {

enum class StringFormat : uint8_t { kNone, kDate, kTime, kDateTime, kUuid };

// The format named `name` ("date", "time", "date-time", "uuid"); kNone for any other name.
StringFormat string_format_named(std::string_view name);

// Whether some value of format f begins with s.
bool format_prefix_ok(StringFormat f, std::string_view s);
// Whether s is a whole value of format f.
bool format_complete(StringFormat f, std::string_view s);

}  // namespace carpool
