#include "telemetry/peaks.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "telemetry/cpu_probe.h"
#include "util/host_memory.h"

namespace carpool::telemetry {
namespace {

using Json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

double seconds_since(SteadyClock::time_point t0) {
  return std::chrono::duration<double>(SteadyClock::now() - t0).count();
}

Result<std::string> read_text(const std::string& path, size_t max_bytes) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::error("cannot open " + path);
  std::string s;
  char buf[4096];
  while (f.read(buf, sizeof(buf)) || f.gcount() > 0) {
    s.append(buf, static_cast<size_t>(f.gcount()));
    if (s.size() > max_bytes) return Status::error(path + " is larger than expected");
  }
  return s;
}

std::optional<double> positive_number(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  double v = it->get<double>();
  if (!(v > 0) || !std::isfinite(v)) return std::nullopt;
  return v;
}

}  // namespace

std::optional<double> Peaks::ridge_flops_per_byte() const {
  if (bandwidth_bytes_per_s > 0 && flops_per_s > 0) return flops_per_s / bandwidth_bytes_per_s;
  return std::nullopt;
}

Result<std::vector<GpuCatalogEntry>> parse_gpu_catalog(std::string_view text) {
  Json root = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object())
    return Status::error("GPU catalog: not a JSON object");
  auto gpus = root.find("gpus");
  if (gpus == root.end() || !gpus->is_array()) return Status::error("GPU catalog: no 'gpus' array");
  std::vector<GpuCatalogEntry> out;
  for (size_t i = 0; i < gpus->size() && i < 1000; ++i) {
    const Json& g = (*gpus)[i];
    const std::string where = "GPU catalog entry " + std::to_string(i);
    if (!g.is_object()) return Status::error(where + ": not an object");
    GpuCatalogEntry e;
    auto name = g.find("name");
    if (name == g.end() || !name->is_string()) return Status::error(where + ": no 'name'");
    e.name = name->get<std::string>();
    auto match = g.find("match");
    if (match != g.end() && match->is_array()) {
      for (const Json& m : *match)
        if (m.is_string() && !m.get<std::string>().empty()) e.match.push_back(m.get<std::string>());
    }
    if (e.match.empty()) e.match.push_back(e.name);
    auto mem = positive_number(g, "memory_gb");
    auto bw = positive_number(g, "bandwidth_tbps");
    auto bf16 = positive_number(g, "bf16_tflops");
    if (!bw || !bf16)
      return Status::error(where + " (" + e.name +
                           "): needs positive bandwidth_tbps and bf16_tflops");
    e.memory_bytes = mem ? *mem * 1e9 : 0;
    e.bandwidth_bytes_per_s = *bw * 1e12;
    e.bf16_flops_per_s = *bf16 * 1e12;
    if (auto fp8 = positive_number(g, "fp8_tflops")) e.fp8_flops_per_s = *fp8 * 1e12;
    if (auto price = positive_number(g, "price_per_hour")) e.price_per_hour = *price;
    out.push_back(std::move(e));
  }
  return out;
}

Result<std::vector<GpuCatalogEntry>> load_gpu_catalog(const std::string& path) {
  CARPOOL_ASSIGN_OR_RETURN(std::string text, read_text(path, 1 << 20));
  return parse_gpu_catalog(text);
}

std::optional<GpuCatalogEntry> match_gpu(const std::vector<GpuCatalogEntry>& catalog,
                                         std::string_view device_name) {
  const GpuCatalogEntry* best = nullptr;
  size_t best_len = 0;
  for (const GpuCatalogEntry& e : catalog)
    for (const std::string& m : e.match)
      if (m.size() > best_len && device_name.find(m) != std::string_view::npos) {
        best = &e;
        best_len = m.size();
      }
  if (!best) return std::nullopt;
  return *best;
}

Peaks peaks_from_catalog(const GpuCatalogEntry& e, std::string device_name) {
  Peaks p;
  p.device = std::move(device_name);
  p.bandwidth_bytes_per_s = e.bandwidth_bytes_per_s;
  p.flops_per_s = e.bf16_flops_per_s;
  p.bandwidth_source = p.flops_source = "catalog";
  return p;
}

std::string cache_dir() {
  if (const char* c = std::getenv("CARPOOL_CACHE"); c && *c) return c;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/carpool";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/carpool";
  return "";
}

namespace {

// Runs body(begin, end) over [0, n) split into `threads` contiguous chunks, one thread each.
template <typename Body>
void run_split(size_t n, int threads, Body body) {
  std::vector<std::thread> pool;
  const size_t chunk = (n + static_cast<size_t>(threads) - 1) / static_cast<size_t>(threads);
  for (int t = 0; t < threads; ++t) {
    const size_t begin = std::min(n, chunk * static_cast<size_t>(t));
    pool.emplace_back(body, begin, std::min(n, begin + chunk), t);
  }
  for (std::thread& t : pool) t.join();
}

struct HostArray {
  explicit HostArray(size_t n) : p(static_cast<uint64_t*>(host_alloc(n * sizeof(uint64_t)))) {}
  ~HostArray() { std::free(p); }
  HostArray(const HostArray&) = delete;
  HostArray& operator=(const HostArray&) = delete;
  uint64_t* p;
};

int calibration_threads(const CalibrationOptions& o) {
  return o.threads > 0 ? o.threads
                       : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace

double measure_read_bandwidth(const CalibrationOptions& o) {
  const int threads = calibration_threads(o);
  const size_t n = std::max<size_t>(1024, o.triad_bytes / sizeof(uint64_t)) / 8 * 8;
  HostArray a(n);
  if (a.p == nullptr) return 0;
  run_split(n, threads, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; ++i) a.p[i] = i;  // first touch by the thread that reads it
  });
  std::vector<uint64_t> sums(static_cast<size_t>(threads));
  auto pass = [&](size_t b, size_t e, int t) {
    uint64_t s[8] = {};  // eight independent sums: the loads, not an add chain, set the pace
    size_t i = b;
    for (; i + 8 <= e; i += 8)
      for (int k = 0; k < 8; ++k) s[k] += a.p[i + k];
    for (; i < e; ++i) s[0] += a.p[i];
    uint64_t total = 0;
    for (uint64_t v : s) total += v;
    sums[static_cast<size_t>(t)] = total;
  };
  double best = 0;
  uint64_t check = 0;
  for (int r = 0; r < std::max(1, o.repeats); ++r) {
    const auto t0 = SteadyClock::now();
    run_split(n, threads, pass);
    const double s = seconds_since(t0);
    if (s > 0) best = std::max(best, sizeof(uint64_t) * static_cast<double>(n) / s);
    for (uint64_t v : sums) check += v;
  }
  volatile uint64_t sink = check;  // keep the loads
  (void)sink;
  return best;
}

double measure_triad_bandwidth(const CalibrationOptions& o) {
  const int threads = calibration_threads(o);
  const size_t n = std::max<size_t>(1024, o.triad_bytes / (3 * sizeof(double)));
  HostArray ma(n), mb(n), mc(n);
  if (ma.p == nullptr || mb.p == nullptr || mc.p == nullptr) return 0;
  double* a = reinterpret_cast<double*>(ma.p);
  double* b = reinterpret_cast<double*>(mb.p);
  double* c = reinterpret_cast<double*>(mc.p);
  run_split(n, threads, [&](size_t begin, size_t end, int) {
    for (size_t i = begin; i < end; ++i) a[i] = 0, b[i] = 1.0, c[i] = 2.0;
  });
  auto pass = [&](size_t begin, size_t end, int) {
    for (size_t i = begin; i < end; ++i) a[i] = b[i] + 3.0 * c[i];
  };
  double best = 0;
  for (int r = 0; r < std::max(1, o.repeats); ++r) {
    const auto t0 = SteadyClock::now();
    run_split(n, threads, pass);
    const double s = seconds_since(t0);
    if (s > 0) best = std::max(best, 3.0 * sizeof(double) * static_cast<double>(n) / s);
  }
  volatile double sink = a[n / 2];  // keep the stores
  (void)sink;
  return best;
}

Result<double> measure_matmul_flops(Backend& backend, const CalibrationOptions& o) {
  CARPOOL_ASSIGN_OR_RETURN(Tensor x,
                           backend.alloc(backend.activation_dtype(), o.matmul_rows, o.matmul_k));
  CARPOOL_ASSIGN_OR_RETURN(Tensor out,
                           backend.alloc(backend.activation_dtype(), o.matmul_rows, o.matmul_n));
  auto w = backend.alloc_random_weight(o.matmul_dtype, o.matmul_n, o.matmul_k, 1234, 0.05f);
  if (!w) {
    backend.free(x);
    backend.free(out);
    return w.status();
  }
  // x: zeros are as fast as any value for these kernels, but fill it to be safe.
  std::vector<float> host(static_cast<size_t>(o.matmul_rows) * static_cast<size_t>(o.matmul_k),
                          0.01f);
  if (backend.activation_dtype() == DType::kF32) backend.upload(x, host.data(), host.size() * 4);
  backend.matmul(out, x, *w, nullptr);  // warm-up
  backend.synchronize();
  const double flops = 2.0 * o.matmul_rows * static_cast<double>(o.matmul_k) * o.matmul_n;
  double best = 0;
  for (int r = 0; r < std::max(1, o.repeats); ++r) {
    const auto t0 = SteadyClock::now();
    backend.matmul(out, x, *w, nullptr);
    backend.synchronize();
    const double s = seconds_since(t0);
    if (s > 0) best = std::max(best, flops / s);
  }
  backend.free(x);
  backend.free(out);
  return best;
}

std::optional<Peaks> read_cached_peaks(std::string_view text, const std::string& key) {
  Json root = Json::parse(text, nullptr, false);
  if (root.is_discarded() || !root.is_object()) return std::nullopt;
  auto it = root.find(key);
  if (it == root.end() || !it->is_object()) return std::nullopt;
  auto bw = positive_number(*it, "bandwidth_bytes_per_s");
  auto fl = positive_number(*it, "flops_per_s");
  if (!bw || !fl) return std::nullopt;
  auto version = it->find("kernels");
  if (version == it->end() || !version->is_number_integer() ||
      version->get<int64_t>() != kPeaksCacheVersion) {
    return std::nullopt;  // measured with other kernels: calibrate again
  }
  Peaks p;
  p.device = key;
  p.bandwidth_bytes_per_s = *bw;
  p.flops_per_s = *fl;
  p.bandwidth_source = p.flops_source = "measured";
  return p;
}

std::string write_cached_peaks(std::string_view old_text, const Peaks& p) {
  Json root = Json::parse(old_text, nullptr, false);
  if (root.is_discarded() || !root.is_object()) root = Json::object();
  root[p.device] = {{"bandwidth_bytes_per_s", p.bandwidth_bytes_per_s},
                    {"flops_per_s", p.flops_per_s},
                    {"kernels", kPeaksCacheVersion}};
  return root.dump(2) + "\n";
}

Result<CpuCalibration> cpu_peaks_cached(Backend& backend, const std::string& key,
                                        const std::string& cache_path,
                                        const CalibrationOptions& o) {
  // The FLOP peak is the fastest of the backend's f32 matmul, its integer-dot matmuls (the path
  // quantized weights take: 8-bit weights, and 4-bit ones, which the AVX2 kernels run faster)
  // and its BF16 matmul (AMX tiles where the CPU has them, many times the others), so that a
  // phase shows an MFU above 1 only by the margin of a type not measured here (on AVX2 the
  // 5-bit types at many rows run within a few percent of Q4_0) or a calibration run under load.
  CpuCalibration c;
  std::string old_text;
  if (auto text = read_text(cache_path, 1 << 20)) {
    old_text = *text;
    if (auto cached = read_cached_peaks(old_text, key)) {
      c.peaks = *cached;
      c.from_cache = true;
      return c;
    }
  }
  const auto t0 = SteadyClock::now();
  const std::optional<CpuTimes> before = read_cpu_times();
  Peaks& p = c.peaks;
  p.device = key;
  // A decode step mostly reads (weights, KV), so the read-only pass is its ceiling; the triad
  // (two reads, one write) is kept as a floor where reads alone measure low.
  p.bandwidth_bytes_per_s = std::max(measure_read_bandwidth(o), measure_triad_bandwidth(o));
  double best = 0;
  for (DType t : {DType::kF32, DType::kQ8_0, DType::kQ4_0, DType::kBF16}) {
    CalibrationOptions co = o;
    co.matmul_dtype = t;
    CARPOOL_ASSIGN_OR_RETURN(double flops, measure_matmul_flops(backend, co));
    best = std::max(best, flops);
  }
  p.flops_per_s = best;
  p.bandwidth_source = p.flops_source = "measured";
  c.seconds = seconds_since(t0);
  if (const std::optional<CpuTimes> after = read_cpu_times(); before && after) {
    c.others_share = others_cpu_share(*before, *after);
  }
  c.disturbed = c.others_share.value_or(0) > o.max_others_share;
  if (c.disturbed) return c;
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(cache_path).parent_path(), ec);
  const std::string tmp = cache_path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << write_cached_peaks(old_text, p);
  }
  std::filesystem::rename(tmp, cache_path, ec);
  c.saved = !ec;
  return c;
}

std::string describe_cpu_calibration(const CpuCalibration& c, const std::string& cache_path) {
  char figures[96];
  std::snprintf(figures, sizeof(figures), "%.1f GB/s, %.1f GFLOP/s",
                c.peaks.bandwidth_bytes_per_s / 1e9, c.peaks.flops_per_s / 1e9);
  if (c.from_cache) {
    return std::string("CPU peaks ") + figures +
           " (calibrated on this machine before: " + cache_path + ")";
  }
  char took[32];
  std::snprintf(took, sizeof(took), "%.1f s", c.seconds);
  if (c.saved) {
    return std::string("CPU peaks ") + figures + " (calibrated in " + took + "; saved to " +
           cache_path + ")";
  }
  if (c.disturbed) {
    char share[16];
    std::snprintf(share, sizeof(share), "%.0f%%", 100 * c.others_share.value_or(0));
    return std::string("warning: CPU peaks ") + figures +
           " were calibrated while other work took " + share +
           " of the CPUs: used for this run only (MBU and MFU may read high), measured " +
           "again at the next start";
  }
  return std::string("CPU peaks ") + figures + " (calibrated in " + took + "; not saved to " +
         cache_path + ")";
}

}  // namespace carpool::telemetry
