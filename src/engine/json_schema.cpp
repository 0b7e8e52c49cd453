#include "engine/json_schema.h"

namespace carpool {

using Type = SchemaNode::Type;

bool schema_value_starts_with(const JsonSchema& schema, int32_t i, uint8_t c) {
  if (i < 0) return true;  // any value
  const SchemaNode& n = schema.nodes[static_cast<size_t>(i)];
  switch (n.type) {
    case Type::kAny:
      return true;
    case Type::kObject:
      return c == '{';
    case Type::kArray:
      return c == '[';
    case Type::kString:
      return c == '"';
    case Type::kNumber:
      if (!n.decimal_bounds) return c == '-' || (c >= '0' && c <= '9');
      if (c == '-') return decimal_prefix_fits(true, 0, false, false, -1, 0, n.low, n.high);
      return c >= '0' && c <= '9' &&
             decimal_prefix_fits(false, static_cast<uint64_t>(c - '0'), true, c == '0', -1, 0,
                                 n.low, n.high);
    case Type::kInteger:
      if (c == '-') return integer_prefix_fits(true, 0, false, false, n.minimum, n.maximum);
      return c >= '0' && c <= '9' &&
             integer_prefix_fits(false, static_cast<uint64_t>(c - '0'), true, c == '0', n.minimum,
                                 n.maximum);
    case Type::kBoolean:
      return c == 't' || c == 'f';
    case Type::kNull:
      return c == 'n';
    case Type::kEnum:
      for (const std::string& t : n.literals) {
        if (!t.empty() && static_cast<uint8_t>(t[0]) == c) return true;
      }
      return false;
    case Type::kUnion:
      for (int32_t a : n.alternatives) {
        if (schema_value_starts_with(schema, a, c)) return true;
      }
      return false;
  }
  return false;
}

int32_t SchemaState::value_node() const {
  if (json_.mode_ == Mode::kStart) return 0;
  const Frame& f = frames_[json_.depth_ - 1];
  const SchemaNode* n = node(f.node);
  if (n == nullptr) return kAnyNode;
  if (n->type == Type::kArray) return n->items;
  return n->children[static_cast<size_t>(f.index)];  // the member whose key was just written
}

std::string_view SchemaState::literal_text(int i) const {
  if (lit_ == kKeyLiteral) {
    const Frame& f = frames_[json_.depth_ - 1];
    return node(f.node)->keys[static_cast<size_t>(f.index)];
  }
  return node(lit_)->literals[static_cast<size_t>(i)];
}

void SchemaState::value_ended(int choice) {
  if (json_.depth_ == 0) return;
  Frame& f = frames_[json_.depth_ - 1];
  const SchemaNode* n = node(f.node);
  if (choice >= 0 && f.index == 0 && n != nullptr && !n->variants.empty()) {
    f.node = n->variants[static_cast<size_t>(choice)];
  }
  ++f.index;
}

bool integer_prefix_fits(bool neg, uint64_t mag, bool digits, bool ended, int64_t lo, int64_t hi) {
  using I = __int128;
  if (!digits) return neg ? lo <= -1 : hi >= 0;  // any negative / non-negative integer
  // The integers that begin with these digits: mag itself, then for k more digits the
  // magnitudes [mag 10^k, mag 10^k + 10^k - 1] (mag > 0: no leading zeros), with the sign.
  I base = mag, span = 0;
  for (int k = 0; k <= 19; ++k) {
    const I a = neg ? -(base + span) : base, b = neg ? -base : base + span;
    if (a <= hi && b >= lo) return true;
    if (ended || mag == 0) return false;
    base *= 10;
    span = span * 10 + 9;
    if (base > (I{1} << 64)) break;  // beyond every 64-bit bound
  }
  return false;
}

bool SchemaState::integer_byte(const SchemaNode& n, uint8_t c) {
  if (n.minimum == std::numeric_limits<int64_t>::min() &&
      n.maximum == std::numeric_limits<int64_t>::max()) {
    return true;
  }
  if (c == '-') {  // the first byte
    if (!integer_prefix_fits(true, 0, false, false, n.minimum, n.maximum)) return false;
    neg_ = true;
    return true;
  }
  if (c < '0' || c > '9') return true;  // not a digit: the JSON rules decide
  if (mag_ > (std::numeric_limits<uint64_t>::max() - 9) / 10) return false;  // beyond any bound
  const uint64_t mag = mag_ * 10 + static_cast<uint64_t>(c - '0');
  const bool ended = !digits_ && c == '0';  // 0 and -0 take no more digits
  if (!integer_prefix_fits(neg_, mag, true, ended, n.minimum, n.maximum)) return false;
  mag_ = mag;
  digits_ = true;
  return true;
}

namespace {
__int128 pow10(int k) {
  __int128 p = 1;
  for (int i = 0; i < k; ++i) p *= 10;
  return p;
}
}  // namespace

bool decimal_prefix_fits(bool neg, uint64_t int_part, bool digits, bool ended, int frac_digits,
                         uint64_t frac, __int128 lo, __int128 hi) {
  using I = __int128;
  if (!digits) return neg ? lo < 0 : hi >= 0;  // any negative / non-negative number
  const I s = kDecimalScale;
  // Magnitudes that begin with the bytes so far, as intervals [a, b] in units of 10^-18.
  auto fits = [&](I a, I b) { return neg ? (-b <= hi && -a >= lo) : (a <= hi && b >= lo); };
  if (frac_digits >= 0) {
    const I v = I{int_part} * s + I{frac} * pow10(kDecimalDigits - frac_digits);
    return fits(v, v + pow10(kDecimalDigits - frac_digits) - 1);
  }
  if (fits(I{int_part} * s, I{int_part} * s + s - 1)) return true;  // itself and its fractions
  if (ended || int_part == 0) return false;
  for (I p = 10; I{int_part} * p <= I{1} << 64; p *= 10) {  // more digits before the point
    if (fits(I{int_part} * p * s, (I{int_part} + 1) * p * s - 1)) return true;
  }
  return false;
}

bool SchemaState::decimal_byte(const SchemaNode& n, uint8_t c) {
  if (!n.decimal_bounds) return true;
  if (c == 'e' || c == 'E' || c == '+') return false;  // no exponents
  if (c == '-') {                                      // the first byte
    if (!decimal_prefix_fits(true, 0, false, false, -1, 0, n.low, n.high)) return false;
    neg_ = true;
    return true;
  }
  if (c == '.') {
    if (!decimal_prefix_fits(neg_, mag_, digits_, true, 0, 0, n.low, n.high)) return false;
    frac_n_ = 0;
    return true;
  }
  if (c < '0' || c > '9') return true;  // the JSON rules decide
  const auto d = static_cast<uint64_t>(c - '0');
  if (frac_n_ >= 0) {
    if (frac_n_ >= kDecimalDigits) return false;
    if (!decimal_prefix_fits(neg_, mag_, true, true, frac_n_ + 1, frac_ * 10 + d, n.low, n.high)) {
      return false;
    }
    frac_ = frac_ * 10 + d;
    ++frac_n_;
    return true;
  }
  if (mag_ > (std::numeric_limits<uint64_t>::max() - 9) / 10) return false;  // beyond any bound
  const uint64_t mag = mag_ * 10 + d;
  const bool ended = !digits_ && c == '0';
  if (!decimal_prefix_fits(neg_, mag, true, ended, -1, 0, n.low, n.high)) return false;
  mag_ = mag;
  digits_ = true;
  return true;
}

bool SchemaState::number_ends(const SchemaNode* n) const {
  if (n == nullptr) return true;
  const __int128 m = static_cast<__int128>(mag_);
  if (n->type == Type::kNumber && n->decimal_bounds) {
    const int fd = frac_n_ < 0 ? 0 : frac_n_;
    const __int128 v =
        m * kDecimalScale + static_cast<__int128>(frac_) * pow10(kDecimalDigits - fd);
    return (neg_ ? -v : v) >= n->low && (neg_ ? -v : v) <= n->high;
  }
  if (n->type != Type::kInteger) return true;
  return (neg_ ? -m : m) >= n->minimum && (neg_ ? -m : m) <= n->maximum;
}

const SchemaNode* SchemaState::limited_string() const {
  if (json_.mode_ != Mode::kString || json_.key_ || lit_ != kNoLiteral) return nullptr;
  const SchemaNode* n = node(scalar_node_);
  if (n == nullptr || n->type != Type::kString) return nullptr;
  if (n->min_length == 0 && n->max_length == std::numeric_limits<int32_t>::max() &&
      n->format == StringFormat::kNone) {
    return nullptr;
  }
  return n;
}

int32_t SchemaState::string_room() const {
  const SchemaNode* n = limited_string();
  if (n == nullptr) return std::numeric_limits<int32_t>::max();
  return n->format != StringFormat::kNone ? 0 : n->max_length - chars_;  // (format: byte by byte)
}

bool SchemaState::string_rules_byte(uint8_t c) {
  const SchemaNode* n = limited_string();
  if (n == nullptr) return true;
  if (n->format != StringFormat::kNone) {  // printable ASCII that continues the format
    const std::string_view text(text_.data(), text_len_);
    if (c == '"') return format_complete(n->format, text) && text_len_ >= n->min_length;
    if (c < 0x20 || c >= 0x7F || c == '\\' || text_len_ == kFormatBytes ||
        text_len_ >= n->max_length) {
      return false;
    }
    text_[text_len_] = static_cast<char>(c);
    if (!format_prefix_ok(n->format, std::string_view(text_.data(), text_len_ + 1u))) return false;
    ++text_len_;
    return true;
  }
  const uint8_t esc = json_.escape_;
  if (esc == 5) {  // the first hex digit of \uXXXX
    hex_d_ = c == 'd' || c == 'D';
  } else if (esc == 4) {  // the second: \uD800-\uDBFF or \uDC00-\uDFFF are surrogates
    const bool low = hex_d_ && ((c >= 'c' && c <= 'f') || (c >= 'C' && c <= 'F'));
    high_ = hex_d_ && ((c >= '8' && c <= '9') || (c >= 'a' && c <= 'b') || (c >= 'A' && c <= 'B'));
    if (low && after_high_) {
      --chars_;  // the second half of a pair: the pair is one character
    } else if (chars_ > n->max_length) {
      return false;  // taken on credit after a first half (below), and not the second
    }
  }
  if (esc != 0 || json_.utf8_left_ != 0) return true;  // inside a character
  if (c == '"') return chars_ >= n->min_length;        // closes the string
  // After the first half of a pair, its second half (an escape) must fit: allowed on credit.
  if (chars_ >= n->max_length && !(c == '\\' && high_)) return false;
  ++chars_;  // an ASCII character, a UTF-8 lead byte or a backslash
  after_high_ = high_;
  high_ = false;
  return true;
}

bool SchemaState::feed(uint8_t c) {
  if (schema_ == nullptr) return json_.feed(c);
  if (lit_ != kNoLiteral) return literal_byte(c);
  switch (json_.mode_) {
    case Mode::kString:
      if (!string_rules_byte(c)) return false;
      [[fallthrough]];
    case Mode::kLiteral:
      if (!json_.feed(c)) return false;
      if (ended_value(json_.mode_)) value_ended();  // (a key of free members ends at kColon)
      return true;
    case Mode::kNumber: {
      const SchemaNode* n = node(scalar_node_);
      if (is_number_byte(c)) {
        if (n != nullptr && n->type == Type::kInteger) {
          if (c == '.' || c == 'e' || c == 'E') return false;
          if (!integer_byte(*n, c)) return false;
        }
        if (n != nullptr && n->type == Type::kNumber && !decimal_byte(*n, c)) return false;
        return json_.feed(c);
      }
      if (!number_ends(n) || !json_.end_number()) return false;
      value_ended();
      return structural(c);
    }
    default:
      return structural(c);
  }
}

bool SchemaState::structural(uint8_t c) {
  if (JsonState::is_ws(c)) return json_.feed(c);
  const Mode m = json_.mode_;
  switch (m) {
    case Mode::kStart:
    case Mode::kValue:
      return start_value(c);
    case Mode::kArrFirst: {
      const SchemaNode* n = node(frames_[json_.depth_ - 1].node);
      if (c == ']') {
        if (n != nullptr && n->min_items > 0) return false;
        if (!json_.feed(c)) return false;
        value_ended();  // the array is a value of its container
        return true;
      }
      if (n != nullptr && n->max_items == 0) return false;
      return start_value(c);
    }
    case Mode::kObjFirst:
    case Mode::kObjKey: {
      const Frame& f = frames_[json_.depth_ - 1];
      const SchemaNode* n = node(f.node);
      if (n == nullptr) {  // free members
        if (!json_.feed(c)) return false;
        if (c == '}') value_ended();  // {} closed at once
        return true;
      }
      if (c == '}') {  // only an object whose schema has no properties is empty
        if (!n->keys.empty() || m != Mode::kObjFirst || !json_.feed(c)) return false;
        value_ended();
        return true;
      }
      if (f.index >= static_cast<int32_t>(n->keys.size())) return false;
      lit_ = kKeyLiteral;
      lit_pos_ = 0;
      lit_mask_ = 1;
      return literal_byte(c);
    }
    case Mode::kAfterValue: {
      const Frame& f = frames_[json_.depth_ - 1];
      if (const SchemaNode* n = node(f.node)) {
        if (n->type == Type::kObject) {
          const bool more = f.index < static_cast<int32_t>(n->keys.size());
          if ((c == ',' && !more) || (c == '}' && more)) return false;
        } else {
          if ((c == ',' && f.index >= n->max_items) || (c == ']' && f.index < n->min_items)) {
            return false;
          }
        }
      }
      if (!json_.feed(c)) return false;
      if (c == '}' || c == ']') value_ended();
      return true;
    }
    default:  // kColon, kDone
      return json_.feed(c);
  }
}

bool SchemaState::start_value(uint8_t c) {
  int32_t v = value_node();
  const SchemaNode* n = node(v);
  // A union is the alternative that begins with c (the compiler made them begin differently;
  // an alternative may itself be a union).
  while (n != nullptr && n->type == Type::kUnion) {
    int32_t chosen = kAnyNode - 1;
    for (int32_t a : n->alternatives) {
      if (schema_value_starts_with(*schema_, a, c)) {
        chosen = a;
        break;
      }
    }
    if (chosen == kAnyNode - 1) return false;
    v = chosen;
    n = node(v);
  }
  const uint8_t depth0 = json_.depth_;
  if (n == nullptr || n->type == Type::kAny) {
    if (!json_.feed(c)) return false;
    if (json_.depth_ > depth0) frames_[json_.depth_ - 1] = {kAnyNode, 0};
    scalar_node_ = kAnyNode;
    return true;
  }
  bool ok = false;
  switch (n->type) {
    case Type::kObject:
      ok = c == '{';
      break;
    case Type::kArray:
      ok = c == '[';
      break;
    case Type::kString:
      ok = c == '"';
      break;
    case Type::kNumber:
      neg_ = false;
      mag_ = 0;
      digits_ = false;
      frac_n_ = -1;
      frac_ = 0;
      ok = (c == '-' || (c >= '0' && c <= '9')) && decimal_byte(*n, c);
      break;
    case Type::kInteger:
      neg_ = false;
      mag_ = 0;
      digits_ = false;
      ok = (c == '-' || (c >= '0' && c <= '9')) && integer_byte(*n, c);
      break;
    case Type::kBoolean:
      ok = c == 't' || c == 'f';
      break;
    case Type::kNull:
      ok = c == 'n';
      break;
    case Type::kEnum:
      lit_ = v;
      lit_pos_ = 0;
      lit_mask_ = n->literals.size() >= 64 ? ~uint64_t{0} : (uint64_t{1} << n->literals.size()) - 1;
      return literal_byte(c);
    case Type::kAny:
    case Type::kUnion:  // resolved above
      break;
  }
  if (!ok || !json_.feed(c)) return false;
  scalar_node_ = v;
  chars_ = 0;
  hex_d_ = high_ = after_high_ = false;
  text_len_ = 0;
  if (json_.depth_ > depth0) {
    frames_[json_.depth_ - 1] = {n->type == Type::kObject && n->free ? kAnyNode : v, 0};
  }
  return true;
}

bool SchemaState::literal_byte(uint8_t c) {
  const bool key = lit_ == kKeyLiteral;
  const int count = key ? 1 : static_cast<int>(node(lit_)->literals.size());
  uint64_t next = 0;
  bool complete_before = false;  // some candidate ends right before c
  for (int i = 0; i < count && i < 64; ++i) {
    if (((lit_mask_ >> i) & 1) == 0) continue;
    const std::string_view t = literal_text(i);
    if (t.size() == lit_pos_) {
      complete_before = true;
    } else if (static_cast<uint8_t>(t[lit_pos_]) == c) {
      next |= uint64_t{1} << i;
    }
  }
  if (next != 0) {
    if (!json_.feed(c)) return false;
    ++lit_pos_;
    lit_mask_ = next;
    if (in_scalar(json_.mode_)) return true;
    // The scalar ended with c (a closing quote, the last letter of true / false / null): some
    // candidate must end here too.
    int exact = -1;
    for (int i = 0; i < count && i < 64; ++i) {
      if (((next >> i) & 1) != 0 && literal_text(i).size() == lit_pos_) exact = i;
    }
    if (exact < 0) return false;
    lit_ = kNoLiteral;
    if (!key) value_ended(exact);
    return true;
  }
  // c continues no candidate: only a number ends before the byte that follows it.
  if (!complete_before || json_.mode_ != Mode::kNumber || !json_.end_number()) return false;
  lit_ = kNoLiteral;
  value_ended();
  return structural(c);
}

}  // namespace carpool
