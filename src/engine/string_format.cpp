#include "engine/string_format.h"

namespace carpool {
namespace {

// How s matched a part of a format from position i: not at all, up to its end with more of the
// part still to come, or the whole part (i then past it).
enum class Match : uint8_t { kBad, kMore, kDone };

// `w` digits whose value lies in [lo, hi].
Match field(std::string_view s, size_t& i, int w, int lo, int hi, int* value = nullptr) {
  int v = 0;
  for (int k = 0; k < w; ++k) {
    if (i == s.size()) {  // k digits so far: does some value in [lo, hi] begin with them?
      int span = 1;
      for (int j = k; j < w; ++j) span *= 10;
      return v * span <= hi && v * span + span - 1 >= lo ? Match::kMore : Match::kBad;
    }
    if (s[i] < '0' || s[i] > '9') return Match::kBad;
    v = v * 10 + (s[i] - '0');
    ++i;
  }
  if (v < lo || v > hi) return Match::kBad;
  if (value != nullptr) *value = v;
  return Match::kDone;
}

Match literal(std::string_view s, size_t& i, char want) {
  if (i == s.size()) return Match::kMore;
  if (s[i] != want) return Match::kBad;
  ++i;
  return Match::kDone;
}

int days_in_month(int y, int m) {
  static constexpr int kDays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[m - 1];
}

Match date(std::string_view s, size_t& i) {
  int y = 0, mon = 0;
  if (const Match m = field(s, i, 4, 1, 9999, &y); m != Match::kDone) return m;
  if (const Match m = literal(s, i, '-'); m != Match::kDone) return m;
  if (const Match m = field(s, i, 2, 1, 12, &mon); m != Match::kDone) return m;
  if (const Match m = literal(s, i, '-'); m != Match::kDone) return m;
  return field(s, i, 2, 1, days_in_month(y, mon));
}

Match offset(std::string_view s, size_t& i) {
  if (i == s.size()) return Match::kMore;
  if (s[i] == 'Z') {
    ++i;
    return Match::kDone;
  }
  if (s[i] != '+' && s[i] != '-') return Match::kBad;
  ++i;
  if (const Match m = field(s, i, 2, 0, 23); m != Match::kDone) return m;
  if (const Match m = literal(s, i, ':'); m != Match::kDone) return m;
  return field(s, i, 2, 0, 59);
}

Match time(std::string_view s, size_t& i) {
  if (const Match m = field(s, i, 2, 0, 23); m != Match::kDone) return m;
  if (const Match m = literal(s, i, ':'); m != Match::kDone) return m;
  if (const Match m = field(s, i, 2, 0, 59); m != Match::kDone) return m;
  if (const Match m = literal(s, i, ':'); m != Match::kDone) return m;
  if (const Match m = field(s, i, 2, 0, 59); m != Match::kDone) return m;
  if (i < s.size() && s[i] == '.') {  // 1 to 6 digits of a fraction of a second
    ++i;
    int n = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9' && n < 6) {
      ++i;
      ++n;
    }
    if (n == 0) return i == s.size() ? Match::kMore : Match::kBad;
  }
  return offset(s, i);
}

Match uuid(std::string_view s, size_t& i) {
  constexpr std::string_view kShape = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
  for (char want : kShape) {
    if (i == s.size()) return Match::kMore;
    const char c = s[i];
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (want == 'x' ? !hex : c != want) return Match::kBad;
    ++i;
  }
  return Match::kDone;
}

Match match(StringFormat f, std::string_view s, size_t& i) {
  switch (f) {
    case StringFormat::kDate:
      return date(s, i);
    case StringFormat::kTime:
      return time(s, i);
    case StringFormat::kDateTime: {
      const Match d = date(s, i);
      if (d != Match::kDone) return d;
      const Match t = literal(s, i, 'T');
      if (t != Match::kDone) return t;
      return time(s, i);
    }
    case StringFormat::kUuid:
      return uuid(s, i);
    case StringFormat::kNone:
      break;
  }
  return Match::kDone;
}

}  // namespace

StringFormat string_format_named(std::string_view name) {
  if (name == "date") return StringFormat::kDate;
  if (name == "time") return StringFormat::kTime;
  if (name == "date-time") return StringFormat::kDateTime;
  if (name == "uuid") return StringFormat::kUuid;
  return StringFormat::kNone;
}

bool format_prefix_ok(StringFormat f, std::string_view s) {
  if (f == StringFormat::kNone) return true;
  size_t i = 0;
  const Match m = match(f, s, i);
  return m == Match::kMore || (m == Match::kDone && i == s.size());
}

bool format_complete(StringFormat f, std::string_view s) {
  if (f == StringFormat::kNone) return true;
  size_t i = 0;
  return match(f, s, i) == Match::kDone && i == s.size();
}

}  // namespace carpool
