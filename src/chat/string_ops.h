// Python str methods on UTF-8 strings, with code-point semantics where it matters.
// Case mapping covers ASCII, Latin-1, Greek and basic Cyrillic; other scripts are left as is.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace carpool::chat {

enum class StripSide { kBoth, kLeft, kRight };
// str.strip()/lstrip()/rstrip(); `chars` absent strips Unicode whitespace.
std::string py_strip(std::string_view s, StripSide side, const std::optional<std::string>& chars);
// str.split(sep, maxsplit); sep absent splits on runs of whitespace. Throws on empty sep.
std::vector<std::string> py_split(std::string_view s, const std::optional<std::string>& sep,
                                  int64_t maxsplit);
// str.replace(old, new, count); count < 0 replaces all. `limit` bounds the result size.
std::string py_replace(std::string_view s, std::string_view from, std::string_view to,
                       int64_t count, size_t limit);
std::string py_upper(std::string_view s);
std::string py_lower(std::string_view s);
std::string py_capitalize(std::string_view s);  // str.capitalize()
std::string py_title(std::string_view s);       // str.title()
std::string jinja_title(std::string_view s);    // the `title` filter (splits at -\s({[<)

}  // namespace carpool::chat
