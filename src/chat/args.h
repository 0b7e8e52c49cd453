// ArgReader: binds a call's positional and keyword arguments to named parameters, as Python does
// for a built-in with the signature (name0, name1, ...). Throws TemplateError on too many
// positional arguments, unknown keywords, or a parameter given twice.
#pragma once

#include <initializer_list>
#include <string>
#include <vector>

#include "chat/error.h"
#include "chat/value.h"

namespace carpool::chat {

class ArgReader {
 public:
  ArgReader(const std::string& function, CallArgs& args, std::initializer_list<const char*> names)
      : function_(function), names_(names.begin(), names.end()), bound_(names.size(), nullptr) {
    if (args.positional.size() > names_.size()) {
      fail(function + "() takes at most " + std::to_string(names_.size()) + " argument(s)");
    }
    for (size_t i = 0; i < args.positional.size(); ++i) bound_[i] = &args.positional[i];
    for (auto& [key, value] : args.keyword) {
      size_t i = 0;
      while (i < names_.size() && key != names_[i]) ++i;
      if (i == names_.size())
        fail(function + "() got an unexpected keyword argument '" + key + "'");
      if (bound_[i] != nullptr) fail(function + "() got multiple values for '" + key + "'");
      bound_[i] = &value;
    }
  }

  // The argument bound to parameter i, or null when not given.
  const Value* get(size_t i) const { return bound_[i]; }
  bool has(size_t i) const { return bound_[i] != nullptr; }
  const Value& require(size_t i) const {
    if (bound_[i] == nullptr) fail(function_ + "() missing argument '" + names_[i] + "'");
    return *bound_[i];
  }
  Value get_or(size_t i, Value fallback) const { return bound_[i] ? *bound_[i] : fallback; }
  const std::string& require_string(size_t i) const {
    const Value& v = require(i);
    if (!v.is_string()) fail(function_ + "() argument '" + names_[i] + "' must be a string");
    return v.as_string();
  }
  int64_t int_or(size_t i, int64_t fallback) const {
    if (bound_[i] == nullptr || bound_[i]->is_none()) return fallback;
    if (!bound_[i]->is_int() && !bound_[i]->is_bool()) {
      fail(function_ + "() argument '" + names_[i] + "' must be an integer");
    }
    return bound_[i]->as_int();
  }

 private:
  std::string function_;
  std::vector<std::string> names_;
  std::vector<const Value*> bound_;
};

}  // namespace carpool::chat
