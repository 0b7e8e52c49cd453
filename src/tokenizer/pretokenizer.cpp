#include "tokenizer/pretokenizer.h"

#include "tokenizer/unicode.h"
#include "util/check.h"

namespace carpool {
namespace {

using unicode::decode_utf8;

enum CharClass : uint8_t { kLetter, kNumber, kSpace, kOther };

// The text decoded once: one entry per character.
struct Chars {
  std::vector<uint32_t> cp;
  std::vector<uint32_t> offset;  // byte offset of each character; offset[n] = text size
  std::vector<CharClass> cls;
  size_t size() const { return cp.size(); }
};

Chars decode_all(std::string_view text) {
  Chars c;
  c.cp.reserve(text.size());
  c.offset.reserve(text.size() + 1);
  c.cls.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    unicode::Utf8Char ch = decode_utf8(text, i);
    c.cp.push_back(ch.cp);
    c.offset.push_back(static_cast<uint32_t>(i));
    CharClass k = kOther;
    if (unicode::is_letter(ch.cp)) {
      k = kLetter;
    } else if (unicode::is_number(ch.cp)) {
      k = kNumber;
    } else if (unicode::is_whitespace(ch.cp)) {
      k = kSpace;
    }
    c.cls.push_back(k);
    i += ch.len;
  }
  c.offset.push_back(static_cast<uint32_t>(text.size()));
  return c;
}

char ascii_lower(uint32_t cp) {
  if (cp >= 'A' && cp <= 'Z') return static_cast<char>(cp + 32);
  return cp < 0x80 ? static_cast<char>(cp) : '\0';
}

// Length in characters of a contraction at i ('s 't 're 've 'm 'll 'd), or 0.
size_t match_contraction(const Chars& c, size_t i, size_t end, bool ignore_case) {
  if (c.cp[i] != '\'' || i + 1 >= end) return 0;
  auto at = [&](size_t k) -> char {
    if (i + k >= end) return '\0';
    return ignore_case ? ascii_lower(c.cp[i + k]) : (c.cp[i + k] < 0x80 ? char(c.cp[i + k]) : 0);
  };
  char a = at(1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  char b = at(2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

size_t run_of(const Chars& c, size_t i, size_t end, CharClass k) {
  size_t j = i;
  while (j < end && c.cls[j] == k) ++j;
  return j - i;
}

bool is_newline(uint32_t cp) {
  return cp == '\r' || cp == '\n';
}

// \s+(?!\S)|\s+ at i, where c.cls[i] is kSpace.
size_t match_trailing_space(const Chars& c, size_t i, size_t end) {
  size_t n = run_of(c, i, end, kSpace);
  if (i + n == end || n == 1) return n;
  return n - 1;  // leave the last space to start the next word
}

// One GPT-2 word starting at i; returns its length in characters (>= 1).
size_t gpt2_word(const Chars& c, size_t i, size_t end) {
  if (size_t n = match_contraction(c, i, end, /*ignore_case=*/false)) return n;
  size_t skip = (c.cp[i] == ' ' && i + 1 < end && c.cls[i + 1] != kSpace) ? 1 : 0;
  CharClass k = c.cls[i + skip];
  if (k != kSpace) return skip + run_of(c, i + skip, end, k);
  return match_trailing_space(c, i, end);
}

// One Llama-3 / Qwen2 word starting at i.
size_t llama3_word(const Chars& c, size_t i, size_t end, size_t max_digits) {
  if (size_t n = match_contraction(c, i, end, /*ignore_case=*/true)) return n;
  CharClass k = c.cls[i];
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (k == kLetter) return run_of(c, i, end, kLetter);
  if (k != kNumber && !is_newline(c.cp[i]) && i + 1 < end && c.cls[i + 1] == kLetter) {
    return 1 + run_of(c, i + 1, end, kLetter);
  }
  // \p{N}{1,3}
  if (k == kNumber) {
    size_t n = run_of(c, i, end, kNumber);
    return n < max_digits ? n : max_digits;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  size_t skip = (c.cp[i] == ' ' && i + 1 < end && c.cls[i + 1] == kOther) ? 1 : 0;
  if (c.cls[i + skip] == kOther) {
    size_t j = i + skip + run_of(c, i + skip, end, kOther);
    while (j < end && is_newline(c.cp[j])) ++j;
    return j - i;
  }
  // \s*[\r\n]+ : up to and including the last newline of the whitespace run.
  size_t n = run_of(c, i, end, kSpace);
  for (size_t j = i + n; j > i; --j) {
    if (is_newline(c.cp[j - 1])) return j - i;
  }
  // \s+(?!\S)|\s+
  return match_trailing_space(c, i, end);
}

void split(PreTokenizerKind kind, const Chars& c, size_t begin, size_t end, std::string_view text,
           std::vector<std::string_view>* out) {
  for (size_t i = begin; i < end;) {
    size_t n = 0;
    switch (kind) {
      case PreTokenizerKind::kGpt2:
      case PreTokenizerKind::kSmolLM:
        n = gpt2_word(c, i, end);
        break;
      case PreTokenizerKind::kLlama3:
        n = llama3_word(c, i, end, 3);
        break;
      case PreTokenizerKind::kQwen2:
        n = llama3_word(c, i, end, 1);
        break;
      case PreTokenizerKind::kNone:
        n = end - i;
        break;
    }
    CARPOOL_CHECK(n >= 1 && i + n <= end);
    out->push_back(text.substr(c.offset[i], c.offset[i + n] - c.offset[i]));
    i += n;
  }
}

}  // namespace

const char* pre_tokenizer_name(PreTokenizerKind kind) {
  switch (kind) {
    case PreTokenizerKind::kNone:
      return "none";
    case PreTokenizerKind::kGpt2:
      return "gpt2";
    case PreTokenizerKind::kSmolLM:
      return "smollm";
    case PreTokenizerKind::kLlama3:
      return "llama3";
    case PreTokenizerKind::kQwen2:
      return "qwen2";
  }
  return "?";
}

void pre_tokenize(PreTokenizerKind kind, std::string_view text,
                  std::vector<std::string_view>* out) {
  if (text.empty()) return;
  if (kind == PreTokenizerKind::kNone) {
    out->push_back(text);
    return;
  }
  Chars c = decode_all(text);
  if (kind != PreTokenizerKind::kSmolLM) {
    split(kind, c, 0, c.size(), text, out);
    return;
  }
  // Digits are isolated first; the GPT-2 rules run on the text between them.
  size_t start = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    if (c.cls[i] != kNumber) continue;
    split(kind, c, start, i, text, out);
    out->push_back(text.substr(c.offset[i], c.offset[i + 1] - c.offset[i]));
    start = i + 1;
  }
  split(kind, c, start, c.size(), text, out);
}

}  // namespace carpool
