#include "server/json_text.h"

#include <charconv>
#include <cstdint>
#include <nlohmann/json.hpp>

namespace carpool::server {
namespace {

bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// Recursive descent over one value (depth bounded by max_depth), writing it compact to `out`.
class Compactor {
 public:
  Compactor(std::string_view in, int max_depth) : in_(in), max_depth_(max_depth) {}

  std::optional<std::string> run() {
    if (!value(0)) return std::nullopt;
    ws();
    if (i_ != in_.size()) return std::nullopt;
    return std::move(out_);
  }

 private:
  bool more() const { return i_ < in_.size(); }
  char peek() const { return in_[i_]; }
  void ws() {
    while (more() && is_ws(peek())) ++i_;
  }

  bool value(int depth) {
    ws();
    if (!more()) return false;
    switch (peek()) {
      case '{':
        return container(depth + 1, '}');
      case '[':
        return container(depth + 1, ']');
      case '"':
        return string();
      case 't':
        return literal("true");
      case 'f':
        return literal("false");
      case 'n':
        return literal("null");
      default:
        return number();
    }
  }

  // An object (close '}': members "key": value) or an array (close ']').
  bool container(int depth, char close) {
    if (depth > max_depth_) return false;
    out_ += peek();
    ++i_;
    ws();
    if (more() && peek() == close) {
      out_ += close;
      ++i_;
      return true;
    }
    for (;;) {
      if (close == '}') {
        ws();
        if (!more() || peek() != '"' || !string()) return false;
        ws();
        if (!more() || peek() != ':') return false;
        out_ += ':';
        ++i_;
      }
      if (!value(depth)) return false;
      ws();
      if (!more()) return false;
      if (peek() == ',') {
        out_ += ',';
        ++i_;
        continue;
      }
      if (peek() != close) return false;
      out_ += close;
      ++i_;
      return true;
    }
  }

  bool string() {
    const size_t start = i_++;
    while (more()) {
      const auto c = static_cast<unsigned char>(peek());
      if (c == '"') {
        ++i_;
        out_.append(in_.substr(start, i_ - start));
        return true;
      }
      if (c < 0x20) return false;
      if (c != '\\') {
        ++i_;
        continue;
      }
      if (i_ + 1 >= in_.size()) return false;
      const char e = in_[i_ + 1];
      if (e == 'u') {
        if (i_ + 6 > in_.size()) return false;
        for (size_t k = i_ + 2; k < i_ + 6; ++k) {
          if (!is_hex(in_[k])) return false;
        }
        i_ += 6;
        continue;
      }
      switch (e) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
          i_ += 2;
          continue;
        default:
          return false;
      }
    }
    return false;
  }

  bool digits() {
    if (!more() || !is_digit(peek())) return false;
    while (more() && is_digit(peek())) ++i_;
    return true;
  }

  bool number() {
    const size_t start = i_;
    if (more() && peek() == '-') ++i_;
    if (!more()) return false;
    if (peek() == '0') {
      ++i_;
    } else if (!digits()) {
      return false;
    }
    if (more() && peek() == '.') {
      ++i_;
      if (!digits()) return false;
    }
    if (more() && (peek() == 'e' || peek() == 'E')) {
      ++i_;
      if (more() && (peek() == '+' || peek() == '-')) ++i_;
      if (!digits()) return false;
    }
    out_.append(in_.substr(start, i_ - start));
    return true;
  }

  bool literal(std::string_view lit) {
    if (in_.substr(i_, lit.size()) != lit) return false;
    out_ += lit;
    i_ += lit.size();
    return true;
  }

  std::string_view in_;
  int max_depth_;
  size_t i_ = 0;
  std::string out_;
};

// The end (one past) of the compact value that starts at s[pos], or npos.
// The end (one past) of the string whose opening quote is s[open], or npos if it is not closed.
size_t string_end(std::string_view s, size_t open) {
  for (size_t i = open + 1; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
    } else if (s[i] == '"') {
      return i + 1;
    }
  }
  return std::string_view::npos;
}

size_t value_end(std::string_view s, size_t pos) {
  if (pos >= s.size()) return std::string_view::npos;
  int depth = 0;
  for (size_t i = pos; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '"') {
      const size_t end = string_end(s, i);
      if (end == std::string_view::npos || depth == 0) return end;
      i = end - 1;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (depth == 0) return i;  // a scalar ends at its container's close
      if (--depth == 0) return i + 1;
    } else if (c == ',' && depth == 0) {
      return i;
    }
  }
  return depth == 0 ? s.size() : std::string_view::npos;
}

// The parts of a compact container between `open` and its close: each value (arrays) or each
// "key":value pair (objects), split at the top-level commas.
std::optional<std::vector<std::string_view>> parts(std::string_view s, char open, char close,
                                                   bool members) {
  if (s.size() < 2 || s.front() != open || s.back() != close) return std::nullopt;
  std::vector<std::string_view> out;
  size_t pos = 1;
  if (s[pos] == close) return out;
  while (pos < s.size() - 1) {
    size_t end = value_end(s, pos);
    if (members) {  // the key, ':', then the value
      if (end == std::string_view::npos || end >= s.size() || s[end] != ':') return std::nullopt;
      end = value_end(s, end + 1);
    }
    if (end == std::string_view::npos || end >= s.size()) return std::nullopt;
    out.push_back(s.substr(pos, end - pos));
    if (s[end] == close) return end == s.size() - 1 ? std::optional(out) : std::nullopt;
    if (s[end] != ',') return std::nullopt;
    pos = end + 1;
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> compact_json(std::string_view text, int max_depth) {
  return Compactor(text, max_depth).run();
}

std::optional<std::vector<std::pair<std::string, std::string_view>>> json_members(
    std::string_view object) {
  auto members = parts(object, '{', '}', true);
  if (!members) return std::nullopt;
  std::vector<std::pair<std::string, std::string_view>> out;
  for (std::string_view m : *members) {
    const size_t colon = value_end(m, 0);
    if (colon == std::string_view::npos || colon >= m.size()) return std::nullopt;
    auto key = json_string(m.substr(0, colon));
    if (!key) return std::nullopt;
    out.emplace_back(std::move(*key), m.substr(colon + 1));
  }
  return out;
}

std::optional<std::vector<std::string_view>> json_elements(std::string_view array) {
  return parts(array, '[', ']', false);
}

size_t json_container_end(std::string_view text) {
  if (text.empty() || (text.front() != '{' && text.front() != '[')) return std::string_view::npos;
  return value_end(text, 0);
}

bool json_integers_fit(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '"') {
      const size_t end = string_end(s, i);
      if (end == std::string_view::npos) return true;  // (no number after it)
      i = end - 1;
      continue;
    }
    if (c != '-' && !is_digit(c)) continue;
    size_t end = i + 1;
    bool integer = true;
    while (end < s.size() && (is_digit(s[end]) || s[end] == '.' || s[end] == 'e' || s[end] == 'E' ||
                              s[end] == '+' || s[end] == '-')) {
      integer = integer && is_digit(s[end]);
      ++end;
    }
    if (integer) {
      const char* first = s.data() + i;
      const char* last = s.data() + end;
      std::from_chars_result r;
      if (c == '-') {
        int64_t v = 0;
        r = std::from_chars(first, last, v);
      } else {
        uint64_t v = 0;
        r = std::from_chars(first, last, v);
      }
      if (r.ec != std::errc() || r.ptr != last) return false;
    }
    i = end - 1;
  }
  return true;
}

std::optional<std::string> json_string(std::string_view text) {
  if (text.size() < 2 || text.front() != '"' || text.back() != '"') return std::nullopt;
  const nlohmann::json v = nlohmann::json::parse(text, nullptr, false);
  if (v.is_discarded() || !v.is_string()) return std::nullopt;
  return v.get<std::string>();
}

}  // namespace carpool::server
