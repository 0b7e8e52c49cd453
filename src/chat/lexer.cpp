#include "chat/lexer.h"

#include <cctype>
#include <charconv>
#include <cstdlib>

#include "chat/error.h"
#include "chat/utf8.h"

namespace carpool::chat {

namespace {

bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_name_start(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
}
bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

std::string normalize_newlines(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Python "unicode-escape" decoding of a string literal body; unknown escapes stay as written.
std::string unescape(std::string_view body) {
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (c != '\\' || i + 1 >= body.size()) {
      out.push_back(c);
      continue;
    }
    char e = body[++i];
    switch (e) {
      case '\n':
        break;  // line continuation
      case '\\':
        out.push_back('\\');
        break;
      case '\'':
        out.push_back('\'');
        break;
      case '"':
        out.push_back('"');
        break;
      case 'a':
        out.push_back('\a');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'v':
        out.push_back('\v');
        break;
      case 'x':
      case 'u':
      case 'U': {
        size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        if (i + n >= body.size()) fail("truncated escape in string");
        char32_t cp = 0;
        for (size_t k = 1; k <= n; ++k) {
          int h = hex_value(body[i + k]);
          if (h < 0) fail("bad escape in string literal");
          cp = cp * 16 + static_cast<char32_t>(h);
        }
        if (cp > 0x10FFFF) fail("escape out of range in string literal");
        utf8_append(out, cp);
        i += n;
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          char32_t cp = static_cast<char32_t>(e - '0');
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7';
               ++k) {
            cp = cp * 8 + static_cast<char32_t>(body[++i] - '0');
          }
          utf8_append(out, cp);
        } else {
          out.push_back('\\');
          out.push_back(e);
        }
    }
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {}

  std::vector<Token> run() {
    size_t pos = 0;
    bool line_starting = true;
    while (pos < src_.size()) {
      size_t tag = find_tag(pos);
      std::string text = src_.substr(pos, (tag == std::string::npos ? src_.size() : tag) - pos);
      if (tag == std::string::npos) {
        emit_text(std::move(text));
        break;
      }
      char kind = src_[tag + 1];  // '{', '%' or '#'
      char modifier = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
      bool is_var = kind == '{';
      if (modifier == '-') {
        size_t end = text.size();
        while (end > 0 && is_ws(text[end - 1])) --end;
        text.resize(end);
      } else if (!is_var && modifier != '+') {
        size_t nl = text.rfind('\n');
        size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
        if (l_pos > 0 || line_starting) {
          bool blank = true;
          for (size_t i = l_pos; i < text.size(); ++i)
            blank = blank && (text[i] == ' ' || text[i] == '\t');
          if (blank) text.resize(l_pos);
        }
      }
      emit_text(std::move(text));
      pos = tag + 2 + ((modifier == '-' || modifier == '+') ? 1 : 0);
      line_ = line_at(tag);
      if (kind == '#') {
        pos = lex_comment(pos, &line_starting);
      } else {
        pos = lex_tag(pos, is_var, &line_starting);
      }
    }
    Token eof;
    eof.kind = TokenKind::kEof;
    eof.line = line_at(src_.size());
    tokens_.push_back(eof);
    return std::move(tokens_);
  }

 private:
  size_t find_tag(size_t pos) const {
    while (true) {
      size_t p = src_.find('{', pos);
      if (p == std::string::npos || p + 1 >= src_.size()) return std::string::npos;
      char n = src_[p + 1];
      if (n == '{' || n == '%' || n == '#') return p;
      pos = p + 1;
    }
  }

  int line_at(size_t pos) {
    while (line_pos_ < pos && line_pos_ < src_.size()) {
      if (src_[line_pos_] == '\n') ++line_count_;
      ++line_pos_;
    }
    return line_count_;
  }

  void emit_text(std::string text) {
    if (text.empty()) return;
    Token t;
    t.kind = TokenKind::kText;
    t.text = std::move(text);
    t.line = line_;
    tokens_.push_back(std::move(t));
  }

  void push(TokenKind kind, std::string text = {}) {
    Token t;
    t.kind = kind;
    t.text = std::move(text);
    t.line = line_;
    tokens_.push_back(std::move(t));
  }

  // After a tag's closing delimiter at `pos`: a '-' modifier eats all whitespace; otherwise a
  // block or comment (trim_blocks) eats one newline unless the '+' modifier was given.
  size_t consume_after_tag(size_t pos, char modifier, bool is_var, bool* line_starting) {
    size_t start = pos;
    if (modifier == '-') {
      while (pos < src_.size() && is_ws(src_[pos])) ++pos;
    } else if (!is_var && modifier != '+' && pos < src_.size() && src_[pos] == '\n') {
      ++pos;
    }
    *line_starting = pos > start && src_[pos - 1] == '\n';
    return pos;
  }

  size_t lex_comment(size_t pos, bool* line_starting) {
    size_t end = src_.find("#}", pos);
    if (end == std::string::npos) fail("unterminated comment at line " + std::to_string(line_));
    char modifier = (end > pos && src_[end - 1] == '-') ? '-' : '\0';
    return consume_after_tag(end + 2, modifier, false, line_starting);
  }

  size_t lex_tag(size_t pos, bool is_var, bool* line_starting) {
    size_t first_token = tokens_.size() + 1;
    push(is_var ? TokenKind::kVarBegin : TokenKind::kBlockBegin);
    int depth = 0;
    while (true) {
      while (pos < src_.size() && is_ws(src_[pos])) ++pos;
      if (pos >= src_.size()) fail("unterminated tag starting at line " + std::to_string(line_));
      if (depth == 0) {
        std::string_view rest(src_.data() + pos, src_.size() - pos);
        const char* close = is_var ? "}}" : "%}";
        char modifier = '\0';
        size_t skip = 0;
        if (rest.size() >= 3 && rest[0] == '-' && rest.substr(1, 2) == close) {
          modifier = '-';
          skip = 3;
        } else if (!is_var && rest.size() >= 3 && rest[0] == '+' && rest.substr(1, 2) == close) {
          modifier = '+';
          skip = 3;
        } else if (rest.substr(0, 2) == close) {
          skip = 2;
        }
        if (skip > 0) {
          push(is_var ? TokenKind::kVarEnd : TokenKind::kBlockEnd);
          pos = consume_after_tag(pos + skip, modifier, is_var, line_starting);
          if (!is_var && tokens_.size() == first_token + 2 &&
              tokens_[first_token].kind == TokenKind::kName && tokens_[first_token].text == "raw") {
            tokens_.resize(first_token - 1);
            pos = lex_raw(pos, line_starting);
          }
          return pos;
        }
      }
      pos = lex_token(pos, &depth);
    }
  }

  // Body of {% raw %}: text up to {% endraw %}, kept verbatim.
  size_t lex_raw(size_t pos, bool* line_starting) {
    size_t search = pos;
    while (true) {
      size_t p = src_.find("{%", search);
      if (p == std::string::npos)
        fail("missing endraw for raw block at line " + std::to_string(line_));
      size_t q = p + 2;
      char begin_mod = (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) ? src_[q++] : '\0';
      while (q < src_.size() && is_ws(src_[q])) ++q;
      if (src_.compare(q, 6, "endraw") != 0) {
        search = p + 2;
        continue;
      }
      q += 6;
      while (q < src_.size() && is_ws(src_[q])) ++q;
      char end_mod = (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) ? src_[q++] : '\0';
      if (src_.compare(q, 2, "%}") != 0) fail("malformed endraw tag");
      std::string text = src_.substr(pos, p - pos);
      if (begin_mod == '-') {
        while (!text.empty() && is_ws(text.back())) text.pop_back();
      }
      emit_text(std::move(text));
      return consume_after_tag(q + 2, end_mod, false, line_starting);
    }
  }

  size_t lex_token(size_t pos, int* depth) {
    char c = src_[pos];
    bool after_dot =
        !tokens_.empty() && tokens_.back().kind == TokenKind::kOp && tokens_.back().text == ".";
    if (is_name_start(c)) {
      size_t end = pos;
      while (end < src_.size() && is_name_char(src_[end])) ++end;
      push(TokenKind::kName, src_.substr(pos, end - pos));
      return end;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) return lex_number(pos, after_dot);
    if (c == '\'' || c == '"') {
      size_t end = pos + 1;
      while (end < src_.size() && src_[end] != c) end += (src_[end] == '\\') ? 2 : 1;
      if (end >= src_.size()) fail("unterminated string literal at line " + std::to_string(line_));
      push(TokenKind::kString, unescape(std::string_view(src_).substr(pos + 1, end - pos - 1)));
      return end + 1;
    }
    static const char* kTwoCharOps[] = {"**", "//", "==", "!=", "<=", ">="};
    for (const char* op : kTwoCharOps) {
      if (src_.compare(pos, 2, op) == 0) {
        push(TokenKind::kOp, op);
        return pos + 2;
      }
    }
    static const std::string_view kOneCharOps = "+-*/%~()[]{},.:|=<>";
    if (kOneCharOps.find(c) == std::string_view::npos) {
      fail("unexpected character '" + std::string(1, c) + "' at line " + std::to_string(line_));
    }
    if (c == '(' || c == '[' || c == '{') ++*depth;
    if (c == ')' || c == ']' || c == '}') {
      if (*depth == 0)
        fail("unbalanced '" + std::string(1, c) + "' at line " + std::to_string(line_));
      --*depth;
    }
    push(TokenKind::kOp, std::string(1, c));
    return pos + 1;
  }

  size_t lex_number(size_t pos, bool after_dot) {
    auto digits = [&](size_t p) {
      while (p < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[p])) ||
                                 (src_[p] == '_' && p + 1 < src_.size() &&
                                  std::isdigit(static_cast<unsigned char>(src_[p + 1]))))) {
        ++p;
      }
      return p;
    };
    size_t end = digits(pos);
    bool is_float = false;
    if (!after_dot && end + 1 < src_.size() && src_[end] == '.' &&
        std::isdigit(static_cast<unsigned char>(src_[end + 1]))) {
      end = digits(end + 1);
      is_float = true;
    }
    if (!after_dot && end < src_.size() && (src_[end] == 'e' || src_[end] == 'E')) {
      size_t p = end + 1;
      if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
      if (p < src_.size() && std::isdigit(static_cast<unsigned char>(src_[p]))) {
        end = digits(p);
        is_float = true;
      }
    }
    std::string text;
    for (size_t i = pos; i < end; ++i) {
      if (src_[i] != '_') text.push_back(src_[i]);
    }
    Token t;
    t.line = line_;
    t.text = text;
    if (is_float) {
      t.kind = TokenKind::kFloat;
      t.float_value = std::strtod(text.c_str(), nullptr);
    } else {
      t.kind = TokenKind::kInt;
      auto res = std::from_chars(text.data(), text.data() + text.size(), t.int_value);
      if (res.ec != std::errc()) fail("integer literal too large at line " + std::to_string(line_));
    }
    tokens_.push_back(std::move(t));
    return end;
  }

  std::string src_;
  std::vector<Token> tokens_;
  int line_ = 1;
  size_t line_pos_ = 0;
  int line_count_ = 1;
};

}  // namespace

std::vector<Token> lex_template(std::string_view source) {
  std::string src = normalize_newlines(source);
  if (!src.empty() && src.back() == '\n') src.pop_back();  // keep_trailing_newline=False
  return Lexer(std::move(src)).run();
}

}  // namespace carpool::chat
