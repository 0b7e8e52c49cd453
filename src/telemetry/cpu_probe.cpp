#include "telemetry/cpu_probe.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

namespace carpool::telemetry {
namespace {

std::optional<std::string> read_small_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) return std::nullopt;
  std::string s(4096, '\0');
  f.read(s.data(), static_cast<std::streamsize>(s.size()));
  s.resize(static_cast<size_t>(f.gcount()));
  return s;
}

// The n-th (0-based) space-separated field of `s`.
std::optional<std::string_view> field(std::string_view s, int n) {
  size_t pos = 0;
  for (int i = 0;; ++i) {
    while (pos < s.size() && (s[pos] == ' ' || s[pos] == '\n')) ++pos;
    if (pos >= s.size()) return std::nullopt;
    size_t end = pos;
    while (end < s.size() && s[end] != ' ' && s[end] != '\n') ++end;
    if (i == n) return s.substr(pos, end - pos);
    pos = end;
  }
}

std::optional<double> to_number(std::optional<std::string_view> f) {
  if (!f) return std::nullopt;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(f->data(), f->data() + f->size(), v);
  if (ec != std::errc() || p != f->data() + f->size()) return std::nullopt;
  return static_cast<double>(v);
}

}  // namespace

std::optional<double> parse_proc_stat_cpu_s(std::string_view text, double ticks_per_s) {
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so fields are counted
  // after the last ')'. utime and stime are fields 14 and 15 (1-based) of the whole line, i.e.
  // the 12th and 13th after the comm.
  const size_t close = text.rfind(')');
  if (close == std::string_view::npos || ticks_per_s <= 0) return std::nullopt;
  std::string_view rest = text.substr(close + 1);
  auto utime = to_number(field(rest, 11));
  auto stime = to_number(field(rest, 12));
  if (!utime || !stime) return std::nullopt;
  return (*utime + *stime) / ticks_per_s;
}

std::optional<double> parse_proc_stat_machine_busy_s(std::string_view text, double ticks_per_s) {
  // "cpu  user nice system idle iowait irq softirq steal guest guest_nice" (guest time is already
  // in user): the first line; older kernels stop after softirq or steal.
  if (text.substr(0, 4) != "cpu " || ticks_per_s <= 0) return std::nullopt;
  std::string_view line = text.substr(0, text.find('\n'));
  double busy = 0;
  for (int f : {1, 2, 3, 6, 7, 8}) {
    auto v = to_number(field(line, f));
    if (!v) {
      if (f >= 8 && field(line, f) == std::nullopt) break;  // no steal column
      return std::nullopt;
    }
    busy += *v;
  }
  return busy / ticks_per_s;
}

std::optional<CpuTimes> read_cpu_times(const std::string& proc_root) {
  const long tck = sysconf(_SC_CLK_TCK);
  const double ticks = tck > 0 ? static_cast<double>(tck) : 100;
  auto stat = read_small_file(proc_root + "/stat");
  auto self = read_small_file(proc_root + "/self/stat");
  if (!stat || !self) return std::nullopt;
  auto machine = parse_proc_stat_machine_busy_s(*stat, ticks);
  auto process = parse_proc_stat_cpu_s(*self, ticks);
  if (!machine || !process) return std::nullopt;
  CpuTimes t;
  t.machine_busy_s = *machine;
  t.process_s = *process;
  t.wall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  t.n_cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return t;
}

double others_cpu_share(const CpuTimes& before, const CpuTimes& after) {
  const double capacity = (after.wall_s - before.wall_s) * std::max(1, after.n_cpus);
  if (!(capacity > 0)) return 0;
  const double others =
      (after.machine_busy_s - before.machine_busy_s) - (after.process_s - before.process_s);
  return std::clamp(others / capacity, 0.0, 1.0);
}

std::optional<double> parse_proc_statm_rss_bytes(std::string_view text, double page_bytes) {
  auto pages = to_number(field(text, 1));
  if (!pages) return std::nullopt;
  return *pages * page_bytes;
}

CpuProbe::CpuProbe(std::string proc_root) : root_(std::move(proc_root)) {
  const long tck = sysconf(_SC_CLK_TCK);
  if (tck > 0) ticks_per_s_ = static_cast<double>(tck);
  const long page = sysconf(_SC_PAGESIZE);
  if (page > 0) page_bytes_ = static_cast<double>(page);
}

CpuReading CpuProbe::sample(int64_t now_ns) {
  CpuReading r;
  r.n_cores = static_cast<int>(std::thread::hardware_concurrency());
  std::optional<double> process_s, thread_s;
  if (auto t = read_small_file(root_ + "/self/stat"))
    process_s = parse_proc_stat_cpu_s(*t, ticks_per_s_);
  if (engine_tid_ > 0) {
    if (auto t = read_small_file(root_ + "/self/task/" + std::to_string(engine_tid_) + "/stat"))
      thread_s = parse_proc_stat_cpu_s(*t, ticks_per_s_);
  }
  if (auto t = read_small_file(root_ + "/self/statm"))
    r.rss_bytes = parse_proc_statm_rss_bytes(*t, page_bytes_);
  r.process_cpu_s = process_s;
  const double dt = static_cast<double>(now_ns - last_ns_) / 1e9;
  if (last_ns_ != 0 && dt > 0) {
    if (process_s && last_process_s_) r.process_cpu_cores = (*process_s - *last_process_s_) / dt;
    if (thread_s && last_thread_s_ && last_tid_ == engine_tid_) {
      double busy = (*thread_s - *last_thread_s_) / dt;
      r.engine_thread_busy = busy < 0 ? 0 : (busy > 1 ? 1 : busy);
    }
  }
  last_ns_ = now_ns;
  last_process_s_ = process_s;
  last_thread_s_ = thread_s;
  last_tid_ = engine_tid_;
  return r;
}

}  // namespace carpool::telemetry
