#include "telemetry/series_store.h"

#include <algorithm>

#include "util/check.h"

namespace carpool::telemetry {

int64_t floor_seconds(int64_t t_ns) {
  int64_t s = t_ns / 1'000'000'000;
  if (t_ns < 0 && s * 1'000'000'000 != t_ns) --s;
  return s;
}

namespace {
int64_t floor_to(int64_t t, int64_t w) {
  int64_t b = t / w;
  if (t < 0 && b * w != t) --b;
  return b * w;
}
}  // namespace

void Point::merge(const Point& o) {
  if (o.count == 0) return;
  if (count == 0) {
    min = o.min;
    max = o.max;
  } else {
    min = std::min(min, o.min);
    max = std::max(max, o.max);
  }
  count += o.count;
  sum += o.sum;
  if (o.hist) {
    if (!hist) hist.emplace();
    hist->merge(*o.hist);
  }
}

std::vector<TierSpec> SeriesStore::default_tiers() {
  return {{1, 3600}, {10, 2160}, {60, 1440}};
}

SeriesStore::SeriesStore(std::vector<TierSpec> tiers) : tiers_(std::move(tiers)) {
  CARPOOL_CHECK(!tiers_.empty());
  for (const TierSpec& t : tiers_) CARPOOL_CHECK(t.width_s >= 1 && t.slots >= 1);
}

SeriesId SeriesStore::add_series(const SeriesInfo& info) {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < series_.size(); ++i)
    if (series_[i].info.name == info.name) return static_cast<SeriesId>(i);
  Series s;
  s.info = info;
  for (const TierSpec& t : tiers_) {
    s.scalar.emplace_back(static_cast<size_t>(t.slots));
    if (info.kind == SeriesKind::kHistogram) s.hist.emplace_back(static_cast<size_t>(t.slots));
  }
  series_.push_back(std::move(s));
  return static_cast<SeriesId>(series_.size() - 1);
}

std::optional<SeriesId> SeriesStore::find(std::string_view name) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < series_.size(); ++i)
    if (series_[i].info.name == name) return static_cast<SeriesId>(i);
  return std::nullopt;
}

const SeriesInfo& SeriesStore::info(SeriesId id) const {
  std::lock_guard<std::mutex> lock(mu_);
  CARPOOL_CHECK(id >= 0 && static_cast<size_t>(id) < series_.size());
  return series_[static_cast<size_t>(id)].info;  // never moves after registration of all series
}

std::vector<std::string> SeriesStore::names() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const Series& s : series_) out.push_back(s.info.name);
  return out;
}

SeriesStore::Slot* SeriesStore::slot_for(Series& s, size_t k, int64_t t_s, size_t* index) {
  const TierSpec& tier = tiers_[k];
  const int64_t bucket = floor_to(t_s, tier.width_s);
  int64_t idx = (bucket / tier.width_s) % tier.slots;
  if (idx < 0) idx += tier.slots;
  Slot& slot = s.scalar[k][static_cast<size_t>(idx)];
  if (slot.t_s > bucket) return nullptr;  // older than what the ring holds there
  if (slot.t_s != bucket) {
    slot = Slot{};
    slot.t_s = bucket;
    if (!s.hist.empty()) s.hist[k][static_cast<size_t>(idx)].clear();
  }
  *index = static_cast<size_t>(idx);
  return &slot;
}

void SeriesStore::add_locked(SeriesId id, int64_t t_ns, double value) {
  CARPOOL_CHECK(id >= 0 && static_cast<size_t>(id) < series_.size());
  Series& s = series_[static_cast<size_t>(id)];
  const int64_t t_s = floor_seconds(t_ns);
  latest_s_ = std::max(latest_s_, t_s);
  for (size_t k = 0; k < tiers_.size(); ++k) {
    size_t idx = 0;
    Slot* slot = slot_for(s, k, t_s, &idx);
    if (!slot) continue;
    if (slot->count == 0) {
      slot->min = slot->max = value;
    } else {
      slot->min = std::min(slot->min, value);
      slot->max = std::max(slot->max, value);
    }
    ++slot->count;
    slot->sum += value;
  }
}

void SeriesStore::observe_locked(SeriesId id, int64_t t_ns, double value) {
  CARPOOL_CHECK(id >= 0 && static_cast<size_t>(id) < series_.size());
  Series& s = series_[static_cast<size_t>(id)];
  CARPOOL_CHECK(s.info.kind == SeriesKind::kHistogram);
  add_locked(id, t_ns, value);
  const int64_t t_s = floor_seconds(t_ns);
  for (size_t k = 0; k < tiers_.size(); ++k) {
    size_t idx = 0;
    if (slot_for(s, k, t_s, &idx)) s.hist[k][idx].observe(s.info.hist_lower, value);
  }
}

void SeriesStore::add(SeriesId id, int64_t t_ns, double value) {
  std::lock_guard<std::mutex> lock(mu_);
  add_locked(id, t_ns, value);
}

void SeriesStore::observe(SeriesId id, int64_t t_ns, double value) {
  std::lock_guard<std::mutex> lock(mu_);
  observe_locked(id, t_ns, value);
}

Point SeriesStore::read_slot(const Series& s, size_t k, int64_t bucket_t) const {
  const TierSpec& tier = tiers_[k];
  Point p;
  p.t_s = bucket_t;
  p.width_s = tier.width_s;
  int64_t idx = (bucket_t / tier.width_s) % tier.slots;
  if (idx < 0) idx += tier.slots;
  const Slot& slot = s.scalar[k][static_cast<size_t>(idx)];
  if (slot.t_s != bucket_t || slot.count == 0) return p;
  p.count = slot.count;
  p.sum = slot.sum;
  p.min = slot.min;
  p.max = slot.max;
  if (!s.hist.empty()) p.hist = s.hist[k][static_cast<size_t>(idx)];
  return p;
}

size_t SeriesStore::pick_tier(int64_t from_s, int64_t step_s) const {
  // Does tier k still hold from_s (relative to the newest second written)?
  auto holds = [&](size_t k) {
    if (latest_s_ == INT64_MIN) return true;
    const TierSpec& t = tiers_[k];
    return from_s > floor_to(latest_s_, t.width_s) - t.width_s * t.slots;
  };
  for (size_t k = 0; k < tiers_.size(); ++k)
    if (holds(k) && tiers_[k].width_s <= step_s) return k;
  for (size_t k = 0; k < tiers_.size(); ++k)
    if (holds(k)) return k;
  return tiers_.size() - 1;
}

std::vector<Point> SeriesStore::query(SeriesId id, int64_t from_s, int64_t to_s, int64_t step_s,
                                      size_t max_points) const {
  std::lock_guard<std::mutex> lock(mu_);
  CARPOOL_CHECK(id >= 0 && static_cast<size_t>(id) < series_.size());
  const Series& s = series_[static_cast<size_t>(id)];
  std::vector<Point> out;
  // (Callers bound their times: parse_series_query keeps them within 2^40 s of the epoch, so the
  // loops below cannot overflow; anything else gets nothing.)
  constexpr int64_t kLimit = int64_t{1} << 41;
  if (to_s <= from_s || from_s < -kLimit || to_s > kLimit || step_s > kLimit) return out;
  if (step_s < 1) step_s = 1;
  const size_t k = pick_tier(from_s, step_s);
  const int64_t w = tiers_[k].width_s;
  const int64_t step = ((step_s + w - 1) / w) * w;
  for (int64_t t = floor_to(from_s, step); t < to_s && out.size() < max_points; t += step) {
    Point p;
    p.t_s = t;
    p.width_s = step;
    for (int64_t b = t; b < t + step; b += w) p.merge(read_slot(s, k, b));
    out.push_back(std::move(p));
  }
  return out;
}

Point SeriesStore::at(SeriesId id, int64_t t_s) const {
  std::lock_guard<std::mutex> lock(mu_);
  CARPOOL_CHECK(id >= 0 && static_cast<size_t>(id) < series_.size());
  return read_slot(series_[static_cast<size_t>(id)], 0, floor_to(t_s, tiers_[0].width_s));
}

size_t SeriesStore::memory_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t total = 0;
  for (const Series& s : series_) {
    for (const auto& v : s.scalar) total += v.size() * sizeof(Slot);
    for (const auto& v : s.hist) total += v.size() * sizeof(LogHistogram);
  }
  return total;
}

}  // namespace carpool::telemetry
