#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <array>
#include <cstdio>

#include "tokenizer/byte_level.h"
#include "tokenizer/unicode.h"

namespace carpool {
namespace {

constexpr size_t kMaxVocab = size_t{1} << 22;  // 4M tokens: far above any real vocabulary
constexpr size_t kMaxTokenBytes = 1 << 16;
constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581 '▁'

// Parses "<0xXX>" (two hex digits, either case); -1 otherwise.
int parse_byte_token(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  int v = 0;
  for (char c : t.substr(3, 2)) {
    int d = (c >= '0' && c <= '9')   ? c - '0'
            : (c >= 'A' && c <= 'F') ? c - 'A' + 10
            : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                     : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (true) {
    size_t j = s.find(from, i);
    if (j == std::string_view::npos) break;
    out.append(s.substr(i, j - i));
    out.append(to);
    i = j + from.size();
  }
  out.append(s.substr(i));
  return out;
}

bool is_ascii_space(char c) {
  return c == ' ' || (c >= '\t' && c <= '\r');
}

// Token texts that end a turn in the chat formats we know.
constexpr std::array<std::string_view, 9> kEndOfTurnTexts = {
    "<|eot_id|>",    "<|eom_id|>", "<|im_end|>", "<|endoftext|>", "<|end_of_text|>",
    "<end_of_turn>", "<|end|>",    "</s>",       "<|return|>"};

}  // namespace

// Added tokens sorted by their bytes. At a position the candidates are narrowed one byte at a
// time (the tokens that share the text's next L bytes are one range of the sorted list), so a
// match costs the length of the longest token prefix the text shares, times log n; the longest
// allowed match wins. (Buckets by first byte scanned every token of the bucket at every byte of
// the text: with a million hostile control tokens 'a...', 1.9 ms per input byte.)
struct Tokenizer::AddedTokenIndex {
  struct Entry {
    std::string text;
    int32_t id;
    bool special;
    AddedTokenOptions options;
  };
  std::vector<Entry> entries;  // sorted by text

  // The longest entry that text[pos...] starts with (special ones only with parse_special).
  const Entry* match(std::string_view text, size_t pos, bool parse_special) const {
    size_t lo = 0, hi = entries.size();
    const Entry* best = nullptr;
    for (size_t len = 1; pos + len <= text.size() && lo < hi; ++len) {
      // Entries in [lo, hi) share text's first len - 1 bytes; one of exactly that length sorts
      // first. Keep those with byte len - 1 equal to the text's.
      while (lo < hi && entries[lo].text.size() < len) ++lo;
      const auto c = static_cast<unsigned char>(text[pos + len - 1]);
      auto byte_at = [len](const Entry& e) { return static_cast<unsigned char>(e.text[len - 1]); };
      auto first = std::partition_point(entries.begin() + static_cast<std::ptrdiff_t>(lo),
                                        entries.begin() + static_cast<std::ptrdiff_t>(hi),
                                        [&](const Entry& e) { return byte_at(e) < c; });
      auto last = std::partition_point(first, entries.begin() + static_cast<std::ptrdiff_t>(hi),
                                       [&](const Entry& e) { return byte_at(e) == c; });
      lo = static_cast<size_t>(first - entries.begin());
      hi = static_cast<size_t>(last - entries.begin());
      if (lo < hi && entries[lo].text.size() == len && (parse_special || !entries[lo].special)) {
        best = &entries[lo];
      }
    }
    return best;
  }
};

Tokenizer::Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Result<Tokenizer> Tokenizer::from_spec(TokenizerSpec spec) {
  const size_t n = spec.tokens.size();
  if (n == 0) return Status::error("tokenizer: empty vocabulary");
  if (n > kMaxVocab) return Status::error("tokenizer: vocabulary too large");
  if (spec.types.size() != n) return Status::error("tokenizer: token types count != token count");
  if (!spec.scores.empty() && spec.scores.size() != n) {
    return Status::error("tokenizer: scores count != token count");
  }
  if (!spec.added_options.empty() && spec.added_options.size() != n) {
    return Status::error("tokenizer: added token options count != token count");
  }
  for (size_t i = 0; i < n; ++i) {
    if (spec.tokens[i].size() > kMaxTokenBytes) {
      return Status::error("tokenizer: token " + std::to_string(i) + " is too long");
    }
    uint8_t t = static_cast<uint8_t>(spec.types[i]);
    if (t < 1 || t > 6) return Status::error("tokenizer: bad type for token " + std::to_string(i));
  }
  auto check_id = [&](int32_t id, const char* what) -> Status {
    if (id < -1 || id >= static_cast<int64_t>(n)) {
      return Status::error(std::string("tokenizer: ") + what + " id " + std::to_string(id) +
                           " out of range (vocabulary " + std::to_string(n) + ")");
    }
    return Status::ok();
  };
  CARPOOL_RETURN_IF_ERROR(check_id(spec.bos_id, "bos"));
  CARPOOL_RETURN_IF_ERROR(check_id(spec.eos_id, "eos"));
  CARPOOL_RETURN_IF_ERROR(check_id(spec.unk_id, "unk"));
  for (int32_t id : spec.extra_eog_ids) CARPOOL_RETURN_IF_ERROR(check_id(id, "end-of-turn"));
  if (spec.merges.size() > kMaxVocab * 4) return Status::error("tokenizer: too many merges");

  Tokenizer tok;
  const bool byte_level = spec.model == TokenizerModel::kByteLevelBpe;
  tok.pieces_.resize(n);
  tok.lookup_.reserve(n);
  tok.by_text_.reserve(n);
  std::fill(std::begin(tok.byte_ids_), std::end(tok.byte_ids_), -1);
  std::vector<std::string> keys(n);  // the BPE key of each token
  for (size_t i = 0; i < n; ++i) {
    const std::string& text = spec.tokens[i];
    const int32_t id = static_cast<int32_t>(i);
    tok.by_text_.emplace(text, id);
    TokenType type = spec.types[i];
    if (byte_level) {
      if (!byte_level_decode(text, &keys[i])) keys[i] = text;
      tok.pieces_[i] = keys[i];
    } else {
      int b = parse_byte_token(text);
      if (b >= 0 && (type == TokenType::kByte || spec.byte_fallback)) {
        if (type == TokenType::kNormal) spec.types[i] = type = TokenType::kByte;
        tok.pieces_[i] = std::string(1, static_cast<char>(b));
        if (tok.byte_ids_[b] < 0) tok.byte_ids_[b] = id;
      } else {
        tok.pieces_[i] = replace_all(text, kSpaceMarker, " ");
      }
      keys[i] = text;
    }
    if (type == TokenType::kNormal || type == TokenType::kUnknown) {
      tok.lookup_.emplace(keys[i], id);
    }
  }
  if (byte_level) {
    for (int b = 0; b < 256; ++b) {
      auto it = tok.lookup_.find(std::string(1, static_cast<char>(b)));
      if (it != tok.lookup_.end()) tok.byte_ids_[b] = it->second;
    }
  }

  // Merges.
  if (!spec.merges.empty()) {
    std::string left, right;
    for (size_t r = 0; r < spec.merges.size(); ++r) {
      const auto& [a, b] = spec.merges[r];
      if (!byte_level || !byte_level_decode(a, &left)) left = a;
      if (!byte_level || !byte_level_decode(b, &right)) right = b;
      auto ia = tok.lookup_.find(left);
      auto ib = tok.lookup_.find(right);
      auto iab = tok.lookup_.find(left + right);
      if (ia == tok.lookup_.end() || ib == tok.lookup_.end() || iab == tok.lookup_.end()) {
        return Status::error("tokenizer: merge " + std::to_string(r) + " ('" + a + " " + b +
                             "') names a token that is not in the vocabulary");
      }
      tok.merges_.add(ia->second, ib->second, static_cast<int32_t>(r), iab->second);
    }
  } else if (!spec.scores.empty() && !byte_level) {
    // SentencePiece BPE: merge order follows the score of the merged token.
    std::vector<int32_t> order;
    for (size_t i = 0; i < n; ++i) {
      if (spec.types[i] == TokenType::kNormal) order.push_back(static_cast<int32_t>(i));
    }
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t x, int32_t y) { return spec.scores[x] > spec.scores[y]; });
    // Every cut of every token is looked up: work quadratic in a token's length. Real
    // vocabularies need a few million byte operations; a hostile one of long tokens (100 of 64
    // KiB took 30 s) is refused instead.
    constexpr uint64_t kMaxMergeWork = 250'000'000;
    uint64_t work = 0;
    for (int32_t id : order) {
      const uint64_t len = keys[id].size();
      work += len * len;
      if (work > kMaxMergeWork) {
        return Status::error(
            "tokenizer: the vocabulary's tokens are too long to derive "
            "SentencePiece merges from (more than " +
            std::to_string(kMaxMergeWork) + " bytes of lookups)");
      }
    }
    for (size_t r = 0; r < order.size(); ++r) {
      const std::string& t = keys[order[r]];
      for (size_t cut = 1; cut < t.size(); ++cut) {
        if ((static_cast<uint8_t>(t[cut]) & 0xC0) == 0x80) continue;  // inside a character
        auto ia = tok.lookup_.find(t.substr(0, cut));
        if (ia == tok.lookup_.end()) continue;
        auto ib = tok.lookup_.find(t.substr(cut));
        if (ib == tok.lookup_.end()) continue;
        tok.merges_.add(ia->second, ib->second, static_cast<int32_t>(r), order[r]);
      }
    }
  }

  // Added tokens: control and user-defined tokens are matched in the raw text.
  tok.added_ = std::make_unique<AddedTokenIndex>();
  for (size_t i = 0; i < n; ++i) {
    TokenType type = spec.types[i];
    if ((type != TokenType::kControl && type != TokenType::kUserDefined) ||
        spec.tokens[i].empty()) {
      continue;
    }
    AddedTokenOptions options =
        spec.added_options.empty() ? AddedTokenOptions{} : spec.added_options[i];
    const std::string& text = spec.tokens[i];
    tok.added_->entries.push_back(
        {text, static_cast<int32_t>(i), type == TokenType::kControl, options});
  }
  std::stable_sort(tok.added_->entries.begin(), tok.added_->entries.end(),
                   [](const auto& x, const auto& y) { return x.text < y.text; });

  // End of generation.
  auto add_eog = [&](int32_t id) {
    if (id >= 0 && std::find(tok.eog_ids_.begin(), tok.eog_ids_.end(), id) == tok.eog_ids_.end()) {
      tok.eog_ids_.push_back(id);
    }
  };
  add_eog(spec.eos_id);
  for (int32_t id : spec.extra_eog_ids) add_eog(id);
  for (std::string_view t : kEndOfTurnTexts) {
    auto it = tok.by_text_.find(std::string(t));
    if (it != tok.by_text_.end() && spec.types[it->second] == TokenType::kControl) {
      add_eog(it->second);
    }
  }

  tok.spec_ = std::move(spec);
  return tok;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos,
                                       bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && spec_.bos_id >= 0) out.push_back(spec_.bos_id);
  size_t segment_start = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const AddedTokenIndex::Entry* match = added_->match(text, pos, parse_special);
    if (match == nullptr) {
      ++pos;
      continue;
    }
    size_t segment_end = pos;
    if (match->options.lstrip) {
      while (segment_end > segment_start && is_ascii_space(text[segment_end - 1])) --segment_end;
    }
    encode_segment(text.substr(segment_start, segment_end - segment_start), segment_start == 0,
                   out);
    out.push_back(match->id);
    pos += match->text.size();
    if (match->options.rstrip) {
      while (pos < text.size() && is_ascii_space(text[pos])) ++pos;
    }
    segment_start = pos;
  }
  encode_segment(text.substr(segment_start), segment_start == 0, out);
  return out;
}

void Tokenizer::encode_segment(std::string_view text, bool at_start,
                               std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::string normalized;
  if (spec_.nfc) {
    normalized = unicode::nfc(text);
    text = normalized;
  }
  if (spec_.model == TokenizerModel::kSentencePieceBpe) {
    std::string word;
    word.reserve(text.size() + 8);
    bool prefix = spec_.add_dummy_prefix && (at_start || !spec_.dummy_prefix_first_only) &&
                  !(spec_.dummy_prefix_unless_space && text[0] == ' ');
    if (prefix) word.append(kSpaceMarker);
    for (char c : text) {
      if (c == ' ') {
        word.append(kSpaceMarker);
      } else {
        word.push_back(c);
      }
    }
    if (!spec_.split_on_space_marker) {
      encode_word(word, out);
      return;
    }
    // Each '▁' starts a word.
    std::string_view w = word;
    size_t start = 0;
    while (start < w.size()) {
      size_t next = w.find(kSpaceMarker, start + 1);
      if (next == std::string_view::npos) next = w.size();
      encode_word(w.substr(start, next - start), out);
      start = next;
    }
    return;
  }
  std::vector<std::string_view> words;
  pre_tokenize(spec_.pre_tokenizer, text, &words);
  for (std::string_view w : words) encode_word(w, out);
}

void Tokenizer::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<int32_t> symbols;
  if (spec_.model == TokenizerModel::kByteLevelBpe) {
    if (spec_.ignore_merges || word.size() == 1) {
      auto it = lookup_.find(std::string(word));
      if (it != lookup_.end()) {
        out.push_back(it->second);
        return;
      }
    }
    symbols.reserve(word.size());
    for (unsigned char b : word) {
      if (byte_ids_[b] >= 0) {
        symbols.push_back(byte_ids_[b]);
      } else if (spec_.unk_id >= 0) {
        symbols.push_back(spec_.unk_id);
      }
    }
  } else {
    bool previous_unk = false;
    for (size_t i = 0; i < word.size();) {
      unicode::Utf8Char c = unicode::decode_utf8(word, i);
      std::string_view ch = word.substr(i, c.len);
      i += c.len;
      auto it = lookup_.find(std::string(ch));
      if (it != lookup_.end()) {
        symbols.push_back(it->second);
        previous_unk = false;
        continue;
      }
      bool have_bytes = spec_.byte_fallback;
      for (unsigned char b : ch) have_bytes = have_bytes && byte_ids_[b] >= 0;
      if (have_bytes) {
        for (unsigned char b : ch) symbols.push_back(byte_ids_[b]);
        previous_unk = false;
      } else if (spec_.unk_id >= 0 && !(spec_.fuse_unk && previous_unk)) {
        symbols.push_back(spec_.unk_id);
        previous_unk = true;
      }
    }
  }
  merges_.apply(symbols);
  out.insert(out.end(), symbols.begin(), symbols.end());
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  const int32_t n = vocab_size();
  if (spec_.model == TokenizerModel::kByteLevelBpe) {
    for (int32_t id : ids) {
      if (id < 0 || id >= n || (skip_special && is_special(id))) continue;
      bytes.append(pieces_[id]);
    }
    return unicode::utf8_lossy(bytes);
  }
  // SentencePiece: a run of byte tokens becomes its text when it is valid UTF-8, else one U+FFFD
  // per byte; other pieces are valid text already.
  std::string text;
  std::string run;
  auto flush_run = [&]() {
    if (run.empty()) return;
    if (unicode::is_valid_utf8(run)) {
      text.append(run);
    } else {
      for (size_t k = 0; k < run.size(); ++k) text.append("\xEF\xBF\xBD");
    }
    run.clear();
  };
  bool first = true;
  for (int32_t id : ids) {
    if (id < 0 || id >= n || (skip_special && is_special(id))) continue;
    if (spec_.types[id] == TokenType::kByte) {
      run.append(pieces_[id]);
    } else {
      flush_run();
      if (first && spec_.strip_first_token_spaces) {
        std::string piece = pieces_[id];
        adjust_first_piece(piece);
        text.append(piece);
      } else {
        text.append(pieces_[id]);
      }
    }
    first = false;
  }
  flush_run();
  if (spec_.strip_leading_space && !text.empty() && text[0] == ' ') text.erase(0, 1);
  return unicode::utf8_lossy(text);
}

void Tokenizer::adjust_first_piece(std::string& piece) const {
  if (spec_.model != TokenizerModel::kSentencePieceBpe) return;
  if (spec_.strip_first_token_spaces) {
    piece.erase(std::remove(piece.begin(), piece.end(), ' '), piece.end());
  } else if (spec_.strip_leading_space && !piece.empty() && piece[0] == ' ') {
    piece.erase(0, 1);
  }
}

std::string_view Tokenizer::token_to_piece(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return pieces_[id];
}

std::string_view Tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return spec_.tokens[id];
}

int32_t Tokenizer::find_token(std::string_view text) const {
  auto it = by_text_.find(std::string(text));
  return it == by_text_.end() ? -1 : it->second;
}

bool Tokenizer::is_end_of_generation(int32_t id) const {
  return std::find(eog_ids_.begin(), eog_ids_.end(), id) != eog_ids_.end();
}

bool Tokenizer::is_special(int32_t id) const {
  TokenType t = token_type(id);
  return t == TokenType::kControl || t == TokenType::kUnknown;
}

TokenType Tokenizer::token_type(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return TokenType::kUnused;
  return spec_.types[id];
}

}  // namespace carpool
