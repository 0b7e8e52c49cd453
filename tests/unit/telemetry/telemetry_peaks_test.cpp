#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

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

TEST(TelemetryPeaks, CpuCalibrationMeasuresOnceThenReadsTheCache) {
  auto backend = make_cpu_backend({.n_threads = 2});
  CalibrationOptions o;
  o.threads = 2;
  o.triad_bytes = 3u << 22;  // small: a test, not a measurement
  o.repeats = 2;
  o.matmul_rows = 16;
  o.matmul_k = 256;
  o.matmul_n = 256;
  const auto dir =
      std::filesystem::temp_directory_path() / ("carpool_peaks_" + std::to_string(getpid()));
  const std::string path = (dir / "peaks.json").string();
  auto first = cpu_peaks_cached(*backend, "cpu-test", path, o);
  ASSERT_TRUE(first.is_ok()) << first.error();
  EXPECT_GT(first->bandwidth_bytes_per_s, 1e8);
  EXPECT_GT(first->flops_per_s, 1e7);
  EXPECT_EQ(first->bandwidth_source, "measured");
  ASSERT_TRUE(std::filesystem::exists(path));
  // Replace the cached figures: the second call must return them without measuring.
  {
    Peaks fake = *first;
    fake.bandwidth_bytes_per_s = 12345;
    fake.flops_per_s = 678;
    std::ofstream(path) << write_cached_peaks("", fake);
  }
  auto second = cpu_peaks_cached(*backend, "cpu-test", path, o);
  ASSERT_TRUE(second.is_ok());
  EXPECT_EQ(second->bandwidth_bytes_per_s, 12345);
  EXPECT_EQ(second->flops_per_s, 678);
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
