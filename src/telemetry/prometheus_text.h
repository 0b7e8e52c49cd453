// PromText: a small writer of the Prometheus text exposition format (version 0.0.4): one HELP
// and TYPE line per metric family, then its samples. Values print in the shortest form that
// reads back exactly; label values are escaped (\\, \", \n).
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace carpool::telemetry {

using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

class PromText {
 public:
  // Starts a family. `type`: "counter", "gauge" or "histogram".
  void family(std::string_view name, std::string_view type, std::string_view help);
  // One sample line: name{labels} value.
  void sample(std::string_view name, Labels labels, double value);
  const std::string& text() const { return out_; }

 private:
  std::string out_;
};

std::string format_double(double v);  // shortest round-trip; "+Inf", "-Inf", "NaN"
std::string escape_label_value(std::string_view v);

}  // namespace carpool::telemetry
