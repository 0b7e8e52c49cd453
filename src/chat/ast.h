// Syntax tree of a parsed template. Produced by parse_template (parser.h), walked by the
// interpreter. Immutable after parsing; owned by ChatTemplate.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "chat/value.h"

namespace carpool::chat {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,   // literal
    kName,      // name
    kList,      // args: items
    kTuple,     // args: items
    kDict,      // args: key0, value0, key1, value1, ...
    kGetAttr,   // args[0].name
    kGetItem,   // args[0][args[1]]
    kSlice,     // args[0][args[1]:args[2]:args[3]], absent parts null
    kCall,      // args[0](args[1..]); the last kwarg_names.size() args are keyword arguments
    kFilter,    // args[0]|name(args[1..]); args[0] is null inside {% filter %}
    kTest,      // args[0] is [not] name(args[1..])
    kNeg,       // -args[0]
    kPos,       // +args[0]
    kNot,       // not args[0]
    kBinary,    // args[0] name args[1], name in + - * / // % ** ~
    kCompare,   // args[0] ops[0] args[1] ops[1] args[2] ...
    kAnd,       // args[0] and args[1]
    kOr,        // args[0] or args[1]
    kCondExpr,  // args[0] if args[1] else args[2] (args[2] may be null)
  };
  Kind kind = Kind::kLiteral;
  int line = 0;
  Value literal;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::string> kwarg_names;
  std::vector<std::string> ops;
  bool negated = false;  // kTest: "is not"
  int depth = 1;         // 1 + the deepest child's: the parser bounds it (kMaxExprDepth)
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind {
    kText,      // text
    kOutput,    // {{ expr }}
    kIf,        // conditions[i] -> bodies[i]; else_body
    kFor,       // for targets in expr [if cond] body [else else_body]
    kSet,       // set targets = expr; or set targets[0].attr = expr when attr is set
    kSetBlock,  // set targets[0] %}body{% endset
    kMacro,     // macro name(targets with defaults) body
    kBreak,
    kContinue,
    kGeneration,   // {% generation %}body{% endgeneration %}: renders body
    kFilterBlock,  // {% filter expr %}body{% endfilter %}; expr is a kFilter chain, null subject
  };
  Kind kind = Kind::kText;
  int line = 0;
  std::string text;
  std::string name;  // kMacro name
  std::string attr;  // kSet to a namespace attribute
  ExprPtr expr;
  ExprPtr cond;
  std::vector<std::string> targets;
  std::vector<ExprPtr> defaults;  // kMacro, parallel to targets; null = required
  std::vector<ExprPtr> conditions;
  std::vector<Body> bodies;
  Body body;
  Body else_body;
};

}  // namespace carpool::chat
