#include "tokenizer/stream_decoder.h"

#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace carpool {

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

std::string StreamDecoder::push(int32_t id) {
  if (id < 0 || id >= tokenizer_.vocab_size()) return {};
  if (skip_special_ && tokenizer_.is_special(id)) return {};
  if (at_start_) {
    std::string piece(tokenizer_.token_to_piece(id));
    if (piece.empty()) return {};
    at_start_ = false;
    tokenizer_.adjust_first_piece(piece);
    pending_.append(piece);
  } else {
    pending_.append(tokenizer_.token_to_piece(id));
  }
  size_t complete = unicode::utf8_complete_prefix(pending_);
  if (complete == 0) return {};
  std::string out = unicode::utf8_lossy(std::string_view(pending_).substr(0, complete));
  pending_.erase(0, complete);
  return out;
}

std::string StreamDecoder::finish() {
  std::string out = unicode::utf8_lossy(pending_);
  pending_.clear();
  return out;
}

}  // namespace carpool
