#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "telemetry/cpu_probe.h"

namespace carpool::telemetry {
namespace {

TEST(TelemetryCpuProbe, ParsesStatWithAwkwardComm) {
  // Fields after the comm: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
  // utime stime ...
  const std::string stat = "1234 (a b) c) S 1 1 1 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0\n";
  auto s = parse_proc_stat_cpu_s(stat, 100);
  ASSERT_TRUE(s.has_value());
  EXPECT_DOUBLE_EQ(*s, 3.0);  // (250 + 50) / 100
  EXPECT_FALSE(parse_proc_stat_cpu_s("garbage", 100).has_value());
  EXPECT_FALSE(parse_proc_stat_cpu_s("1 (x) S 1 2", 100).has_value());
  EXPECT_FALSE(parse_proc_stat_cpu_s("1 (x) S 1 1 1 0 -1 4 1 0 0 0 -5 5 0", 100).has_value());
  auto rss = parse_proc_statm_rss_bytes("1000 250 30 4 0 100 0\n", 4096);
  ASSERT_TRUE(rss.has_value());
  EXPECT_DOUBLE_EQ(*rss, 250.0 * 4096);
  EXPECT_FALSE(parse_proc_statm_rss_bytes("12", 4096).has_value());
}

void write_file(const std::filesystem::path& p, const std::string& text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

std::string stat_line(int utime, int stime) {
  return "7 (carpool) R 1 1 1 0 -1 0 0 0 0 0 " + std::to_string(utime) + " " +
         std::to_string(stime) + " 0 0 20 0 4 0\n";
}

TEST(TelemetryCpuProbe, BusyFromTwoSamplesOfAFakeProcTree) {
  const auto root =
      std::filesystem::temp_directory_path() / ("carpool_proc_" + std::to_string(getpid()));
  const double tck = static_cast<double>(sysconf(_SC_CLK_TCK));
  write_file(root / "self/stat", stat_line(0, 0));
  write_file(root / "self/statm", "1000 300 0 0 0 0 0\n");
  write_file(root / "self/task/42/stat", stat_line(0, 0));
  CpuProbe probe(root.string());
  probe.set_engine_tid(42);
  const int64_t t0 = 1'000'000'000'000;
  const CpuReading first = probe.sample(t0);
  EXPECT_FALSE(first.process_cpu_cores.has_value());
  EXPECT_FALSE(first.engine_thread_busy.has_value());
  ASSERT_TRUE(first.rss_bytes.has_value());
  // Two seconds later: the process used 3 CPU-seconds, the engine thread 1.5.
  write_file(root / "self/stat", stat_line(static_cast<int>(2 * tck), static_cast<int>(tck)));
  write_file(root / "self/task/42/stat", stat_line(static_cast<int>(1.5 * tck), 0));
  const CpuReading second = probe.sample(t0 + 2'000'000'000);
  ASSERT_TRUE(second.process_cpu_cores.has_value());
  EXPECT_NEAR(*second.process_cpu_cores, 1.5, 1e-9);
  ASSERT_TRUE(second.engine_thread_busy.has_value());
  EXPECT_NEAR(*second.engine_thread_busy, 0.75, 1e-9);
  EXPECT_NEAR(*second.process_cpu_s, 3.0, 1e-9);
  std::filesystem::remove_all(root);
}

TEST(TelemetryCpuProbe, RealProcfs) {
  CpuProbe probe;
  const CpuReading r = probe.sample(1);
  ASSERT_TRUE(r.rss_bytes.has_value());
  EXPECT_GT(*r.rss_bytes, 1e5);
  ASSERT_TRUE(r.process_cpu_s.has_value());
  EXPECT_GE(*r.process_cpu_s, 0.0);
}

}  // namespace
}  // namespace carpool::telemetry
