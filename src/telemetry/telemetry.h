// Telemetry: the hub the engine writes to and the server reads from.
//
// Engine (write side):
//   Telemetry t({.clock = &clock, .device = "cpu", .peaks = peaks});
//   t.set_engine_source([&] { return snapshot; });      // read once a second by the probe thread
//   t.start_probes();                                   // the probe thread (GPU, CPU, engine)
//   per step:  t.record(stats);                         // O(1), no allocation, two tiny locks
//   per finished request: t.record_request(rec);
//   per step with decode tokens: t.record_token_gaps(gaps_s, now_ns);   // inter-token latency
// Server (write side): t.record_http_response(status) per answer; t.add_requests_in_flight(±1)
// when an inference request starts and ends.
// Server (read side, any thread):
//   t.render_prometheus()             // GET /metrics (text format 0.0.4)
//   t.series_json(query)              // GET /api/v1/series?names=&from=&to=&step=
//   parse_series_query(names, from, to, step, now_s)   // the query string's values -> SeriesQuery
//   t.window_figures(10)              // the last complete seconds, for /api/v1/status's advice
//
// Thread-safety: every method may be called from any thread. The object must outlive the probe
// thread (stop_probes() or the destructor joins it) and every caller.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "telemetry/clock.h"
#include "telemetry/cpu_probe.h"
#include "telemetry/derived.h"
#include "telemetry/gpu_probe.h"
#include "telemetry/peaks.h"
#include "telemetry/series_store.h"
#include "telemetry/step_stats.h"
#include "util/status.h"

namespace carpool::telemetry {

struct TelemetryOptions {
  const Clock* clock = nullptr;  // not owned; null: a SystemClock owned by the Telemetry
  std::string device = "cpu";    // the `device` label: "cpu", "cuda:0"
  Peaks peaks;                   // may be replaced later with set_peaks()
  std::string proc_root = "/proc";
  double probe_interval_s = 1.0;
};

// GET /api/v1/series parameters. Each name is a series, optionally with a reading:
//   counters    "generation_tokens" (per second), ":sum" (total per point)
//   gauges      "running" (mean), ":max", ":min"
//   histograms  "ttft_seconds:p50" (default p50), ":p90", ":p99", ":mean", ":count", ":rate"
//   derived     "mfu", "mbu", "busy", "arithmetic_intensity", "bound", each also ".prefill" and
//               ".decode"; "ridge_point"
struct SeriesQuery {
  std::vector<std::string> names;
  int64_t from_s = 0;  // Unix seconds, inclusive
  int64_t to_s = 0;    // exclusive
  int64_t step_s = 1;
};

// Validates untrusted query values: names comma-separated (at most 64), integer seconds,
// from < to, at most 25 h and 100,000 points in range. Empty from/to: the last 5 minutes up to
// now_s; empty step: 1.
Result<SeriesQuery> parse_series_query(std::string_view names, std::string_view from,
                                       std::string_view to, std::string_view step, int64_t now_s);

// The figures of the last `window_s` complete seconds, plus the latest probe readings: what the
// /metrics gauges and the advisor (telemetry/advisor.h) read. Plain data.
struct WindowFigures {
  int64_t window_s = 10;
  DerivedFigures all, prefill, decode;  // see derived.h
  double steps = 0;                     // engine steps in the window
  std::optional<double> batch_size;     // mean sequences per step
  std::optional<double> batch_tokens;   // mean tokens per step
  double prompt_tokens_per_s = 0, generation_tokens_per_s = 0;
  std::optional<double> preemptions;     // in the window; unset: the engine does not report them
  std::optional<EngineSnapshot> engine;  // the latest snapshot
  int requests_in_flight = 0;
  Peaks peaks;
};

class Telemetry {
 public:
  explicit Telemetry(TelemetryOptions options);
  ~Telemetry();
  Telemetry(const Telemetry&) = delete;
  Telemetry& operator=(const Telemetry&) = delete;

  const Clock& clock() const { return *clock_; }
  const SeriesStore& store() const { return store_; }
  std::string device() const;  // the `device` label
  // Sets the `device` label once the backend is known ("cuda:0" or "cpu").
  void set_device(std::string device);

  // --- write side ---
  void record(const StepStats& step);
  void record_request(const RequestRecord& request);
  void record_token_gaps(std::span<const double> gaps_s, int64_t t_ns);
  void set_replicas(int active, int starting);
  void set_desired_replicas(int desired);  // what the autoscaler wants (serve: 1)
  // One HTTP answer (any route, including the ones the HTTP layer rejects itself), counted by
  // status class: 1xx..5xx. O(1).
  void record_http_response(int status);
  // Inference requests being answered: +1 when one starts, -1 when its answer is complete.
  // Sampled by the probe thread (series "http_in_flight"); O(1), lock-free.
  void add_requests_in_flight(int delta);
  void set_peaks(const Peaks& peaks);
  Peaks peaks() const;
  void set_engine_source(std::function<EngineSnapshot()> source);
  // A GPU probe (GpuProbe::open(load_nvml(), index)); null: no GPU figures.
  void set_gpu_probe(std::unique_ptr<GpuProbe> probe);

  // One probe round now: GPU, CPU and engine snapshot into the store and the latest readings.
  // The probe thread calls it every probe_interval_s; tests call it with a fake clock.
  void sample_probes();
  void start_probes();
  void stop_probes();

  // Telemetry's own cost, for the overhead figure: wall time spent in the write-side calls made
  // on the engine thread (record, record_request, record_token_gaps, plus what the engine adds
  // for its own preparation of them), CPU time of the probe thread, and wall time rendering
  // /metrics and series answers. Cumulative seconds; O(1).
  struct SelfCost {
    double engine_s = 0, probes_s = 0, render_s = 0;
  };
  SelfCost self_cost() const;
  void add_engine_self_ns(int64_t ns) { self_engine_ns_.fetch_add(ns, std::memory_order_relaxed); }

  // --- read side ---
  std::string render_prometheus() const;
  Result<std::string> series_json(const SeriesQuery& query) const;
  // Figures over [now - window_s, now) in whole seconds (the last complete ones).
  WindowFigures window_figures(int64_t window_s = 10) const;

 private:
  struct Ids;
  struct Totals;
  struct Latest;
  void define_series();
  void probe_loop();

  TelemetryOptions options_;
  std::unique_ptr<Clock> owned_clock_;
  const Clock* clock_ = nullptr;
  SeriesStore store_;
  std::unique_ptr<Ids> ids_;

  mutable std::mutex mu_;  // totals_, latest_, peaks, last_end_ns_, sources
  std::unique_ptr<Totals> totals_;
  std::unique_ptr<Latest> latest_;
  int64_t last_end_ns_ = 0;
  int64_t last_preemptions_ = -1;  // the previous snapshot's cumulative count (probe thread)
  std::atomic<int> in_flight_{0};
  std::atomic<int64_t> self_engine_ns_{0};
  std::atomic<int64_t> self_probe_ns_{0};
  mutable std::atomic<int64_t> self_render_ns_{0};
  // The second this Telemetry started: buckets wholly before it have no data (null), counters
  // included, rather than zeros.
  int64_t started_s_ = 0;
  std::function<EngineSnapshot()> engine_source_;

  std::mutex probe_mu_;  // the probes themselves (sample_probes is not reentrant)
  std::unique_ptr<GpuProbe> gpu_;
  CpuProbe cpu_;

  std::mutex thread_mu_;
  std::condition_variable thread_cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace carpool::telemetry
