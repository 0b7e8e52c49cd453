// engine_direct: output tokens/s of the engine driven directly (no HTTP), with the same request
// mix that http_bench.py sends through `carpool serve`, for the HTTP-vs-direct comparison.
//
//   engine_direct MODEL.gguf CONCURRENCY REQUESTS MAX_TOKENS [PROMPT_LEN=32] [FIRST=0]
//                 [SETTLE_S=0]
//
// Closed loop: CONCURRENCY requests in flight; each finished one is replaced until REQUESTS
// have run. Request i (FIRST, FIRST+1, ...) has the prompt of PROMPT_LEN token ids
// 1000 + (i*7919 + k*104729) % 19000 (distinct runs use distinct i: no prefix-cache reuse);
// greedy, ignore_eos, exactly MAX_TOKENS generated. Engine options are `carpool serve`'s defaults,
// and one warm-up request runs before the clock starts, as in `carpool serve`; then, with
// SETTLE_S > 0, the process sleeps that long before the clock starts (see http_vs_direct.py: on a
// VM, the seconds after a process has faulted in or freed its memory run slower).
// Prints one JSON line: {"concurrency", "requests", "tokens", "seconds", "tokens_per_s",
// "telemetry"}.
//
// With CARPOOL_DIRECT_TELEMETRY=1 the engine reports to a Telemetry hub as in `carpool serve`
// (every step, request and token gap recorded; the probe thread sampling once a second; the CPU
// peaks from the cache), and the JSON adds telemetry's own cost (Telemetry::self_cost) in
// seconds: the telemetry overhead benchmark (bench/telemetry_overhead.py) alternates both modes.
//
// CARPOOL_DIRECT_KV=f32|f16|int8 sets the KV cache type (`carpool serve --kv-cache-dtype`;
// default f16, as serve's auto).
//
// Built with -DCARPOOL_BENCH=ON (target engine_direct).
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "backend/cpu/cpu_backend.h"
#include "engine/engine.h"
#include "model/llama.h"
#include "model/open_model.h"
#include "telemetry/peaks.h"
#include "telemetry/telemetry.h"

using namespace carpool;

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr,
                 "usage: engine_direct MODEL CONCURRENCY REQUESTS MAX_TOKENS [PROMPT_LEN] [FIRST] "
                 "[SETTLE_S]\n");
    return 2;
  }
  const int conc = std::atoi(argv[2]), total = std::atoi(argv[3]), max_tokens = std::atoi(argv[4]);
  const int plen = argc > 5 ? std::atoi(argv[5]) : 32;
  const int first = argc > 6 ? std::atoi(argv[6]) : 0;
  const double settle_s = argc > 7 ? std::atof(argv[7]) : 0.0;
  auto opened = open_model(argv[1]);
  if (!opened) return std::fprintf(stderr, "%s\n", opened.error().c_str()), 1;
  CpuBackendOptions bo;
  if (const char* kv = std::getenv("CARPOOL_DIRECT_KV"); kv != nullptr) {
    const std::string t = kv;
    if (t != "f32" && t != "f16" && t != "int8") {
      return std::fprintf(stderr, "CARPOOL_DIRECT_KV must be f32, f16 or int8\n"), 2;
    }
    bo.kv_dtype = t == "f32" ? DType::kF32 : t == "f16" ? DType::kF16 : DType::kI8;
  }
  auto backend = make_cpu_backend(bo);
  EngineOptions eo;  // the serve defaults
  auto model =
      LlamaModel::load(*backend, opened->source, engine_model_limits(eo, opened->source.config));
  if (!model) return std::fprintf(stderr, "%s\n", model.error().c_str()), 1;
  std::unique_ptr<telemetry::Telemetry> tel;
  if (const char* t = std::getenv("CARPOOL_DIRECT_TELEMETRY"); t != nullptr && t[0] == '1') {
    tel = std::make_unique<telemetry::Telemetry>(telemetry::TelemetryOptions{});
    tel->set_device("cpu");
    const std::string dir = telemetry::cache_dir();
    if (!dir.empty()) {
      auto peaks = telemetry::cpu_peaks_cached(
          *backend, backend->device_name(), dir + "/peaks.json", telemetry::CalibrationOptions{});
      if (peaks) tel->set_peaks(peaks->peaks);
    }
    tel->start_probes();
    eo.telemetry = tel.get();
  }
  auto engine = Engine::create(*model.value(), eo);
  if (!engine) return std::fprintf(stderr, "%s\n", engine.error().c_str()), 1;

  std::mutex mu;
  std::condition_variable cv;
  int finished = 0, submitted = 0, in_flight = 0;
  int64_t tokens = 0;
  auto make = [&](int i) {
    RequestParams p;
    for (int k = 0; k < plen; ++k) {
      p.prompt.push_back(1000 + ((first + i) * 7919 + k * 104729) % 19000);
    }
    p.sampling.temperature = 0;
    p.max_tokens = max_tokens;
    p.ignore_eos = true;
    return p;
  };
  auto sink = [&](const TokenEvent& ev) {
    std::lock_guard<std::mutex> lock(mu);
    if (ev.token >= 0) ++tokens;
    if (ev.finished) {
      ++finished;
      --in_flight;
      cv.notify_all();
    }
  };
  {
    // Warm-up, as `carpool serve` does before it reports ready (first touch of the weights).
    RequestParams w = make(100000);  // a prompt no timed request uses
    w.max_tokens = 2;
    std::mutex wm;
    std::condition_variable wcv;
    bool wdone = false;
    auto id = engine.value()->submit(std::move(w), [&](const TokenEvent& ev) {
      if (!ev.finished) return;
      std::lock_guard<std::mutex> l(wm);
      wdone = true;
      wcv.notify_all();
    });
    if (!id) return std::fprintf(stderr, "%s\n", id.error().c_str()), 1;
    std::unique_lock<std::mutex> l(wm);
    wcv.wait(l, [&] { return wdone; });
  }
  if (settle_s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(settle_s));
  auto t0 = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mu);
  while (finished < total) {
    while (in_flight < conc && submitted < total) {
      ++in_flight;
      const int i = submitted++;
      lock.unlock();
      auto id = engine.value()->submit(make(i), sink);
      lock.lock();
      if (!id) return std::fprintf(stderr, "%s\n", id.error().c_str()), 1;
    }
    cv.wait(lock);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  lock.unlock();
  engine.value()->shutdown(0);
  std::string self = "null";
  if (tel) {
    const auto c = tel->self_cost();
    char buf[160];
    std::snprintf(buf, sizeof buf, "{\"engine_s\": %.6f, \"probes_s\": %.6f, \"render_s\": %.6f}",
                  c.engine_s, c.probes_s, c.render_s);
    self = buf;
  }
  std::printf(
      "{\"concurrency\": %d, \"requests\": %d, \"tokens\": %lld, \"seconds\": %.3f, "
      "\"tokens_per_s\": %.1f, \"telemetry\": %s}\n",
      conc, total, static_cast<long long>(tokens), s, tokens / s, self.c_str());
  return 0;
}
