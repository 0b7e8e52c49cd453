#include "chat/parser.h"

#include <algorithm>
#include <initializer_list>
#include <utility>

#include "chat/error.h"
#include "chat/lexer.h"

namespace carpool::chat {

namespace {

class DepthGuard {
 public:
  DepthGuard(int* depth, int line) : depth_(depth) {
    if (++*depth_ > kMaxParseDepth) {
      fail("template nested too deeply at line " + std::to_string(line));
    }
  }
  ~DepthGuard() { --*depth_; }

 private:
  int* depth_;
};

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : toks_(std::move(tokens)) {}

  Body parse_all() {
    std::string end;
    Body body = parse_body({}, &end);
    return body;
  }

 private:
  // ---- token helpers ----
  const Token& cur() const { return toks_[pos_]; }
  const Token& peek(size_t n = 1) const {
    return toks_[pos_ + n < toks_.size() ? pos_ + n : toks_.size() - 1];
  }
  void advance() {
    if (pos_ + 1 < toks_.size()) ++pos_;
  }
  bool is_op(const char* op) const { return cur().kind == TokenKind::kOp && cur().text == op; }
  bool is_name(const char* n) const { return cur().kind == TokenKind::kName && cur().text == n; }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    advance();
    return true;
  }
  bool skip_name(const char* n) {
    if (!is_name(n)) return false;
    advance();
    return true;
  }
  [[noreturn]] void error(const std::string& what) const {
    std::string got = cur().kind == TokenKind::kEof        ? "end of template"
                      : cur().kind == TokenKind::kBlockEnd ? "'%}'"
                      : cur().kind == TokenKind::kVarEnd   ? "'}}'"
                                                           : "'" + cur().text + "'";
    fail(what + " at line " + std::to_string(cur().line) + " (found " + got + ")");
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) error(std::string("expected '") + op + "'");
  }
  std::string expect_name() {
    if (cur().kind != TokenKind::kName) error("expected a name");
    std::string n = cur().text;
    advance();
    return n;
  }
  void expect_block_end() {
    if (cur().kind != TokenKind::kBlockEnd) error("expected end of tag");
    advance();
  }
  ExprPtr make(Expr::Kind kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

  // ---- statements ----
  // Parses until a block tag named in `ends` (consumed up to its name; *end receives it).
  Body parse_body(std::initializer_list<const char*> ends, std::string* end) {
    DepthGuard guard(&depth_, cur().line);
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.kind == TokenKind::kEof) {
        if (ends.size() == 0) return body;
        error(std::string("missing '{% ") + *ends.begin() + " %}'");
      }
      if (t.kind == TokenKind::kText) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kText;
        s->line = t.line;
        s->text = t.text;
        body.push_back(std::move(s));
        advance();
      } else if (t.kind == TokenKind::kVarBegin) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kOutput;
        s->line = t.line;
        advance();
        s->expr = parse_tuple();
        if (cur().kind != TokenKind::kVarEnd) error("expected '}}'");
        advance();
        body.push_back(std::move(s));
      } else if (t.kind == TokenKind::kBlockBegin) {
        const Token& name = peek();
        if (name.kind != TokenKind::kName) {
          advance();
          error("expected a tag name");
        }
        for (const char* e : ends) {
          if (name.text == e) {
            advance();
            advance();
            *end = name.text;
            return body;
          }
        }
        advance();
        body.push_back(parse_statement());
      } else {
        error("unexpected token");
      }
    }
  }

  StmtPtr parse_statement() {
    auto s = std::make_unique<Stmt>();
    s->line = cur().line;
    std::string tag = expect_name();
    std::string end;
    if (tag == "if") {
      s->kind = Stmt::Kind::kIf;
      s->conditions.push_back(parse_tuple());
      expect_block_end();
      while (true) {
        s->bodies.push_back(parse_body({"elif", "else", "endif"}, &end));
        if (end == "elif") {
          s->conditions.push_back(parse_tuple());
          expect_block_end();
        } else if (end == "else") {
          expect_block_end();
          s->else_body = parse_body({"endif"}, &end);
          break;
        } else {
          break;
        }
      }
    } else if (tag == "for") {
      s->kind = Stmt::Kind::kFor;
      parse_targets(s.get(), false);
      if (!skip_name("in")) error("expected 'in'");
      s->expr = parse_tuple(/*with_condexpr=*/false);
      if (skip_name("if")) s->cond = parse_expression();
      if (skip_name("recursive")) error("recursive loops are not supported");
      expect_block_end();
      ++loop_depth_;
      s->body = parse_body({"else", "endfor"}, &end);
      --loop_depth_;
      if (end == "else") {
        expect_block_end();
        s->else_body = parse_body({"endfor"}, &end);
      }
    } else if (tag == "set") {
      parse_targets(s.get(), true);
      if (skip_op("=")) {
        s->kind = Stmt::Kind::kSet;
        s->expr = parse_tuple();
        expect_block_end();
        return s;
      }
      if (s->targets.size() != 1 || !s->attr.empty()) error("block set takes one name");
      s->kind = Stmt::Kind::kSetBlock;
      if (is_op("|")) s->expr = parse_filter_chain(nullptr);
      expect_block_end();
      s->body = parse_body({"endset"}, &end);
    } else if (tag == "macro") {
      s->kind = Stmt::Kind::kMacro;
      s->name = expect_name();
      expect_op("(");
      while (!is_op(")")) {
        if (!s->targets.empty()) expect_op(",");
        if (is_op(")")) break;
        s->targets.push_back(expect_name());
        s->defaults.push_back(skip_op("=") ? parse_expression() : nullptr);
      }
      expect_op(")");
      expect_block_end();
      int saved_loop_depth = std::exchange(loop_depth_, 0);
      s->body = parse_body({"endmacro"}, &end);
      loop_depth_ = saved_loop_depth;
    } else if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0)
        fail("'" + tag + "' outside of a loop at line " + std::to_string(s->line));
      s->kind = tag == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue;
    } else if (tag == "generation") {
      s->kind = Stmt::Kind::kGeneration;
      expect_block_end();
      s->body = parse_body({"endgeneration"}, &end);
    } else if (tag == "filter") {
      s->kind = Stmt::Kind::kFilterBlock;
      s->expr = parse_filter_chain(nullptr, /*leading_pipe=*/false);
      expect_block_end();
      s->body = parse_body({"endfilter"}, &end);
    } else {
      fail("unsupported tag '" + tag + "' at line " + std::to_string(s->line));
    }
    expect_block_end();
    return s;
  }

  // for/set targets: `a`, `a, b`, `(a, b)`, or (set only) `ns.attr`.
  void parse_targets(Stmt* s, bool allow_attr) {
    bool paren = skip_op("(");
    s->targets.push_back(expect_name());
    if (allow_attr && !paren && skip_op(".")) {
      s->attr = expect_name();
      return;
    }
    while (skip_op(",")) {
      if (cur().kind != TokenKind::kName) break;
      s->targets.push_back(expect_name());
    }
    if (paren) expect_op(")");
  }

  // ---- expressions ----
  ExprPtr parse_tuple(bool with_condexpr = true) {
    int line = cur().line;
    ExprPtr first = with_condexpr ? parse_expression() : parse_or();
    if (!is_op(",")) return first;
    auto t = make(Expr::Kind::kTuple, line);
    attach(t, std::move(first));
    while (skip_op(",")) {
      if (cur().kind == TokenKind::kVarEnd || cur().kind == TokenKind::kBlockEnd || is_op(")") ||
          is_name("if") || is_name("recursive")) {
        break;
      }
      attach(t, with_condexpr ? parse_expression() : parse_or());
    }
    return t;
  }

  ExprPtr parse_expression() {
    DepthGuard guard(&depth_, cur().line);
    ExprPtr e = parse_or();
    while (is_name("if")) {
      int line = cur().line;
      advance();
      auto c = make(Expr::Kind::kCondExpr, line);
      attach(c, std::move(e));
      attach(c, parse_or());
      attach(c, skip_name("else") ? parse_expression() : nullptr);
      e = std::move(c);
    }
    return e;
  }

  // Adds a child (or a null placeholder) to e, keeping e's depth and its bound.
  static void attach(const ExprPtr& e, ExprPtr child) { attach(e.get(), std::move(child)); }
  static void attach(Expr* e, ExprPtr child) {
    if (child) {
      e->depth = std::max(e->depth, child->depth + 1);
      if (e->depth > kMaxExprDepth) {
        fail("expression nested too deeply (more than " + std::to_string(kMaxExprDepth) +
             " levels of operators, attributes, calls or filters) at line " +
             std::to_string(e->line));
      }
    }
    e->args.push_back(std::move(child));
  }

  ExprPtr binary(Expr::Kind kind, ExprPtr a, ExprPtr b, std::string op = {}) {
    auto e = make(kind, a->line);
    e->name = std::move(op);
    attach(e, std::move(a));
    attach(e, std::move(b));
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (skip_name("or")) e = binary(Expr::Kind::kOr, std::move(e), parse_and());
    return e;
  }

  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (skip_name("and")) e = binary(Expr::Kind::kAnd, std::move(e), parse_not());
    return e;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard guard(&depth_, cur().line);
      auto e = make(Expr::Kind::kNot, cur().line);
      advance();
      attach(e, parse_not());
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (cur().kind == TokenKind::kOp &&
          (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == "<=" ||
           cur().text == ">" || cur().text == ">=")) {
        op = cur().text;
        advance();
      } else if (is_name("in")) {
        op = "in";
        advance();
      } else if (is_name("not") && peek().kind == TokenKind::kName && peek().text == "in") {
        op = "notin";
        advance();
        advance();
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(Expr::Kind::kCompare, first->line);
        attach(cmp, std::move(first));
      }
      cmp->ops.push_back(op);
      attach(cmp, parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      std::string op = cur().text;
      advance();
      e = binary(Expr::Kind::kBinary, std::move(e), parse_concat(), op);
    }
    return e;
  }

  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (skip_op("~")) e = binary(Expr::Kind::kBinary, std::move(e), parse_math2(), "~");
    return e;
  }

  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      std::string op = cur().text;
      advance();
      e = binary(Expr::Kind::kBinary, std::move(e), parse_pow(), op);
    }
    return e;
  }

  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (skip_op("**")) e = binary(Expr::Kind::kBinary, std::move(e), parse_unary(true), "**");
    return e;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(&depth_, cur().line);
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      e = make(is_op("-") ? Expr::Kind::kNeg : Expr::Kind::kPos, cur().line);
      advance();
      attach(e, parse_unary(false));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    int line = t.line;
    if (t.kind == TokenKind::kName) {
      std::string n = t.text;
      advance();
      if (n == "true" || n == "True") return literal(Value::boolean(true), line);
      if (n == "false" || n == "False") return literal(Value::boolean(false), line);
      if (n == "none" || n == "None") return literal(Value::none(), line);
      auto e = make(Expr::Kind::kName, line);
      e->name = n;
      return e;
    }
    if (t.kind == TokenKind::kString) {
      std::string s;
      while (cur().kind == TokenKind::kString) {  // adjacent literals concatenate
        s += cur().text;
        advance();
      }
      return literal(Value::string(std::move(s)), line);
    }
    if (t.kind == TokenKind::kInt) {
      Value v = Value::integer(t.int_value);
      advance();
      return literal(std::move(v), line);
    }
    if (t.kind == TokenKind::kFloat) {
      Value v = Value::floating(t.float_value);
      advance();
      return literal(std::move(v), line);
    }
    if (skip_op("(")) {
      if (skip_op(")")) return make(Expr::Kind::kTuple, line);
      ExprPtr first = parse_expression();
      if (skip_op(")")) return first;
      auto tup = make(Expr::Kind::kTuple, line);
      attach(tup, std::move(first));
      while (skip_op(",")) {
        if (is_op(")")) break;
        attach(tup, parse_expression());
      }
      expect_op(")");
      return tup;
    }
    if (skip_op("[")) {
      auto list = make(Expr::Kind::kList, line);
      while (!is_op("]")) {
        if (!list->args.empty()) expect_op(",");
        if (is_op("]")) break;
        attach(list, parse_expression());
      }
      expect_op("]");
      return list;
    }
    if (skip_op("{")) {
      auto dict = make(Expr::Kind::kDict, line);
      while (!is_op("}")) {
        if (!dict->args.empty()) expect_op(",");
        if (is_op("}")) break;
        attach(dict, parse_expression());
        expect_op(":");
        attach(dict, parse_expression());
      }
      expect_op("}");
      return dict;
    }
    error("expected an expression");
  }

  ExprPtr literal(Value v, int line) {
    auto e = make(Expr::Kind::kLiteral, line);
    e->literal = std::move(v);
    return e;
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".")) {
        int line = cur().line;
        advance();
        if (cur().kind == TokenKind::kInt) {
          auto g = make(Expr::Kind::kGetItem, line);
          attach(g, std::move(e));
          attach(g, literal(Value::integer(cur().int_value), line));
          advance();
          e = std::move(g);
        } else {
          auto g = make(Expr::Kind::kGetAttr, line);
          g->name = expect_name();
          attach(g, std::move(e));
          e = std::move(g);
        }
      } else if (is_op("[")) {
        e = parse_subscript(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj) {
    int line = cur().line;
    expect_op("[");
    ExprPtr parts[3];
    bool is_slice = false;
    for (int i = 0; i < 3; ++i) {
      if (!is_op(":") && !is_op("]")) parts[i] = parse_expression();
      if (i < 2 && skip_op(":")) {
        is_slice = true;
        continue;
      }
      break;
    }
    expect_op("]");
    if (!is_slice) {
      if (!parts[0]) error("expected an index");
      auto g = make(Expr::Kind::kGetItem, line);
      attach(g, std::move(obj));
      attach(g, std::move(parts[0]));
      return g;
    }
    auto s = make(Expr::Kind::kSlice, line);
    attach(s, std::move(obj));
    for (auto& p : parts) attach(s, std::move(p));
    return s;
  }

  // Parses "(args)" into e->args (after any already there) and e->kwarg_names.
  void parse_call_args(Expr* e) {
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (is_op(")")) break;
      if (is_op("*") || is_op("**")) error("*args and **kwargs are not supported");
      if (cur().kind == TokenKind::kName && peek().kind == TokenKind::kOp && peek().text == "=") {
        e->kwarg_names.push_back(cur().text);
        advance();
        advance();
        attach(e, parse_expression());
      } else {
        if (!e->kwarg_names.empty()) error("positional argument after keyword argument");
        attach(e, parse_expression());
      }
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto c = make(Expr::Kind::kCall, callee->line);
    attach(c, std::move(callee));
    parse_call_args(c.get());
    return c;
  }

  std::string dotted_name() {
    std::string n = expect_name();
    while (is_op(".") && peek().kind == TokenKind::kName) {
      advance();
      n += "." + expect_name();
    }
    return n;
  }

  // `|f1(args)|f2...` applied to subject (null inside {% filter %} and block set).
  ExprPtr parse_filter_chain(ExprPtr subject, bool leading_pipe = true) {
    bool first = true;
    while (first ? (!leading_pipe || is_op("|")) : is_op("|")) {
      if (leading_pipe || !first) expect_op("|");
      first = false;
      auto f = make(Expr::Kind::kFilter, cur().line);
      f->name = dotted_name();
      attach(f, std::move(subject));
      if (is_op("(")) parse_call_args(f.get());
      subject = std::move(f);
    }
    return subject;
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        e = parse_filter_chain(std::move(e));
      } else if (is_name("is")) {
        advance();
        auto t = make(Expr::Kind::kTest, cur().line);
        t->negated = skip_name("not");
        t->name = dotted_name();
        attach(t, std::move(e));
        if (is_op("(")) {
          parse_call_args(t.get());
        } else if ((cur().kind == TokenKind::kName || cur().kind == TokenKind::kString ||
                    cur().kind == TokenKind::kInt || cur().kind == TokenKind::kFloat ||
                    is_op("(") || is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
          if (is_name("is")) error("tests cannot be chained with 'is'");
          attach(t, parse_postfix(parse_primary()));
        }
        e = std::move(t);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;  // enclosing for-loop bodies within the current macro
};

}  // namespace

Body parse_template(std::string_view source) {
  return Parser(lex_template(source)).parse_all();
}

}  // namespace carpool::chat
