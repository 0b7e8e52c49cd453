#include "telemetry/clock.h"

#include <chrono>

namespace carpool::telemetry {

int64_t SystemClock::now_ns() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace carpool::telemetry
