// Parser: token stream (lexer.h) -> syntax tree (ast.h), for the Jinja subset that chat templates
// use. Throws TemplateError with the line number on syntax errors, unsupported tags (include,
// extends, import, block, call, with) and nesting deeper than kMaxParseDepth.
#pragma once

#include <string_view>

#include "chat/ast.h"

namespace carpool::chat {

inline constexpr int kMaxParseDepth = 200;
// Depth of an expression tree, however it is reached: chains of operators, attributes, calls and
// filters (a + b + c ..., x.a.a ..., x|e|e ...) nest without parentheses, and evaluating (and
// freeing) a tree recurses on its depth. Real chat templates stay far below.
inline constexpr int kMaxExprDepth = 100;

Body parse_template(std::string_view source);

}  // namespace carpool::chat
