#include "chat/string_ops.h"

#include "chat/error.h"
#include "chat/utf8.h"

namespace carpool::chat {

namespace {
// Simple case mapping for ASCII, Latin-1, Greek and basic Cyrillic (one code point to one).
char32_t upper_cp(char32_t c) {
  if ((c >= 'a' && c <= 'z') || (c >= 0xE0 && c <= 0xFE && c != 0xF7)) return c - 32;
  if (c == 0xFF) return 0x178;
  if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) return c - 32;
  if (c == 0x3C2) return 0x3A3;
  if (c >= 0x430 && c <= 0x44F) return c - 32;
  if (c >= 0x450 && c <= 0x45F) return c - 80;
  return c;
}
char32_t lower_cp(char32_t c) {
  if ((c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0xDE && c != 0xD7)) return c + 32;
  if (c == 0x178) return 0xFF;
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  return c;
}
bool is_cased_letter(char32_t c) {
  return upper_cp(c) != c || lower_cp(c) != c || c == 0xDF;
}
}  // namespace

std::string py_strip(std::string_view s, StripSide side, const std::optional<std::string>& chars) {
  std::u32string cps = utf8_decode(s);
  std::u32string set = chars ? utf8_decode(*chars) : std::u32string();
  auto strip_it = [&](char32_t c) {
    return chars ? set.find(c) != std::u32string::npos : is_unicode_space(c);
  };
  size_t begin = 0;
  size_t end = cps.size();
  if (side != StripSide::kRight) {
    while (begin < end && strip_it(cps[begin])) ++begin;
  }
  if (side != StripSide::kLeft) {
    while (end > begin && strip_it(cps[end - 1])) --end;
  }
  return utf8_encode(std::u32string_view(cps).substr(begin, end - begin));
}

std::vector<std::string> py_split(std::string_view s, const std::optional<std::string>& sep,
                                  int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    if (sep->empty()) fail("empty separator");
    size_t pos = 0;
    while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
      size_t hit = s.find(*sep, pos);
      if (hit == std::string_view::npos) break;
      out.emplace_back(s.substr(pos, hit - pos));
      pos = hit + sep->size();
    }
    out.emplace_back(s.substr(pos));
    return out;
  }
  std::u32string cps = utf8_decode(s);
  size_t i = 0;
  while (true) {
    while (i < cps.size() && is_unicode_space(cps[i])) ++i;
    if (i >= cps.size()) break;
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) >= maxsplit) {
      out.push_back(utf8_encode(std::u32string_view(cps).substr(i)));
      break;
    }
    size_t start = i;
    while (i < cps.size() && !is_unicode_space(cps[i])) ++i;
    out.push_back(utf8_encode(std::u32string_view(cps).substr(start, i - start)));
  }
  return out;
}

std::string py_replace(std::string_view s, std::string_view from, std::string_view to,
                       int64_t count, size_t limit) {
  std::string out;
  auto append = [&](std::string_view piece) {
    if (out.size() + piece.size() > limit) fail("replace result exceeds the output limit");
    out.append(piece);
  };
  if (from.empty()) {
    // Python inserts `to` between every code point (and at both ends).
    std::u32string cps = utf8_decode(s);
    int64_t done = 0;
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || done < count) {
        append(to);
        ++done;
      }
      if (i < cps.size()) {
        std::string one;
        utf8_append(one, cps[i]);
        append(one);
      }
    }
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    append(s.substr(pos, hit - pos));
    append(to);
    pos = hit + from.size();
    ++done;
  }
  append(s.substr(pos));
  return out;
}

std::string py_upper(std::string_view s) {
  std::u32string cps = utf8_decode(s);
  std::u32string out;
  out.reserve(cps.size());
  for (char32_t c : cps) {
    if (c == 0xDF) {
      out += U"SS";  // Python maps the sharp s to two letters
    } else {
      out.push_back(upper_cp(c));
    }
  }
  return utf8_encode(out);
}

std::string py_lower(std::string_view s) {
  std::u32string cps = utf8_decode(s);
  for (char32_t& c : cps) c = lower_cp(c);
  return utf8_encode(cps);
}

std::string py_capitalize(std::string_view s) {
  std::u32string cps = utf8_decode(s);
  for (size_t i = 0; i < cps.size(); ++i) cps[i] = i == 0 ? upper_cp(cps[i]) : lower_cp(cps[i]);
  return utf8_encode(cps);
}

std::string py_title(std::string_view s) {
  std::u32string cps = utf8_decode(s);
  bool prev_cased = false;
  for (char32_t& c : cps) {
    c = prev_cased ? lower_cp(c) : upper_cp(c);
    prev_cased = is_cased_letter(c);
  }
  return utf8_encode(cps);
}

std::string jinja_title(std::string_view s) {
  std::u32string cps = utf8_decode(s);
  auto is_boundary = [](char32_t c) {
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || is_unicode_space(c);
  };
  bool word_start = true;
  for (char32_t& c : cps) {
    if (is_boundary(c)) {
      word_start = true;
      continue;
    }
    c = word_start ? upper_cp(c) : lower_cp(c);
    word_start = false;
  }
  return utf8_encode(cps);
}

}  // namespace carpool::chat
