// Lexer: splits template source into text and the tokens inside {{ }}, {% %} tags, applying
// Jinja's whitespace control exactly as Hugging Face configures it (trim_blocks=True,
// lstrip_blocks=True, keep_trailing_newline=False) plus the `-` and `+` tag modifiers.
// Comments are dropped. {% raw %} blocks become text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace carpool::chat {

enum class TokenKind : uint8_t {
  kText,        // literal template text
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,        // identifier or keyword
  kInt,
  kFloat,
  kString,
  kOp,  // operator or punctuation; text holds it ("==", "(", "|", ...)
  kEof,
};

struct Token {
  TokenKind kind = TokenKind::kEof;
  std::string text;  // text, name, decoded string literal or operator
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1;
};

// Throws TemplateError on malformed input (unterminated tag, string or comment; bad character).
std::vector<Token> lex_template(std::string_view source);

}  // namespace carpool::chat
