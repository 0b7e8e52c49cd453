// A small command-line parser: each command declares its options (with help text) and reads them.
// Accepts "--name value", "--name=value", short aliases ("-n 5") and bare flags, plus one optional
// operand for commands that name it (positional_name). Unknown options, missing or empty values
// and extra operands are errors.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "util/status.h"

namespace carpool::cli {

struct OptionSpec {
  std::string name;        // long name without dashes: "top-k"
  std::string short_name;  // "n" or empty
  std::string value_name;  // "N", "PATH"; empty for a flag
  std::string help;
  std::string default_value;  // shown in --help; empty for none
};

class Args {
 public:
  Args(std::string command, std::string summary, std::vector<OptionSpec> options,
       std::string positional_name = "");
  // Parses argv after the command name. Unknown options and missing values are errors.
  Status parse(int argc, char** argv);
  std::string help() const;
  bool help_requested() const { return help_; }

  bool has(const std::string& name) const;
  std::string get(const std::string& name, const std::string& fallback = "") const;
  Result<int64_t> get_int(const std::string& name, int64_t fallback) const;
  Result<double> get_float(const std::string& name, double fallback) const;
  bool flag(const std::string& name) const { return has(name); }
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  const OptionSpec* find(const std::string& name) const;
  std::string command_, summary_, positional_name_;
  std::vector<OptionSpec> options_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
  bool help_ = false;
};

}  // namespace carpool::cli
