// EvalContext: the budget counters shared by the interpreter and the built-in operations of one
// render. Throws TemplateError when a limit is crossed. Not thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "chat/error.h"
#include "chat/render_limits.h"

namespace carpool::chat {

class EvalContext {
 public:
  EvalContext(const RenderLimits& limits, int64_t now_unix_s)
      : limits_(limits), now_unix_s_(now_unix_s) {}

  const RenderLimits& limits() const { return limits_; }
  int64_t now_unix_s() const { return now_unix_s_; }

  // Spends `n` steps of the operation budget.
  void charge(int64_t n = 1) {
    steps_ += n;
    if (steps_ > limits_.max_steps) {
      fail("template exceeded its operation budget of " + std::to_string(limits_.max_steps) +
           " steps");
    }
  }
  // Charges string or list work proportional to its size.
  void charge_bytes(size_t bytes) { charge(1 + static_cast<int64_t>(bytes / 64)); }
  // Refuses to build a value of `size` bytes or elements past the output limit.
  void check_size(size_t size) const {
    if (size > limits_.max_output_bytes) {
      fail("template built a value larger than the output limit of " +
           std::to_string(limits_.max_output_bytes) + " bytes");
    }
  }
  // Counts a value of `bytes` being built against the whole render's max_built_bytes.
  void built(size_t bytes) {
    built_ += bytes;
    if (built_ > limits_.max_built_bytes) {
      fail("template built more than " + std::to_string(limits_.max_built_bytes) +
           " bytes of strings and lists");
    }
  }
  // check_size and built for a list of `items` items.
  void build_list(size_t items) {
    if (items > limits_.max_output_bytes / kListItemBytes) {
      fail("template built a list of " + std::to_string(items) + " items, more than the " +
           std::to_string(limits_.max_output_bytes / kListItemBytes) + " the sandbox allows");
    }
    built(items * kListItemBytes);
  }
  void count_iteration() {
    if (++iterations_ > limits_.max_loop_iterations) {
      fail("template exceeded its loop limit of " + std::to_string(limits_.max_loop_iterations) +
           " iterations");
    }
    charge();
  }

 private:
  RenderLimits limits_;
  int64_t now_unix_s_;
  int64_t steps_ = 0;
  int64_t iterations_ = 0;
  size_t built_ = 0;
};

}  // namespace carpool::chat
