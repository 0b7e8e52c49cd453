#include "chat/filters.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "chat/args.h"
#include "chat/format.h"
#include "chat/operators.h"
#include "chat/string_ops.h"
#include "chat/utf8.h"

namespace carpool::chat {

namespace {

// Jinja's attribute path ("a.b.0"): each part looked up as an item, integers as indices.
Value get_path(EvalContext& ctx, const Value& v, const std::string& path) {
  Value cur = v;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool numeric =
        !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit) && part.size() < 18;
    cur = get_item(ctx, cur,
                   numeric ? Value::integer(std::atoll(part.c_str())) : Value::string(part));
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

Value str_value(const Value& v) {
  return Value::string(python_str(v));
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

Value tojson_filter(EvalContext& ctx, const Value& v, CallArgs& args) {
  ArgReader r("tojson", args, {"ensure_ascii", "indent", "separators", "sort_keys"});
  if (r.has(0) && r.get(0)->truthy()) fail("tojson(ensure_ascii=True) is not supported");
  JsonOptions o;
  if (r.has(1) && !r.get(1)->is_none()) {
    const Value& ind = *r.get(1);
    o.use_indent = true;
    o.item_separator = ",";
    if (ind.is_string()) {
      o.indent = ind.as_string();
    } else if (ind.is_int()) {
      o.indent = std::string(static_cast<size_t>(std::clamp<int64_t>(ind.as_int(), 0, 64)), ' ');
    } else {
      fail("tojson indent must be an integer or a string");
    }
  }
  if (r.has(2) && !r.get(2)->is_none()) {
    const Value& sep = *r.get(2);
    if (!sep.is_list() || sep.as_list().size() != 2 || !sep.as_list()[0].is_string() ||
        !sep.as_list()[1].is_string()) {
      fail("tojson separators must be a pair of strings");
    }
    o.item_separator = sep.as_list()[0].as_string();
    o.key_separator = sep.as_list()[1].as_string();
  }
  o.sort_keys = r.has(3) && r.get(3)->truthy();
  std::string out = to_json(v, o);
  ctx.check_size(out.size());
  ctx.charge_bytes(out.size());
  return Value::string(std::move(out));
}

Value indent_filter(EvalContext& ctx, const Value& v, CallArgs& args) {
  ArgReader r("indent", args, {"width", "first", "blank"});
  std::string pad;
  const Value* w = r.get(0);
  if (w && w->is_string()) {
    pad = w->as_string();
  } else {
    pad = std::string(static_cast<size_t>(std::clamp<int64_t>(r.int_or(0, 4), 0, 256)), ' ');
  }
  bool first = r.has(1) && r.get(1)->truthy();
  bool blank = r.has(2) && r.get(2)->truthy();
  std::string s = python_str(v);
  std::vector<std::string> lines = py_split(s, std::string("\n"), -1);
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) out.push_back('\n');
    bool indent_line =
        (i > 0 || first) && (blank || !py_strip(lines[i], StripSide::kBoth, {}).empty());
    if (indent_line) out += pad;
    out += lines[i];
    ctx.check_size(out.size());
  }
  ctx.charge_bytes(out.size());
  return Value::string(std::move(out));
}

// select/reject/selectattr/rejectattr: keeps items whose test result equals `keep`.
Value select_items(EvalContext& ctx, const Value& v, CallArgs& args, bool by_attr, bool keep) {
  std::string attr;
  size_t first_test_arg = 0;
  if (by_attr) {
    if (args.positional.empty() || !args.positional[0].is_string()) {
      fail("selectattr/rejectattr need an attribute name");
    }
    attr = args.positional[0].as_string();
    first_test_arg = 1;
  }
  std::string test;
  CallArgs test_args;
  if (args.positional.size() > first_test_arg) {
    if (!args.positional[first_test_arg].is_string()) fail("test name must be a string");
    test = args.positional[first_test_arg].as_string();
    test_args.positional.assign(args.positional.begin() + first_test_arg + 1,
                                args.positional.end());
  }
  test_args.keyword = args.keyword;
  ValueList out;
  for (const Value& item : iterate(v)) {
    ctx.charge();
    Value subject = by_attr ? get_path(ctx, item, attr) : item;
    bool ok;
    if (test.empty()) {
      ok = subject.truthy();
    } else {
      CallArgs a = test_args;
      ok = apply_test(ctx, test, subject, a);
    }
    if (ok == keep) out.push_back(item);
  }
  return Value::list(std::move(out));
}

Value map_filter(EvalContext& ctx, const Value& v, CallArgs& args) {
  ValueList out;
  std::string attr;
  Value fallback;
  bool by_attr = false;
  for (auto& [k, val] : args.keyword) {
    if (k == "attribute") {
      if (!val.is_string()) fail("map attribute must be a string");
      attr = val.as_string();
      by_attr = true;
    } else if (k == "default") {
      fallback = val;
    }
  }
  if (by_attr) {
    for (const Value& item : iterate(v)) {
      ctx.charge();
      Value x = get_path(ctx, item, attr);
      out.push_back(x.is_undefined() && !fallback.is_undefined() ? fallback : x);
    }
    return Value::list(std::move(out));
  }
  if (args.positional.empty() || !args.positional[0].is_string()) {
    fail("map needs a filter name or attribute=");
  }
  std::string filter = args.positional[0].as_string();
  CallArgs rest;
  rest.positional.assign(args.positional.begin() + 1, args.positional.end());
  rest.keyword = args.keyword;
  for (const Value& item : iterate(v)) {
    CallArgs a = rest;
    out.push_back(apply_filter(ctx, filter, item, a));
  }
  return Value::list(std::move(out));
}

Value sort_filter(EvalContext& ctx, const Value& v, CallArgs& args) {
  ArgReader r("sort", args, {"reverse", "case_sensitive", "attribute"});
  bool reverse = r.has(0) && r.get(0)->truthy();
  bool case_sensitive = r.has(1) && r.get(1)->truthy();
  std::string attr = r.has(2) && r.get(2)->is_string() ? r.get(2)->as_string() : "";
  ValueList items = iterate(v);
  ctx.charge(static_cast<int64_t>(items.size()) * 8);
  auto key = [&](const Value& item) {
    Value k = attr.empty() ? item : get_path(ctx, item, attr);
    if (!case_sensitive && k.is_string()) return Value::string(py_lower(k.as_string()));
    return k;
  };
  std::vector<std::pair<Value, Value>> keyed;
  for (const Value& item : items) keyed.emplace_back(key(item), item);
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    return reverse ? less_than(b.first, a.first) : less_than(a.first, b.first);
  });
  ValueList out;
  for (auto& kv : keyed) out.push_back(std::move(kv.second));
  return Value::list(std::move(out));
}

Value to_int(const Value& v, const Value& fallback, int64_t base) {
  if (v.is_int() || v.is_bool()) return Value::integer(v.as_int());
  if (v.is_float()) {
    double d = v.as_double();
    if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return fallback;
    return Value::integer(static_cast<int64_t>(d));
  }
  if (v.is_string()) {
    std::string s = py_strip(v.as_string(), StripSide::kBoth, {});
    std::string digits;
    for (char c : s) {
      if (c != '_') digits.push_back(c);
    }
    if (!digits.empty()) {
      char* end = nullptr;
      errno = 0;
      long long i = std::strtoll(digits.c_str(), &end, static_cast<int>(base));
      if (errno == 0 && end == digits.c_str() + digits.size()) return Value::integer(i);
      double d = std::strtod(digits.c_str(), &end);
      if (end == digits.c_str() + digits.size() && std::isfinite(d) && std::fabs(d) < 9.2e18) {
        return Value::integer(static_cast<int64_t>(d));
      }
    }
  }
  return fallback;
}

Value to_float(const Value& v, const Value& fallback) {
  if (v.is_number()) return Value::floating(v.as_double());
  if (v.is_string()) {
    std::string s = py_strip(v.as_string(), StripSide::kBoth, {});
    char* end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && end == s.c_str() + s.size()) return Value::floating(d);
  }
  return fallback;
}

Value min_max(EvalContext& ctx, const Value& v, CallArgs& args, bool want_max) {
  ArgReader r(want_max ? "max" : "min", args, {"case_sensitive", "attribute"});
  ValueList items = iterate(v);
  if (items.empty()) return Value::undefined("no items");
  ctx.charge(static_cast<int64_t>(items.size()));
  bool case_sensitive = r.has(0) && r.get(0)->truthy();
  std::string attr = r.has(1) && r.get(1)->is_string() ? r.get(1)->as_string() : "";
  auto key = [&](const Value& item) {
    Value k = attr.empty() ? item : get_path(ctx, item, attr);
    if (!case_sensitive && k.is_string()) return Value::string(py_lower(k.as_string()));
    return k;
  };
  size_t best = 0;
  for (size_t i = 1; i < items.size(); ++i) {
    bool better = want_max ? less_than(key(items[best]), key(items[i]))
                           : less_than(key(items[i]), key(items[best]));
    if (better) best = i;
  }
  return items[best];
}

}  // namespace

Value apply_filter(EvalContext& ctx, const std::string& name, const Value& v, CallArgs& args) {
  ctx.charge();
  if (name == "tojson") return tojson_filter(ctx, v, args);
  if (name == "default" || name == "d") {
    ArgReader r(name, args, {"default_value", "boolean"});
    bool boolean = r.has(1) && r.get(1)->truthy();
    bool use_default = v.is_undefined() || (boolean && !v.truthy());
    return use_default ? r.get_or(0, Value::string("")) : v;
  }
  if (name == "length" || name == "count") {
    ArgReader r(name, args, {});
    if (v.is_string()) return Value::integer(static_cast<int64_t>(utf8_length(v.as_string())));
    if (v.is_list()) return Value::integer(static_cast<int64_t>(v.as_list().size()));
    if (v.is_dict() || v.is_namespace()) {
      return Value::integer(static_cast<int64_t>(v.as_dict().entries.size()));
    }
    if (v.is_undefined()) return Value::integer(0);
    fail("object of type '" + v.type_name() + "' has no len()");
  }
  if (name == "trim") {
    ArgReader r(name, args, {"chars"});
    std::optional<std::string> chars;
    if (r.has(0) && !r.get(0)->is_none()) chars = r.require_string(0);
    std::string s = python_str(v);
    ctx.charge_bytes(s.size());
    return Value::string(py_strip(s, StripSide::kBoth, chars));
  }
  if (name == "upper" || name == "lower" || name == "capitalize" || name == "title") {
    ArgReader r(name, args, {});
    std::string s = python_str(v);
    ctx.charge_bytes(s.size());
    if (name == "upper") return Value::string(py_upper(s));
    if (name == "lower") return Value::string(py_lower(s));
    if (name == "capitalize") return Value::string(py_capitalize(s));
    return Value::string(jinja_title(s));
  }
  if (name == "string") {
    ArgReader r(name, args, {});
    Value s = str_value(v);
    ctx.charge_bytes(s.as_string().size());
    return s;
  }
  if (name == "safe") {
    ArgReader r(name, args, {});
    return v.is_string() ? v : str_value(v);
  }
  if (name == "escape" || name == "e") {
    ArgReader r(name, args, {});
    std::string out = html_escape(python_str(v));
    ctx.check_size(out.size());
    return Value::string(std::move(out));
  }
  if (name == "int") {
    ArgReader r(name, args, {"default", "base"});
    return to_int(v, r.get_or(0, Value::integer(0)), std::clamp<int64_t>(r.int_or(1, 10), 2, 36));
  }
  if (name == "float") {
    ArgReader r(name, args, {"default"});
    return to_float(v, r.get_or(0, Value::floating(0.0)));
  }
  if (name == "abs") {
    ArgReader r(name, args, {});
    if (v.is_float()) return Value::floating(std::fabs(v.as_double()));
    if (v.is_int() || v.is_bool()) return v.as_int() < 0 ? negate(v) : Value::integer(v.as_int());
    fail("bad operand type for abs(): '" + v.type_name() + "'");
  }
  if (name == "round") {
    ArgReader r(name, args, {"precision", "method"});
    if (!v.is_number()) fail("round filter needs a number");
    int64_t precision = std::clamp<int64_t>(r.int_or(0, 0), 0, 15);
    std::string method = r.has(1) && r.get(1)->is_string() ? r.get(1)->as_string() : "common";
    double scale = std::pow(10.0, static_cast<double>(precision));
    double x = v.as_double() * scale;
    double rounded = method == "ceil"    ? std::ceil(x)
                     : method == "floor" ? std::floor(x)
                                         : std::nearbyint(x);
    return Value::floating(rounded / scale);
  }
  if (name == "join") {
    ArgReader r(name, args, {"d", "attribute"});
    std::string sep = r.has(0) ? python_str(*r.get(0)) : "";
    std::string attr = r.has(1) && r.get(1)->is_string() ? r.get(1)->as_string() : "";
    std::string out;
    bool first = true;
    for (const Value& item : iterate(v)) {
      if (!first) out += sep;
      first = false;
      out += python_str(attr.empty() ? item : get_path(ctx, item, attr));
      ctx.check_size(out.size());
    }
    ctx.charge_bytes(out.size());
    return Value::string(std::move(out));
  }
  if (name == "first" || name == "last") {
    ArgReader r(name, args, {});
    ValueList items = iterate(v);
    if (items.empty()) return Value::undefined("no " + name + " item");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") {
    ArgReader r(name, args, {});
    ValueList items = iterate(v);
    ctx.charge(static_cast<int64_t>(items.size()));
    return Value::list(std::move(items));
  }
  if (name == "reverse") {
    ArgReader r(name, args, {});
    if (v.is_string()) {
      std::u32string cps = utf8_decode(v.as_string());
      std::reverse(cps.begin(), cps.end());
      return Value::string(utf8_encode(cps));
    }
    ValueList items = iterate(v);
    std::reverse(items.begin(), items.end());
    return Value::list(std::move(items));
  }
  if (name == "items") {
    ArgReader r(name, args, {});
    if (v.is_undefined()) return Value::list({});
    if (!v.is_dict()) fail("items filter needs a mapping, got " + v.type_name());
    ValueList out;
    for (const auto& [k, val] : v.as_dict().entries) out.push_back(Value::list({k, val}, true));
    return Value::list(std::move(out));
  }
  if (name == "dictsort") {
    ArgReader r(name, args, {"case_sensitive", "by", "reverse"});
    if (!v.is_dict()) fail("dictsort needs a mapping");
    bool by_value = r.has(1) && r.get(1)->is_string() && r.get(1)->as_string() == "value";
    bool case_sensitive = r.has(0) && r.get(0)->truthy();
    bool reverse = r.has(2) && r.get(2)->truthy();
    auto entries = v.as_dict().entries;
    auto key = [&](const std::pair<Value, Value>& e) {
      const Value& k = by_value ? e.second : e.first;
      return (!case_sensitive && k.is_string()) ? Value::string(py_lower(k.as_string())) : k;
    };
    std::stable_sort(entries.begin(), entries.end(), [&](const auto& a, const auto& b) {
      return reverse ? less_than(key(b), key(a)) : less_than(key(a), key(b));
    });
    ValueList out;
    for (auto& [k, val] : entries) out.push_back(Value::list({k, val}, true));
    return Value::list(std::move(out));
  }
  if (name == "map") return map_filter(ctx, v, args);
  if (name == "select") return select_items(ctx, v, args, false, true);
  if (name == "reject") return select_items(ctx, v, args, false, false);
  if (name == "selectattr") return select_items(ctx, v, args, true, true);
  if (name == "rejectattr") return select_items(ctx, v, args, true, false);
  if (name == "sort") return sort_filter(ctx, v, args);
  if (name == "min") return min_max(ctx, v, args, false);
  if (name == "max") return min_max(ctx, v, args, true);
  if (name == "unique") {
    ArgReader r(name, args, {"case_sensitive", "attribute"});
    ValueList out;
    for (const Value& item : iterate(v)) {
      ctx.charge(static_cast<int64_t>(out.size()) + 1);
      bool seen = false;
      for (const Value& o : out) seen = seen || values_equal(o, item);
      if (!seen) out.push_back(item);
    }
    return Value::list(std::move(out));
  }
  if (name == "sum") {
    ArgReader r(name, args, {"attribute", "start"});
    Value total = r.get_or(1, Value::integer(0));
    std::string attr = r.has(0) && r.get(0)->is_string() ? r.get(0)->as_string() : "";
    for (const Value& item : iterate(v)) {
      total = binary_op(ctx, "+", total, attr.empty() ? item : get_path(ctx, item, attr));
    }
    return total;
  }
  if (name == "replace") {
    ArgReader r(name, args, {"old", "new", "count"});
    std::string s = python_str(v);
    ctx.charge_bytes(s.size());
    std::string out = py_replace(s, python_str(r.require(0)), python_str(r.require(1)),
                                 r.int_or(2, -1), ctx.limits().max_output_bytes);
    ctx.charge_bytes(out.size());
    return Value::string(std::move(out));
  }
  if (name == "indent") return indent_filter(ctx, v, args);
  if (name == "wordcount") {
    ArgReader r(name, args, {});
    return Value::integer(static_cast<int64_t>(py_split(python_str(v), std::nullopt, -1).size()));
  }
  if (name == "attr") {
    ArgReader r(name, args, {"name"});
    return get_attr(ctx, v, r.require_string(0));
  }
  fail("unknown filter '" + name + "'");
}

bool apply_test(EvalContext& ctx, const std::string& name, const Value& v, CallArgs& args) {
  ctx.charge();
  auto no_args = [&] { ArgReader r(name, args, {}); };
  auto other = [&]() -> const Value& {
    static const char* const kParam = "value";
    ArgReader r(name, args, {kParam});
    if (!r.has(0)) fail(name + " test needs an argument");
    return args.positional.empty() ? args.keyword[0].second : args.positional[0];
  };
  if (name == "defined") return no_args(), !v.is_undefined();
  if (name == "undefined") return no_args(), v.is_undefined();
  if (name == "none") return no_args(), v.is_none();
  if (name == "boolean") return no_args(), v.is_bool();
  if (name == "true") return no_args(), v.is_bool() && v.as_bool();
  if (name == "false") return no_args(), v.is_bool() && !v.as_bool();
  if (name == "integer") return no_args(), v.is_int();
  if (name == "float") return no_args(), v.is_float();
  if (name == "number") return no_args(), v.is_number();
  if (name == "string") return no_args(), v.is_string();
  if (name == "mapping") return no_args(), v.is_dict();
  if (name == "iterable")
    return no_args(), v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
  if (name == "sequence")
    return no_args(), v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
  if (name == "callable") return no_args(), v.is_callable();
  if (name == "lower") return no_args(), v.is_string() && py_lower(v.as_string()) == v.as_string();
  if (name == "upper") return no_args(), v.is_string() && py_upper(v.as_string()) == v.as_string();
  if (name == "even" || name == "odd") {
    no_args();
    if (!v.is_int() && !v.is_bool()) fail(name + " test needs an integer");
    bool even = (v.as_int() % 2) == 0;
    return name == "even" ? even : !even;
  }
  if (name == "divisibleby") {
    const Value& n = other();
    if (!(v.is_int() || v.is_bool()) || !(n.is_int() || n.is_bool()) || n.as_int() == 0) {
      fail("divisibleby needs non-zero integers");
    }
    return n.as_int() == -1 || v.as_int() % n.as_int() == 0;
  }
  if (name == "eq" || name == "equalto" || name == "==") return compare_op(ctx, "==", v, other());
  if (name == "ne" || name == "!=") return compare_op(ctx, "!=", v, other());
  if (name == "lt" || name == "lessthan" || name == "<") return compare_op(ctx, "<", v, other());
  if (name == "le" || name == "<=") return compare_op(ctx, "<=", v, other());
  if (name == "gt" || name == "greaterthan" || name == ">") return compare_op(ctx, ">", v, other());
  if (name == "ge" || name == ">=") return compare_op(ctx, ">=", v, other());
  if (name == "in") return compare_op(ctx, "in", v, other());
  if (name == "sameas") {
    const Value& o = other();
    if (v.kind() != o.kind()) return false;
    if (v.is_none() || v.is_bool()) return values_equal(v, o);
    return v.is_list() || v.is_dict() || v.is_namespace() ? values_equal(v, o) && &v == &o : false;
  }
  fail("unknown test '" + name + "'");
}

}  // namespace carpool::chat
