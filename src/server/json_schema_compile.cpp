#include "server/json_schema_compile.h"

#include <cmath>
#include <set>
#include <string>

namespace carpool::server {
namespace {

using json = nlohmann::ordered_json;
using Type = SchemaNode::Type;

constexpr int kMaxDepth = 16;
constexpr size_t kMaxNodes = 1024;
constexpr size_t kMaxLiterals = 64;
constexpr size_t kMaxLiteralBytes = 4096;  // a property name or enum value, as JSON text
constexpr int64_t kMaxItems = 1 << 20;
constexpr int64_t kMaxMinItems = 1024;  // items a schema can force the model to write

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
  static const std::set<std::string> k = {
      "type", "properties", "required", "additionalProperties", "items",   "minItems", "maxItems",
      "enum", "const",      "title",    "description",          "default", "examples", "$schema",
      "$id",  "$comment"};
  return k;
}

class Compiler {
 public:
  JsonSchema out;

  // Compiles s (at `path`, for messages) into a new node; returns its index or -1 with err set.
  int32_t compile(const json& s, const std::string& path, int depth) {
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
    SchemaNode n;
    std::string type;
    if (s.contains("type")) {
      if (!s["type"].is_string()) {
        return fail("json_schema: type at " + path +
                    " must be one type name (lists are not "
                    "supported)");
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
      }
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
      for (const char* bound : {"minItems", "maxItems"}) {
        if (!s.contains(bound)) continue;
        const json& b = s[bound];
        if (!b.is_number_integer() || b.get<int64_t>() < 0 || b.get<int64_t>() > kMaxItems) {
          return fail("json_schema: " + std::string(bound) + " at " + path +
                      " must be an integer in [0, " + std::to_string(kMaxItems) + "]");
        }
        (std::string(bound) == "minItems" ? n.min_items : n.max_items) =
            static_cast<int32_t>(b.get<int64_t>());
      }
      if (n.min_items > kMaxMinItems) {
        return fail("json_schema: minItems at " + path + " exceeds " +
                    std::to_string(kMaxMinItems));
      }
      if (n.min_items > n.max_items) {
        return fail("json_schema: minItems exceeds maxItems at " + path);
      }
    } else if (type == "string") {
      n.type = Type::kString;
    } else if (type == "number") {
      n.type = Type::kNumber;
    } else if (type == "integer") {
      n.type = Type::kInteger;
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

  std::string error;

 private:
  int32_t fail(std::string message) {
    if (error.empty()) error = std::move(message);
    return -1;
  }
};

}  // namespace

Result<std::shared_ptr<const JsonSchema>> compile_json_schema(
    const nlohmann::ordered_json& schema) {
  Compiler c;
  if (c.compile(schema, "the root", 0) < 0) return Status::error(c.error);
  if (c.out.nodes[0].type != Type::kObject) {
    return Status::error("json_schema: the root must be an object (\"type\": \"object\")");
  }
  return std::shared_ptr<const JsonSchema>(std::make_shared<JsonSchema>(std::move(c.out)));
}

}  // namespace carpool::server
