// JSON mode (response_format {"type": "json_object"}; json_schema.h adds a schema): the
// generated text must be one JSON object. JsonState recognizes such a text byte by byte;
// mask_json() sets the logits of the tokens that cannot continue it to -inf before a token is
// sampled, and lets an end-of-generation token through only once the object is closed, and then
// nothing else (the recognizer accepts trailing whitespace within the limit, so a token that
// closes the object may end in some; the mask allows no more). Every state the recognizer accepts
// can be finished (no dead
// ends within the limits), so with a vocabulary that holds every single byte some token is always
// allowed.
//
// The grammar is RFC 8259 with a top-level object, plus limits that keep a small model from
// running away inside the structure: nesting depth kMaxDepth, at most kMaxWhitespace consecutive
// whitespace bytes, numbers of at most kMaxNumberBytes. Strings must be valid UTF-8 without
// control characters; escapes are checked (\uXXXX: four hex digits).
//
// Cost: mask_json() feeds every token's bytes to a copy of the state (tokens grouped by first
// byte, so a rejected first byte rejects its group at once; inside a string, tokens of plain
// printable ASCII pass without being fed), on the host, for the requests that ask for it:
// bench/engine/sampler_bench BM_JsonMask.
//
// Thread-safety: JsonState is a plain value; TokenBytes is immutable once built.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace carpool {

class Tokenizer;
class SchemaState;

class JsonState {
 public:
  static constexpr int kMaxDepth = 32;
  static constexpr int kMaxWhitespace = 32;
  static constexpr int kMaxNumberBytes = 32;

  // Feeds one byte. False if it cannot continue a JSON object text; the state is then
  // unspecified (callers feed copies).
  bool feed(uint8_t c);
  bool feed(std::string_view bytes) {
    for (char c : bytes) {
      if (!feed(static_cast<uint8_t>(c))) return false;
    }
    return true;
  }
  // The top-level object is closed: only whitespace and the end of the text may follow.
  bool complete() const { return mode_ == Mode::kDone; }
  // The top-level value is an array instead of an object (a schema whose root is an array: tool
  // calls, server/tool_calls.h). Set before the first byte.
  void set_array_root() { array_root_ = true; }
  // At most `n` (1 to kMaxWhitespace) consecutive whitespace bytes instead of kMaxWhitespace (tool
  // calls: a small model would spend tokens on newlines). Set before the first byte.
  void set_max_whitespace(int n) {
    max_ws_ = static_cast<uint8_t>(n < 1 ? 1 : n > kMaxWhitespace ? kMaxWhitespace : n);
  }
  // Inside a string, not within an escape or a UTF-8 character: any printable ASCII other than
  // '"' and '\\' keeps it there.
  bool in_string_body() const { return mode_ == Mode::kString && escape_ == 0 && utf8_left_ == 0; }
  // Characters the string being read may still take (no limit here; SchemaState: maxLength).
  int32_t string_room() const { return std::numeric_limits<int32_t>::max(); }

 private:
  friend class SchemaState;  // follows the syntax and adds a schema's rules

  // Ends a number that is complete (not after '-', '.', 'e' or a sign): false otherwise.
  bool end_number();

  enum class Mode : uint8_t {
    kStart,       // before the top-level '{'
    kObjFirst,    // after '{': a key or '}'
    kObjKey,      // after ',' in an object: a key
    kColon,       // after a key
    kValue,       // after ':' or ',' in an array: a value
    kArrFirst,    // after '[': a value or ']'
    kAfterValue,  // after a value in a container: ',' or the closing bracket
    kString,
    kNumber,
    kLiteral,
    kDone,
  };
  // Number phases (RFC 8259 section 6).
  enum class Num : uint8_t { kMinus, kZero, kInt, kDot, kFrac, kExp, kExpSign, kExpDigits };

  bool start_value(uint8_t c);
  bool end_value();  // a value just ended: back to its container
  bool string_byte(uint8_t c);
  bool number_byte(uint8_t c);
  bool whitespace();
  static bool is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

  Mode mode_ = Mode::kStart;
  Num num_ = Num::kMinus;
  uint8_t depth_ = 0;
  uint8_t ws_run_ = 0;
  uint8_t scalar_len_ = 0;  // bytes of the number or literal so far
  uint8_t literal_ = 0;     // 0 true, 1 false, 2 null
  uint8_t escape_ = 0;      // 0 none, 1 after '\', 2..5: hex digits of \u still to read + 1
  uint8_t utf8_left_ = 0;   // continuation bytes the current character still needs
  uint8_t utf8_lo_ = 0x80;  // allowed range of the next continuation byte
  uint8_t utf8_hi_ = 0xBF;
  bool key_ = false;                        // the string being read is an object key
  bool array_root_ = false;                 // the top-level value is an array
  uint8_t max_ws_ = kMaxWhitespace;         // consecutive whitespace bytes allowed
  std::array<uint8_t, kMaxDepth> stack_{};  // 'o' object, 'a' array
};

// The bytes of every token, for masking: ids whose text is empty (control tokens, ids past the
// tokenizer's vocabulary) never pass; end_ids end the generation.
struct TokenBytes {
  std::vector<std::string> text;  // [vocab]
  std::vector<int32_t> end_ids;
  std::array<std::vector<int32_t>, 256> by_first;  // ids with non-empty text, by first byte
  std::vector<uint8_t> plain;   // [vocab] 1: every byte printable ASCII, none '"' or '\\'
  int32_t max_plain_bytes = 0;  // the longest plain token

  // Fills by_first and plain from text.
  void index();
};

// Every token's bytes as the decoder writes them (control and end-of-generation tokens: none),
// and the end-of-generation ids.
std::shared_ptr<const TokenBytes> json_token_bytes(const Tokenizer& tok);

// Sets logits[id] = -inf for every id that cannot follow `state` (see the top of this file).
// If no token could (a vocabulary without some needed byte), the end ids are let through.
// State: JsonState or SchemaState (json_schema.h).
template <class State>
void mask_tokens(const State& state, const TokenBytes& vocab, std::span<float> logits);
inline void mask_json(const JsonState& state, const TokenBytes& vocab, std::span<float> logits) {
  mask_tokens(state, vocab, logits);
}

}  // namespace carpool
