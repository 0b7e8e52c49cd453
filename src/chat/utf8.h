// UTF-8 helpers with Python str semantics: strings are sequences of code points.
// Invalid bytes decode to U+DC80..U+DCFF (Python's surrogateescape) and encode back unchanged, so
// any byte string round-trips.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace carpool::chat {

std::u32string utf8_decode(std::string_view s);
std::string utf8_encode(std::u32string_view cps);
void utf8_append(std::string& out, char32_t cp);
// Number of code points.
size_t utf8_length(std::string_view s);
// Python str.isspace() for one code point.
bool is_unicode_space(char32_t cp);

}  // namespace carpool::chat
