#include "telemetry/telemetry.h"

#include <time.h>

#include <algorithm>

#include "telemetry/telemetry_internal.h"

namespace carpool::telemetry {
namespace {

// CPU time of the calling thread.
int64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace

const HistogramDef kHistogramDefs[kHistograms] = {
    {"ttft_seconds", "time_to_first_token_seconds", "Time from arrival to the first token.",
     kLatencyLowerS},
    {"itl_seconds", "inter_token_latency_seconds", "Time between consecutive tokens of a request.",
     kLatencyLowerS},
    {"e2e_seconds", "e2e_request_latency_seconds", "Time from arrival to the final token.",
     kLatencyLowerS},
    {"queue_seconds", "request_queue_time_seconds", "Time from arrival to first scheduling.",
     kLatencyLowerS},
    {"prompt_length_tokens", "request_prompt_tokens", "Prompt length of finished requests.",
     kLengthLower},
    {"generation_length_tokens", "request_generation_tokens",
     "Generated length of finished requests.", kLengthLower},
};

std::string phase_series(const char* base, int phase) {
  return phase == 0 ? std::string(base) : std::string(base) + "." + kPhaseNames[phase];
}

Telemetry::Telemetry(TelemetryOptions options)
    : options_(std::move(options)),
      ids_(std::make_unique<Ids>()),
      totals_(std::make_unique<Totals>()),
      latest_(std::make_unique<Latest>()),
      cpu_(options_.proc_root) {
  if (options_.clock) {
    clock_ = options_.clock;
  } else {
    owned_clock_ = std::make_unique<SystemClock>();
    clock_ = owned_clock_.get();
  }
  latest_->peaks = options_.peaks;
  latest_->device = options_.device;
  started_s_ = clock_->now_ns() / kNsPerSecond;
  define_series();
}

Telemetry::~Telemetry() {
  stop_probes();
}

void Telemetry::define_series() {
  auto scalar = [&](const std::string& name, Reduce r, const char* unit) {
    return store_.add_series({name, SeriesKind::kScalar, r, unit, 0});
  };
  Ids& id = *ids_;
  for (int p = 0; p < kPhases; ++p) {
    id.steps[p] = scalar(phase_series("steps", p), Reduce::kSum, "steps");
    id.flops[p] = scalar(phase_series("flops", p), Reduce::kSum, "flops");
    id.bytes[p] = scalar(phase_series("bytes", p), Reduce::kSum, "bytes");
    id.device_s[p] = scalar(phase_series("device_seconds", p), Reduce::kSum, "seconds");
    id.active_s[p] = scalar(phase_series("active_seconds", p), Reduce::kSum, "seconds");
  }
  id.prompt_tokens = scalar("prompt_tokens", Reduce::kSum, "tokens");
  id.generation_tokens = scalar("generation_tokens", Reduce::kSum, "tokens");
  id.bytes_weights = scalar("bytes_weights", Reduce::kSum, "bytes");
  id.bytes_kv_read = scalar("bytes_kv_read", Reduce::kSum, "bytes");
  id.bytes_kv_write = scalar("bytes_kv_write", Reduce::kSum, "bytes");
  id.bytes_activations = scalar("bytes_activations", Reduce::kSum, "bytes");
  id.batch_seqs = scalar("batch_size", Reduce::kMean, "sequences");
  id.batch_tokens = scalar("batch_tokens", Reduce::kMean, "tokens");
  id.requests_finished = scalar("requests_finished", Reduce::kSum, "requests");
  id.requests_failed = scalar("requests_failed", Reduce::kSum, "requests");
  id.running = scalar("running", Reduce::kMean, "requests");
  id.waiting = scalar("waiting", Reduce::kMean, "requests");
  id.kv_usage = scalar("kv_usage", Reduce::kMean, "ratio");
  id.mem_weights = scalar("memory_weights_bytes", Reduce::kMean, "bytes");
  id.mem_kv_reserved = scalar("memory_kv_reserved_bytes", Reduce::kMean, "bytes");
  id.mem_kv_used = scalar("memory_kv_used_bytes", Reduce::kMean, "bytes");
  id.mem_workspace = scalar("memory_workspace_bytes", Reduce::kMean, "bytes");
  id.rss = scalar("process_resident_bytes", Reduce::kMean, "bytes");
  id.process_cpu_cores = scalar("process_cpu_cores", Reduce::kMean, "cores");
  id.engine_thread_busy = scalar("engine_thread_busy", Reduce::kMean, "ratio");
  id.gpu_util = scalar("gpu_util", Reduce::kMean, "ratio");
  id.gpu_mem_util = scalar("gpu_memory_util", Reduce::kMean, "ratio");
  id.gpu_mem_used = scalar("gpu_memory_used_bytes", Reduce::kMean, "bytes");
  id.gpu_mem_total = scalar("gpu_memory_total_bytes", Reduce::kMean, "bytes");
  id.gpu_power = scalar("gpu_power_watts", Reduce::kMean, "watts");
  id.gpu_sm_clock = scalar("gpu_sm_clock_hertz", Reduce::kMean, "hertz");
  id.gpu_sm_util = scalar("gpu_sm_activity", Reduce::kMean, "ratio");
  id.gpu_sm_occupancy = scalar("gpu_sm_occupancy", Reduce::kMean, "ratio");
  id.gpu_tensor_util = scalar("gpu_tensor_activity", Reduce::kMean, "ratio");
  id.gpu_dram_bw_util = scalar("gpu_dram_bandwidth", Reduce::kMean, "ratio");
  id.replicas_active = scalar("replicas_active", Reduce::kMean, "replicas");
  id.replicas_starting = scalar("replicas_starting", Reduce::kMean, "replicas");
  id.replicas_desired = scalar("replicas_desired", Reduce::kMean, "replicas");
  id.http_2xx = scalar("http_2xx", Reduce::kSum, "requests");
  id.http_4xx = scalar("http_4xx", Reduce::kSum, "requests");
  id.http_5xx = scalar("http_5xx", Reduce::kSum, "requests");
  id.http_in_flight = scalar("http_in_flight", Reduce::kMean, "requests");
  id.preemptions = scalar("preemptions", Reduce::kSum, "preemptions");
  for (int h = 0; h < kHistograms; ++h) {
    const HistogramDef& d = kHistogramDefs[h];
    const bool tokens = d.lower == kLengthLower;
    id.hist[h] = store_.add_series(
        {d.series, SeriesKind::kHistogram, Reduce::kSum, tokens ? "tokens" : "seconds", d.lower});
  }
}

void Telemetry::record(const StepStats& st) {
  SelfTimer self(self_engine_ns_);
  const Ids& id = *ids_;
  const int phase = st.shape.prefill.tokens > 0 ? 1 : 2;
  const double flops = st.cost.flops(), bytes = st.cost.bytes();
  // Each logit row samples one token: every decode token, and the first token of a request from
  // the last chunk of its prompt.
  const double generated = static_cast<double>(
      st.generated_tokens >= 0 ? st.generated_tokens
                               : st.shape.prefill.logit_rows + st.shape.decode.logit_rows);
  const double device_s = static_cast<double>(std::max<int64_t>(0, st.device_ns)) / 1e9;
  double active_ns = static_cast<double>(std::max<int64_t>(0, st.end_ns - st.start_ns));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!st.idle_before && last_end_ns_ > 0 && st.start_ns > last_end_ns_)
      active_ns += static_cast<double>(st.start_ns - last_end_ns_);
    last_end_ns_ = st.end_ns;
    Totals& t = *totals_;
    for (int p : {0, phase}) {
      t.steps[p] += 1;
      t.flops[p] += flops;
      t.bytes[p] += bytes;
      t.device_s[p] += device_s;
      t.active_s[p] += active_ns / 1e9;
    }
    t.prompt_tokens += static_cast<double>(st.shape.prefill.tokens);
    t.generation_tokens += generated;
    t.bytes_weights += st.cost.bytes_weights;
    t.bytes_kv_read += st.cost.bytes_kv_read;
    t.bytes_kv_write += st.cost.bytes_kv_write;
    t.bytes_activations += st.cost.bytes_activations;
  }
  const int64_t t = st.end_ns;
  SeriesStore::Writer w = store_.writer();
  for (int p : {0, phase}) {
    w.add(id.steps[p], t, 1);
    w.add(id.flops[p], t, flops);
    w.add(id.bytes[p], t, bytes);
    w.add(id.device_s[p], t, device_s);
    w.add(id.active_s[p], t, active_ns / 1e9);
  }
  w.add(id.prompt_tokens, t, static_cast<double>(st.shape.prefill.tokens));
  w.add(id.generation_tokens, t, generated);
  w.add(id.bytes_weights, t, st.cost.bytes_weights);
  w.add(id.bytes_kv_read, t, st.cost.bytes_kv_read);
  w.add(id.bytes_kv_write, t, st.cost.bytes_kv_write);
  w.add(id.bytes_activations, t, st.cost.bytes_activations);
  w.add(id.batch_seqs, t, static_cast<double>(st.shape.seqs()));
  w.add(id.batch_tokens, t, static_cast<double>(st.shape.tokens()));
}

void Telemetry::record_request(const RequestRecord& r) {
  SelfTimer self(self_engine_ns_);
  const Ids& id = *ids_;
  int reason = kReasons - 1;  // unknown reasons count as errors
  for (int i = 0; i < kReasons; ++i)
    if (r.finish_reason == kReasonNames[i]) reason = i;
  const bool failed = reason >= 2;
  const double values[kHistograms] = {r.ttft_s,
                                      -1,
                                      r.e2e_s,
                                      r.queue_s,
                                      static_cast<double>(r.prompt_tokens),
                                      static_cast<double>(r.generation_tokens)};
  {
    std::lock_guard<std::mutex> lock(mu_);
    totals_->finished[reason] += 1;
    for (int h = 0; h < kHistograms; ++h)
      if (h != kItl && values[h] >= 0) totals_->hist[h].observe(kHistogramDefs[h].lower, values[h]);
  }
  SeriesStore::Writer w = store_.writer();
  w.add(id.requests_finished, r.end_ns, 1);
  w.add(id.requests_failed, r.end_ns, failed ? 1 : 0);
  for (int h = 0; h < kHistograms; ++h)
    if (h != kItl && values[h] >= 0) w.observe(id.hist[h], r.end_ns, values[h]);
}

void Telemetry::record_token_gaps(std::span<const double> gaps_s, int64_t t_ns) {
  SelfTimer self(self_engine_ns_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (double g : gaps_s)
      if (g >= 0) totals_->hist[kItl].observe(kLatencyLowerS, g);
  }
  SeriesStore::Writer w = store_.writer();
  for (double g : gaps_s)
    if (g >= 0) w.observe(ids_->hist[kItl], t_ns, g);
}

void Telemetry::set_replicas(int active, int starting) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    latest_->replicas_active = active;
    latest_->replicas_starting = starting;
  }
  const int64_t t = clock_->now_ns();
  SeriesStore::Writer w = store_.writer();
  w.add(ids_->replicas_active, t, active);
  w.add(ids_->replicas_starting, t, starting);
}

std::string Telemetry::device() const {
  std::lock_guard<std::mutex> lock(mu_);
  return latest_->device;
}

void Telemetry::set_device(std::string device) {
  std::lock_guard<std::mutex> lock(mu_);
  latest_->device = std::move(device);
}

void Telemetry::set_desired_replicas(int desired) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    latest_->replicas_desired = desired;
  }
  store_.add(ids_->replicas_desired, clock_->now_ns(), desired);
}

void Telemetry::record_http_response(int status) {
  const int cls = std::clamp(status / 100, 1, kHttpClasses) - 1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    totals_->http[cls] += 1;
  }
  const SeriesId series[kHttpClasses] = {-1, ids_->http_2xx, -1, ids_->http_4xx, ids_->http_5xx};
  if (series[cls] >= 0) store_.add(series[cls], clock_->now_ns(), 1);
}

void Telemetry::add_requests_in_flight(int delta) {
  in_flight_.fetch_add(delta, std::memory_order_relaxed);
}

void Telemetry::set_peaks(const Peaks& peaks) {
  std::lock_guard<std::mutex> lock(mu_);
  latest_->peaks = peaks;
}

Peaks Telemetry::peaks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return latest_->peaks;
}

void Telemetry::set_engine_source(std::function<EngineSnapshot()> source) {
  std::lock_guard<std::mutex> lock(mu_);
  engine_source_ = std::move(source);
}

void Telemetry::set_gpu_probe(std::unique_ptr<GpuProbe> probe) {
  std::lock_guard<std::mutex> lock(probe_mu_);
  gpu_ = std::move(probe);
}

void Telemetry::sample_probes() {
  std::lock_guard<std::mutex> probe_lock(probe_mu_);
  std::function<EngineSnapshot()> source;
  {
    std::lock_guard<std::mutex> lock(mu_);
    source = engine_source_;
  }
  std::optional<EngineSnapshot> engine;
  if (source) engine = source();
  if (engine) cpu_.set_engine_tid(engine->engine_tid);
  const int64_t t = clock_->now_ns();
  std::optional<GpuReading> gpu;
  if (gpu_) gpu = gpu_->sample();
  const CpuReading cpu = cpu_.sample(t);
  // Preemptions come as a cumulative count; the store keeps the increase since the last sample.
  std::optional<double> new_preemptions;
  if (engine && engine->preemptions >= 0) {
    if (last_preemptions_ >= 0 && engine->preemptions >= last_preemptions_)
      new_preemptions = static_cast<double>(engine->preemptions - last_preemptions_);
    else if (last_preemptions_ < 0)
      new_preemptions = static_cast<double>(engine->preemptions);
    last_preemptions_ = engine->preemptions;
  }
  int replicas[3];
  {
    std::lock_guard<std::mutex> lock(mu_);
    latest_->gpu = gpu;
    latest_->cpu = cpu;
    latest_->engine = engine;
    if (new_preemptions) totals_->preemptions = totals_->preemptions.value_or(0) + *new_preemptions;
    replicas[0] = latest_->replicas_active;
    replicas[1] = latest_->replicas_starting;
    replicas[2] = latest_->replicas_desired;
  }
  const Ids& id = *ids_;
  SeriesStore::Writer w = store_.writer();
  auto put = [&](SeriesId s, const std::optional<double>& v) {
    if (v) w.add(s, t, *v);
  };
  put(id.rss, cpu.rss_bytes);
  put(id.process_cpu_cores, cpu.process_cpu_cores);
  put(id.engine_thread_busy, cpu.engine_thread_busy);
  w.add(id.http_in_flight, t, in_flight_.load(std::memory_order_relaxed));
  // Replica counts change rarely: repeat them every second so every bucket has a value.
  if (replicas[0] >= 0) {
    w.add(id.replicas_active, t, replicas[0]);
    w.add(id.replicas_starting, t, replicas[1]);
  }
  if (replicas[2] >= 0) w.add(id.replicas_desired, t, replicas[2]);
  if (new_preemptions) w.add(id.preemptions, t, *new_preemptions);
  if (engine) {
    w.add(id.running, t, engine->running);
    w.add(id.waiting, t, engine->waiting);
    if (engine->kv_blocks_total > 0)
      w.add(id.kv_usage, t,
            static_cast<double>(engine->kv_blocks_used) /
                static_cast<double>(engine->kv_blocks_total));
    w.add(id.mem_weights, t, engine->weights_bytes);
    w.add(id.mem_kv_reserved, t, engine->kv_reserved_bytes);
    w.add(id.mem_kv_used, t, engine->kv_used_bytes);
    w.add(id.mem_workspace, t, engine->workspace_bytes);
  }
  if (gpu) {
    put(id.gpu_util, gpu->util_gpu);
    put(id.gpu_mem_util, gpu->util_memory);
    put(id.gpu_mem_used, gpu->memory_used_bytes);
    put(id.gpu_mem_total, gpu->memory_total_bytes);
    put(id.gpu_power, gpu->power_watts);
    put(id.gpu_sm_clock, gpu->sm_clock_hz);
    put(id.gpu_sm_util, gpu->sm_util);
    put(id.gpu_sm_occupancy, gpu->sm_occupancy);
    put(id.gpu_tensor_util, gpu->tensor_util);
    put(id.gpu_dram_bw_util, gpu->dram_bw_util);
  }
}

void Telemetry::start_probes() {
  std::lock_guard<std::mutex> lock(thread_mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { probe_loop(); });
}

void Telemetry::stop_probes() {
  {
    std::lock_guard<std::mutex> lock(thread_mu_);
    stop_ = true;
  }
  thread_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Telemetry::SelfCost Telemetry::self_cost() const {
  SelfCost c;
  c.engine_s = static_cast<double>(self_engine_ns_.load(std::memory_order_relaxed)) / 1e9;
  c.probes_s = static_cast<double>(self_probe_ns_.load(std::memory_order_relaxed)) / 1e9;
  c.render_s = static_cast<double>(self_render_ns_.load(std::memory_order_relaxed)) / 1e9;
  return c;
}

void Telemetry::probe_loop() {
  const auto interval = std::chrono::duration<double>(options_.probe_interval_s);
  std::unique_lock<std::mutex> lock(thread_mu_);
  while (!stop_) {
    lock.unlock();
    const int64_t cpu0 = thread_cpu_ns();
    sample_probes();
    self_probe_ns_.fetch_add(thread_cpu_ns() - cpu0, std::memory_order_relaxed);
    lock.lock();
    thread_cv_.wait_for(lock, interval, [this] { return stop_; });
  }
}

}  // namespace carpool::telemetry
