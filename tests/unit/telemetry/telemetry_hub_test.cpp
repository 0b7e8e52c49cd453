// Telemetry end to end with a fake clock: steps and requests in, derived figures, the series
// JSON and the Prometheus text out.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "telemetry/telemetry.h"

namespace carpool::telemetry {
namespace {

constexpr int64_t kT = 1'700'000'040;  // Unix seconds
constexpr int64_t kS = 1'000'000'000;

Peaks test_peaks() {
  Peaks p;
  p.device = "test";
  p.flops_per_s = 1e12;
  p.bandwidth_bytes_per_s = 1e11;  // ridge point: 10 FLOPs per byte
  p.flops_source = "measured";
  p.bandwidth_source = "catalog";
  return p;
}

StepStats step(int64_t start_ns, int64_t dur_ns, int64_t device_ns, bool prefill, double flops,
               double bytes, bool idle_before = false) {
  StepStats s;
  s.start_ns = start_ns;
  s.end_ns = start_ns + dur_ns;
  s.device_ns = device_ns;
  s.idle_before = idle_before;
  if (prefill)
    s.shape.add_sequence(100, 100, true, true);
  else
    s.shape.add_sequence(1, 100, false, true);
  s.cost.flops_matmul = flops;
  s.cost.bytes_weights = bytes;
  return s;
}

// Second kT: 10 decode steps of 50 ms (40 ms on the device) every 100 ms: the device waits.
// Second kT+1: 2 prefill steps of 450 ms, back to back, all device time: compute-bound.
void feed(Telemetry& t, FakeClock& clock) {
  for (int i = 0; i < 10; ++i)
    t.record(step(kT * kS + i * kS / 10, kS / 20, 4 * kS / 100, false, 1e9, 1e9, i == 0));
  t.record(step((kT + 1) * kS, 45 * kS / 100, 45 * kS / 100, true, 4e11, 2e9, true));
  t.record(step((kT + 1) * kS + 45 * kS / 100, 45 * kS / 100, 45 * kS / 100, true, 4e11, 2e9));
  for (double ttft : {0.1, 0.2, 0.3}) {
    RequestRecord r;
    r.end_ns = (kT + 1) * kS + kS / 2;
    r.ttft_s = ttft;
    r.e2e_s = 1.0;
    r.queue_s = 0.01;
    r.prompt_tokens = 100;
    r.generation_tokens = 10;
    t.record_request(r);
  }
  RequestRecord failed;
  failed.end_ns = (kT + 1) * kS;
  failed.finish_reason = "error";
  t.record_request(failed);
  const double gaps[] = {0.02, 0.03};
  t.record_token_gaps(gaps, kT * kS);
  t.set_engine_source([] {
    EngineSnapshot e;
    e.running = 3;
    e.waiting = 1;
    e.kv_blocks_used = 10;
    e.kv_blocks_total = 100;
    e.weights_bytes = 1e9;
    e.kv_reserved_bytes = 5e8;
    e.kv_used_bytes = 5e7;
    return e;
  });
  clock.set_ns(kT * kS + kS / 2);
  t.sample_probes();
  clock.set_ns((kT + 2) * kS + kS / 2);
  t.sample_probes();
}

nlohmann::json series(const nlohmann::json& doc, const std::string& name) {
  for (const auto& s : doc["series"])
    if (s["name"] == name) return s["points"];
  ADD_FAILURE() << "no series " << name;
  return {};
}

TEST(TelemetryHub, DerivedFiguresPerSecondAndPhase) {
  FakeClock clock(kT * kS);
  Telemetry t({.clock = &clock, .device = "cpu", .peaks = test_peaks()});
  feed(t, clock);
  auto q = parse_series_query(
      "mfu,mbu,busy,bound,bound.decode,bound.prefill,mfu.prefill,busy.decode,arithmetic_intensity,"
      "generation_tokens,prompt_tokens:sum,ttft_seconds:p50,ttft_seconds:count,running,kv_usage:"
      "max,"
      "ridge_point,gpu_sm_activity",
      std::to_string(kT), std::to_string(kT + 2), "1", kT + 3);
  ASSERT_TRUE(q.is_ok()) << q.error();
  auto text = t.series_json(*q);
  ASSERT_TRUE(text.is_ok()) << text.error();
  const auto doc = nlohmann::json::parse(*text);
  EXPECT_EQ(doc["peaks"]["flops_source"], "measured");
  EXPECT_EQ(doc["peaks"]["bandwidth_source"], "catalog");
  // Second kT: 1e10 FLOPs and 1e10 bytes in 1 s; second kT+1: 8e11 FLOPs, 4e9 bytes.
  auto mfu = series(doc, "mfu");
  ASSERT_EQ(mfu.size(), 2u);
  EXPECT_EQ(mfu[0][0], kT);
  EXPECT_DOUBLE_EQ(mfu[0][1].get<double>(), 0.01);
  EXPECT_DOUBLE_EQ(mfu[1][1].get<double>(), 0.8);
  auto mbu = series(doc, "mbu");
  EXPECT_DOUBLE_EQ(mbu[0][1].get<double>(), 0.1);
  EXPECT_DOUBLE_EQ(mbu[1][1].get<double>(), 0.04);
  auto busy = series(doc, "busy");
  EXPECT_NEAR(busy[0][1].get<double>(), 0.4, 1e-12);
  EXPECT_NEAR(busy[1][1].get<double>(), 0.9, 1e-12);
  // Decode: 0.4 s on the device out of 0.95 s of loop time (first step after idle: no gap).
  EXPECT_NEAR(series(doc, "busy.decode")[0][1].get<double>(), 0.4 / 0.95, 1e-12);
  EXPECT_EQ(series(doc, "bound")[0][1], "overhead");
  EXPECT_EQ(series(doc, "bound")[1][1], "compute");  // 200 FLOPs/byte > ridge 10
  EXPECT_EQ(series(doc, "bound.decode")[0][1], "overhead");
  EXPECT_TRUE(series(doc, "bound.decode")[1][1].is_null());  // no decode steps: idle
  EXPECT_TRUE(series(doc, "bound.prefill")[0][1].is_null());
  EXPECT_NEAR(series(doc, "mfu.prefill")[1][1].get<double>(), 8e11 / (0.9 * 1e12), 1e-12);
  EXPECT_DOUBLE_EQ(series(doc, "arithmetic_intensity")[1][1].get<double>(), 200.0);
  EXPECT_DOUBLE_EQ(series(doc, "generation_tokens")[0][1].get<double>(), 10.0);  // per second
  EXPECT_DOUBLE_EQ(series(doc, "prompt_tokens:sum")[1][1].get<double>(), 200.0);
  auto p50 = series(doc, "ttft_seconds:p50");
  EXPECT_TRUE(p50[0][1].is_null());
  EXPECT_NEAR(p50[1][1].get<double>(), 0.2, 0.2 * 0.34);
  EXPECT_DOUBLE_EQ(series(doc, "ttft_seconds:count")[1][1].get<double>(), 3.0);
  EXPECT_DOUBLE_EQ(series(doc, "running")[0][1].get<double>(), 3.0);
  EXPECT_TRUE(series(doc, "running")[1][1].is_null());  // not sampled in that second
  EXPECT_DOUBLE_EQ(series(doc, "kv_usage:max")[0][1].get<double>(), 0.1);
  EXPECT_DOUBLE_EQ(series(doc, "ridge_point")[0][1].get<double>(), 10.0);
  EXPECT_TRUE(series(doc, "gpu_sm_activity")[0][1].is_null());  // no GPU: unavailable
}

// Seconds before this Telemetry started have no data, counters and derived figures included: a
// restarted server's dashboard shows a gap for the time it was not running, not an idle spell.
TEST(TelemetryHub, SecondsBeforeTheStartAreNull) {
  FakeClock clock(kT * kS + kS / 2);
  Telemetry t({.clock = &clock, .device = "cpu", .peaks = test_peaks()});
  auto q = parse_series_query("generation_tokens,http_2xx:sum,busy,mbu,ttft_seconds:count",
                              std::to_string(kT - 3), std::to_string(kT + 2), "1", kT + 2);
  ASSERT_TRUE(q.is_ok()) << q.error();
  auto text = t.series_json(*q);
  ASSERT_TRUE(text.is_ok()) << text.error();
  const auto doc = nlohmann::json::parse(*text);
  for (const char* name :
       {"generation_tokens", "http_2xx:sum", "busy", "mbu", "ttft_seconds:count"}) {
    auto pts = series(doc, name);
    ASSERT_EQ(pts.size(), 5u) << name;
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(pts[i][1].is_null()) << name << " " << i;
  }
  // From the starting second on, a counter with nothing counted reads 0.
  EXPECT_DOUBLE_EQ(series(doc, "generation_tokens")[3][1].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(series(doc, "http_2xx:sum")[4][1].get<double>(), 0.0);
}

TEST(TelemetryHub, SeriesQueryValidation) {
  EXPECT_FALSE(parse_series_query("", "", "", "", 100).is_ok());
  EXPECT_FALSE(parse_series_query("mfu", "10", "5", "1", 100).is_ok());
  EXPECT_FALSE(parse_series_query("mfu", "x", "5", "1", 100).is_ok());
  EXPECT_FALSE(parse_series_query("mfu", "0", "100000", "1", 100).is_ok());  // > 25 h
  EXPECT_FALSE(parse_series_query("mfu", "0", "10", "0", 100).is_ok());
  EXPECT_FALSE(parse_series_query("mf\"u", "0", "10", "1", 100).is_ok());
  // Times whose differences would overflow (to - from wrapped and passed the checks; the store's
  // loop then never ended near INT64_MAX).
  EXPECT_FALSE(
      parse_series_query("mfu", "-9223372036854775808", "9223372036854775807", "1", 100).is_ok());
  EXPECT_FALSE(parse_series_query("mfu", "9223372036854775000", "9223372036854775807", "90000", 100)
                   .is_ok());
  EXPECT_FALSE(parse_series_query("mfu", "", "-9223372036854775807", "1", 100).is_ok());
  EXPECT_TRUE(parse_series_query("mfu", "1099511627000", "1099511627776", "60", 100).is_ok());
  auto q = parse_series_query("mfu,,running", "", "", "", 1000);
  ASSERT_TRUE(q.is_ok());
  EXPECT_EQ(q->names.size(), 2u);
  EXPECT_EQ(q->from_s, 700);
  EXPECT_EQ(q->to_s, 1000);
  FakeClock clock(kT * kS);
  Telemetry t({.clock = &clock, .device = "cpu", .peaks = {}});
  auto bad = parse_series_query("no_such_series", "0", "10", "1", 100);
  ASSERT_TRUE(bad.is_ok());
  EXPECT_FALSE(t.series_json(*bad).is_ok());
  auto bad_reading = parse_series_query("running:p99", "0", "10", "1", 100);
  EXPECT_FALSE(t.series_json(*bad_reading).is_ok());
}

// A hand-written check of the text format: HELP/TYPE before samples, names and labels well
// formed, histogram buckets cumulative and ending in +Inf = _count.
struct ParsedMetrics {
  std::map<std::string, std::string> types;  // family -> type
  std::map<std::string, double> samples;     // "name{labels}" -> value
};

ParsedMetrics parse_prometheus(const std::string& text) {
  ParsedMetrics m;
  static const std::regex kSample(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*)\})? ([-+0-9.eE]+|\+Inf|-Inf|NaN)$)");
  static const std::regex kType(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$)");
  std::istringstream in(text);
  std::string line, help_for;
  while (std::getline(in, line)) {
    std::smatch g;
    if (line.rfind("# HELP ", 0) == 0) {
      help_for = line.substr(7, line.find(' ', 7) - 7);
      continue;
    }
    if (std::regex_match(line, g, kType)) {
      EXPECT_EQ(g[1].str(), help_for) << "TYPE without HELP: " << line;
      EXPECT_EQ(m.types.count(g[1].str()), 0u) << "family twice: " << line;
      m.types[g[1].str()] = g[2].str();
      continue;
    }
    if (!std::regex_match(line, g, kSample)) {
      ADD_FAILURE() << "malformed line: " << line;
      continue;
    }
    std::string name = g[1].str(), family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (!m.types.count(family) && family.size() > strlen(suffix) &&
          family.compare(family.size() - strlen(suffix), strlen(suffix), suffix) == 0)
        family = family.substr(0, family.size() - strlen(suffix));
    EXPECT_TRUE(m.types.count(family)) << "sample before its TYPE: " << line;
    if (m.types[family] == "counter") {
      EXPECT_TRUE(name.ends_with("_total")) << name;
    }
    m.samples[name + g[2].str()] = std::stod(g[7].str() == "+Inf" ? "inf" : g[7].str());
  }
  return m;
}

TEST(TelemetryHub, PrometheusText) {
  FakeClock clock(kT * kS);
  Telemetry t({.clock = &clock, .device = "cpu", .peaks = test_peaks()});
  feed(t, clock);
  const std::string text = t.render_prometheus();
  const ParsedMetrics m = parse_prometheus(text);
  auto v = [&](const std::string& key) {
    auto it = m.samples.find(key);
    EXPECT_NE(it, m.samples.end()) << key;
    return it == m.samples.end() ? -1.0 : it->second;
  };
  // 10 decode tokens and the first token of each of the 2 prompts (sampled from prefill logits).
  EXPECT_EQ(v("carpool_generation_tokens_total"), 12);
  EXPECT_EQ(v("carpool_prompt_tokens_total"), 200);
  EXPECT_EQ(v("carpool_request_finished_total{finished_reason=\"stop\"}"), 3);
  EXPECT_EQ(v("carpool_request_finished_total{finished_reason=\"error\"}"), 1);
  EXPECT_EQ(v("carpool_steps_total{phase=\"decode\"}"), 10);
  EXPECT_EQ(v("carpool_model_flops_total{device=\"cpu\",phase=\"prefill\"}"), 8e11);
  EXPECT_EQ(v("carpool_num_requests_running"), 3);
  EXPECT_EQ(v("carpool_kv_cache_usage_ratio"), 0.1);
  EXPECT_EQ(v("carpool_memory_bytes{device=\"cpu\",arena=\"kv_reserved\"}"), 5e8);
  // The last 10 complete seconds hold both seconds: 8.1e11 FLOPs over 10 s at 1e12 peak.
  EXPECT_NEAR(v("carpool_mfu_ratio{device=\"cpu\",phase=\"all\"}"), 0.081, 1e-12);
  EXPECT_NEAR(v("carpool_mbu_ratio{device=\"cpu\",phase=\"all\"}"), 1.4e10 / 1e12, 1e-12);
  EXPECT_EQ(v("carpool_bound{device=\"cpu\",phase=\"prefill\",bound=\"compute\"}"), 1);
  EXPECT_EQ(v("carpool_bound{device=\"cpu\",phase=\"decode\",bound=\"overhead\"}"), 1);
  EXPECT_EQ(v("carpool_bound{device=\"cpu\",phase=\"decode\",bound=\"memory\"}"), 0);
  EXPECT_EQ(v("carpool_peak_flops_per_second{device=\"cpu\",source=\"measured\"}"), 1e12);
  EXPECT_EQ(v("carpool_ridge_point_flops_per_byte{device=\"cpu\"}"), 10);
  EXPECT_EQ(v("carpool_time_to_first_token_seconds_count"), 3);
  EXPECT_EQ(v("carpool_time_to_first_token_seconds_bucket{le=\"+Inf\"}"), 3);
  EXPECT_NEAR(v("carpool_time_to_first_token_seconds_sum"), 0.6, 1e-12);
  EXPECT_EQ(v("carpool_time_to_first_token_seconds_bucket{le=\"0.1\"}"), 1);  // 0.1 <= 0.1
  EXPECT_EQ(v("carpool_inter_token_latency_seconds_count"), 2);
  EXPECT_EQ(m.types.at("carpool_e2e_request_latency_seconds"), "histogram");
  // No GPU probe: no GPU gauges at all (unavailable, not zero).
  for (const auto& [key, value] : m.samples)
    EXPECT_EQ(key.rfind("carpool_gpu_", 0), std::string::npos) << key;
  // Buckets are cumulative, in increasing `le` order.
  std::istringstream in(text);
  std::string line;
  double last_count = 0, last_le = 0;
  int buckets = 0;
  while (std::getline(in, line)) {
    if (line.rfind("carpool_time_to_first_token_seconds_bucket{le=\"", 0) != 0) continue;
    const size_t q = line.find('"') + 1;
    const std::string le = line.substr(q, line.find('"', q) - q);
    const double count = std::stod(line.substr(line.rfind(' ') + 1));
    const double le_v = le == "+Inf" ? INFINITY : std::stod(le);
    EXPECT_GT(le_v, last_le);
    EXPECT_GE(count, last_count);
    last_le = le_v;
    last_count = count;
    ++buckets;
  }
  EXPECT_EQ(buckets, 30);  // 4 per decade over 7 decades, plus +Inf
  EXPECT_EQ(last_count, 3);
}

// promtool (Debian package `prometheus`) lints the text when it is installed.
TEST(TelemetryHub, PromtoolAcceptsTheText) {
  if (std::system("promtool --version > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "promtool not installed";
  FakeClock clock(kT * kS);
  Telemetry t({.clock = &clock, .device = "cuda:0", .peaks = test_peaks()});
  feed(t, clock);
  const auto path = std::filesystem::temp_directory_path() /
                    ("carpool_metrics_" + std::to_string(getpid()) + ".txt");
  std::ofstream(path) << t.render_prometheus();
  const std::string cmd = "promtool check metrics < " + path.string() + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof(buf), p)) out += buf;
  const int rc = pclose(p);
  std::filesystem::remove(path);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "") << out;
}

TEST(TelemetryHub, StoreMemoryIsTheDocumentedBound) {
  Telemetry t({});
  EXPECT_EQ(t.store().memory_bytes(), 53u * 288'000 + 6u * 2'073'600);  // docs/metrics.md
}

TEST(TelemetryHub, ProbeThreadSamplesAndStops) {
  Telemetry t({.peaks = test_peaks(), .probe_interval_s = 0.01});
  std::atomic<int> calls{0};
  t.set_engine_source([&] {
    ++calls;
    return EngineSnapshot{};
  });
  t.start_probes();
  for (int i = 0; i < 200 && calls < 3; ++i) usleep(10'000);
  t.stop_probes();
  EXPECT_GE(calls.load(), 3);
  const int after = calls;
  usleep(30'000);
  EXPECT_EQ(calls.load(), after);
  // The probe thread's CPU time is counted as telemetry's own cost; nothing else ran.
  const Telemetry::SelfCost c = t.self_cost();
  EXPECT_GT(c.probes_s, 0);
  EXPECT_LT(c.probes_s, 1.0);
  EXPECT_EQ(c.engine_s, 0);
  EXPECT_EQ(c.render_s, 0);
}

TEST(TelemetryHub, SelfCostCountsEngineCallsAndRendering) {
  FakeClock clock(kT * kS);
  Telemetry t({.clock = &clock, .peaks = test_peaks()});
  const Telemetry::SelfCost before = t.self_cost();
  EXPECT_EQ(before.engine_s, 0);
  feed(t, clock);
  const Telemetry::SelfCost fed = t.self_cost();
  EXPECT_GT(fed.engine_s, 0);    // record, record_request, record_token_gaps
  EXPECT_LT(fed.engine_s, 1.0);  // wall time of a few calls, not the fake clock's seconds
  t.add_engine_self_ns(2'000'000'000);
  EXPECT_NEAR(t.self_cost().engine_s, fed.engine_s + 2.0, 1e-9);
  EXPECT_EQ(fed.render_s, 0);
  const std::string text = t.render_prometheus();
  EXPECT_GT(t.self_cost().render_s, 0);
  EXPECT_NE(text.find("carpool_telemetry_seconds_total{part=\"engine\"}"), std::string::npos);
  EXPECT_NE(text.find("carpool_telemetry_seconds_total{part=\"probes\"}"), std::string::npos);
}

}  // namespace
}  // namespace carpool::telemetry
