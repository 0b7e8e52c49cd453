// Telemetry::render_prometheus: the GET /metrics text. Counters and histograms are cumulative
// since start; utilization gauges cover the last 10 complete seconds of the series store.
#include <optional>

#include "telemetry/prometheus_text.h"
#include "telemetry/telemetry.h"
#include "telemetry/telemetry_internal.h"

namespace carpool::telemetry {
namespace {

constexpr int64_t kGaugeWindowS = 10;

}  // namespace

std::string Telemetry::render_prometheus() const {
  SelfTimer self(self_render_ns_);
  Totals totals;
  Latest latest;
  {
    std::lock_guard<std::mutex> lock(mu_);
    totals = *totals_;
    latest = *latest_;
  }
  const std::string& dev = latest.device;
  PromText m;

  // --- counters ---
  m.family("carpool_prompt_tokens_total", "counter",
           "Prompt tokens computed (prefix-cache hits excluded).");
  m.sample("carpool_prompt_tokens_total", {}, totals.prompt_tokens);
  m.family("carpool_generation_tokens_total", "counter", "Tokens generated.");
  m.sample("carpool_generation_tokens_total", {}, totals.generation_tokens);
  m.family("carpool_request_finished_total", "counter", "Finished requests by finish reason.");
  for (int r = 0; r < kReasons; ++r)
    m.sample("carpool_request_finished_total", {{"finished_reason", kReasonNames[r]}},
             totals.finished[r]);
  m.family("carpool_steps_total", "counter",
           "Engine steps, by phase (prefill: with a prompt chunk).");
  for (int p = 1; p < kPhases; ++p)
    m.sample("carpool_steps_total", {{"phase", kPhaseNames[p]}}, totals.steps[p]);
  m.family("carpool_model_flops_total", "counter", "Model FLOPs computed, by phase (analytic).");
  for (int p = 1; p < kPhases; ++p)
    m.sample("carpool_model_flops_total", {{"device", dev}, {"phase", kPhaseNames[p]}},
             totals.flops[p]);
  m.family("carpool_model_bytes_total", "counter",
           "Bytes the model moved through device memory, by kind (analytic).");
  m.sample("carpool_model_bytes_total", {{"device", dev}, {"kind", "weights"}},
           totals.bytes_weights);
  m.sample("carpool_model_bytes_total", {{"device", dev}, {"kind", "kv_read"}},
           totals.bytes_kv_read);
  m.sample("carpool_model_bytes_total", {{"device", dev}, {"kind", "kv_write"}},
           totals.bytes_kv_write);
  m.sample("carpool_model_bytes_total", {{"device", dev}, {"kind", "activations"}},
           totals.bytes_activations);
  m.family("carpool_device_busy_seconds_total", "counter",
           "Seconds the device was busy with steps.");
  m.sample("carpool_device_busy_seconds_total", {{"device", dev}}, totals.device_s[0]);
  m.family("carpool_http_requests_total", "counter",
           "HTTP answers of the API by status class, rejected requests included (not /metrics, "
           "/health, /ready or the dashboard and its /api/ routes).");
  for (int c = 0; c < kHttpClasses; ++c)
    m.sample("carpool_http_requests_total", {{"code", kHttpClassNames[c]}}, totals.http[c]);
  const SelfCost self_cost = this->self_cost();
  m.family("carpool_telemetry_seconds_total", "counter",
           "Telemetry's own cost: wall time of its calls on the engine thread, CPU time of the "
           "probe thread, wall time rendering /metrics and series.");
  m.sample("carpool_telemetry_seconds_total", {{"part", "engine"}}, self_cost.engine_s);
  m.sample("carpool_telemetry_seconds_total", {{"part", "probes"}}, self_cost.probes_s);
  m.sample("carpool_telemetry_seconds_total", {{"part", "render"}}, self_cost.render_s);
  if (totals.preemptions) {
    m.family("carpool_num_preemptions_total", "counter",
             "Sequences preempted (KV blocks ran out; recomputed later).");
    m.sample("carpool_num_preemptions_total", {}, *totals.preemptions);
  }
  if (latest.cpu.process_cpu_s) {
    m.family("carpool_process_cpu_seconds_total", "counter", "CPU seconds used by the process.");
    m.sample("carpool_process_cpu_seconds_total", {}, *latest.cpu.process_cpu_s);
  }

  // --- histograms ---
  for (int h = 0; h < kHistograms; ++h) {
    const HistogramDef& d = kHistogramDefs[h];
    const std::string name = std::string("carpool_") + d.prometheus;
    const LogHistogram& hist = totals.hist[h];
    m.family(name, "histogram", d.help);
    double cum = 0;
    // Every second bound of the store's bins: 4 per decade, exact (a subset of the bins).
    for (int i = 0; i < LogHistogram::kBounds; ++i) {
      cum += hist.bin(i);
      if (i % 2 != 0) continue;
      const std::string le = format_double(LogHistogram::bound(d.lower, i));
      m.sample(name + "_bucket", {{"le", le}}, cum);
    }
    m.sample(name + "_bucket", {{"le", "+Inf"}}, static_cast<double>(hist.count()));
    m.sample(name + "_sum", {}, hist.sum());
    m.sample(name + "_count", {}, static_cast<double>(hist.count()));
  }

  // --- engine gauges ---
  if (latest.engine) {
    const EngineSnapshot& e = *latest.engine;
    m.family("carpool_num_requests_running", "gauge", "Requests in the running batch.");
    m.sample("carpool_num_requests_running", {}, e.running);
    m.family("carpool_num_requests_waiting", "gauge", "Requests waiting to be scheduled.");
    m.sample("carpool_num_requests_waiting", {}, e.waiting);
    if (e.kv_blocks_total > 0) {
      m.family("carpool_kv_cache_usage_ratio", "gauge", "KV cache blocks in use (0-1).");
      m.sample("carpool_kv_cache_usage_ratio", {},
               static_cast<double>(e.kv_blocks_used) / static_cast<double>(e.kv_blocks_total));
    }
    m.family("carpool_memory_bytes", "gauge", "Engine memory by arena.");
    m.sample("carpool_memory_bytes", {{"device", dev}, {"arena", "weights"}}, e.weights_bytes);
    m.sample("carpool_memory_bytes", {{"device", dev}, {"arena", "kv_reserved"}},
             e.kv_reserved_bytes);
    m.sample("carpool_memory_bytes", {{"device", dev}, {"arena", "kv_used"}}, e.kv_used_bytes);
    m.sample("carpool_memory_bytes", {{"device", dev}, {"arena", "workspace"}}, e.workspace_bytes);
  }
  m.family("carpool_http_requests_in_flight", "gauge",
           "Inference requests being answered (the autoscaling signal).");
  m.sample("carpool_http_requests_in_flight", {}, in_flight_.load(std::memory_order_relaxed));
  if (latest.replicas_active >= 0 || latest.replicas_desired >= 0) {
    m.family("carpool_replicas", "gauge", "Replicas by state (desired: the autoscaler's aim).");
    if (latest.replicas_active >= 0) {
      m.sample("carpool_replicas", {{"state", "active"}}, latest.replicas_active);
      m.sample("carpool_replicas", {{"state", "starting"}}, latest.replicas_starting);
    }
    if (latest.replicas_desired >= 0)
      m.sample("carpool_replicas", {{"state", "desired"}}, latest.replicas_desired);
  }

  // --- derived utilization over the last complete seconds ---
  const WindowFigures win = window_figures(kGaugeWindowS);
  const Peaks& peaks = latest.peaks;
  const DerivedFigures fig[kPhases] = {win.all, win.prefill, win.decode};
  if (win.batch_size) {
    m.family("carpool_batch_size", "gauge", "Mean sequences per step over the last 10 s.");
    m.sample("carpool_batch_size", {}, *win.batch_size);
  }
  if (win.batch_tokens) {
    m.family("carpool_batch_tokens", "gauge", "Mean tokens per step over the last 10 s.");
    m.sample("carpool_batch_tokens", {}, *win.batch_tokens);
  }
  auto phased = [&](const char* name, const char* help, std::optional<double> DerivedFigures::*f) {
    bool any = false;
    for (int p = 0; p < kPhases; ++p) any = any || (fig[p].*f).has_value();
    if (!any) return;
    m.family(name, "gauge", help);
    for (int p = 0; p < kPhases; ++p)
      if ((fig[p].*f)) m.sample(name, {{"device", dev}, {"phase", kPhaseNames[p]}}, *(fig[p].*f));
  };
  phased("carpool_device_busy_ratio",
         "Device busy time per wall time (phase: per time spent on that phase's steps), last 10 s.",
         &DerivedFigures::busy);
  phased("carpool_mfu_ratio", "Model FLOP/s over peak FLOP/s, last 10 s.", &DerivedFigures::mfu);
  phased("carpool_mbu_ratio", "Model bytes/s (weights + KV) over peak bandwidth, last 10 s.",
         &DerivedFigures::mbu);
  phased("carpool_arithmetic_intensity_flops_per_byte", "Model FLOPs per byte moved, last 10 s.",
         &DerivedFigures::arithmetic_intensity);
  m.family("carpool_bound", "gauge",
           "1 for what bounds the steps of the last 10 s (overhead, memory or compute).");
  for (int p = 0; p < kPhases; ++p)
    for (Bound b : {Bound::kOverhead, Bound::kMemory, Bound::kCompute})
      m.sample("carpool_bound",
               {{"device", dev}, {"phase", kPhaseNames[p]}, {"bound", bound_name(b)}},
               fig[p].bound == b ? 1 : 0);
  if (peaks.flops_per_s > 0) {
    m.family("carpool_peak_flops_per_second", "gauge", "Peak FLOP/s used for MFU, by source.");
    m.sample("carpool_peak_flops_per_second", {{"device", dev}, {"source", peaks.flops_source}},
             peaks.flops_per_s);
  }
  if (peaks.bandwidth_bytes_per_s > 0) {
    m.family("carpool_peak_bandwidth_bytes_per_second", "gauge",
             "Peak memory bandwidth used for MBU, by source.");
    m.sample("carpool_peak_bandwidth_bytes_per_second",
             {{"device", dev}, {"source", peaks.bandwidth_source}}, peaks.bandwidth_bytes_per_s);
  }
  if (auto ridge = peaks.ridge_flops_per_byte()) {
    m.family("carpool_ridge_point_flops_per_byte", "gauge", "Peak FLOP/s over peak bandwidth.");
    m.sample("carpool_ridge_point_flops_per_byte", {{"device", dev}}, *ridge);
  }

  // --- probes (absent when unavailable, never zero) ---
  auto gauge = [&](const char* name, const char* help, const std::optional<double>& v) {
    if (!v) return;
    m.family(name, "gauge", help);
    m.sample(name, {{"device", dev}}, *v);
  };
  gauge("carpool_process_resident_memory_bytes", "Resident memory of the process.",
        latest.cpu.rss_bytes);
  gauge("carpool_process_cpu_cores", "CPU seconds per second used by the process.",
        latest.cpu.process_cpu_cores);
  gauge("carpool_engine_thread_busy_ratio", "CPU time of the engine loop thread per wall time.",
        latest.cpu.engine_thread_busy);
  if (latest.gpu) {
    const GpuReading& g = *latest.gpu;
    gauge("carpool_gpu_utilization_ratio", "NVML utilization.gpu: time any kernel ran.",
          g.util_gpu);
    gauge("carpool_gpu_memory_utilization_ratio",
          "NVML utilization.memory: time memory was accessed.", g.util_memory);
    gauge("carpool_gpu_memory_used_bytes", "NVML device memory used.", g.memory_used_bytes);
    gauge("carpool_gpu_memory_total_bytes", "NVML device memory total.", g.memory_total_bytes);
    gauge("carpool_gpu_power_watts", "NVML power draw.", g.power_watts);
    gauge("carpool_gpu_sm_clock_hertz", "NVML SM clock.", g.sm_clock_hz);
    gauge("carpool_gpu_sm_activity_ratio", "GPM SM utilization.", g.sm_util);
    gauge("carpool_gpu_sm_occupancy_ratio", "GPM SM occupancy.", g.sm_occupancy);
    gauge("carpool_gpu_tensor_activity_ratio", "GPM tensor pipe utilization (any).", g.tensor_util);
    gauge("carpool_gpu_dram_bandwidth_ratio", "GPM DRAM bandwidth utilization.", g.dram_bw_util);
  }
  return m.text();
}

}  // namespace carpool::telemetry
