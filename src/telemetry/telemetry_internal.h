// Internals shared by telemetry.cpp, prometheus_text.cpp and series_json.cpp.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <optional>

#include "telemetry/log_histogram.h"
#include "telemetry/telemetry.h"

namespace carpool::telemetry {

// Adds the wall time of its scope to an atomic nanosecond counter (telemetry's self cost).
class SelfTimer {
 public:
  explicit SelfTimer(std::atomic<int64_t>& total)
      : total_(total), start_(std::chrono::steady_clock::now()) {}
  ~SelfTimer() {
    total_.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(
                         std::chrono::steady_clock::now() - start_)
                         .count(),
                     std::memory_order_relaxed);
  }
  SelfTimer(const SelfTimer&) = delete;
  SelfTimer& operator=(const SelfTimer&) = delete;

 private:
  std::atomic<int64_t>& total_;
  std::chrono::steady_clock::time_point start_;
};

// Phases: 0 all steps, 1 steps with a prefill chunk, 2 decode-only steps.
constexpr int kPhases = 3;
constexpr const char* kPhaseNames[kPhases] = {"all", "prefill", "decode"};
// Series name of a per-phase figure: "flops", "flops.prefill", "flops.decode".
std::string phase_series(const char* base, int phase);

constexpr int kReasons = 4;
constexpr const char* kReasonNames[kReasons] = {"stop", "length", "abort", "error"};

// HTTP status classes 1xx..5xx; the series store keeps 2xx, 4xx and 5xx.
constexpr int kHttpClasses = 5;
constexpr const char* kHttpClassNames[kHttpClasses] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

enum HistogramIndex { kTtft, kItl, kE2e, kQueue, kPromptLen, kGenLen, kHistograms };

struct Telemetry::Ids {
  std::array<SeriesId, kPhases> steps, flops, bytes, device_s, active_s;
  SeriesId prompt_tokens, generation_tokens, bytes_weights, bytes_kv_read, bytes_kv_write,
      bytes_activations, batch_seqs, batch_tokens, requests_finished, requests_failed;
  SeriesId running, waiting, kv_usage, mem_weights, mem_kv_reserved, mem_kv_used, mem_workspace,
      rss, process_cpu_cores, engine_thread_busy;
  SeriesId gpu_util, gpu_mem_util, gpu_mem_used, gpu_mem_total, gpu_power, gpu_sm_clock,
      gpu_sm_util, gpu_sm_occupancy, gpu_tensor_util, gpu_dram_bw_util;
  SeriesId replicas_active, replicas_starting, replicas_desired;
  SeriesId http_2xx, http_4xx, http_5xx, http_in_flight, preemptions;
  std::array<SeriesId, kHistograms> hist;
};

// Cumulative since start, for Prometheus counters and histograms.
struct Telemetry::Totals {
  std::array<double, kPhases> steps{}, flops{}, bytes{}, device_s{}, active_s{};
  double prompt_tokens = 0, generation_tokens = 0;
  double bytes_weights = 0, bytes_kv_read = 0, bytes_kv_write = 0, bytes_activations = 0;
  std::array<double, kReasons> finished{};
  std::array<double, kHttpClasses> http{};
  std::optional<double> preemptions;  // unset until a snapshot reports them
  std::array<LogHistogram, kHistograms> hist;
};

struct Telemetry::Latest {
  std::string device;  // the `device` label
  std::optional<GpuReading> gpu;
  CpuReading cpu;
  std::optional<EngineSnapshot> engine;
  Peaks peaks;
  int replicas_active = -1;  // -1: never set
  int replicas_starting = -1;
  int replicas_desired = -1;
};

struct HistogramDef {
  const char* series;      // store name
  const char* prometheus;  // metric name without the carpool_ prefix
  const char* help;
  double lower;
};
extern const HistogramDef kHistogramDefs[kHistograms];

}  // namespace carpool::telemetry
