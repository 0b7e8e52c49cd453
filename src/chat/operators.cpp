#include "chat/operators.h"

#include <cmath>

#include "chat/args.h"
#include "chat/format.h"
#include "chat/string_ops.h"
#include "chat/utf8.h"

namespace carpool::chat {

namespace {

[[noreturn]] void type_error(const std::string& op, const Value& a, const Value& b) {
  fail("unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" + b.type_name() +
       "'");
}

bool is_integral(const Value& v) {
  return v.is_int() || v.is_bool();
}

void check_overflow(bool overflow) {
  if (overflow) fail("integer overflow");
}

int64_t checked_add(int64_t a, int64_t b) {
  int64_t r;
  check_overflow(__builtin_add_overflow(a, b, &r));
  return r;
}
int64_t checked_sub(int64_t a, int64_t b) {
  int64_t r;
  check_overflow(__builtin_sub_overflow(a, b, &r));
  return r;
}
int64_t checked_mul(int64_t a, int64_t b) {
  int64_t r;
  check_overflow(__builtin_mul_overflow(a, b, &r));
  return r;
}

int64_t floor_div(int64_t a, int64_t b) {
  if (b == 0) fail("integer division or modulo by zero");
  if (a == INT64_MIN && b == -1) fail("integer overflow");
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t floor_mod(int64_t a, int64_t b) {
  if (b == 0) fail("integer division or modulo by zero");
  if (b == -1) return 0;
  int64_t m = a % b;
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

Value repeat(EvalContext& ctx, const Value& seq, int64_t n) {
  if (n <= 0) return seq.is_string() ? Value::string("") : Value::list({}, seq.is_tuple());
  size_t unit = seq.is_string() ? seq.as_string().size() : seq.as_list().size();
  if (unit != 0 && static_cast<uint64_t>(n) > ctx.limits().max_output_bytes / unit + 1) {
    ctx.check_size(ctx.limits().max_output_bytes + 1);
  }
  ctx.check_size(unit * static_cast<size_t>(n));
  if (seq.is_string()) {
    ctx.built(unit * static_cast<size_t>(n));
  } else {
    ctx.build_list(unit * static_cast<size_t>(n));
  }
  ctx.charge_bytes(unit * static_cast<size_t>(n));
  if (seq.is_string()) {
    std::string out;
    out.reserve(unit * n);
    for (int64_t i = 0; i < n; ++i) out += seq.as_string();
    return Value::string(std::move(out));
  }
  ValueList out;
  out.reserve(unit * n);
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.as_list().begin(), seq.as_list().end());
  return Value::list(std::move(out), seq.is_tuple());
}

// Python slice.indices(): normalizes one bound for a sequence of length n.
int64_t slice_bound(const Value& v, int64_t n, int64_t step, bool is_start) {
  int64_t lower = step < 0 ? -1 : 0;
  int64_t upper = step < 0 ? n - 1 : n;
  if (v.is_undefined() || v.is_none()) {
    return is_start ? (step < 0 ? upper : lower) : (step < 0 ? lower : upper);
  }
  if (!is_integral(v)) fail("slice indices must be integers or None");
  int64_t i = v.as_int();
  if (i < 0) {
    i = i < -n ? lower : i + n;
    if (i < lower) i = lower;
  } else if (i > upper) {
    i = upper;
  }
  return i;
}

Value method(const std::string& name, std::function<Value(CallArgs&)> fn) {
  return Value::callable(name, std::move(fn));
}

bool starts_or_ends(const std::string& s, const Value& affix, bool at_start, const char* fn) {
  auto test = [&](const Value& a) {
    if (!a.is_string()) fail(std::string(fn) + "() argument must be str or a tuple of str");
    const std::string& x = a.as_string();
    if (x.size() > s.size()) return false;
    return at_start ? s.compare(0, x.size(), x) == 0
                    : s.compare(s.size() - x.size(), x.size(), x) == 0;
  };
  if (affix.is_list()) {
    for (const Value& a : affix.as_list()) {
      if (test(a)) return true;
    }
    return false;
  }
  return test(affix);
}

std::optional<std::string> optional_chars(const ArgReader& r, size_t i) {
  const Value* v = r.get(i);
  if (v == nullptr || v->is_none()) return std::nullopt;
  if (!v->is_string()) fail("strip arg must be None or str");
  return v->as_string();
}

Value split_result(std::vector<std::string> parts) {
  ValueList out;
  out.reserve(parts.size());
  for (auto& p : parts) out.push_back(Value::string(std::move(p)));
  return Value::list(std::move(out));
}

Value string_method(EvalContext& ctx, const std::string& s, const std::string& name) {
  EvalContext* c = &ctx;
  if (name == "startswith" || name == "endswith") {
    bool at_start = name == "startswith";
    return method(name, [s, at_start, name](CallArgs& a) {
      ArgReader r(name, a, {"prefix"});
      return Value::boolean(starts_or_ends(s, r.require(0), at_start, name.c_str()));
    });
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    StripSide side = name == "strip"    ? StripSide::kBoth
                     : name == "lstrip" ? StripSide::kLeft
                                        : StripSide::kRight;
    return method(name, [s, side, name, c](CallArgs& a) {
      ArgReader r(name, a, {"chars"});
      c->charge_bytes(s.size());
      return Value::string(py_strip(s, side, optional_chars(r, 0)));
    });
  }
  if (name == "split") {
    return method(name, [s, c](CallArgs& a) {
      ArgReader r("split", a, {"sep", "maxsplit"});
      std::optional<std::string> sep;
      if (r.has(0) && !r.get(0)->is_none()) sep = r.require_string(0);
      c->charge_bytes(s.size());
      // At most the sandbox's list size: split one part further, to see whether there are more.
      const int64_t cap = static_cast<int64_t>(c->limits().max_output_bytes / kListItemBytes);
      const int64_t asked = r.int_or(1, -1);
      const bool capped = asked < 0 || asked >= cap;
      std::vector<std::string> parts = py_split(s, sep, capped ? cap : asked);
      c->build_list(parts.size() + (capped && static_cast<int64_t>(parts.size()) > cap ? 1 : 0));
      return split_result(std::move(parts));
    });
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    return method(name, [s, name, c](CallArgs& a) {
      ArgReader r(name, a, {});
      c->charge_bytes(s.size());
      if (name == "upper") return Value::string(py_upper(s));
      if (name == "lower") return Value::string(py_lower(s));
      if (name == "title") return Value::string(py_title(s));
      return Value::string(py_capitalize(s));
    });
  }
  if (name == "replace") {
    return method(name, [s, c](CallArgs& a) {
      ArgReader r("replace", a, {"old", "new", "count"});
      c->charge_bytes(s.size());
      std::string out = py_replace(s, r.require_string(0), r.require_string(1), r.int_or(2, -1),
                                   c->limits().max_output_bytes);
      c->charge_bytes(out.size());
      return Value::string(std::move(out));
    });
  }
  if (name == "find" || name == "count") {
    return method(name, [s, name, c](CallArgs& a) {
      ArgReader r(name, a, {"sub"});
      const std::string& sub = r.require_string(0);
      c->charge_bytes(s.size());
      if (name == "find") {
        size_t hit = s.find(sub);
        return Value::integer(hit == std::string::npos ? -1
                                                       : static_cast<int64_t>(utf8_length(
                                                             std::string_view(s).substr(0, hit))));
      }
      if (sub.empty()) return Value::integer(static_cast<int64_t>(utf8_length(s)) + 1);
      int64_t n = 0;
      for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
      return Value::integer(n);
    });
  }
  if (name == "join") {
    return method(name, [s, c](CallArgs& a) {
      ArgReader r("join", a, {"iterable"});
      std::string out;
      bool first = true;
      for (const Value& v : iterate(r.require(0))) {
        if (!v.is_string()) fail("join() expects str items, got " + v.type_name());
        if (!first) out += s;
        first = false;
        out += v.as_string();
        c->check_size(out.size());
      }
      c->charge_bytes(out.size());
      return Value::string(std::move(out));
    });
  }
  if (name == "isdigit" || name == "isalpha" || name == "isspace" || name == "isalnum") {
    return method(name, [s, name](CallArgs& a) {
      ArgReader r(name, a, {});
      std::u32string cps = utf8_decode(s);
      if (cps.empty()) return Value::boolean(false);
      for (char32_t cp : cps) {
        bool digit = cp >= '0' && cp <= '9';
        bool alpha = (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
        bool ok = name == "isdigit"   ? digit
                  : name == "isalpha" ? alpha
                  : name == "isalnum" ? (digit || alpha)
                                      : is_unicode_space(cp);
        if (!ok) return Value::boolean(false);
      }
      return Value::boolean(true);
    });
  }
  return Value::undefined("str object has no attribute '" + name + "'");
}

Value dict_method(const Value& d, const std::string& name) {
  if (name == "get") {
    return method(name, [d](CallArgs& a) {
      ArgReader r("get", a, {"key", "default"});
      const Value* v = d.as_dict().find(r.require(0));
      return v ? *v : r.get_or(1, Value::none());
    });
  }
  if (name == "items" || name == "keys" || name == "values") {
    return method(name, [d, name](CallArgs& a) {
      ArgReader r(name, a, {});
      ValueList out;
      for (const auto& [k, v] : d.as_dict().entries) {
        if (name == "items") {
          out.push_back(Value::list({k, v}, /*is_tuple=*/true));
        } else {
          out.push_back(name == "keys" ? k : v);
        }
      }
      return Value::list(std::move(out));
    });
  }
  return Value();
}

}  // namespace

void require_defined(const Value& v) {
  if (v.is_undefined()) {
    fail("'" + (v.undefined_name().empty() ? std::string("value") : v.undefined_name()) +
         "' is undefined");
  }
}

Value binary_op(EvalContext& ctx, const std::string& op, const Value& a, const Value& b) {
  if (op == "~") {
    std::string s = python_str(a);
    std::string t = python_str(b);
    ctx.check_size(s.size() + t.size());
    ctx.built(s.size() + t.size());
    ctx.charge_bytes(s.size() + t.size());
    return Value::string(s + t);
  }
  require_defined(a);
  require_defined(b);
  bool numbers = a.is_number() && b.is_number();
  bool ints = is_integral(a) && is_integral(b);
  if (op == "+") {
    if (ints) return Value::integer(checked_add(a.as_int(), b.as_int()));
    if (numbers) return Value::floating(a.as_double() + b.as_double());
    if (a.is_string() && b.is_string()) {
      ctx.check_size(a.as_string().size() + b.as_string().size());
      ctx.built(a.as_string().size() + b.as_string().size());
      ctx.charge_bytes(a.as_string().size() + b.as_string().size());
      return Value::string(a.as_string() + b.as_string());
    }
    if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
      ctx.build_list(a.as_list().size() + b.as_list().size());
      ctx.charge_bytes(a.as_list().size() + b.as_list().size());
      ValueList out = a.as_list();
      out.insert(out.end(), b.as_list().begin(), b.as_list().end());
      return Value::list(std::move(out), a.is_tuple());
    }
    type_error(op, a, b);
  }
  if (op == "-") {
    if (ints) return Value::integer(checked_sub(a.as_int(), b.as_int()));
    if (numbers) return Value::floating(a.as_double() - b.as_double());
    type_error(op, a, b);
  }
  if (op == "*") {
    if (ints) return Value::integer(checked_mul(a.as_int(), b.as_int()));
    if (numbers) return Value::floating(a.as_double() * b.as_double());
    if ((a.is_string() || a.is_list()) && is_integral(b)) return repeat(ctx, a, b.as_int());
    if ((b.is_string() || b.is_list()) && is_integral(a)) return repeat(ctx, b, a.as_int());
    type_error(op, a, b);
  }
  if (!numbers) type_error(op, a, b);
  if (op == "/") {
    if (b.as_double() == 0) fail("division by zero");
    return Value::floating(a.as_double() / b.as_double());
  }
  if (op == "//") {
    if (ints) return Value::integer(floor_div(a.as_int(), b.as_int()));
    if (b.as_double() == 0) fail("float floor division by zero");
    return Value::floating(std::floor(a.as_double() / b.as_double()));
  }
  if (op == "%") {
    if (ints) return Value::integer(floor_mod(a.as_int(), b.as_int()));
    double y = b.as_double();
    if (y == 0) fail("float modulo by zero");
    double m = std::fmod(a.as_double(), y);
    if (m != 0 && ((m < 0) != (y < 0))) m += y;
    if (m == 0) m = std::copysign(0.0, y);
    return Value::floating(m);
  }
  if (op == "**") {
    if (ints && b.as_int() >= 0) {
      int64_t base = a.as_int();
      int64_t result = 1;
      for (int64_t e = b.as_int(); e > 0; e >>= 1) {
        if (e & 1) result = checked_mul(result, base);
        if (e > 1) base = checked_mul(base, base);
      }
      return Value::integer(result);
    }
    if (a.as_double() == 0 && b.as_double() < 0) fail("zero cannot be raised to a negative power");
    return Value::floating(std::pow(a.as_double(), b.as_double()));
  }
  fail("unknown operator " + op);
}

Value negate(const Value& v) {
  require_defined(v);
  if (is_integral(v)) {
    if (v.as_int() == INT64_MIN) fail("integer overflow");
    return Value::integer(-v.as_int());
  }
  if (v.is_float()) return Value::floating(-v.as_double());
  fail("bad operand type for unary -: '" + v.type_name() + "'");
}

bool less_than(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (is_integral(a) && is_integral(b)) return a.as_int() < b.as_int();
    return a.as_double() < b.as_double();
  }
  if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    const ValueList& x = a.as_list();
    const ValueList& y = b.as_list();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!values_equal(x[i], y[i])) return less_than(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  fail("'<' not supported between instances of '" + a.type_name() + "' and '" + b.type_name() +
       "'");
}

bool compare_op(EvalContext& ctx, const std::string& op, const Value& a, const Value& b) {
  if (op == "==") return values_equal(a, b);
  if (op == "!=") return !values_equal(a, b);
  if (op == "in" || op == "notin") {
    bool found = false;
    if (b.is_string()) {
      if (!a.is_string())
        fail("'in <string>' requires string as left operand, not " + a.type_name());
      ctx.charge_bytes(b.as_string().size());
      found = b.as_string().find(a.as_string()) != std::string::npos;
    } else if (b.is_list()) {
      ctx.charge(static_cast<int64_t>(b.as_list().size()));
      for (const Value& item : b.as_list()) {
        if (values_equal(item, a)) {
          found = true;
          break;
        }
      }
    } else if (b.is_dict()) {
      ctx.charge(static_cast<int64_t>(b.as_dict().entries.size()));
      found = b.as_dict().find(a) != nullptr;
    } else if (!b.is_undefined()) {
      fail("argument of type '" + b.type_name() + "' is not iterable");
    }
    return op == "in" ? found : !found;
  }
  require_defined(a);
  require_defined(b);
  if (op == "<") return less_than(a, b);
  if (op == ">") return less_than(b, a);
  if (op == "<=") return !less_than(b, a);
  if (op == ">=") return !less_than(a, b);
  fail("unknown comparison " + op);
}

ValueList iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return {};
    case Value::Kind::kList:
      return v.as_list();
    case Value::Kind::kDict: {
      ValueList keys;
      for (const auto& [k, val] : v.as_dict().entries) keys.push_back(k);
      return keys;
    }
    case Value::Kind::kString: {
      ValueList chars;
      for (char32_t cp : utf8_decode(v.as_string())) {
        std::string one;
        utf8_append(one, cp);
        chars.push_back(Value::string(std::move(one)));
      }
      return chars;
    }
    default:
      fail("'" + v.type_name() + "' object is not iterable");
  }
}

Value get_attr(EvalContext& ctx, const Value& obj, const std::string& name) {
  ctx.charge();
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      require_defined(obj);
      break;
    case Value::Kind::kString:
      return string_method(ctx, obj.as_string(), name);
    case Value::Kind::kDict: {
      Value m = dict_method(obj, name);
      if (!m.is_undefined()) return m;
      const Value* v = obj.as_dict().find(name);
      return v ? *v : Value::undefined(name);
    }
    case Value::Kind::kNamespace: {
      const Value* v = obj.as_dict().find(name);
      return v ? *v : Value::undefined(name);
    }
    default:
      break;
  }
  return Value::undefined(name);
}

Value get_item(EvalContext& ctx, const Value& obj, const Value& key) {
  ctx.charge();
  require_defined(obj);
  if (obj.is_dict()) {
    const Value* v = obj.as_dict().find(key);
    if (v) return *v;
    return key.is_string() ? get_attr(ctx, obj, key.as_string())
                           : Value::undefined(python_repr(key));
  }
  if ((obj.is_list() || obj.is_string()) && is_integral(key)) {
    if (obj.is_list()) {
      int64_t n = static_cast<int64_t>(obj.as_list().size());
      int64_t i = key.as_int() < 0 ? key.as_int() + n : key.as_int();
      if (i < 0 || i >= n) return Value::undefined("index " + std::to_string(key.as_int()));
      return obj.as_list()[i];
    }
    std::u32string cps = utf8_decode(obj.as_string());
    int64_t n = static_cast<int64_t>(cps.size());
    int64_t i = key.as_int() < 0 ? key.as_int() + n : key.as_int();
    if (i < 0 || i >= n) return Value::undefined("index " + std::to_string(key.as_int()));
    std::string one;
    utf8_append(one, cps[i]);
    return Value::string(std::move(one));
  }
  if (key.is_string()) return get_attr(ctx, obj, key.as_string());
  return Value::undefined(python_repr(key));
}

Value slice(EvalContext& ctx, const Value& obj, const Value& start, const Value& stop,
            const Value& step) {
  require_defined(obj);
  if (!obj.is_list() && !obj.is_string()) return Value::undefined("slice");
  int64_t st = 1;
  if (!step.is_undefined() && !step.is_none()) {
    if (!is_integral(step)) fail("slice indices must be integers or None");
    st = step.as_int();
    if (st == 0) fail("slice step cannot be zero");
    if (st == INT64_MIN) st = -INT64_MAX;
  }
  std::u32string cps;
  if (obj.is_string()) cps = utf8_decode(obj.as_string());
  int64_t n = obj.is_string() ? static_cast<int64_t>(cps.size())
                              : static_cast<int64_t>(obj.as_list().size());
  ctx.charge_bytes(static_cast<size_t>(n));
  int64_t lo = slice_bound(start, n, st, true);
  int64_t hi = slice_bound(stop, n, st, false);
  std::u32string out_cps;
  ValueList out_items;
  for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st) {
    if (obj.is_string()) {
      out_cps.push_back(cps[i]);
    } else {
      out_items.push_back(obj.as_list()[i]);
    }
    if ((st > 0 && i > INT64_MAX - st) || (st < 0 && i < INT64_MIN - st)) break;
  }
  if (obj.is_string()) return Value::string(utf8_encode(out_cps));
  return Value::list(std::move(out_items), obj.is_tuple());
}

Value call_value(EvalContext& ctx, const Value& fn, CallArgs& args) {
  ctx.charge();
  require_defined(fn);
  if (!fn.is_callable()) fail("'" + fn.type_name() + "' object is not callable");
  return fn.as_callable().fn(args);
}

}  // namespace carpool::chat
