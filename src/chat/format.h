// Converting Values to text the way Python does: str(), repr(), and json.dumps as Hugging Face's
// `tojson` filter calls it (ensure_ascii=False, no key sorting unless asked).
// All functions throw TemplateError for values nested deeper than kMaxFormatDepth.
#pragma once

#include <string>

#include "chat/value.h"

namespace carpool::chat {

inline constexpr int kMaxFormatDepth = 128;

// Python repr(float): the shortest round-trip digits ("1.0", "0.1", "1e+20", "nan").
std::string float_repr(double f);
// Python str(value); an undefined value prints as "".
std::string python_str(const Value& v);
// Python repr(value).
std::string python_repr(const Value& v);

struct JsonOptions {
  // Indent unit; empty with use_indent=false means the compact one-line form.
  bool use_indent = false;
  std::string indent;
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};
// json.dumps(value, ensure_ascii=False, ...). Throws for values JSON cannot hold.
std::string to_json(const Value& v, const JsonOptions& options);

}  // namespace carpool::chat
