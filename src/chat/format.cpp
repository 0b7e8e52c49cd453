#include "chat/format.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "chat/error.h"
#include "chat/utf8.h"

namespace carpool::chat {

namespace {

void check_depth(int depth) {
  if (depth > kMaxFormatDepth) fail("value nested too deeply to format");
}

void append_hex(std::string& out, const char* prefix, unsigned v, int digits) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%s%0*x", prefix, digits, v);
  out += buf;
}

std::string string_repr(const std::string& s) {
  bool has_single = s.find('\'') != std::string::npos;
  bool has_double = s.find('"') != std::string::npos;
  char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t cp : utf8_decode(s)) {
    if (cp == static_cast<char32_t>(quote) || cp == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(cp));
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD) {
      append_hex(out, "\\x", cp, 2);
    } else if (cp >= 0xD800 && cp <= 0xDFFF) {
      append_hex(out, "\\u", cp, 4);
    } else {
      utf8_append(out, cp);
    }
  }
  out.push_back(quote);
  return out;
}

void repr_into(std::string& out, const Value& v, int depth);

void repr_dict_body(std::string& out, const ValueDict& d, int depth) {
  out.push_back('{');
  bool first = true;
  for (const auto& [k, val] : d.entries) {
    if (!first) out += ", ";
    first = false;
    repr_into(out, k, depth + 1);
    out += ": ";
    repr_into(out, val, depth + 1);
  }
  out.push_back('}');
}

void repr_into(std::string& out, const Value& v, int depth) {
  check_depth(depth);
  switch (v.kind()) {
    case Value::Kind::kString:
      out += string_repr(v.as_string());
      return;
    case Value::Kind::kList: {
      const ValueList& items = v.as_list();
      out.push_back(v.is_tuple() ? '(' : '[');
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) out += ", ";
        repr_into(out, items[i], depth + 1);
      }
      if (v.is_tuple() && items.size() == 1) out.push_back(',');
      out.push_back(v.is_tuple() ? ')' : ']');
      return;
    }
    case Value::Kind::kDict:
      repr_dict_body(out, v.as_dict(), depth);
      return;
    case Value::Kind::kNamespace:
      out += "<Namespace ";
      repr_dict_body(out, v.as_dict(), depth);
      out += ">";
      return;
    default:
      out += python_str(v);
  }
}

void json_string(std::string& out, const std::string& s) {
  out.push_back('"');
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (u < 0x20) {
          append_hex(out, "\\u", u, 4);
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

std::string json_float(double f) {
  if (std::isnan(f)) return "NaN";
  if (std::isinf(f)) return f > 0 ? "Infinity" : "-Infinity";
  return float_repr(f);
}

std::string json_key(const Value& k) {
  if (k.is_string()) return k.as_string();
  if (k.is_bool()) return k.as_bool() ? "true" : "false";
  if (k.is_int()) return std::to_string(k.as_int());
  if (k.is_float()) return json_float(k.as_double());
  if (k.is_none()) return "null";
  fail("keys must be str, int, float, bool or None, not " + k.type_name());
}

void json_newline(std::string& out, const JsonOptions& o, int level) {
  out.push_back('\n');
  for (int i = 0; i < level; ++i) out += o.indent;
}

void json_into(std::string& out, const Value& v, const JsonOptions& o, int depth) {
  check_depth(depth);
  switch (v.kind()) {
    case Value::Kind::kNone:
      out += "null";
      return;
    case Value::Kind::kBool:
      out += v.as_bool() ? "true" : "false";
      return;
    case Value::Kind::kInt:
      out += std::to_string(v.as_int());
      return;
    case Value::Kind::kFloat:
      out += json_float(v.as_double());
      return;
    case Value::Kind::kString:
      json_string(out, v.as_string());
      return;
    case Value::Kind::kList: {
      const ValueList& items = v.as_list();
      if (items.empty()) {
        out += "[]";
        return;
      }
      out.push_back('[');
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) out += o.item_separator;
        if (o.use_indent) json_newline(out, o, depth + 1);
        json_into(out, items[i], o, depth + 1);
      }
      if (o.use_indent) json_newline(out, o, depth);
      out.push_back(']');
      return;
    }
    case Value::Kind::kDict: {
      std::vector<std::pair<std::string, const Value*>> entries;
      for (const auto& [k, val] : v.as_dict().entries) entries.emplace_back(json_key(k), &val);
      if (entries.empty()) {
        out += "{}";
        return;
      }
      if (o.sort_keys) {
        std::stable_sort(entries.begin(), entries.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
      }
      out.push_back('{');
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i > 0) out += o.item_separator;
        if (o.use_indent) json_newline(out, o, depth + 1);
        json_string(out, entries[i].first);
        out += o.key_separator;
        json_into(out, *entries[i].second, o, depth + 1);
      }
      if (o.use_indent) json_newline(out, o, depth);
      out.push_back('}');
      return;
    }
    default:
      fail("Object of type " + v.type_name() + " is not JSON serializable");
  }
}

}  // namespace

std::string float_repr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), f, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  // sci looks like "-1.2345e-05" or "1e+20".
  bool negative = sci[0] == '-';
  if (negative) sci.erase(0, 1);
  size_t e = sci.find('e');
  std::string digits;
  for (size_t i = 0; i < e; ++i) {
    if (sci[i] != '.') digits.push_back(sci[i]);
  }
  int exponent = std::stoi(sci.substr(e + 1));
  std::string out = negative ? "-" : "";
  int n = static_cast<int>(digits.size());
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out += "0." + std::string(-exponent - 1, '0') + digits;
    } else if (exponent + 1 >= n) {
      out += digits + std::string(exponent + 1 - n, '0') + ".0";
    } else {
      out += digits.substr(0, exponent + 1) + "." + digits.substr(exponent + 1);
    }
  } else {
    out += digits.substr(0, 1);
    if (n > 1) out += "." + digits.substr(1);
    char ebuf[16];
    std::snprintf(ebuf, sizeof(ebuf), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += ebuf;
  }
  return out;
}

std::string python_str(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "";
    case Value::Kind::kNone:
      return "None";
    case Value::Kind::kBool:
      return v.as_bool() ? "True" : "False";
    case Value::Kind::kInt:
      return std::to_string(v.as_int());
    case Value::Kind::kFloat:
      return float_repr(v.as_double());
    case Value::Kind::kString:
      return v.as_string();
    case Value::Kind::kCallable:
      return "<function " + v.as_callable().name + ">";
    default: {
      std::string out;
      repr_into(out, v, 0);
      return out;
    }
  }
}

std::string python_repr(const Value& v) {
  std::string out;
  repr_into(out, v, 0);
  return out;
}

std::string to_json(const Value& v, const JsonOptions& options) {
  std::string out;
  json_into(out, v, options, 0);
  return out;
}

}  // namespace carpool::chat
