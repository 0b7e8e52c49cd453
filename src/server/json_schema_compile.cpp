#include "server/json_schema_compile.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace carpool::server {
namespace {

using json = nlohmann::ordered_json;
using Type = SchemaNode::Type;

constexpr int kMaxDepth = 16;
constexpr size_t kMaxNodes = 1024;
constexpr size_t kMaxLiterals = 64;
constexpr size_t kMaxLiteralBytes = 4096;  // a property name or enum value, as JSON text
constexpr int64_t kMaxItems = 1 << 20;
constexpr int64_t kMaxMinItems = 1024;   // items a schema can force the model to write
constexpr int64_t kMaxMinLength = 4096;  // characters a schema can force into one string
constexpr size_t kMaxAlternatives = 16;  // of one anyOf / oneOf / type list
constexpr int kMaxRefChain = 32;         // $ref to $ref to ...
// The nesting a schema may require of every document it accepts: the engine's limit less the two
// levels that tool calls wrap arguments in ([{"name": ..., "arguments": ...}]).
constexpr int kMaxRequiredNesting = JsonState::kMaxDepth - 2;

// Whether enum value v has JSON Schema type t ("" when the schema names none).
bool has_type(const json& v, const std::string& t) {
  if (t.empty()) return true;
  if (t == "string") return v.is_string();
  if (t == "boolean") return v.is_boolean();
  if (t == "null") return v.is_null();
  if (t == "number") return v.is_number();
  if (t == "integer") {
    return v.is_number_integer() ||
           (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>());
  }
  return false;  // object and array values are not supported in enums
}

const std::set<std::string>& known_keywords() {
  static const std::set<std::string> k = {"type",
                                          "properties",
                                          "required",
                                          "additionalProperties",
                                          "items",
                                          "minItems",
                                          "maxItems",
                                          "minLength",
                                          "maxLength",
                                          "format",
                                          "minimum",
                                          "maximum",
                                          "exclusiveMinimum",
                                          "exclusiveMaximum",
                                          "enum",
                                          "const",
                                          "anyOf",
                                          "oneOf",
                                          "$ref",
                                          "$defs",
                                          "definitions",
                                          "title",
                                          "description",
                                          "default",
                                          "examples",
                                          "$schema",
                                          "$id",
                                          "$comment"};
  return k;
}

// Keywords that say nothing about the value (and $defs / definitions, which only hold schemas
// for $ref): the only ones allowed beside $ref and anyOf / oneOf.
bool annotation(const std::string& key) {
  static const std::set<std::string> k = {"title",    "description", "default",
                                          "examples", "$schema",     "$id",
                                          "$comment", "$defs",       "definitions"};
  return k.count(key) != 0;
}

// A byte for messages: 'x', or its code.
std::string byte_name(int c) {
  if (c > 32 && c < 127) return std::string("'") + static_cast<char>(c) + "'";
  return "byte " + std::to_string(c);
}

class Compiler {
 public:
  explicit Compiler(const json& root) : root_(root) {}

  JsonSchema out;

  // Compiles s (at `path`, for messages) into a new node; returns its index or -1 with err set.
  // A $ref gives the node of the schema it names (one node per name, so schemas may refer to
  // themselves); anyOf, oneOf and type lists give a union node.
  int32_t compile(const json& s, const std::string& path, int depth) {
    if (s.is_object() && s.contains("$ref")) return compile_ref(s, path, depth);
    if (depth >= kMaxDepth) {
      return fail("json_schema nests deeper than " + std::to_string(kMaxDepth) + " levels (at " +
                  path + ")");
    }
    if (out.nodes.size() >= kMaxNodes) {
      return fail("json_schema has more than " + std::to_string(kMaxNodes) + " schemas");
    }
    const auto index = static_cast<int32_t>(out.nodes.size());
    out.nodes.emplace_back();
    if (s.is_boolean()) {
      if (!s.get<bool>()) return fail("json_schema: " + path + " is false (nothing matches)");
      return index;  // true: any value
    }
    if (!s.is_object()) return fail("json_schema: " + path + " must be a schema object");
    for (const auto& [key, value] : s.items()) {
      if (known_keywords().count(key) == 0) {
        return fail("json_schema: '" + key + "' (at " + path + ") is not supported");
      }
    }
    if (s.contains("anyOf") || s.contains("oneOf")) return compile_any_of(s, index, path, depth);
    if (s.contains("type") && s["type"].is_array()) return compile_type_list(s, index, path, depth);
    SchemaNode n;
    std::string type;
    if (s.contains("type")) {
      if (!s["type"].is_string()) {
        return fail("json_schema: type at " + path + " must be a type name or a list of them");
      }
      type = s["type"].get<std::string>();
    }
    if (s.contains("enum") || s.contains("const")) {
      // The values allowed: enum's, those equal to const, those of the schema's type.
      const json values = s.contains("enum") ? s["enum"] : json::array({s["const"]});
      if (!values.is_array() || values.empty() || values.size() > kMaxLiterals) {
        return fail("json_schema: enum at " + path + " must list 1 to " +
                    std::to_string(kMaxLiterals) + " values");
      }
      n.type = Type::kEnum;
      for (const json& v : values) {
        if (v.is_object() || v.is_array()) {
          return fail("json_schema: enum at " + path +
                      " may hold only strings, numbers, "
                      "booleans and null");
        }
        if (s.contains("const") && v != s["const"]) continue;
        if (!has_type(v, type)) continue;
        // An integer beyond 64 bits reaches here as a double and would be written rounded
        // (-12345678901234567890 as -1.2345678901234567e+19): refused rather than written wrong.
        if (v.is_number_float() && std::isfinite(v.get<double>()) &&
            std::fabs(v.get<double>()) >= 9007199254740992.0 &&
            v.get<double>() == std::trunc(v.get<double>())) {
          return fail("json_schema: an enum / const value at " + path +
                      " is a whole number too large to write exactly (beyond 2^53 and outside "
                      "64-bit integers); give it as a string");
        }
        n.literals.push_back(v.dump());
        if (n.literals.back().size() > kMaxLiteralBytes) {
          return fail("json_schema: an enum value at " + path + " is longer than " +
                      std::to_string(kMaxLiteralBytes) + " bytes");
        }
      }
      if (n.literals.empty()) {
        return fail("json_schema: no value of enum / const at " + path + " fits its type");
      }
      out.nodes[static_cast<size_t>(index)] = std::move(n);
      return index;
    }
    if (type.empty()) {  // a constraint keyword without a type implies it
      if (s.contains("properties") || s.contains("required") ||
          s.contains("additionalProperties")) {
        type = "object";
      } else if (s.contains("items") || s.contains("minItems") || s.contains("maxItems")) {
        type = "array";
      } else if (s.contains("minLength") || s.contains("maxLength")) {
        type = "string";
      }
    }
    // Numeric bounds apply to numbers only (JSON Schema: other types pass them by); without a
    // type they could not be enforced on values of every type.
    if (type.empty() && s.contains("format")) {
      return fail("json_schema: format at " + path + " needs \"type\": \"string\"");
    }
    if (type.empty() && (s.contains("minimum") || s.contains("maximum") ||
                         s.contains("exclusiveMinimum") || s.contains("exclusiveMaximum"))) {
      return fail("json_schema: minimum / maximum at " + path +
                  " need \"type\": \"integer\" or \"number\"");
    }
    if (type.empty()) {
      n.type = Type::kAny;
    } else if (type == "object") {
      n.type = Type::kObject;
      std::set<std::string> names;
      bool declared = false;  // properties listed, even if none of them may appear
      if (s.contains("properties")) {
        const json& props = s["properties"];
        if (!props.is_object())
          return fail("json_schema: properties at " + path + " must be an object");
        declared = !props.empty();
        for (const auto& [name, sub] : props.items()) {
          if (sub.is_boolean() && !sub.get<bool>()) continue;  // may not appear: never written
          const int32_t child = compile(sub, path + ".properties." + name, depth + 1);
          if (child < 0) return -1;
          n.keys.push_back(json(name).dump());
          if (n.keys.back().size() > kMaxLiteralBytes) {
            return fail("json_schema: a property name at " + path + " is longer than " +
                        std::to_string(kMaxLiteralBytes) + " bytes");
          }
          n.children.push_back(child);
          names.insert(name);
        }
      }
      if (s.contains("required")) {
        const json& req = s["required"];
        if (!req.is_array()) return fail("json_schema: required at " + path + " must be a list");
        for (const json& r : req) {
          if (!r.is_string() || names.count(r.get<std::string>()) == 0) {
            std::string named = r.dump();
            if (named.size() > 200) named = named.substr(0, 200) + "...";
            return fail("json_schema: required at " + path + " names " + named +
                        ", which is not among its properties (or may not appear)");
          }
        }
      }
      // Extra members are never written where there are properties (even if all of them are
      // false: a free object could write those); without properties they are free (true, {}) or
      // absent (false). A schema for them cannot be enforced.
      bool closed = false;
      if (s.contains("additionalProperties")) {
        const json& ap = s["additionalProperties"];
        if (ap.is_boolean()) {
          closed = !ap.get<bool>();
        } else if (!(ap.is_object() && ap.empty())) {
          return fail("json_schema: additionalProperties at " + path +
                      " must be true, false or {} (a schema for extra members is not supported)");
        }
      }
      n.free = !declared && !closed;
    } else if (type == "array") {
      n.type = Type::kArray;
      if (s.contains("items")) {
        const int32_t child = compile(s["items"], path + ".items", depth + 1);
        if (child < 0) return -1;
        n.items = child;
      }
      if (!bounds(s, "minItems", "maxItems", kMaxMinItems, path, &n.min_items, &n.max_items)) {
        return -1;
      }
    } else if (type == "string") {
      n.type = Type::kString;
      if (!bounds(s, "minLength", "maxLength", kMaxMinLength, path, &n.min_length, &n.max_length)) {
        return -1;
      }
      if (s.contains("format")) {
        const json& f = s["format"];
        n.format = f.is_string() ? string_format_named(f.get<std::string>()) : StringFormat::kNone;
        if (n.format == StringFormat::kNone) {
          std::string named = f.dump();
          if (named.size() > 80) named = named.substr(0, 80) + "...";
          return fail("json_schema: format " + named + " at " + path +
                      " is not supported (date, time, date-time and uuid are)");
        }
      }
    } else if (type == "number") {
      n.type = Type::kNumber;
      if (!decimal_bounds(s, path, &n)) return -1;
    } else if (type == "integer") {
      n.type = Type::kInteger;
      if (!integer_bounds(s, path, &n.minimum, &n.maximum)) return -1;
    } else if (type == "boolean") {
      n.type = Type::kBoolean;
    } else if (type == "null") {
      n.type = Type::kNull;
    } else {
      return fail("json_schema: type '" + type + "' at " + path + " is not a JSON Schema type");
    }
    out.nodes[static_cast<size_t>(index)] = std::move(n);
    return index;
  }

  // Checks that need every node: each union's alternatives begin with different bytes, no union
  // reaches itself through unions alone, and the root can be completed within the nesting limit.
  bool check() {
    // Unions of unions become one union of the alternatives that are not (so that a value's
    // first byte finds its alternative in one pass); a union that reaches itself that way is
    // refused.
    std::vector<uint8_t> state(out.nodes.size(), 0);  // 0 not seen, 1 being flattened, 2 done
    for (const auto& [index, path] : unions_) {
      if (!flatten(index, path, state)) return false;
    }
    for (const auto& [index, path] : unions_) {
      const SchemaNode& n = out.nodes[static_cast<size_t>(index)];
      for (int c = 0; c < 256; ++c) {
        int first = -1;
        for (size_t a = 0; a < n.alternatives.size(); ++a) {
          if (!schema_value_starts_with(out, n.alternatives[a], static_cast<uint8_t>(c))) continue;
          if (first >= 0) {
            fail("json_schema: alternatives " + std::to_string(first) + " and " +
                 std::to_string(a) + " of the anyOf at " + path + " can both begin with " +
                 byte_name(c) +
                 " (only alternatives of different JSON types are supported, such as an object "
                 "or null)");
            return false;
          }
          first = static_cast<int>(a);
        }
      }
    }
    const int need = required_nesting();
    if (need > kMaxRequiredNesting) {
      fail("json_schema can never be completed within " + std::to_string(kMaxRequiredNesting) +
           " levels of nesting (a schema that must contain itself, through $ref, with no way to "
           "end, such as an optional property or an empty array)");
      return false;
    }
    return true;
  }

  std::string error;

 private:
  int32_t fail(std::string message) {
    if (error.empty()) error = std::move(message);
    return -1;
  }

  // A pair of bounds such as minItems / maxItems into *lo and *hi (left as they are where the
  // schema gives none): integers in [0, kMaxItems], the lower one at most max_lo and at most the
  // upper one. False (error set) otherwise.
  bool bounds(const json& s, const std::string& lo_key, const std::string& hi_key, int64_t max_lo,
              const std::string& path, int32_t* lo, int32_t* hi) {
    for (const std::string& key : {lo_key, hi_key}) {
      if (!s.contains(key)) continue;
      const json& b = s[key];
      if (!b.is_number_integer() || b.get<int64_t>() < 0 || b.get<int64_t>() > kMaxItems) {
        fail("json_schema: " + key + " at " + path + " must be an integer in [0, " +
             std::to_string(kMaxItems) + "]");
        return false;
      }
      *(key == lo_key ? lo : hi) = static_cast<int32_t>(b.get<int64_t>());
    }
    if (*lo > max_lo) {
      fail("json_schema: " + lo_key + " at " + path + " exceeds " + std::to_string(max_lo));
      return false;
    }
    if (*lo > *hi) {
      fail("json_schema: " + lo_key + " exceeds " + hi_key + " at " + path);
      return false;
    }
    return true;
  }

  // minimum, maximum, exclusiveMinimum, exclusiveMaximum (numbers, draft 2020-12) of an integer
  // into inclusive 64-bit bounds. False (error set) for other values or bounds no integer meets.
  bool integer_bounds(const json& s, const std::string& path, int64_t* lo, int64_t* hi) {
    constexpr double kLimit = 9.2e18;  // inside 64-bit integers
    for (const std::string key : {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"}) {
      if (!s.contains(key)) continue;
      const json& b = s[key];
      if (!b.is_number() || !std::isfinite(b.get<double>()) ||
          std::fabs(b.get<double>()) > kLimit) {
        fail("json_schema: " + key + " at " + path + " must be a number within +-9.2e18");
        return false;
      }
      // Integers exactly as JSON holds them; other numbers rounded inwards.
      const bool whole = b.is_number_integer();
      const double v = b.get<double>();
      const bool lower = key == "minimum" || key == "exclusiveMinimum";
      const bool exclusive = key == "exclusiveMinimum" || key == "exclusiveMaximum";
      int64_t bound = 0;
      if (whole) {
        bound = b.get<int64_t>() + (exclusive ? (lower ? 1 : -1) : 0);
      } else if (lower) {
        bound = static_cast<int64_t>(exclusive ? std::floor(v) + 1 : std::ceil(v));
      } else {
        bound = static_cast<int64_t>(exclusive ? std::ceil(v) - 1 : std::floor(v));
      }
      if (lower) {
        *lo = std::max(*lo, bound);
      } else {
        *hi = std::min(*hi, bound);
      }
    }
    if (*lo > *hi) {
      fail("json_schema: no integer lies within the bounds at " + path);
      return false;
    }
    return true;
  }

  // The bounds of a number in units of 10^-18 (engine/json_schema.h): each bound's shortest
  // decimal text, rounded inwards past 18 digits after the point; an exclusive one moved in by
  // one unit. False (error set) for other values or bounds no number meets.
  bool decimal_bounds(const json& s, const std::string& path, SchemaNode* n) {
    using I = __int128;
    const I limit = I{9200000000000000000} * kDecimalScale;  // +-9.2e18
    I lo = -limit, hi = limit;
    bool any = false;
    for (const std::string key : {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"}) {
      if (!s.contains(key)) continue;
      const json& b = s[key];
      if (!b.is_number() || !std::isfinite(b.get<double>()) ||
          std::fabs(b.get<double>()) > 9.2e18) {
        fail("json_schema: " + key + " at " + path + " must be a number within +-9.2e18");
        return false;
      }
      const bool lower = key == "minimum" || key == "exclusiveMinimum";
      I v = scaled(b.dump(), lower);
      if (key == "exclusiveMinimum") ++v;
      if (key == "exclusiveMaximum") --v;
      if (lower) {
        lo = std::max(lo, v);
      } else {
        hi = std::min(hi, v);
      }
      any = true;
    }
    if (lo > hi) {
      fail("json_schema: no number lies within the bounds at " + path);
      return false;
    }
    n->decimal_bounds = any;
    n->low = lo;
    n->high = hi;
    return true;
  }

  // A JSON number's text (as nlohmann writes it: digits, a point, an exponent) in units of
  // 10^-18, rounded up (round_up) or down where it has more digits than that.
  static __int128 scaled(const std::string& text, bool round_up) {
    using I = __int128;
    size_t i = 0;
    const bool neg = i < text.size() && text[i] == '-';
    if (neg) ++i;
    I mant = 0;
    int exp10 = kDecimalDigits;
    bool point = false;
    int dropped = 0;  // digits past what __int128 holds (kept as a rounding flag)
    for (; i < text.size() && text[i] != 'e' && text[i] != 'E'; ++i) {
      if (text[i] == '.') {
        point = true;
        continue;
      }
      const int d = text[i] - '0';
      if (mant < I{1} << 100) {
        mant = mant * 10 + d;
        if (point) --exp10;
      } else {
        dropped |= d;
        if (!point) ++exp10;
      }
    }
    if (i < text.size()) exp10 += std::stoi(text.substr(i + 1));
    bool inexact = dropped != 0;
    for (; exp10 < 0; ++exp10) {
      inexact = inexact || mant % 10 != 0;
      mant /= 10;
    }
    for (; exp10 > 0; --exp10) mant *= 10;  // (|value| <= 9.2e18: at most 9.2e36 units)
    // Rounded towards +inf (round_up) or -inf: for a negative value the magnitude goes the
    // other way.
    if (inexact && (round_up != neg)) ++mant;
    return neg ? -mant : mant;
  }

  // {"$ref": "#/..."} with annotations beside it: the node of the schema it names.
  int32_t compile_ref(const json& s, const std::string& path, int depth) {
    std::string ref;
    const json* target = &s;
    for (int chain = 0; target->is_object() && target->contains("$ref"); ++chain) {
      for (const auto& [key, value] : target->items()) {
        if (key != "$ref" && !annotation(key)) {
          return fail("json_schema: '" + key + "' beside $ref (at " + (chain == 0 ? path : ref) +
                      ") is not supported");
        }
      }
      if (chain >= kMaxRefChain) {
        return fail("json_schema: $ref at " + path + " leads through more than " +
                    std::to_string(kMaxRefChain) + " references (a loop?)");
      }
      if (!(*target)["$ref"].is_string()) {
        return fail("json_schema: $ref at " + path + " must be a string");
      }
      ref = (*target)["$ref"].get<std::string>();
      if (auto it = refs_.find(ref); it != refs_.end()) return it->second;
      target = resolve(ref, path);
      if (target == nullptr) return -1;
    }
    // The node compile is about to create; refs_ names it first, so that a schema that refers
    // to itself gets this node.
    refs_[ref] = static_cast<int32_t>(out.nodes.size());
    return compile(*target, ref, depth + 1);
  }

  // The schema a local reference ("#", "#/$defs/Name", any JSON pointer into the document)
  // names; null (error set) for a remote one or one that names nothing.
  const json* resolve(const std::string& ref, const std::string& path) {
    if (ref.empty() || ref[0] != '#') {
      fail("json_schema: $ref \"" + ref.substr(0, 200) + "\" at " + path +
           " is not supported (only references within the schema, starting with #)");
      return nullptr;
    }
    try {
      return &root_.at(json::json_pointer(ref.substr(1)));
    } catch (const std::exception&) {
      fail("json_schema: $ref \"" + ref.substr(0, 200) + "\" at " + path +
           " names no schema in the document");
      return nullptr;
    }
  }

  // anyOf / oneOf (the same here: the alternatives begin with different bytes, so at most one
  // matches a value) with annotations beside it, into the union node at `index`.
  int32_t compile_any_of(const json& s, int32_t index, const std::string& path, int depth) {
    const char* key = s.contains("anyOf") ? "anyOf" : "oneOf";
    for (const auto& [k, value] : s.items()) {
      if (k != key && !annotation(k)) {
        return fail("json_schema: '" + k + "' beside " + key + " (at " + path +
                    ") is not supported");
      }
    }
    const json& alts = s[key];
    if (!alts.is_array() || alts.empty() || alts.size() > kMaxAlternatives) {
      return fail("json_schema: " + std::string(key) + " at " + path + " must list 1 to " +
                  std::to_string(kMaxAlternatives) + " schemas");
    }
    SchemaNode n;
    n.type = Type::kUnion;
    for (size_t i = 0; i < alts.size(); ++i) {
      const int32_t a =
          compile(alts[i], path + "." + key + "[" + std::to_string(i) + "]", depth + 1);
      if (a < 0) return -1;
      n.alternatives.push_back(a);
    }
    out.nodes[static_cast<size_t>(index)] = std::move(n);
    unions_.emplace_back(index, path);
    return index;
  }

  // "type": [...]: a union of the schema taken with each type in turn.
  int32_t compile_type_list(const json& s, int32_t index, const std::string& path, int depth) {
    const json& types = s["type"];
    if (types.empty() || types.size() > kMaxAlternatives) {
      return fail("json_schema: the type list at " + path + " must name 1 to " +
                  std::to_string(kMaxAlternatives) + " types");
    }
    SchemaNode n;
    n.type = Type::kUnion;
    std::set<std::string> seen;
    const json* values = s.contains("enum")    ? &s["enum"]
                         : s.contains("const") ? &s["const"]
                                               : nullptr;
    for (const json& t : types) {
      if (!t.is_string() || !seen.insert(t.get<std::string>()).second) {
        return fail("json_schema: the type list at " + path + " must hold distinct type names");
      }
      if (values != nullptr) {  // an enum's types without any of its values are left out
        bool any = false;
        for (const json& v : values->is_array() ? *values : json::array({*values})) {
          any = any || has_type(v, t.get<std::string>());
        }
        if (!any) continue;
      }
      json one = s;
      one["type"] = t;
      const int32_t a = compile(one, path + " (type " + t.get<std::string>() + ")", depth + 1);
      if (a < 0) return -1;
      n.alternatives.push_back(a);
    }
    if (n.alternatives.empty()) {
      return fail("json_schema: no value of enum / const at " + path + " fits its types");
    }
    out.nodes[static_cast<size_t>(index)] = std::move(n);
    unions_.emplace_back(index, path);
    return index;
  }

  // Replaces union u's alternatives that are unions by their own alternatives (depth first;
  // state: 1 while u is being flattened, so reaching it again is a cycle).
  bool flatten(int32_t u, const std::string& path, std::vector<uint8_t>& state) {
    const auto i = static_cast<size_t>(u);
    if (state[i] == 2) return true;
    if (state[i] == 1) {
      fail("json_schema: the anyOf at " + path +
           " is one of its own alternatives (through $ref) with no value in between");
      return false;
    }
    state[i] = 1;
    std::vector<int32_t> flat;
    for (const int32_t a : std::vector<int32_t>(out.nodes[i].alternatives)) {
      if (out.nodes[static_cast<size_t>(a)].type != Type::kUnion) {
        flat.push_back(a);
        continue;
      }
      if (!flatten(a, path, state)) return false;
      const std::vector<int32_t>& inner = out.nodes[static_cast<size_t>(a)].alternatives;
      flat.insert(flat.end(), inner.begin(), inner.end());
    }
    std::vector<int32_t> unique;  // (a $ref named twice is one alternative)
    for (const int32_t a : flat) {
      if (std::find(unique.begin(), unique.end(), a) == unique.end()) unique.push_back(a);
    }
    if (unique.size() > kMaxAlternatives * 4) {
      fail("json_schema: the anyOf at " + path + " has more than " +
           std::to_string(kMaxAlternatives * 4) + " alternatives once nested ones are counted");
      return false;
    }
    out.nodes[i].alternatives = std::move(unique);
    state[i] = 2;
    return true;
  }

  // The fewest nested objects and arrays some document of the root needs: per node, the least
  // over its possible values, computed to a fixed point (schemas may refer to themselves; a
  // node that cannot be completed at all stays at "infinite").
  int required_nesting() const {
    constexpr int kInf = std::numeric_limits<int>::max() / 2;
    std::vector<int> need(out.nodes.size(), kInf);
    auto of = [&](int32_t i) { return i < 0 ? 0 : need[static_cast<size_t>(i)]; };
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t i = 0; i < out.nodes.size(); ++i) {
        const SchemaNode& n = out.nodes[i];
        int v = 0;
        if (n.type == Type::kObject) {
          v = 1;
          for (int32_t c : n.children) v = std::max(v, of(c) >= kInf ? kInf : 1 + of(c));
        } else if (n.type == Type::kArray) {
          v = n.min_items == 0 ? 1 : (of(n.items) >= kInf ? kInf : 1 + of(n.items));
        } else if (n.type == Type::kUnion) {
          v = kInf;
          for (int32_t a : n.alternatives) v = std::min(v, of(a));
        }
        if (v < need[i]) {
          need[i] = v;
          changed = true;
        }
      }
    }
    return need.empty() ? 0 : need[0];
  }

  const json& root_;
  std::map<std::string, int32_t> refs_;                  // $ref -> its node
  std::vector<std::pair<int32_t, std::string>> unions_;  // union nodes, and where they are
};

}  // namespace

Result<std::shared_ptr<const JsonSchema>> compile_json_schema(
    const nlohmann::ordered_json& schema) {
  Compiler c(schema);
  // Node 0 is the root's (a root that is a $ref names the node compile creates first).
  if (c.compile(schema, "the root", 0) < 0) return Status::error(c.error);
  if (c.out.nodes[0].type != Type::kObject) {
    return Status::error("json_schema: the root must be an object (\"type\": \"object\")");
  }
  if (!c.check()) return Status::error(c.error);
  return std::shared_ptr<const JsonSchema>(std::make_shared<JsonSchema>(std::move(c.out)));
}

}  // namespace carpool::server
