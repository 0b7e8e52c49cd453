// Telemetry::series_json and parse_series_query: GET /api/v1/series for the dashboard.
//
// Response: {"from":F,"to":T,"step":S,"series":[{"name":N,"unit":U,"points":[[t,v],...]},...]}
// with t the point's start (Unix seconds) and v a number, null (no data, or unavailable), or for
// "bound" a string ("overhead", "memory", "compute").
#include <charconv>

#include "telemetry/prometheus_text.h"
#include "telemetry/telemetry.h"
#include "telemetry/telemetry_internal.h"

namespace carpool::telemetry {
namespace {

constexpr size_t kMaxNames = 64;
constexpr int64_t kMaxRangeS = 25 * 3600;
constexpr int64_t kMaxPoints = 100000;
// Times beyond this many seconds from the epoch (about 34,800 years) are refused, so that no
// difference or step over them can overflow.
constexpr int64_t kMaxAbsTimeS = int64_t{1} << 40;

bool time_in_range(int64_t t) {
  return t >= -kMaxAbsTimeS && t <= kMaxAbsTimeS;
}

std::optional<int64_t> parse_int(std::string_view s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

bool valid_name(std::string_view n) {
  if (n.empty() || n.size() > 100) return false;
  for (char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == ':'))
      return false;
  return true;
}

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;  // names are validated to [A-Za-z0-9_.:]; units are ours
  }
  out += '"';
}

}  // namespace

Result<SeriesQuery> parse_series_query(std::string_view names, std::string_view from,
                                       std::string_view to, std::string_view step, int64_t now_s) {
  SeriesQuery q;
  size_t pos = 0;
  while (pos <= names.size()) {
    size_t comma = names.find(',', pos);
    if (comma == std::string_view::npos) comma = names.size();
    std::string_view n = names.substr(pos, comma - pos);
    if (!n.empty()) {
      if (!valid_name(n))
        return Status::error("invalid series name '" + std::string(n.substr(0, 100)) + "'");
      if (q.names.size() >= kMaxNames) return Status::error("at most 64 series per request");
      q.names.emplace_back(n);
    }
    pos = comma + 1;
  }
  if (q.names.empty()) return Status::error("names: give at least one series name");
  auto to_v = to.empty() ? std::optional<int64_t>(now_s) : parse_int(to);
  if (!to_v || !time_in_range(*to_v)) {
    return Status::error("to: not an integer number of Unix seconds within 2^40 of 1970");
  }
  auto from_v = from.empty() ? std::optional<int64_t>(*to_v - 300) : parse_int(from);
  if (!from_v || !time_in_range(*from_v)) {
    return Status::error("from: not an integer number of Unix seconds within 2^40 of 1970");
  }
  auto step_v = step.empty() ? std::optional<int64_t>(1) : parse_int(step);
  if (!step_v || *step_v < 1 || *step_v > kMaxRangeS)
    return Status::error("step: an integer from 1 to 90000 seconds");
  if (*from_v >= *to_v) return Status::error("from must be before to");
  if (*to_v - *from_v > kMaxRangeS) return Status::error("range longer than 25 hours");
  if ((*to_v - *from_v) / *step_v > kMaxPoints)
    return Status::error("more than 100000 points; raise step");
  q.from_s = *from_v;
  q.to_s = *to_v;
  q.step_s = *step_v;
  return q;
}

Result<std::string> Telemetry::series_json(const SeriesQuery& q) const {
  SelfTimer self(self_render_ns_);
  const Peaks peaks = this->peaks();
  const Ids& id = *ids_;
  std::string out = "{\"from\":" + std::to_string(q.from_s) + ",\"to\":" + std::to_string(q.to_s) +
                    ",\"step\":" + std::to_string(q.step_s) + ",\"series\":[";
  bool first_series = true;
  const auto before_start = [this](const Point& p) { return p.t_s + p.width_s <= started_s_; };
  for (const std::string& full : q.names) {
    const size_t colon = full.find(':');
    const std::string base = full.substr(0, colon);
    const std::string reading = colon == std::string::npos ? "" : full.substr(colon + 1);
    std::vector<std::pair<int64_t, std::string>> values;  // t, JSON value
    std::string unit;

    // Derived figures: "mfu", "mbu.decode", "bound.prefill", "ridge_point", ...
    static constexpr const char* kDerived[] = {"mfu", "mbu", "busy", "arithmetic_intensity",
                                               "bound"};
    int derived = -1, phase = 0;
    for (int d = 0; d < 5; ++d)
      for (int p = 0; p < kPhases; ++p)
        if (base == phase_series(kDerived[d], p)) derived = d, phase = p;
    if (derived >= 0) {
      auto get = [&](SeriesId s) { return store_.query(s, q.from_s, q.to_s, q.step_s); };
      auto steps = get(id.steps[phase]), flops = get(id.flops[phase]), bytes = get(id.bytes[phase]),
           dev = get(id.device_s[phase]), act = get(id.active_s[phase]);
      unit = derived == 3 ? "flops_per_byte" : derived == 4 ? "bound" : "ratio";
      for (size_t i = 0; i < steps.size(); ++i) {
        StepSums s{steps[i].sum, flops[i].sum, bytes[i].sum, dev[i].sum, act[i].sum};
        const DerivedFigures f =
            derive(s, peaks, phase == 0 ? std::optional<double>(steps[i].width_s) : std::nullopt);
        const std::optional<double>* v[] = {&f.mfu, &f.mbu, &f.busy, &f.arithmetic_intensity};
        std::string json = "null";
        if (before_start(steps[i])) {
          // no figures for seconds before this process (a restart is not an idle spell)
        } else if (derived == 4) {
          if (f.bound) json = std::string("\"") + bound_name(*f.bound) + "\"";
        } else if (*v[derived]) {
          json = format_double(**v[derived]);
        }
        values.emplace_back(steps[i].t_s, json);
      }
    } else if (base == "ridge_point") {
      unit = "flops_per_byte";
      const auto ridge = peaks.ridge_flops_per_byte();
      for (int64_t t = q.from_s - ((q.from_s % q.step_s) + q.step_s) % q.step_s; t < q.to_s;
           t += q.step_s)
        values.emplace_back(t, ridge ? format_double(*ridge) : "null");
    } else {
      auto sid = store_.find(base);
      if (!sid) return Status::error("unknown series '" + base + "'");
      const SeriesInfo& info = store_.info(*sid);
      unit = info.unit;
      const bool hist = info.kind == SeriesKind::kHistogram;
      std::string r = reading;
      if (r.empty()) r = hist ? "p50" : info.reduce == Reduce::kSum ? "rate" : "mean";
      const bool ok = hist ? (r == "p50" || r == "p90" || r == "p99" || r == "mean" ||
                              r == "count" || r == "rate")
                           : (r == "sum" || r == "rate" || r == "mean" || r == "max" || r == "min");
      if (!ok) return Status::error("series '" + base + "' has no reading '" + r + "'");
      if (r == "rate" || r == "count")
        unit = (hist ? std::string("observations") : unit) + (r == "rate" ? "_per_second" : "");
      for (const Point& p : store_.query(*sid, q.from_s, q.to_s, q.step_s)) {
        std::optional<double> v;
        if (before_start(p))
          v = std::nullopt;
        else if (r == "sum")
          v = p.sum;  // a counter with no data in the point summed nothing
        else if (r == "rate")
          v = (hist ? static_cast<double>(p.count) : p.sum) / static_cast<double>(p.width_s);
        else if (r == "count")
          v = static_cast<double>(p.count);
        else if (p.count > 0 && r == "mean")
          v = p.sum / static_cast<double>(p.count);
        else if (p.count > 0 && r == "max")
          v = p.max;
        else if (p.count > 0 && r == "min")
          v = p.min;
        else if (p.count > 0 && hist && p.hist)
          v = p.hist->quantile(info.hist_lower, r == "p50" ? 0.5 : r == "p90" ? 0.9 : 0.99);
        values.emplace_back(p.t_s, v ? format_double(*v) : "null");
      }
    }
    if (!first_series) out += ',';
    first_series = false;
    out += "{\"name\":";
    append_json_string(out, full);
    out += ",\"unit\":";
    append_json_string(out, unit);
    out += ",\"points\":[";
    for (size_t i = 0; i < values.size(); ++i) {
      if (i) out += ',';
      out += '[' + std::to_string(values[i].first) + ',' + values[i].second + ']';
    }
    out += "]}";
  }
  out += "],\"peaks\":{\"flops_per_second\":";
  out += peaks.flops_per_s > 0 ? format_double(peaks.flops_per_s) : "null";
  out += ",\"flops_source\":";
  append_json_string(out, peaks.flops_source);
  out += ",\"bandwidth_bytes_per_second\":";
  out += peaks.bandwidth_bytes_per_s > 0 ? format_double(peaks.bandwidth_bytes_per_s) : "null";
  out += ",\"bandwidth_source\":";
  append_json_string(out, peaks.bandwidth_source);
  out += "}}";
  return out;
}

}  // namespace carpool::telemetry
