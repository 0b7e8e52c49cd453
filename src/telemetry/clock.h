// Clock: the one time source of telemetry. Every series bucket, step time and probe sample is
// read from the same clock, so charts of traffic, latency and utilization line up.
//
// Times are nanoseconds since the Unix epoch (a wall clock, so the dashboard can label its axis
// and Prometheus can align scrapes). Tests inject a FakeClock.
//
// Thread-safety: now_ns() may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>

namespace carpool::telemetry {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t now_ns() const = 0;
};

// std::chrono::system_clock.
class SystemClock final : public Clock {
 public:
  int64_t now_ns() const override;
};

// A clock that moves only when told to.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_ns = 1'700'000'000'000'000'000) : now_ns_(start_ns) {}
  int64_t now_ns() const override { return now_ns_.load(std::memory_order_relaxed); }
  void set_ns(int64_t t) { now_ns_.store(t, std::memory_order_relaxed); }
  void advance_ns(int64_t d) { now_ns_.fetch_add(d, std::memory_order_relaxed); }
  void advance_s(double s) { advance_ns(static_cast<int64_t>(s * 1e9)); }

 private:
  std::atomic<int64_t> now_ns_;
};

constexpr int64_t kNsPerSecond = 1'000'000'000;

}  // namespace carpool::telemetry
