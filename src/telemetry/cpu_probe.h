// CpuProbe: the process's and the engine thread's CPU time and the resident memory, from procfs,
// sampled by the probe thread about once a second.
//
//   process_cpu_cores   CPU seconds used by the whole process per wall second (0..n_cores)
//   engine_thread_busy  CPU seconds of the engine loop thread per wall second (0..1)
//   rss_bytes           resident set size
// Busy figures need two samples, so the first sample has none.
//
// Thread-safety: one thread at a time (the probe thread).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace carpool::telemetry {

// utime + stime in seconds from the text of /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat;
// nullopt when malformed. `ticks_per_s`: sysconf(_SC_CLK_TCK).
std::optional<double> parse_proc_stat_cpu_s(std::string_view stat_text, double ticks_per_s);
// Resident bytes from the text of /proc/<pid>/statm (second field × page size).
std::optional<double> parse_proc_statm_rss_bytes(std::string_view statm_text, double page_bytes);

// Busy seconds of all the machine's CPUs together, from the text of /proc/stat: the "cpu" line's
// user, nice, system, irq, softirq and steal (time the hypervisor gave to other guests) ticks;
// nullopt when malformed.
std::optional<double> parse_proc_stat_machine_busy_s(std::string_view proc_stat_text,
                                                     double ticks_per_s);

// The machine's busy CPU time and this process's, read together: a measurement reads them before
// and after itself to tell whether other work shared the machine meanwhile.
struct CpuTimes {
  double machine_busy_s = 0;
  double process_s = 0;
  double wall_s = 0;  // steady clock
  int n_cpus = 0;     // online CPUs, as /proc/stat's "cpu" line sums them
};
// `proc_root` is "/proc" (tests point it at a fake tree); nullopt when a file is unreadable.
std::optional<CpuTimes> read_cpu_times(const std::string& proc_root = "/proc");
// The share (0..1) of the machine's CPU capacity between two readings that went to anything but
// this process: other processes, and the hypervisor's other guests.
double others_cpu_share(const CpuTimes& before, const CpuTimes& after);

struct CpuReading {
  std::optional<double> process_cpu_s;  // cumulative
  std::optional<double> process_cpu_cores;
  std::optional<double> engine_thread_busy;
  std::optional<double> rss_bytes;
  int n_cores = 0;
};

class CpuProbe {
 public:
  // `proc_root` is "/proc" (tests point it at a fake tree).
  explicit CpuProbe(std::string proc_root = "/proc");
  // The engine loop thread's id (gettid()); 0: none.
  void set_engine_tid(int tid) { engine_tid_ = tid; }
  // `now_ns`: the telemetry clock.
  CpuReading sample(int64_t now_ns);

 private:
  std::string root_;
  double ticks_per_s_ = 100;
  double page_bytes_ = 4096;
  int engine_tid_ = 0;
  int64_t last_ns_ = 0;
  std::optional<double> last_process_s_, last_thread_s_;
  int last_tid_ = 0;
};

}  // namespace carpool::telemetry
