#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "telemetry/log_histogram.h"
#include "telemetry/series_store.h"

namespace carpool::telemetry {
namespace {

constexpr int64_t kT0 = 1'700'000'040;  // a Unix second, a multiple of 60
int64_t ns(int64_t s, double frac = 0) {
  return s * 1'000'000'000 + static_cast<int64_t>(frac * 1e9);
}

TEST(TelemetryLogHistogram, BinsAndQuantiles) {
  EXPECT_EQ(LogHistogram::bin_of(1e-4, 0.0), 0);
  EXPECT_EQ(LogHistogram::bin_of(1e-4, 1e-4), 0);
  EXPECT_EQ(LogHistogram::bin_of(1e-4, 1.01e-4), 1);
  EXPECT_EQ(LogHistogram::bin_of(1e-4, 1e-3), 8);  // exactly a bound: that bin
  EXPECT_EQ(LogHistogram::bin_of(1e-4, 1.001e-3), 9);
  EXPECT_EQ(LogHistogram::bin_of(1e-4, 1e9), LogHistogram::kBounds);  // overflow
  LogHistogram h;
  for (int i = 1; i <= 1000; ++i) h.observe(1e-4, i * 1e-3);  // 1 ms .. 1 s uniformly
  EXPECT_EQ(h.count(), 1000u);
  EXPECT_NEAR(h.sum(), 500.5, 1e-9);
  // Within one bin width (×1.334) of the true quantile.
  EXPECT_NEAR(std::log(*h.quantile(1e-4, 0.5) / 0.5), 0, std::log(1.334));
  EXPECT_NEAR(std::log(*h.quantile(1e-4, 0.9) / 0.9), 0, std::log(1.334));
  EXPECT_NEAR(std::log(*h.quantile(1e-4, 0.99) / 0.99), 0, std::log(1.334));
  EXPECT_FALSE(LogHistogram{}.quantile(1e-4, 0.5).has_value());
}

TEST(TelemetryLogHistogram, MergeEqualsObservingBoth) {
  LogHistogram a, b, both;
  for (int i = 0; i < 100; ++i) {
    a.observe(1, i + 1);
    both.observe(1, i + 1);
    b.observe(1, 1000 + i * 10);
    both.observe(1, 1000 + i * 10);
  }
  a.merge(b);
  for (int i = 0; i < LogHistogram::kBins; ++i) EXPECT_EQ(a.bin(i), both.bin(i));
  EXPECT_EQ(*a.quantile(1, 0.9), *both.quantile(1, 0.9));
}

TEST(TelemetrySeriesStore, BucketsPerSecond) {
  SeriesStore store;
  const SeriesId tokens = store.add_series({"tokens", SeriesKind::kScalar, Reduce::kSum, "tokens"});
  const SeriesId gauge =
      store.add_series({"running", SeriesKind::kScalar, Reduce::kMean, "requests"});
  EXPECT_EQ(store.add_series({"tokens", SeriesKind::kScalar, Reduce::kSum, "x"}), tokens);
  store.add(tokens, ns(kT0, 0.1), 5);
  store.add(tokens, ns(kT0, 0.9), 7);
  store.add(tokens, ns(kT0 + 2, 0.5), 1);
  store.add(gauge, ns(kT0, 0.5), 2);
  store.add(gauge, ns(kT0, 0.6), 6);
  auto pts = store.query(tokens, kT0, kT0 + 3, 1);
  ASSERT_EQ(pts.size(), 3u);
  EXPECT_EQ(pts[0].t_s, kT0);
  EXPECT_EQ(pts[0].sum, 12);
  EXPECT_EQ(pts[0].count, 2u);
  EXPECT_EQ(pts[1].count, 0u);  // no data: empty, not zero-with-count
  EXPECT_EQ(pts[2].sum, 1);
  const Point g = store.at(gauge, kT0);
  EXPECT_EQ(g.sum / g.count, 4);
  EXPECT_EQ(g.max, 6);
  EXPECT_EQ(g.min, 2);
  // A 2 s step merges pairs of buckets (aligned to multiples of 2).
  auto two = store.query(tokens, kT0, kT0 + 4, 2);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].sum + two[1].sum, 13);
  EXPECT_EQ(two[0].width_s, 2);
}

// Times near the ends of int64 (a query's loops would overflow there and never end): nothing.
TEST(TelemetrySeriesStore, QueriesBeyondTheTimeBoundGiveNothing) {
  SeriesStore store;
  const SeriesId s = store.add_series({"x", SeriesKind::kScalar, Reduce::kSum, "x"});
  const int64_t max = std::numeric_limits<int64_t>::max();
  EXPECT_TRUE(store.query(s, max - 1000, max, 90000).empty());
  EXPECT_TRUE(store.query(s, std::numeric_limits<int64_t>::min(), max, 90000).empty());
  EXPECT_EQ(store.query(s, kT0, kT0 + 3, 1).size(), 3u);
}

TEST(TelemetrySeriesStore, TiersKeepOldDataDownsampled) {
  SeriesStore store;
  const SeriesId s = store.add_series({"x", SeriesKind::kScalar, Reduce::kSum, ""});
  const SeriesId h =
      store.add_series({"lat", SeriesKind::kHistogram, Reduce::kSum, "seconds", 1e-4});
  // One value per second for 2 hours.
  for (int64_t t = 0; t < 7200; ++t) {
    store.add(s, ns(kT0 + t), 1);
    store.observe(h, ns(kT0 + t), t < 3600 ? 0.010 : 1.0);
  }
  // The first hour is gone from the 1 s tier; a 1 s query over it falls back to 10 s buckets.
  auto old = store.query(s, kT0, kT0 + 60, 1);
  ASSERT_EQ(old.size(), 6u);
  EXPECT_EQ(old[0].width_s, 10);
  EXPECT_EQ(old[0].sum, 10);
  // The last hour is still at 1 s.
  auto recent = store.query(s, kT0 + 7000, kT0 + 7010, 1);
  ASSERT_EQ(recent.size(), 10u);
  EXPECT_EQ(recent[0].width_s, 1);
  EXPECT_EQ(recent[0].sum, 1);
  // Whole range in 60 s points: every point has 60 samples.
  auto all = store.query(s, kT0, kT0 + 7200, 60);
  ASSERT_EQ(all.size(), 120u);
  for (const Point& p : all) EXPECT_EQ(p.sum, 60);
  // Percentiles over both hours merge the histograms.
  // (Points align to multiples of the step, so this range spans two points.)
  Point merged;
  for (const Point& p : store.query(h, kT0, kT0 + 7200, 7200)) merged.merge(p);
  ASSERT_TRUE(merged.hist);
  EXPECT_EQ(merged.hist->count(), 7200u);
  EXPECT_LT(*merged.hist->quantile(1e-4, 0.25), 0.0134);
  EXPECT_GT(*merged.hist->quantile(1e-4, 0.75), 0.75);
}

TEST(TelemetrySeriesStore, RingOverwritesAfterItsSpan) {
  SeriesStore store({{1, 10}});
  const SeriesId s = store.add_series({"x", SeriesKind::kScalar, Reduce::kSum, ""});
  store.add(s, ns(kT0), 1);
  store.add(s, ns(kT0 + 10), 2);  // same slot, newer bucket: replaces
  EXPECT_EQ(store.at(s, kT0).count, 0u);
  EXPECT_EQ(store.at(s, kT0 + 10).sum, 2);
  store.add(s, ns(kT0), 5);  // older than what the slot holds: dropped
  EXPECT_EQ(store.at(s, kT0 + 10).sum, 2);
}

TEST(TelemetrySeriesStore, MemoryBoundAsDocumented) {
  SeriesStore store;
  store.add_series({"a", SeriesKind::kScalar, Reduce::kSum, ""});
  EXPECT_EQ(store.memory_bytes(), 288'000u);
  store.add_series({"b", SeriesKind::kHistogram, Reduce::kSum, "", 1e-4});
  EXPECT_EQ(store.memory_bytes(), 288'000u + 2'073'600u);
}

TEST(TelemetrySeriesStore, FloorSecondsNegative) {
  EXPECT_EQ(floor_seconds(-1), -1);
  EXPECT_EQ(floor_seconds(-1'000'000'000), -1);
  EXPECT_EQ(floor_seconds(1'999'999'999), 1);
}

}  // namespace
}  // namespace carpool::telemetry
