#include "server/json_schema_compile.h"

#include <set>
#include <string>

namespace carpool::server {
namespace {

using nlohmann::json;
using Type = SchemaNode::Type;

constexpr int kMaxDepth = 16;
constexpr size_t kMaxNodes = 1024;
constexpr size_t kMaxLiterals = 64;
constexpr int64_t kMaxItems = 1 << 20;

const std::set<std::string>& known_keywords() {
  static const std::set<std::string> k = {
      "type",  "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
      "enum",  "const",      "title",    "description",          "default", "examples", "$schema",
      "$id",   "$comment"};
  return k;
}

class Compiler {
 public:
  JsonSchema out;

  // Compiles s (at `path`, for messages) into a new node; returns its index or -1 with err set.
  int32_t compile(const json& s, const std::string& path, int depth) {
    if (depth > kMaxDepth) return fail("json_schema nests deeper than " + std::to_string(kMaxDepth));
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
    if (s.contains("enum") || s.contains("const")) {
      json values = s.contains("const") ? json::array({s["const"]}) : s["enum"];
      if (!values.is_array() || values.empty() || values.size() > kMaxLiterals) {
        return fail("json_schema: enum at " + path + " must list 1 to " +
                    std::to_string(kMaxLiterals) + " values");
      }
      n.type = Type::kEnum;
      for (const json& v : values) {
        if (v.is_object() || v.is_array()) {
          return fail("json_schema: enum at " + path + " may hold only strings, numbers, "
                      "booleans and null");
        }
        n.literals.push_back(v.dump());
      }
      out.nodes[static_cast<size_t>(index)] = std::move(n);
      return index;
    }
    std::string type;
    if (s.contains("type")) {
      if (!s["type"].is_string()) {
        return fail("json_schema: type at " + path + " must be one type name (lists are not "
                    "supported)");
      }
      type = s["type"].get<std::string>();
    } else if (s.contains("properties")) {
      type = "object";
    } else if (s.contains("items")) {
      type = "array";
    }
    if (type.empty()) {
      n.type = Type::kAny;
    } else if (type == "object") {
      n.type = Type::kObject;
      std::set<std::string> names;
      if (s.contains("properties")) {
        const json& props = s["properties"];
        if (!props.is_object()) return fail("json_schema: properties at " + path + " must be an object");
        for (const auto& [name, sub] : props.items()) {
          const int32_t child = compile(sub, path + ".properties." + name, depth + 1);
          if (child < 0) return -1;
          n.keys.push_back(json(name).dump());
          n.children.push_back(child);
          names.insert(name);
        }
      }
      if (s.contains("required")) {
        const json& req = s["required"];
        if (!req.is_array()) return fail("json_schema: required at " + path + " must be a list");
        for (const json& r : req) {
          if (!r.is_string() || names.count(r.get<std::string>()) == 0) {
            return fail("json_schema: required at " + path + " names " + r.dump() +
                        ", which is not among its properties");
          }
        }
      }
      const bool closed = s.contains("additionalProperties") &&
                          s["additionalProperties"].is_boolean() &&
                          !s["additionalProperties"].get<bool>();
      n.free = n.keys.empty() && !closed;
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

Result<std::shared_ptr<const JsonSchema>> compile_json_schema(const json& schema) {
  Compiler c;
  if (c.compile(schema, "the root", 0) < 0) return Status::error(c.error);
  if (c.out.nodes[0].type != Type::kObject) {
    return Status::error("json_schema: the root must be an object (\"type\": \"object\")");
  }
  return std::shared_ptr<const JsonSchema>(std::make_shared<JsonSchema>(std::move(c.out)));
}

}  // namespace carpool::server
