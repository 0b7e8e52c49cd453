#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "telemetry/peaks.h"

namespace carpool::telemetry {
namespace {

TEST(TelemetryPeaks, CommittedCatalogParsesAndMatchesNvmlNames) {
  auto catalog = load_gpu_catalog(std::string(CARPOOL_SOURCE_DIR) + "/data/gpus.json");
  ASSERT_TRUE(catalog.is_ok()) << catalog.error();
  EXPECT_GE(catalog->size(), 8u);
  auto h200 = match_gpu(*catalog, "NVIDIA H200");
  ASSERT_TRUE(h200.has_value());
  EXPECT_EQ(h200->name, "H200 SXM");
  EXPECT_DOUBLE_EQ(h200->bandwidth_bytes_per_s, 4.8e12);
  EXPECT_DOUBLE_EQ(h200->bf16_flops_per_s, 989e12);
  EXPECT_EQ(match_gpu(*catalog, "NVIDIA H100 80GB HBM3")->name, "H100 SXM");
  EXPECT_EQ(match_gpu(*catalog, "NVIDIA L40S")->name, "L40S");  // not "L4": longest match wins
  EXPECT_EQ(match_gpu(*catalog, "NVIDIA L4")->name, "L4");
  EXPECT_EQ(match_gpu(*catalog, "NVIDIA A100-SXM4-80GB")->name, "A100 80GB SXM");
  EXPECT_FALSE(match_gpu(*catalog, "AMD EPYC").has_value());
  const Peaks p = peaks_from_catalog(*h200, "NVIDIA H200");
  EXPECT_EQ(p.flops_source, "catalog");
  EXPECT_NEAR(*p.ridge_flops_per_byte(), 206.0, 0.1);  // 989 / 4.8
}

TEST(TelemetryPeaks, MalformedCatalogIsAnError) {
  EXPECT_FALSE(parse_gpu_catalog("").is_ok());
  EXPECT_FALSE(parse_gpu_catalog("[]").is_ok());
  EXPECT_FALSE(parse_gpu_catalog(R"({"gpus": [1]})").is_ok());
  auto no_bw = parse_gpu_catalog(R"({"gpus": [{"name": "X", "bf16_tflops": 1}]})");
  ASSERT_FALSE(no_bw.is_ok());
  EXPECT_NE(no_bw.error().find("X"), std::string::npos);
  EXPECT_FALSE(
      parse_gpu_catalog(R"({"gpus": [{"name": "X", "bf16_tflops": 1, "bandwidth_tbps": -2}]})")
          .is_ok());
  auto ok =
      parse_gpu_catalog(R"({"gpus": [{"name": "X", "bf16_tflops": 1, "bandwidth_tbps": 2}]})");
  ASSERT_TRUE(ok.is_ok());
  EXPECT_EQ((*ok)[0].match, std::vector<std::string>{"X"});
}

TEST(TelemetryPeaks, CacheFileRoundTrip) {
  Peaks p;
  p.device = "cpu: test (2 threads)";
  p.bandwidth_bytes_per_s = 3.3e10;
  p.flops_per_s = 1.5e11;
  const std::string text =
      write_cached_peaks(R"({"other": {"bandwidth_bytes_per_s": 1, "flops_per_s": 2, "kernels": )" +
                             std::to_string(kPeaksCacheVersion) +
                             R"(}, "stale": {"bandwidth_bytes_per_s": 1, "flops_per_s": 2}})",
                         p);
  auto back = read_cached_peaks(text, p.device);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->bandwidth_bytes_per_s, 3.3e10);
  EXPECT_EQ(back->flops_per_s, 1.5e11);
  EXPECT_EQ(back->flops_source, "measured");
  EXPECT_TRUE(read_cached_peaks(text, "other").has_value());  // kept
  // Kept in the file, but measured with older kernels (no version): calibrate again.
  EXPECT_NE(text.find("\"stale\""), std::string::npos);
  EXPECT_FALSE(read_cached_peaks(text, "stale").has_value());
  EXPECT_FALSE(
      read_cached_peaks(R"({"k": {"bandwidth_bytes_per_s": 1, "flops_per_s": 1, "kernels": )" +
                            std::to_string(kPeaksCacheVersion - 1) + "}}",
                        "k"));
  EXPECT_FALSE(read_cached_peaks(text, "missing").has_value());
  EXPECT_FALSE(read_cached_peaks("not json", p.device).has_value());
  EXPECT_FALSE(read_cached_peaks(R"({"k": {"bandwidth_bytes_per_s": 0, "flops_per_s": 1}})", "k"));
}

TEST(TelemetryPeaks, CacheDirHonoursCarpoolCache) {
  const char* old = std::getenv("CARPOOL_CACHE");
  const std::string saved = old ? old : "";
  setenv("CARPOOL_CACHE", "/tmp/carpool-cache-test", 1);
  EXPECT_EQ(cache_dir(), "/tmp/carpool-cache-test");
  if (old)
    setenv("CARPOOL_CACHE", saved.c_str(), 1);
  else
    unsetenv("CARPOOL_CACHE");
}

CalibrationOptions small_calibration() {
  CalibrationOptions o;
  o.threads = 2;
  o.triad_bytes = 3u << 22;  // small: a test, not a measurement
  o.repeats = 2;
  o.matmul_rows = 16;
  o.matmul_k = 256;
  o.matmul_n = 256;
  return o;
}

std::filesystem::path temp_dir(const char* name) {
  return std::filesystem::temp_directory_path() /
         (std::string(name) + "_" + std::to_string(getpid()));
}

TEST(TelemetryPeaks, CpuCalibrationMeasuresOnceThenReadsTheCache) {
  auto backend = make_cpu_backend({.n_threads = 2});
  CalibrationOptions o = small_calibration();
  o.max_others_share = 1.0;  // saved whatever else runs beside this test
  const auto dir = temp_dir("carpool_peaks");
  const std::string path = (dir / "peaks.json").string();
  auto first = cpu_peaks_cached(*backend, "cpu-test", path, o);
  ASSERT_TRUE(first.is_ok()) << first.error();
  EXPECT_FALSE(first->from_cache);
  EXPECT_TRUE(first->saved);
  EXPECT_FALSE(first->disturbed);
  EXPECT_GT(first->seconds, 0);
  EXPECT_GT(first->peaks.bandwidth_bytes_per_s, 1e8);
  EXPECT_GT(first->peaks.flops_per_s, 1e7);
  EXPECT_EQ(first->peaks.bandwidth_source, "measured");
  ASSERT_TRUE(std::filesystem::exists(path));
  EXPECT_NE(describe_cpu_calibration(*first, path).find("saved to " + path), std::string::npos);
  // Replace the cached figures: the second call must return them without measuring.
  {
    Peaks fake = first->peaks;
    fake.bandwidth_bytes_per_s = 12345;
    fake.flops_per_s = 678;
    std::ofstream(path) << write_cached_peaks("", fake);
  }
  auto second = cpu_peaks_cached(*backend, "cpu-test", path, o);
  ASSERT_TRUE(second.is_ok());
  EXPECT_TRUE(second->from_cache);
  EXPECT_EQ(second->peaks.bandwidth_bytes_per_s, 12345);
  EXPECT_EQ(second->peaks.flops_per_s, 678);
  EXPECT_NE(describe_cpu_calibration(*second, path).find("before: " + path), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(TelemetryPeaks, ACalibrationBesideOtherWorkIsUsedButNotCached) {
  // Other processes spin on every CPU while the calibration measures: it must see them, keep its
  // figures for this run and leave the cache alone, so that the next start measures again.
  auto backend = make_cpu_backend({.n_threads = 2});
  CalibrationOptions o = small_calibration();
  o.triad_bytes = 3u << 24;  // long enough (~0.5 s) for /proc's 10 ms ticks to tell the shares
  o.repeats = 20;
  const auto dir = temp_dir("carpool_peaks_busy");
  const std::string path = (dir / "peaks.json").string();
  const int spinners = static_cast<int>(std::min(256u, std::thread::hardware_concurrency()));
  std::vector<pid_t> children;
  for (int i = 0; i < std::max(1, spinners); ++i) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      volatile uint64_t n = 0;
      for (;;) n = n + 1;
    }
    children.push_back(pid);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto busy = cpu_peaks_cached(*backend, "cpu-test", path, o);
  for (pid_t pid : children) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  ASSERT_TRUE(busy.is_ok()) << busy.error();
  ASSERT_TRUE(busy->others_share.has_value());
  EXPECT_GT(*busy->others_share, o.max_others_share);
  EXPECT_TRUE(busy->disturbed);
  EXPECT_FALSE(busy->saved);
  EXPECT_GT(busy->peaks.bandwidth_bytes_per_s, 1e8);  // still this run's peaks
  EXPECT_FALSE(std::filesystem::exists(path));
  const std::string line = describe_cpu_calibration(*busy, path);
  EXPECT_EQ(line.rfind("warning: ", 0), 0u) << line;
  EXPECT_NE(line.find("measured again at the next start"), std::string::npos) << line;
  std::filesystem::remove_all(dir);
}

TEST(TelemetryPeaks, BandwidthPassesMeasureAPositiveRate) {
  CalibrationOptions o;
  o.threads = 2;
  o.triad_bytes = 3u << 22;  // small: a test of the code path, not a measurement
  o.repeats = 2;
  const double read = measure_read_bandwidth(o);
  const double triad = measure_triad_bandwidth(o);
  EXPECT_GT(read, 1e8);
  EXPECT_GT(triad, 1e8);
  EXPECT_LT(read, 1e13);  // a clock or byte-count slip would show as absurd
  EXPECT_LT(triad, 1e13);
}

}  // namespace
}  // namespace carpool::telemetry
