// Structured output (response_format {"type": "json_schema"}): the generated text must be a JSON
// object that a compiled schema accepts. SchemaState follows JsonState byte by byte (the same
// syntax and limits) and adds the schema's rules:
//   - an object with properties is written with every property, each once, in the order of
//     its keys (the schema's declared order) so "required" always holds and nothing else
//     appears; one without properties takes any members, unless additionalProperties is false
//     (then it is {});
//   - an array's items follow its item schema, between minItems and maxItems of them;
//   - string, number, integer (no fraction or exponent), boolean and null values have that type;
//     strings have between minLength and maxLength characters (code points: an escape is one, a
//     surrogate pair of escapes one) and follow their format (string_format.h: date, time,
//     date-time, uuid; printable ASCII, so written without escapes); integers and numbers lie
//     between their bounds (each byte is allowed only if some number that begins with the bytes so
//     far is within them; a bounded number is written without an exponent, with at most 18 digits
//     after the point);
//   - enum and const values are written exactly as one of their JSON texts;
//   - a union (anyOf, oneOf, a list of types) takes the one alternative that can begin with the
//     value's first byte: its alternatives begin with different bytes (different JSON types,
//     such as an object or null), so the first byte decides.
// The schema itself (JsonSchema) is compiled from the request by the server
// (server/json_schema_compile.h), which refuses every keyword it cannot enforce.
//
// Thread-safety: SchemaState is a plain value; JsonSchema is immutable once compiled.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "engine/json_constraint.h"
#include "engine/string_format.h"

namespace carpool {

struct SchemaNode {
  enum class Type : uint8_t {
    kAny,
    kObject,
    kArray,
    kString,
    kNumber,
    kInteger,
    kBoolean,
    kNull,
    kEnum,
    kUnion
  };
  Type type = Type::kAny;
  // kObject: the properties' names as JSON strings (quotes and escapes included), in the order
  // they are written, and their schemas (node indices); free: no properties, any members.
  std::vector<std::string> keys;
  std::vector<int32_t> children;
  bool free = false;
  int32_t items = -1;  // kArray: the item schema, -1 any value
  int32_t min_items = 0;
  int32_t max_items = std::numeric_limits<int32_t>::max();
  int32_t min_length = 0;  // kString: characters
  int32_t max_length = std::numeric_limits<int32_t>::max();
  StringFormat format = StringFormat::kNone;              // kString
  int64_t minimum = std::numeric_limits<int64_t>::min();  // kInteger: inclusive bounds
  int64_t maximum = std::numeric_limits<int64_t>::max();
  // kNumber: whether bounds apply, and they (inclusive, in units of 10^-18: kDecimalScale).
  bool decimal_bounds = false;
  __int128 low = 0, high = 0;
  std::vector<std::string> literals;  // kEnum: the allowed values as JSON texts (at most 64)
  // kObject, a tagged union: its first property is an enum, and once literal i of that enum is
  // written the rest of the object follows variants[i] (an object node with the same first key).
  // Tool calls use it: {"name": one of the tools, "arguments": that tool's parameters}.
  std::vector<int32_t> variants;
  // kUnion: the alternatives (node indices); no byte begins a value of two of them.
  std::vector<int32_t> alternatives;
};

// Bounded numbers are compared as integers in units of 10^-18 (kDecimalDigits digits after the
// point at most).
constexpr int kDecimalDigits = 18;
constexpr int64_t kDecimalScale = 1000000000000000000;

struct JsonSchema {
  std::vector<SchemaNode> nodes;  // nodes[0]: the root, an object (or an array: tool calls)
  int max_whitespace = JsonState::kMaxWhitespace;  // consecutive whitespace bytes allowed
};

// Whether a value of node i of `schema` can begin with byte c (a union: one of its alternatives).
bool schema_value_starts_with(const JsonSchema& schema, int32_t i, uint8_t c);

// Whether some JSON integer that begins with these digits lies in [lo, hi]: `neg` after a '-',
// `mag` the digits so far as a number (`digits`: there are some), `ended` if no digit may follow
// (a leading 0). Before the first digit: whether any integer with that sign does.
bool integer_prefix_fits(bool neg, uint64_t mag, bool digits, bool ended, int64_t lo, int64_t hi);

// The same for a JSON number without an exponent, bounds in units of 10^-18: `int_part` the
// digits before the point (`ended`: a leading 0), `frac_digits` those after it (-1: no point
// yet) making up `frac`.
bool decimal_prefix_fits(bool neg, uint64_t int_part, bool digits, bool ended, int frac_digits,
                         uint64_t frac, __int128 lo, __int128 hi);

class SchemaState {
 public:
  explicit SchemaState(const JsonSchema* schema = nullptr) : schema_(schema), frames_{} {
    if (schema != nullptr && !schema->nodes.empty() &&
        schema->nodes[0].type == SchemaNode::Type::kArray) {
      json_.set_array_root();
    }
    if (schema != nullptr) json_.set_max_whitespace(schema->max_whitespace);
  }
  // Copies only the live frames: the mask copies the state once per candidate token.
  SchemaState(const SchemaState& o) { *this = o; }
  SchemaState& operator=(const SchemaState& o) {
    schema_ = o.schema_;
    json_ = o.json_;
    std::copy_n(o.frames_.begin(), o.json_.depth_, frames_.begin());
    scalar_node_ = o.scalar_node_;
    lit_ = o.lit_;
    lit_pos_ = o.lit_pos_;
    lit_mask_ = o.lit_mask_;
    chars_ = o.chars_;
    neg_ = o.neg_;
    mag_ = o.mag_;
    digits_ = o.digits_;
    frac_n_ = o.frac_n_;
    frac_ = o.frac_;
    hex_d_ = o.hex_d_;
    high_ = o.high_;
    after_high_ = o.after_high_;
    text_len_ = o.text_len_;
    std::copy_n(o.text_.begin(), o.text_len_, text_.begin());
    return *this;
  }

  bool feed(uint8_t c);
  bool feed(std::string_view bytes) {
    for (char c : bytes) {
      if (!feed(static_cast<uint8_t>(c))) return false;
    }
    return true;
  }
  bool complete() const { return json_.complete(); }
  // Inside a string of free text (not a key or an enum being matched).
  bool in_string_body() const { return lit_ == kNoLiteral && json_.in_string_body(); }
  // Characters the string value being read may still take (its maxLength less those written).
  int32_t string_room() const;

 private:
  static constexpr int32_t kAnyNode = -1;
  static constexpr int32_t kNoLiteral = -1;   // lit_: none being matched
  static constexpr int32_t kKeyLiteral = -2;  // lit_: matching the next property's key

  using Mode = JsonState::Mode;
  static bool in_scalar(Mode m) {
    return m == Mode::kString || m == Mode::kNumber || m == Mode::kLiteral;
  }
  static bool ended_value(Mode m) { return m == Mode::kAfterValue || m == Mode::kDone; }

  struct Frame {
    int32_t node;   // the container's schema, kAnyNode: anything goes inside
    int32_t index;  // object: members written (or being written); array: items
  };

  const SchemaNode* node(int32_t i) const {
    return i < 0 ? nullptr : &schema_->nodes[static_cast<size_t>(i)];
  }
  // The schema of the value that starts now (JsonState expects a value).
  int32_t value_node() const;
  bool structural(uint8_t c);
  bool start_value(uint8_t c);
  bool literal_byte(uint8_t c);
  // A value closed: count it in its container. choice: the enum literal it was (a tagged
  // union's tag selects the union's variant), -1 for other values.
  void value_ended(int choice = -1);
  static bool is_number_byte(uint8_t c) {
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
  }
  // Candidate i of the literal being matched.
  std::string_view literal_text(int i) const;
  // The length and format rules of a string value for byte c (Mode::kString, before it is fed):
  // counts the characters c begins; false where c would pass maxLength, close it below minLength,
  // or leave its format.
  bool string_rules_byte(uint8_t c);
  // The string value being read, if its schema limits its length or gives a format (else null).
  const SchemaNode* limited_string() const;
  // The bounds of an integer or number value for byte c (Mode::kNumber, or its first byte):
  // false where no value within them begins with the bytes so far and c. number_ends: whether
  // the value read lies within its node's bounds (true for other values).
  bool integer_byte(const SchemaNode& n, uint8_t c);
  bool decimal_byte(const SchemaNode& n, uint8_t c);
  bool number_ends(const SchemaNode* n) const;

  const JsonSchema* schema_;
  JsonState json_;
  std::array<Frame, JsonState::kMaxDepth> frames_;  // [0, json_.depth_) are live
  int32_t scalar_node_ = kAnyNode;                  // the schema of the string or number being read
  int32_t lit_ = kNoLiteral;  // node whose literals are being matched, or kKeyLiteral
  uint32_t lit_pos_ = 0;
  uint64_t lit_mask_ = 0;  // candidates still matching
  int32_t chars_ = 0;      // characters of the string value being read (limited_string())
  bool neg_ = false;  // the integer being read: its sign, its digits as a number, any digit yet
  uint64_t mag_ = 0;
  bool digits_ = false;
  int8_t frac_n_ = -1;  // a bounded number: digits after the point (-1: none yet), as a number
  uint64_t frac_ = 0;
  // Surrogate pairs written as two \u escapes count as one character: the escape being read
  // began \uD, is a high surrogate; the character before it was one.
  bool hex_d_ = false, high_ = false, after_high_ = false;
  // A string with a format: its bytes so far (every value of the formats fits).
  static constexpr int kFormatBytes = 40;
  std::array<char, kFormatBytes> text_{};
  uint8_t text_len_ = 0;
};

}  // namespace carpool
