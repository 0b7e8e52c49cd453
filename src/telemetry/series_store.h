// SeriesStore: every time series of carpool on one clock and one bucket grid.
//
// Buckets are aligned to Unix seconds. Each series keeps three tiers of ring buffers, written
// together on every add (so no background downsampling job and no tier ever disagrees):
//   tier 0:  1 s buckets × 3600  (1 h at full resolution)
//   tier 1: 10 s buckets × 2160  (6 h)
//   tier 2: 60 s buckets × 1440  (24 h)
// A scalar bucket keeps time, count, sum, min and max (40 bytes), so a series can be read as a
// total per bucket (counters: tokens, FLOPs), a rate, or a mean and maximum (gauges). A histogram
// bucket adds a LogHistogram (248 bytes), so percentiles of any range are exact merges.
// Memory bound: 7200 slots per series: 288,000 bytes per scalar series, 2,073,600 bytes per
// histogram series, all allocated when the series is registered (adds never allocate).
//
// Thread-safety: every method locks one internal mutex; add()/observe() hold it for a few
// dozen instructions. Register series before concurrent use (registration also locks).
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "telemetry/log_histogram.h"

namespace carpool::telemetry {

enum class SeriesKind { kScalar, kHistogram };
// How a scalar series reads out per bucket.
enum class Reduce {
  kSum,   // a counter: value = sum in the bucket (e.g. tokens); rate = sum / width
  kMean,  // a gauge: value = mean of samples (and max)
};

struct SeriesInfo {
  std::string name;  // "generation_tokens", "gpu_sm_util", ...
  SeriesKind kind = SeriesKind::kScalar;
  Reduce reduce = Reduce::kSum;
  std::string unit;          // "tokens", "seconds", "ratio", "bytes", "flops", ...
  double hist_lower = 1e-4;  // LogHistogram lower bound (histograms)
};

struct TierSpec {
  int64_t width_s = 1;
  int64_t slots = 3600;
};

// One bucket of a scalar series, or of a histogram (then `hist` is set and sum/count mirror it).
struct Point {
  int64_t t_s = 0;  // bucket start (Unix seconds)
  int64_t width_s = 1;
  uint64_t count = 0;  // samples added (0: no data)
  double sum = 0, min = 0, max = 0;
  std::optional<LogHistogram> hist;
  void merge(const Point& o);
};

using SeriesId = int;

class SeriesStore {
 public:
  explicit SeriesStore(std::vector<TierSpec> tiers = default_tiers());
  static std::vector<TierSpec> default_tiers();

  // Registers a series and allocates its buffers; returns its id. A name registered twice
  // returns the first id.
  SeriesId add_series(const SeriesInfo& info);
  std::optional<SeriesId> find(std::string_view name) const;
  const SeriesInfo& info(SeriesId id) const;  // ids come from add_series (checked)
  std::vector<std::string> names() const;

  // Scalar series: adds `value` to the bucket of time t_ns (sum, count, min, max).
  void add(SeriesId id, int64_t t_ns, double value);
  // Histogram series: one observation.
  void observe(SeriesId id, int64_t t_ns, double value);
  // Batch form: callers take the lock once for many writes (the step loop).
  class Writer {
   public:
    void add(SeriesId id, int64_t t_ns, double value) { store_.add_locked(id, t_ns, value); }
    void observe(SeriesId id, int64_t t_ns, double value) {
      store_.observe_locked(id, t_ns, value);
    }

   private:
    friend class SeriesStore;
    explicit Writer(SeriesStore& s) : store_(s), lock_(s.mu_) {}
    SeriesStore& store_;
    std::lock_guard<std::mutex> lock_;
  };
  Writer writer() { return Writer(*this); }

  // Points of width step_s (rounded up to a multiple of the chosen tier's width) covering
  // [from_s, to_s), from the finest tier that still holds from_s and whose width <= step_s
  // (else the coarsest that holds it, else the coarsest). Empty buckets have count 0.
  // At most `max_points` points (later ones dropped).
  std::vector<Point> query(SeriesId id, int64_t from_s, int64_t to_s, int64_t step_s,
                           size_t max_points = 100000) const;
  // The bucket (1 s) holding t_s, or an empty point.
  Point at(SeriesId id, int64_t t_s) const;
  size_t memory_bytes() const;

 private:
  struct Slot {
    int64_t t_s = INT64_MIN;
    uint64_t count = 0;
    double sum = 0, min = 0, max = 0;
  };
  struct Series {
    SeriesInfo info;
    std::vector<std::vector<Slot>> scalar;        // [tier][slot]
    std::vector<std::vector<LogHistogram>> hist;  // [tier][slot] (histograms)
  };
  void add_locked(SeriesId id, int64_t t_ns, double value);
  void observe_locked(SeriesId id, int64_t t_ns, double value);
  // Slot for time t_s in tier k, reset if it held an older bucket; null if t_s is older than it.
  Slot* slot_for(Series& s, size_t k, int64_t t_s, size_t* index);
  Point read_slot(const Series& s, size_t k, int64_t bucket_t) const;
  size_t pick_tier(int64_t from_s, int64_t step_s) const;

  std::vector<TierSpec> tiers_;
  mutable std::mutex mu_;
  std::vector<Series> series_;
  int64_t latest_s_ = INT64_MIN;  // newest second written
};

// floor(t_ns / 1e9), correct for negative times.
int64_t floor_seconds(int64_t t_ns);

}  // namespace carpool::telemetry
