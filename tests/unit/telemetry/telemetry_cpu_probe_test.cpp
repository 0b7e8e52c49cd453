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

TEST(TelemetryCpuProbe, ParsesMachineBusyTimeFromProcStat) {
  // user nice system idle iowait irq softirq steal guest guest_nice: busy is all but idle, iowait
  // and the guest columns (already in user).
  const std::string stat =
      "cpu  1000 20 300 90000 400 5 6 70 500 0\ncpu0 500 10 150 45000 200 2 3 35 250 0\n";
  auto busy = parse_proc_stat_machine_busy_s(stat, 100);
  ASSERT_TRUE(busy.has_value());
  EXPECT_DOUBLE_EQ(*busy, (1000 + 20 + 300 + 5 + 6 + 70) / 100.0);
  // An old kernel without the steal column.
  auto old = parse_proc_stat_machine_busy_s("cpu  100 0 50 900 0 1 2\n", 100);
  ASSERT_TRUE(old.has_value());
  EXPECT_DOUBLE_EQ(*old, 1.53);
  EXPECT_FALSE(parse_proc_stat_machine_busy_s("cpu0 1 2 3 4 5 6 7 8\n", 100).has_value());
  EXPECT_FALSE(parse_proc_stat_machine_busy_s("cpu  1 2 x 4 5 6 7 8\n", 100).has_value());
  EXPECT_FALSE(parse_proc_stat_machine_busy_s("cpu  1 2 3\n", 100).has_value());
  EXPECT_FALSE(parse_proc_stat_machine_busy_s("", 100).has_value());
}

TEST(TelemetryCpuProbe, OthersShareIsTheMachinesBusyTimeLessTheProcesss) {
  CpuTimes a, b;
  a.n_cpus = b.n_cpus = 4;
  a.wall_s = 10, b.wall_s = 12;                    // 8 CPU-seconds of capacity
  a.machine_busy_s = 100, b.machine_busy_s = 106;  // 6 busy
  a.process_s = 3, b.process_s = 5;                // 2 of them this process's
  EXPECT_DOUBLE_EQ(others_cpu_share(a, b), 0.5);
  b.machine_busy_s = 101;  // tick rounding can make the process's share look larger
  EXPECT_DOUBLE_EQ(others_cpu_share(a, b), 0.0);
  b.wall_s = a.wall_s;  // no time passed
  EXPECT_DOUBLE_EQ(others_cpu_share(a, b), 0.0);
}

void write_file(const std::filesystem::path& p, const std::string& text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

TEST(TelemetryCpuProbe, ReadsCpuTimesFromAFakeProcTree) {
  const auto root =
      std::filesystem::temp_directory_path() / ("carpool_times_" + std::to_string(getpid()));
  const double tck = static_cast<double>(sysconf(_SC_CLK_TCK));
  std::filesystem::create_directories(root / "self");
  std::ofstream(root / "stat") << "cpu  " << 3 * tck << " 0 " << tck << " 100 0 0 0 0 0 0\n";
  std::ofstream(root / "self/stat") << "7 (carpool) R 1 1 1 0 -1 0 0 0 0 0 " << tck << " 0 0\n";
  auto t = read_cpu_times(root.string());
  ASSERT_TRUE(t.has_value());
  EXPECT_DOUBLE_EQ(t->machine_busy_s, 4.0);
  EXPECT_DOUBLE_EQ(t->process_s, 1.0);
  EXPECT_GE(t->n_cpus, 1);
  std::filesystem::remove(root / "stat");
  EXPECT_FALSE(read_cpu_times(root.string()).has_value());
  std::filesystem::remove_all(root);
  // The real one.
  auto real = read_cpu_times();
  ASSERT_TRUE(real.has_value());
  EXPECT_GT(real->machine_busy_s, 0);
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
