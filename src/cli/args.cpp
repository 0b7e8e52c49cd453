#include "cli/args.h"

#include <cerrno>
#include <cstdlib>
#include <sstream>

namespace carpool::cli {

Args::Args(std::string command, std::string summary, std::vector<OptionSpec> options,
           std::string positional_name)
    : command_(std::move(command)),
      summary_(std::move(summary)),
      positional_name_(std::move(positional_name)),
      options_(std::move(options)) {}

const OptionSpec* Args::find(const std::string& name) const {
  for (const auto& o : options_) {
    if (o.name == name || (!o.short_name.empty() && o.short_name == name)) return &o;
  }
  return nullptr;
}

Status Args::parse(int argc, char** argv) {
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      help_ = true;
      continue;
    }
    if (a.size() > 1 && a[0] == '-' && !(a.size() > 1 && (std::isdigit(a[1]) || a[1] == '.'))) {
      std::string body = a.substr(a[1] == '-' ? 2 : 1);
      std::optional<std::string> inline_value;
      if (auto eq = body.find('='); eq != std::string::npos) {
        inline_value = body.substr(eq + 1);
        body = body.substr(0, eq);
      }
      const OptionSpec* o = find(body);
      if (!o)
        return Status::error("unknown option '" + a + "' for '" + command_ + "' (see --help)");
      if (o->value_name.empty()) {
        if (inline_value) return Status::error("option --" + o->name + " takes no value");
        values_[o->name] = "1";
      } else if (inline_value) {
        values_[o->name] = *inline_value;
      } else {
        if (i + 1 >= argc)
          return Status::error("option --" + o->name + " needs a value " + o->value_name);
        values_[o->name] = argv[++i];
      }
    } else {
      // One optional operand at most, and only for commands that name one.
      if (positional_name_.empty() || !positional_.empty()) {
        return Status::error("unexpected argument '" + a + "' for '" + command_ + "' (see --help)");
      }
      if (a.empty()) return Status::error(positional_name_ + " is empty");
      positional_.push_back(a);
    }
  }
  // A value given as "" is a mistake (--model "" used to mean the default model), except for text.
  for (const auto& [name, value] : values_) {
    const OptionSpec* o = find(name);
    if (o != nullptr && !o->value_name.empty() && o->value_name != "TEXT" && value.empty()) {
      return Status::error("option --" + name + " has an empty value");
    }
  }
  return Status::ok();
}

std::string Args::help() const {
  std::ostringstream s;
  s << "usage: carpool " << command_ << " [options]";
  if (!positional_name_.empty()) s << " [" << positional_name_ << "]";
  s << "\n\n" << summary_ << "\n\noptions:\n";
  for (const auto& o : options_) {
    std::string left = "  ";
    if (!o.short_name.empty()) left += "-" + o.short_name + ", ";
    left += "--" + o.name;
    if (!o.value_name.empty()) left += " " + o.value_name;
    s << left;
    if (left.size() < 30)
      s << std::string(30 - left.size(), ' ');
    else
      s << "\n" << std::string(30, ' ');
    s << o.help;
    if (!o.default_value.empty()) s << " (default: " << o.default_value << ")";
    s << "\n";
  }
  s << "  -h, --help                  show this help\n";
  return s.str();
}

bool Args::has(const std::string& name) const {
  return values_.count(name) != 0;
}

std::string Args::get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

Result<int64_t> Args::get_int(const std::string& name, int64_t fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(it->second.c_str(), &end, 10);
  if (errno != 0 || end == it->second.c_str() || *end != '\0') {
    return Status::error("--" + name + " expects an integer, got '" + it->second + "'");
  }
  return static_cast<int64_t>(v);
}

Result<double> Args::get_float(const std::string& name, double fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(it->second.c_str(), &end);
  if (errno != 0 || end == it->second.c_str() || *end != '\0') {
    return Status::error("--" + name + " expects a number, got '" + it->second + "'");
  }
  return v;
}

}  // namespace carpool::cli
