// carpool-probe: prints carpool's device probe readings as one JSON object per line, once per
// interval, so they can be compared with other tools (scripts/gpu/probe_check.py).
//
//   carpool-probe [--interval S] [--count N] [--device I] [--nvml PATH]
//
// Unavailable figures print as null.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>

#include "telemetry/clock.h"
#include "telemetry/cpu_probe.h"
#include "telemetry/gpu_probe.h"

namespace {

using carpool::telemetry::CpuProbe;
using carpool::telemetry::GpuProbe;
using carpool::telemetry::GpuReading;

std::string num(const std::optional<double>& v) {
  if (!v) return "null";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.6g", *v);
  return buf;
}

std::string gpu_json(const GpuReading& r) {
  return "{\"index\":" + std::to_string(r.index) + ",\"name\":\"" + r.name + "\"" +
         ",\"util_gpu\":" + num(r.util_gpu) + ",\"util_memory\":" + num(r.util_memory) +
         ",\"memory_used_bytes\":" + num(r.memory_used_bytes) +
         ",\"memory_total_bytes\":" + num(r.memory_total_bytes) +
         ",\"power_watts\":" + num(r.power_watts) + ",\"sm_clock_hz\":" + num(r.sm_clock_hz) +
         ",\"sm_util\":" + num(r.sm_util) + ",\"sm_occupancy\":" + num(r.sm_occupancy) +
         ",\"tensor_util\":" + num(r.tensor_util) + ",\"dram_bw_util\":" + num(r.dram_bw_util) +
         "}";
}

}  // namespace

int main(int argc, char** argv) {
  double interval_s = 1.0;
  long count = -1;
  int device = 0;
  std::string nvml_path = "libnvidia-ml.so.1";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--interval" && has_value)
      interval_s = std::atof(argv[++i]);
    else if (a == "--count" && has_value)
      count = std::atol(argv[++i]);
    else if (a == "--device" && has_value)
      device = std::atoi(argv[++i]);
    else if (a == "--nvml" && has_value)
      nvml_path = argv[++i];
    else {
      std::fprintf(stderr,
                   "usage: carpool-probe [--interval S] [--count N] [--device I] [--nvml PATH]\n");
      return 2;
    }
  }
  if (!(interval_s > 0)) interval_s = 1.0;
  std::unique_ptr<GpuProbe> gpu;
  std::string gpu_error;
  auto api = carpool::telemetry::load_nvml(nvml_path);
  if (api.is_ok()) {
    auto probe = GpuProbe::open(std::move(api.value()), device);
    if (probe.is_ok())
      gpu = std::move(probe.value());
    else
      gpu_error = probe.error();
  } else {
    gpu_error = api.error();
  }
  if (!gpu_error.empty())
    std::fprintf(stderr, "carpool-probe: no GPU figures: %s\n", gpu_error.c_str());
  if (gpu)
    std::fprintf(stderr, "carpool-probe: %s, GPM %s\n", gpu->name().c_str(),
                 gpu->gpm_supported() ? "supported" : "not supported");
  carpool::telemetry::SystemClock clock;
  CpuProbe cpu;
  const auto period = std::chrono::duration<double>(interval_s);
  auto next = std::chrono::steady_clock::now();
  for (long n = 0; count < 0 || n < count; ++n) {
    const int64_t t = clock.now_ns();
    char tbuf[32];
    std::snprintf(tbuf, sizeof(tbuf), "%.3f", static_cast<double>(t) / 1e9);
    std::string line = std::string("{\"t\":") + tbuf;
    line += ",\"gpu\":" + (gpu ? gpu_json(gpu->sample()) : std::string("null"));
    const auto c = cpu.sample(t);
    line += ",\"cpu\":{\"process_cpu_cores\":" + num(c.process_cpu_cores) +
            ",\"rss_bytes\":" + num(c.rss_bytes) + "}}";
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
    next += std::chrono::duration_cast<std::chrono::steady_clock::duration>(period);
    std::this_thread::sleep_until(next);
  }
  return 0;
}
