#include "engine/json_constraint.h"

#include <algorithm>
#include <limits>
#include <string_view>

#include "engine/json_schema.h"
#include "tokenizer/tokenizer.h"

namespace carpool {
namespace {

constexpr std::string_view kLiterals[3] = {"true", "false", "null"};

bool is_digit(uint8_t c) {
  return c >= '0' && c <= '9';
}

bool is_hex(uint8_t c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

}  // namespace

bool JsonState::whitespace() {
  return ++ws_run_ <= max_ws_;
}

bool JsonState::end_number() {
  if (mode_ != Mode::kNumber) return false;
  if (num_ != Num::kZero && num_ != Num::kInt && num_ != Num::kFrac && num_ != Num::kExpDigits) {
    return false;
  }
  return end_value();
}

bool JsonState::end_value() {
  mode_ = depth_ == 0 ? Mode::kDone : Mode::kAfterValue;
  ws_run_ = 0;
  return true;
}

bool JsonState::start_value(uint8_t c) {
  scalar_len_ = 1;
  switch (c) {
    case '{':
    case '[':
      if (depth_ == kMaxDepth) return false;
      stack_[depth_++] = c == '{' ? 'o' : 'a';
      mode_ = c == '{' ? Mode::kObjFirst : Mode::kArrFirst;
      return true;
    case '"':
      mode_ = Mode::kString;
      key_ = false;
      escape_ = 0;
      utf8_left_ = 0;
      return true;
    case 't':
    case 'f':
    case 'n':
      literal_ = c == 't' ? 0 : (c == 'f' ? 1 : 2);
      mode_ = Mode::kLiteral;
      return true;
    case '-':
      num_ = Num::kMinus;
      mode_ = Mode::kNumber;
      return true;
    default:
      if (!is_digit(c)) return false;
      num_ = c == '0' ? Num::kZero : Num::kInt;
      mode_ = Mode::kNumber;
      return true;
  }
}

bool JsonState::string_byte(uint8_t c) {
  if (utf8_left_ > 0) {  // a continuation byte, in the range the lead byte allows
    if (c < utf8_lo_ || c > utf8_hi_) return false;
    --utf8_left_;
    utf8_lo_ = 0x80;
    utf8_hi_ = 0xBF;
    return true;
  }
  if (escape_ == 1) {
    switch (c) {
      case '"':
      case '\\':
      case '/':
      case 'b':
      case 'f':
      case 'n':
      case 'r':
      case 't':
        escape_ = 0;
        return true;
      case 'u':
        escape_ = 5;
        return true;
      default:
        return false;
    }
  }
  if (escape_ > 1) {  // \uXXXX
    if (!is_hex(c)) return false;
    if (--escape_ == 1) escape_ = 0;
    return true;
  }
  if (c == '"') {
    if (key_) {
      mode_ = Mode::kColon;
      ws_run_ = 0;
      return true;
    }
    return end_value();
  }
  if (c == '\\') {
    escape_ = 1;
    return true;
  }
  if (c < 0x20) return false;
  if (c < 0x80) return true;
  // A UTF-8 lead byte (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF).
  if (c >= 0xC2 && c <= 0xDF) {
    utf8_left_ = 1;
  } else if (c == 0xE0) {
    utf8_left_ = 2;
    utf8_lo_ = 0xA0;
  } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
    utf8_left_ = 2;
  } else if (c == 0xED) {
    utf8_left_ = 2;
    utf8_hi_ = 0x9F;
  } else if (c == 0xF0) {
    utf8_left_ = 3;
    utf8_lo_ = 0x90;
  } else if (c >= 0xF1 && c <= 0xF3) {
    utf8_left_ = 3;
  } else if (c == 0xF4) {
    utf8_left_ = 3;
    utf8_hi_ = 0x8F;
  } else {
    return false;
  }
  return true;
}

bool JsonState::number_byte(uint8_t c) {
  const bool digit = is_digit(c);
  const bool exp = c == 'e' || c == 'E';
  Num next = num_;
  bool ends = false;  // c is not part of the number: the number ended before it
  switch (num_) {
    case Num::kMinus:
      if (!digit) return false;
      next = c == '0' ? Num::kZero : Num::kInt;
      break;
    case Num::kZero:
    case Num::kInt:
    case Num::kFrac:
      if (digit && num_ != Num::kZero) {
        next = num_;
      } else if (c == '.' && num_ != Num::kFrac) {
        next = Num::kDot;
      } else if (exp) {
        next = Num::kExp;
      } else {
        ends = true;
      }
      break;
    case Num::kDot:
      if (!digit) return false;
      next = Num::kFrac;
      break;
    case Num::kExp:
      if (c == '+' || c == '-') {
        next = Num::kExpSign;
      } else if (digit) {
        next = Num::kExpDigits;
      } else {
        return false;
      }
      break;
    case Num::kExpSign:
      if (!digit) return false;
      next = Num::kExpDigits;
      break;
    case Num::kExpDigits:
      if (digit) {
        next = Num::kExpDigits;
      } else {
        ends = true;
      }
      break;
  }
  if (ends) {
    end_value();
    return feed(c);
  }
  // '.', 'e' and the exponent's sign need a digit after them: take them only while one fits, so
  // that every accepted number can still be finished.
  const bool needs_digit = next == Num::kDot || next == Num::kExp || next == Num::kExpSign;
  if (scalar_len_ + (needs_digit ? 2 : 1) > kMaxNumberBytes) return false;
  ++scalar_len_;
  num_ = next;
  return true;
}

bool JsonState::feed(uint8_t c) {
  switch (mode_) {
    case Mode::kString:
      return string_byte(c);
    case Mode::kNumber:
      return number_byte(c);
    case Mode::kLiteral: {
      const std::string_view lit = kLiterals[literal_];
      if (c != static_cast<uint8_t>(lit[scalar_len_])) return false;
      if (++scalar_len_ == lit.size()) end_value();
      return true;
    }
    case Mode::kDone:  // whitespace may follow the object (RFC 8259), within the limit
      return is_ws(c) && whitespace();
    default:
      break;
  }
  if (is_ws(c)) return whitespace();
  ws_run_ = 0;
  switch (mode_) {
    case Mode::kStart:
      if (c != (array_root_ ? '[' : '{')) return false;
      stack_[0] = array_root_ ? 'a' : 'o';
      depth_ = 1;
      mode_ = array_root_ ? Mode::kArrFirst : Mode::kObjFirst;
      return true;
    case Mode::kObjFirst:
    case Mode::kObjKey:
      if (c == '}' && mode_ == Mode::kObjFirst) {
        --depth_;
        return end_value();
      }
      if (c != '"') return false;
      mode_ = Mode::kString;
      key_ = true;
      escape_ = 0;
      utf8_left_ = 0;
      return true;
    case Mode::kColon:
      if (c != ':') return false;
      mode_ = Mode::kValue;
      return true;
    case Mode::kArrFirst:
      if (c == ']') {
        --depth_;
        return end_value();
      }
      return start_value(c);
    case Mode::kValue:
      return start_value(c);
    case Mode::kAfterValue: {
      const uint8_t top = stack_[depth_ - 1];
      if (c == ',') {
        mode_ = top == 'o' ? Mode::kObjKey : Mode::kValue;
        return true;
      }
      if ((c == '}' && top == 'o') || (c == ']' && top == 'a')) {
        --depth_;
        return end_value();
      }
      return false;
    }
    default:
      return false;
  }
}

void TokenBytes::index() {
  for (auto& group : by_first) group.clear();
  plain.assign(text.size(), 0);
  max_plain_bytes = 0;
  for (size_t id = 0; id < text.size(); ++id) {
    if (text[id].empty()) continue;
    by_first[static_cast<uint8_t>(text[id][0])].push_back(static_cast<int32_t>(id));
    bool p = true;
    for (char ch : text[id]) {
      const auto c = static_cast<uint8_t>(ch);
      p = p && c >= 0x20 && c < 0x7F && c != '"' && c != '\\';
    }
    plain[id] = p ? 1 : 0;
    if (p) max_plain_bytes = std::max(max_plain_bytes, static_cast<int32_t>(text[id].size()));
  }
}

std::shared_ptr<const TokenBytes> json_token_bytes(const Tokenizer& tok) {
  auto v = std::make_shared<TokenBytes>();
  v->text.resize(static_cast<size_t>(tok.vocab_size()));
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    if (!tok.is_special(id) && !tok.is_end_of_generation(id)) {
      v->text[static_cast<size_t>(id)] = std::string(tok.token_to_piece(id));
    }
  }
  v->end_ids = tok.end_of_generation_ids();
  v->index();
  return v;
}

template <class State>
void mask_tokens(const State& state, const TokenBytes& vocab, std::span<float> logits) {
  const int64_t n = static_cast<int64_t>(logits.size());
  thread_local std::vector<uint8_t> keep;
  keep.assign(static_cast<size_t>(n), 0);
  bool any = false;
  // Once the object is closed the answer is over: only an end-of-generation token may follow (a
  // token that closes it may still carry trailing whitespace). Allowing whitespace tokens here
  // let a small model pad the answer with newlines up to max_tokens.
  if (!state.complete()) {
    // Plain tokens (printable ASCII: a character per byte) keep a string body going, if the
    // string has room for the longest of them; else each is fed.
    const bool body = state.in_string_body() && state.string_room() >= vocab.max_plain_bytes;
    for (int b = 0; b < 256; ++b) {
      const std::vector<int32_t>& group = vocab.by_first[static_cast<size_t>(b)];
      if (group.empty()) continue;
      State first = state;
      if (!first.feed(static_cast<uint8_t>(b))) continue;
      for (int32_t id : group) {
        if (id >= n) continue;
        if (body && vocab.plain[static_cast<size_t>(id)] != 0) {
          keep[static_cast<size_t>(id)] = 1;
          any = true;
          continue;
        }
        State s = first;
        if (s.feed(std::string_view(vocab.text[static_cast<size_t>(id)]).substr(1))) {
          keep[static_cast<size_t>(id)] = 1;
          any = true;
        }
      }
    }
  }
  if (state.complete() || !any) {
    for (int32_t id : vocab.end_ids) {
      if (id >= 0 && id < n) keep[static_cast<size_t>(id)] = 1;
    }
  }
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    if (keep[static_cast<size_t>(i)] == 0) logits[static_cast<size_t>(i)] = ninf;
  }
}

template void mask_tokens(const JsonState&, const TokenBytes&, std::span<float>);
template void mask_tokens(const SchemaState&, const TokenBytes&, std::span<float>);

}  // namespace carpool
