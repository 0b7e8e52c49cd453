#include "telemetry/log_histogram.h"

#include <cmath>

namespace carpool::telemetry {

double LogHistogram::bound(double lower, int i) {
  return lower * std::pow(10.0, static_cast<double>(i) / kBinsPerDecade);
}

int LogHistogram::bin_of(double lower, double v) {
  if (!(v > lower)) return 0;  // also NaN
  const double x = std::log10(v / lower) * kBinsPerDecade;
  int i = static_cast<int>(std::ceil(x - 1e-9));
  if (i < 0) i = 0;
  // Guard the rounding at exact bounds: v must be <= bound(i) and > bound(i - 1).
  while (i < kBounds && v > bound(lower, i)) ++i;
  while (i > 0 && v <= bound(lower, i - 1)) --i;
  return i > kBounds ? kBounds : i;
}

void LogHistogram::observe(double lower, double v) {
  ++bins_[static_cast<size_t>(bin_of(lower, v))];
  ++count_;
  if (std::isfinite(v)) sum_ += v;
}

void LogHistogram::merge(const LogHistogram& o) {
  for (int i = 0; i < kBins; ++i) bins_[static_cast<size_t>(i)] += o.bins_[static_cast<size_t>(i)];
  count_ += o.count_;
  sum_ += o.sum_;
}

std::optional<double> LogHistogram::quantile(double lower, double q) const {
  if (count_ == 0) return std::nullopt;
  if (q < 0) q = 0;
  if (q > 1) q = 1;
  const double rank = q * static_cast<double>(count_);
  double cum = 0;
  for (int i = 0; i < kBins; ++i) {
    const double n = bins_[static_cast<size_t>(i)];
    if (n == 0) continue;
    if (cum + n >= rank) {
      if (i == 0) return lower;
      if (i == kBounds) return bound(lower, kBounds - 1);
      const double lo = bound(lower, i - 1), hi = bound(lower, i);
      const double frac = (rank - cum) / n;
      return lo * std::pow(hi / lo, frac);
    }
    cum += n;
  }
  return bound(lower, kBounds - 1);
}

}  // namespace carpool::telemetry
