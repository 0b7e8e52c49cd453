// StopMatcher: finds stop strings in text that arrives piece by piece. Text that could still be
// the beginning of a stop string is held back, so a stop string is never partly emitted.
//
// Not thread-safe: one per choice.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace carpool::server {

class StopMatcher {
 public:
  // Empty strings in `stops` are ignored.
  explicit StopMatcher(std::vector<std::string> stops);

  // Appends `text`; returns what may be emitted now. When a stop string completes, returns the
  // text before it and matched() becomes true; later calls return "".
  std::string push(std::string_view text);
  // The held-back text, at the end of a stream that matched nothing.
  std::string flush();
  bool matched() const { return matched_; }
  const std::string& matched_stop() const { return matched_stop_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;  // held back: a suffix that is a proper prefix of some stop string
  bool matched_ = false;
  std::string matched_stop_;
};

}  // namespace carpool::server
