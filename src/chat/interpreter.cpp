#include "chat/interpreter.h"

#include <ctime>
#include <unordered_map>

#include "chat/args.h"
#include "chat/eval_context.h"
#include "chat/filters.h"
#include "chat/format.h"
#include "chat/operators.h"

namespace carpool::chat {

namespace {

// Jinja's sandbox refuses ranges longer than this.
constexpr int64_t kMaxRange = 100000;

struct Scope {
  std::unordered_map<std::string, Value> vars;
  Scope* parent = nullptr;
};

enum class Flow { kNormal, kBreak, kContinue };

class Interpreter {
 public:
  Interpreter(const RenderLimits& limits, int64_t now_unix_s) : ctx_(limits, now_unix_s) {
    root_.parent = &globals_;
    scope_ = &root_;
    install_globals();
  }

  ~Interpreter() {
    // Namespaces may reference themselves (ns.x = ns); clearing them breaks such cycles.
    for (Value& ns : namespaces_) ns.mutable_namespace().entries.clear();
  }

  std::string run(const Body& body, const ValueDict& context) {
    for (const auto& [k, v] : context.entries) {
      if (k.is_string()) root_.vars[k.as_string()] = v;
    }
    std::string out;
    out_ = &out;
    if (exec(body) != Flow::kNormal) fail("break or continue outside a loop");
    return out;
  }

 private:
  // ---- globals ----
  void install_globals() {
    EvalContext* ctx = &ctx_;
    globals_.vars["raise_exception"] = Value::callable("raise_exception", [](CallArgs& a) -> Value {
      ArgReader r("raise_exception", a, {"message"});
      fail("template raised an exception: " + python_str(r.get_or(0, Value::string(""))));
    });
    globals_.vars["range"] = Value::callable("range", [ctx](CallArgs& a) {
      ArgReader r("range", a, {"a", "b", "step"});
      int64_t start = 0, stop = 0, step = r.int_or(2, 1);
      if (r.has(1)) {
        start = r.int_or(0, 0);
        stop = r.int_or(1, 0);
      } else {
        stop = r.int_or(0, 0);
      }
      if (step == 0) fail("range() arg 3 must not be zero");
      ValueList out;
      for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
        if (out.size() % 1024 == 0) ctx->built(1024 * kListItemBytes);
        if (static_cast<int64_t>(out.size()) >= kMaxRange) {
          fail("range too big: the sandbox allows at most " + std::to_string(kMaxRange) + " items");
        }
        out.push_back(Value::integer(i));
        if ((step > 0 && i > INT64_MAX - step) || (step < 0 && i < INT64_MIN - step)) break;
      }
      ctx->charge(static_cast<int64_t>(out.size()));
      return Value::list(std::move(out));
    });
    globals_.vars["namespace"] = Value::callable("namespace", [this](CallArgs& a) {
      ValueDict attrs;
      for (const Value& p : a.positional) {
        if (!p.is_dict()) fail("namespace() positional argument must be a mapping");
        for (const auto& [k, v] : p.as_dict().entries) attrs.set(k, v);
      }
      for (auto& [k, v] : a.keyword) attrs.set(Value::string(k), v);
      Value ns = Value::namespace_object(std::move(attrs));
      namespaces_.push_back(ns);
      return ns;
    });
    globals_.vars["dict"] = Value::callable("dict", [](CallArgs& a) {
      ValueDict d;
      for (const Value& p : a.positional) {
        if (!p.is_dict()) fail("dict() positional argument must be a mapping");
        for (const auto& [k, v] : p.as_dict().entries) d.set(k, v);
      }
      for (auto& [k, v] : a.keyword) d.set(Value::string(k), v);
      return Value::dict(std::move(d));
    });
    globals_.vars["strftime_now"] = Value::callable("strftime_now", [ctx](CallArgs& a) {
      ArgReader r("strftime_now", a, {"format"});
      const std::string& fmt = r.require_string(0);
      if (fmt.size() > 256) fail("strftime_now format too long");
      std::time_t t = static_cast<std::time_t>(ctx->now_unix_s());
      std::tm tm{};
      gmtime_r(&t, &tm);
      char buf[2048];
      size_t n = std::strftime(buf, sizeof(buf), fmt.c_str(), &tm);
      return Value::string(std::string(buf, n));
    });
  }

  // ---- statements ----
  Flow exec(const Body& body) {
    for (const StmtPtr& s : body) {
      Flow f = exec_stmt(*s);
      if (f != Flow::kNormal) return f;
    }
    return Flow::kNormal;
  }

  void emit(const std::string& s) {
    ctx_.charge_bytes(s.size());
    if (out_->size() + s.size() > ctx_.limits().max_output_bytes) {
      fail("template output exceeds the limit of " +
           std::to_string(ctx_.limits().max_output_bytes) + " bytes");
    }
    out_->append(s);
  }

  Flow exec_stmt(const Stmt& s) {
    ctx_.charge();
    switch (s.kind) {
      case Stmt::Kind::kText:
        emit(s.text);
        return Flow::kNormal;
      case Stmt::Kind::kOutput:
        emit(python_str(eval(*s.expr)));
        return Flow::kNormal;
      case Stmt::Kind::kIf:
        for (size_t i = 0; i < s.conditions.size(); ++i) {
          if (eval(*s.conditions[i]).truthy()) return exec(s.bodies[i]);
        }
        return exec(s.else_body);
      case Stmt::Kind::kFor:
        exec_for(s);
        return Flow::kNormal;
      case Stmt::Kind::kSet:
        exec_set(s);
        return Flow::kNormal;
      case Stmt::Kind::kSetBlock: {
        Value v = Value::string(capture(s.body));
        if (s.expr) v = eval_filter_chain(*s.expr, v);
        scope_->vars[s.targets[0]] = std::move(v);
        return Flow::kNormal;
      }
      case Stmt::Kind::kMacro: {
        const Stmt* macro = &s;
        scope_->vars[s.name] =
            Value::callable(s.name, [this, macro](CallArgs& a) { return call_macro(*macro, a); });
        return Flow::kNormal;
      }
      case Stmt::Kind::kBreak:
        return Flow::kBreak;
      case Stmt::Kind::kContinue:
        return Flow::kContinue;
      case Stmt::Kind::kGeneration:
        return exec(s.body);
      case Stmt::Kind::kFilterBlock:
        emit(python_str(eval_filter_chain(*s.expr, Value::string(capture(s.body)))));
        return Flow::kNormal;
    }
    return Flow::kNormal;
  }

  // Renders `body` into a separate buffer (macro bodies, block sets, filter blocks).
  std::string capture(const Body& body) {
    std::string buf;
    std::string* saved = out_;
    out_ = &buf;
    Flow f = exec(body);
    out_ = saved;
    if (f != Flow::kNormal) fail("break or continue outside a loop");
    return buf;
  }

  void assign_targets(Scope& scope, const std::vector<std::string>& targets, const Value& v) {
    if (targets.size() == 1) {
      scope.vars[targets[0]] = v;
      return;
    }
    ValueList items = iterate(v);
    if (items.size() != targets.size()) {
      fail("cannot unpack " + std::to_string(items.size()) + " values into " +
           std::to_string(targets.size()) + " names");
    }
    for (size_t i = 0; i < targets.size(); ++i) scope.vars[targets[i]] = items[i];
  }

  void exec_set(const Stmt& s) {
    Value v = eval(*s.expr);
    if (s.attr.empty()) {
      assign_targets(*scope_, s.targets, v);
      return;
    }
    Value ns = lookup(s.targets[0]);
    if (!ns.is_namespace()) {
      fail("cannot assign attribute on non-namespace object '" + s.targets[0] + "'");
    }
    ns.mutable_namespace().set(Value::string(s.attr), std::move(v));
  }

  void exec_for(const Stmt& s) {
    ValueList all = iterate(eval(*s.expr));
    Scope* outer = scope_;
    ValueList items;
    if (s.cond) {
      for (const Value& item : all) {
        ctx_.count_iteration();
        Scope filter_scope;
        filter_scope.parent = outer;
        assign_targets(filter_scope, s.targets, item);
        scope_ = &filter_scope;
        bool keep = eval(*s.cond).truthy();
        scope_ = outer;
        if (keep) items.push_back(item);
      }
    } else {
      items = std::move(all);
    }
    int64_t n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      ctx_.count_iteration();
      Scope iteration;
      iteration.parent = outer;
      assign_targets(iteration, s.targets, items[i]);
      iteration.vars["loop"] = loop_object(items, i);
      scope_ = &iteration;
      Flow f = exec(s.body);
      scope_ = outer;
      if (f == Flow::kBreak) break;
    }
    if (n == 0) exec(s.else_body);
  }

  Value loop_object(const ValueList& items, int64_t i) {
    int64_t n = static_cast<int64_t>(items.size());
    ValueDict d;
    d.set(Value::string("index"), Value::integer(i + 1));
    d.set(Value::string("index0"), Value::integer(i));
    d.set(Value::string("revindex"), Value::integer(n - i));
    d.set(Value::string("revindex0"), Value::integer(n - i - 1));
    d.set(Value::string("first"), Value::boolean(i == 0));
    d.set(Value::string("last"), Value::boolean(i == n - 1));
    d.set(Value::string("length"), Value::integer(n));
    d.set(Value::string("depth"), Value::integer(1));
    d.set(Value::string("depth0"), Value::integer(0));
    if (i > 0) d.set(Value::string("previtem"), items[i - 1]);
    if (i + 1 < n) d.set(Value::string("nextitem"), items[i + 1]);
    d.set(Value::string("cycle"), Value::callable("cycle", [i](CallArgs& a) {
            if (a.positional.empty()) fail("no items for cycling given");
            return a.positional[static_cast<size_t>(i) % a.positional.size()];
          }));
    return Value::dict(std::move(d));
  }

  Value call_macro(const Stmt& m, CallArgs& args) {
    if (call_depth_ >= ctx_.limits().max_recursion_depth) {
      fail("template exceeded its recursion limit of " +
           std::to_string(ctx_.limits().max_recursion_depth) + " nested macro calls");
    }
    if (args.positional.size() > m.targets.size()) {
      fail("macro '" + m.name + "' takes not more than " + std::to_string(m.targets.size()) +
           " argument(s)");
    }
    // The call counts from here: a default argument that calls the macro again is a nested call
    // (it recursed without limit when the count began after the defaults).
    ++call_depth_;
    Scope scope;
    scope.parent = &root_;
    Scope* saved = scope_;
    scope_ = &scope;
    for (auto& [k, v] : args.keyword) {
      bool known = false;
      for (const std::string& t : m.targets) known = known || t == k;
      if (!known) fail("macro '" + m.name + "' takes no keyword argument '" + k + "'");
    }
    for (size_t i = 0; i < m.targets.size(); ++i) {
      Value v;
      bool given = false;
      if (i < args.positional.size()) {
        v = args.positional[i];
        given = true;
      }
      for (auto& [k, kv] : args.keyword) {
        if (k == m.targets[i]) {
          if (given) fail("macro '" + m.name + "' got multiple values for '" + k + "'");
          v = kv;
          given = true;
        }
      }
      if (!given && m.defaults[i]) v = eval(*m.defaults[i]);
      if (!given && !m.defaults[i]) v = Value::undefined(m.targets[i]);
      scope.vars[m.targets[i]] = v;
    }
    std::string out = capture(m.body);
    --call_depth_;
    scope_ = saved;
    return Value::string(std::move(out));
  }

  // ---- expressions ----
  Value lookup(const std::string& name) {
    for (Scope* s = scope_; s != nullptr; s = s->parent) {
      auto it = s->vars.find(name);
      if (it != s->vars.end()) return it->second;
    }
    return Value::undefined(name);
  }

  CallArgs eval_args(const Expr& e, size_t first) {
    CallArgs a;
    size_t n_kw = e.kwarg_names.size();
    size_t n_pos = e.args.size() - first - n_kw;
    for (size_t i = 0; i < n_pos; ++i) a.positional.push_back(eval(*e.args[first + i]));
    for (size_t i = 0; i < n_kw; ++i) {
      a.keyword.emplace_back(e.kwarg_names[i], eval(*e.args[first + n_pos + i]));
    }
    return a;
  }

  // A filter chain whose innermost subject is null receives `subject`.
  Value eval_filter_chain(const Expr& e, const Value& subject) {
    Value inner = e.args[0] ? eval_filter_chain(*e.args[0], subject) : subject;
    CallArgs a = eval_args(e, 1);
    return apply_filter(ctx_, e.name, inner, a);
  }

  Value eval(const Expr& e) {
    ctx_.charge();
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return e.literal;
      case Expr::Kind::kName:
        return lookup(e.name);
      case Expr::Kind::kList:
      case Expr::Kind::kTuple: {
        ValueList items;
        for (const ExprPtr& x : e.args) items.push_back(eval(*x));
        return Value::list(std::move(items), e.kind == Expr::Kind::kTuple);
      }
      case Expr::Kind::kDict: {
        ValueDict d;
        for (size_t i = 0; i + 1 < e.args.size(); i += 2)
          d.set(eval(*e.args[i]), eval(*e.args[i + 1]));
        return Value::dict(std::move(d));
      }
      case Expr::Kind::kGetAttr:
        return get_attr(ctx_, eval(*e.args[0]), e.name);
      case Expr::Kind::kGetItem: {
        Value obj = eval(*e.args[0]);
        return get_item(ctx_, obj, eval(*e.args[1]));
      }
      case Expr::Kind::kSlice: {
        Value obj = eval(*e.args[0]);
        Value parts[3];
        for (int i = 0; i < 3; ++i) {
          if (e.args[i + 1]) parts[i] = eval(*e.args[i + 1]);
        }
        return slice(ctx_, obj, parts[0], parts[1], parts[2]);
      }
      case Expr::Kind::kCall: {
        Value fn = eval(*e.args[0]);
        CallArgs a = eval_args(e, 1);
        return call_value(ctx_, fn, a);
      }
      case Expr::Kind::kFilter: {
        Value subject = eval(*e.args[0]);
        CallArgs a = eval_args(e, 1);
        return apply_filter(ctx_, e.name, subject, a);
      }
      case Expr::Kind::kTest: {
        Value subject = eval(*e.args[0]);
        CallArgs a = eval_args(e, 1);
        bool r = apply_test(ctx_, e.name, subject, a);
        return Value::boolean(e.negated ? !r : r);
      }
      case Expr::Kind::kNeg:
        return negate(eval(*e.args[0]));
      case Expr::Kind::kPos: {
        Value v = eval(*e.args[0]);
        require_defined(v);
        if (!v.is_number()) fail("bad operand type for unary +: '" + v.type_name() + "'");
        return v.is_bool() ? Value::integer(v.as_int()) : v;
      }
      case Expr::Kind::kNot:
        return Value::boolean(!eval(*e.args[0]).truthy());
      case Expr::Kind::kBinary: {
        Value a = eval(*e.args[0]);
        return binary_op(ctx_, e.name, a, eval(*e.args[1]));
      }
      case Expr::Kind::kCompare: {
        Value left = eval(*e.args[0]);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value right = eval(*e.args[i + 1]);
          if (!compare_op(ctx_, e.ops[i], left, right)) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case Expr::Kind::kAnd: {
        Value a = eval(*e.args[0]);
        return a.truthy() ? eval(*e.args[1]) : a;
      }
      case Expr::Kind::kOr: {
        Value a = eval(*e.args[0]);
        return a.truthy() ? a : eval(*e.args[1]);
      }
      case Expr::Kind::kCondExpr: {
        if (eval(*e.args[1]).truthy()) return eval(*e.args[0]);
        return e.args[2] ? eval(*e.args[2]) : Value::undefined("conditional expression");
      }
    }
    fail("unknown expression");
  }

  EvalContext ctx_;
  Scope globals_;
  Scope root_;
  Scope* scope_ = nullptr;
  std::string* out_ = nullptr;
  int call_depth_ = 0;
  std::vector<Value> namespaces_;
};

}  // namespace

std::string render_body(const Body& body, const ValueDict& context, const RenderLimits& limits,
                        int64_t now_unix_s) {
  Interpreter interp(limits, now_unix_s);
  return interp.run(body, context);
}

}  // namespace carpool::chat
