// LogHistogram: a small fixed histogram with log-spaced bins, 8 per decade over 7 decades from a
// lower bound (latencies: 100 µs .. 1000 s; lengths: 1 .. 10^7 tokens). Fixed size (no
// allocation), mergeable by adding counts, so per-second buckets downsample exactly and
// p50/p90/p99 come from any merged range. A quantile is interpolated geometrically inside its
// bin: relative error at most one bin width (×1.33), typically far less.
//
// Thread-safety: a plain value; callers synchronize.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

namespace carpool::telemetry {

class LogHistogram {
 public:
  static constexpr int kBinsPerDecade = 8;
  static constexpr int kDecades = 7;
  static constexpr int kBounds = kBinsPerDecade * kDecades + 1;  // finite upper bounds
  static constexpr int kBins = kBounds + 1;                      // + overflow (> last bound)

  // Upper bound of bin i (i < kBounds) for a histogram whose first bound is `lower`:
  // lower · 10^(i / 8). Bin 0 holds every value <= lower (zero included).
  static double bound(double lower, int i);
  // Bin of value v.
  static int bin_of(double lower, double v);

  void observe(double lower, double v);
  void merge(const LogHistogram& o);
  void clear() { *this = LogHistogram{}; }

  uint64_t count() const { return count_; }
  double sum() const { return sum_; }
  uint32_t bin(int i) const { return bins_[static_cast<size_t>(i)]; }
  // q in [0, 1]; nullopt when empty. Values in the overflow bin report the last bound.
  std::optional<double> quantile(double lower, double q) const;

 private:
  std::array<uint32_t, kBins> bins_{};
  uint64_t count_ = 0;
  double sum_ = 0;
};

// Lower bounds used by carpool's histograms.
constexpr double kLatencyLowerS = 1e-4;  // seconds
constexpr double kLengthLower = 1.0;     // tokens

}  // namespace carpool::telemetry
