#include "tokenizer/unicode.h"

#include <algorithm>
#include <vector>

#include "tokenizer/unicode_tables.h"
#include "util/utf8.h"

namespace carpool::unicode {
namespace {

namespace ut = unicode_tables;

bool in_ranges(const ut::CodeRange* ranges, size_t count, uint32_t cp) {
  const ut::CodeRange* end = ranges + count;
  const ut::CodeRange* it = std::upper_bound(
      ranges, end, cp, [](uint32_t v, const ut::CodeRange& r) { return v < r.lo; });
  if (it == ranges) return false;
  --it;
  return cp <= it->hi;
}

// Number of bytes a sequence with lead byte `b` needs, and the allowed range of its second byte
// (Unicode Table 3-7, well-formed UTF-8 byte sequences). Returns 0 for an invalid lead byte.
int sequence_length(uint8_t b, uint8_t* lo, uint8_t* hi) {
  *lo = 0x80;
  *hi = 0xBF;
  if (b < 0x80) return 1;
  if (b < 0xC2) return 0;
  if (b < 0xE0) return 2;
  if (b < 0xF0) {
    if (b == 0xE0) *lo = 0xA0;
    if (b == 0xED) *hi = 0x9F;
    return 3;
  }
  if (b < 0xF5) {
    if (b == 0xF0) *lo = 0x90;
    if (b == 0xF4) *hi = 0x8F;
    return 4;
  }
  return 0;
}

// Number of bytes of s[i..] that form a valid (possibly incomplete) prefix of one sequence, and
// whether that sequence is complete.
size_t valid_prefix(std::string_view s, size_t i, bool* complete) {
  uint8_t lo, hi;
  int need = sequence_length(static_cast<uint8_t>(s[i]), &lo, &hi);
  *complete = false;
  if (need == 0) return 0;
  size_t n = 1;
  while (n < static_cast<size_t>(need) && i + n < s.size()) {
    uint8_t c = static_cast<uint8_t>(s[i + n]);
    if (n == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) break;
    ++n;
  }
  *complete = n == static_cast<size_t>(need);
  return n;
}

uint8_t combining_class(uint32_t cp) {
  if (cp < 0x300) return 0;
  const auto* begin = ut::kCombiningClasses;
  const auto* end = begin + ut::kCombiningClassesCount;
  auto it = std::upper_bound(begin, end, cp,
                             [](uint32_t v, const ut::CombiningClassRange& r) { return v < r.lo; });
  if (it == begin) return 0;
  --it;
  return cp <= it->hi ? it->ccc : 0;
}

constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount;
constexpr uint32_t kSCount = kLCount * kNCount;

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  if (cp < 0xC0) {
    out.push_back(cp);
    return;
  }
  const auto* begin = ut::kDecompositions;
  const auto* end = begin + ut::kDecompositionsCount;
  auto it = std::lower_bound(begin, end, cp,
                             [](const ut::Decomposition& d, uint32_t v) { return d.cp < v; });
  if (it == end || it->cp != cp) {
    out.push_back(cp);
    return;
  }
  for (uint32_t k = 0; k < it->length; ++k) out.push_back(ut::kDecompositionData[it->offset + k]);
}

// Returns the primary composite of (a, b), or 0 when there is none.
uint32_t compose(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const auto* begin = ut::kCompositions;
  const auto* end = begin + ut::kCompositionsCount;
  auto it = std::lower_bound(begin, end, std::make_pair(a, b),
                             [](const ut::Composition& c, std::pair<uint32_t, uint32_t> v) {
                               return c.first != v.first ? c.first < v.first : c.second < v.second;
                             });
  if (it == end || it->first != a || it->second != b) return 0;
  return it->composite;
}

// NFC of one run of valid code points: decompose, reorder marks, compose.
void nfc_run(std::vector<uint32_t>& cps, std::string& out) {
  std::vector<uint32_t> d;
  d.reserve(cps.size() + 4);
  for (uint32_t cp : cps) decompose(cp, d);
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < d.size();) {
    if (combining_class(d[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && combining_class(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + i, d.begin() + j, [](uint32_t x, uint32_t y) {
      return combining_class(x) < combining_class(y);
    });
    i = j;
  }
  // Canonical composition.
  if (!d.empty()) {
    size_t starter = 0;
    bool have_starter = combining_class(d[0]) == 0;
    int last_ccc = have_starter ? 0 : 256;
    size_t w = 1;
    for (size_t r = 1; r < d.size(); ++r) {
      uint32_t c = d[r];
      int ccc = combining_class(c);
      bool blocked = !(last_ccc < ccc || (last_ccc == 0 && w - 1 == starter));
      uint32_t comp = (have_starter && !blocked) ? compose(d[starter], c) : 0;
      if (comp != 0) {
        d[starter] = comp;
        continue;
      }
      if (ccc == 0) {
        starter = w;
        have_starter = true;
        last_ccc = 0;
      } else {
        last_ccc = ccc;
      }
      d[w++] = c;
    }
    d.resize(w);
  }
  for (uint32_t cp : d) append_utf8(out, cp);
  cps.clear();
}

}  // namespace

Utf8Char decode_utf8(std::string_view s, size_t i) {
  uint8_t b = static_cast<uint8_t>(s[i]);
  if (b < 0x80) return {b, 1};
  bool complete = false;
  size_t n = valid_prefix(s, i, &complete);
  if (!complete) return {kInvalidCodePoint, 1};
  uint32_t cp = b & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
  return {cp, static_cast<uint32_t>(n)};
}

void append_utf8(std::string& out, uint32_t cp) {
  append_code_point_utf8(out, cp);
}

bool is_letter(uint32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  if (cp == kInvalidCodePoint) return false;
  return in_ranges(ut::kLetterRanges, ut::kLetterRangesCount, cp);
}

bool is_number(uint32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  if (cp == kInvalidCodePoint) return false;
  return in_ranges(ut::kNumberRanges, ut::kNumberRangesCount, cp);
}

bool is_whitespace(uint32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
  if (cp == kInvalidCodePoint) return false;
  return in_ranges(ut::kWhitespaceRanges, ut::kWhitespaceRangesCount, cp);
}

std::string nfc(std::string_view s) {
  // Characters below U+0300 neither decompose into anything that recomposes differently nor
  // combine with a previous character, except for the precomposed Latin-1 letters, which are
  // already in NFC. So pure text below U+0300 is its own NFC.
  bool simple = true;
  for (size_t i = 0; i < s.size() && simple;) {
    Utf8Char c = decode_utf8(s, i);
    if (c.cp != kInvalidCodePoint && c.cp >= 0x300) simple = false;
    i += c.len;
  }
  if (simple) return std::string(s);
  std::string out;
  out.reserve(s.size() + 8);
  std::vector<uint32_t> run;
  for (size_t i = 0; i < s.size();) {
    Utf8Char c = decode_utf8(s, i);
    if (c.cp == kInvalidCodePoint) {
      nfc_run(run, out);
      out.push_back(s[i]);
    } else {
      run.push_back(c.cp);
    }
    i += c.len;
  }
  nfc_run(run, out);
  return out;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    bool complete = false;
    size_t n = valid_prefix(s, i, &complete);
    if (complete) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out.append("\xEF\xBF\xBD");
      i += n == 0 ? 1 : n;
    }
  }
  return out;
}

size_t utf8_complete_prefix(std::string_view s) {
  // Only the last three bytes can start an incomplete sequence.
  size_t start = s.size() > 3 ? s.size() - 3 : 0;
  for (size_t i = start; i < s.size(); ++i) {
    uint8_t b = static_cast<uint8_t>(s[i]);
    if (b < 0xC0) continue;  // ASCII or continuation byte
    bool complete = false;
    size_t n = valid_prefix(s, i, &complete);
    if (!complete && n > 0 && i + n == s.size()) return i;
  }
  return s.size();
}

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    bool complete = false;
    size_t n = valid_prefix(s, i, &complete);
    if (!complete) return false;
    i += n;
  }
  return true;
}

}  // namespace carpool::unicode
