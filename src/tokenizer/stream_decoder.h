// StreamDecoder: turns generated token ids into text one token at a time without ever emitting
// a broken UTF-8 sequence.
//
// Bytes of a character split across tokens (byte-level tokens, <0xXX> byte-fallback tokens) are
// held back until the character is complete; bytes that can never form a valid character are
// emitted as U+FFFD (one per maximal invalid subsequence). For SentencePiece tokenizers the
// leading space of the whole text is dropped, as decode() does. The concatenation of everything
// push() and finish() return equals Tokenizer::decode() of the same ids for byte-level
// tokenizers and for valid text.
//
// Holds a reference to the Tokenizer, which must outlive it. Not thread-safe: one per sequence.
#pragma once

#include <cstdint>
#include <string>

namespace carpool {

class Tokenizer;

class StreamDecoder {
 public:
  // skip_special: control tokens (<|im_end|>, </s>, ...) produce no text.
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = false);

  // Adds one token; returns the text that is now complete (possibly empty).
  std::string push(int32_t id);
  // Ends the stream: returns the held-back bytes, each incomplete sequence as U+FFFD.
  std::string finish();
  // Bytes currently held back (0 to 3).
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  bool at_start_ = true;  // nothing emitted yet (for the SentencePiece leading space)
  std::string pending_;
};

}  // namespace carpool
