// Telemetry::window_figures: the last complete seconds, summed from the series store. The
// /metrics gauges and the advisor both read them, so the two always agree.
#include "telemetry/telemetry.h"
#include "telemetry/telemetry_internal.h"

namespace carpool::telemetry {
namespace {

// Sum and sample count of one series over [from, to) at 1 s resolution.
struct WindowSum {
  double sum = 0, count = 0;
};
WindowSum window_sum(const SeriesStore& store, SeriesId id, int64_t from, int64_t to) {
  WindowSum w;
  for (const Point& p : store.query(id, from, to, 1)) {
    w.sum += p.sum;
    w.count += static_cast<double>(p.count);
  }
  return w;
}

}  // namespace

WindowFigures Telemetry::window_figures(int64_t window_s) const {
  WindowFigures f;
  f.window_s = std::max<int64_t>(1, window_s);
  std::optional<double> total_preemptions;
  {
    std::lock_guard<std::mutex> lock(mu_);
    f.engine = latest_->engine;
    f.peaks = latest_->peaks;
    total_preemptions = totals_->preemptions;
  }
  f.requests_in_flight = in_flight_.load(std::memory_order_relaxed);
  const Ids& id = *ids_;
  const int64_t to = floor_seconds(clock_->now_ns());
  const int64_t from = to - f.window_s;
  DerivedFigures* figs[kPhases] = {&f.all, &f.prefill, &f.decode};
  for (int p = 0; p < kPhases; ++p) {
    StepSums s;
    s.steps = window_sum(store_, id.steps[p], from, to).sum;
    s.flops = window_sum(store_, id.flops[p], from, to).sum;
    s.bytes = window_sum(store_, id.bytes[p], from, to).sum;
    s.device_s = window_sum(store_, id.device_s[p], from, to).sum;
    s.active_s = window_sum(store_, id.active_s[p], from, to).sum;
    if (p == 0) f.steps = s.steps;
    *figs[p] = derive(
        s, f.peaks, p == 0 ? std::optional<double>(static_cast<double>(f.window_s)) : std::nullopt);
  }
  const WindowSum seqs = window_sum(store_, id.batch_seqs, from, to);
  if (seqs.count > 0) f.batch_size = seqs.sum / seqs.count;
  const WindowSum tokens = window_sum(store_, id.batch_tokens, from, to);
  if (tokens.count > 0) f.batch_tokens = tokens.sum / tokens.count;
  const double w = static_cast<double>(f.window_s);
  f.prompt_tokens_per_s = window_sum(store_, id.prompt_tokens, from, to).sum / w;
  f.generation_tokens_per_s = window_sum(store_, id.generation_tokens, from, to).sum / w;
  if (total_preemptions) f.preemptions = window_sum(store_, id.preemptions, from, to).sum;
  return f;
}

}  // namespace carpool::telemetry
