// response_format json_schema: what compile_json_schema accepts (and how it lays out the nodes)
// and what it refuses, with the keyword named.
#include "server/json_schema_compile.h"

#include <gtest/gtest.h>

#include <string>

namespace carpool::server {
namespace {

using nlohmann::json;
using Type = SchemaNode::Type;

TEST(CompileJsonSchema, BuildsNodes) {
  const json schema = json::parse(R"({
    "type": "object", "title": "t", "description": "d", "additionalProperties": false,
    "properties": {
      "name": {"type": "string"},
      "n": {"type": "integer", "description": "count"},
      "kind": {"enum": ["a", "b\"c", 1, null]},
      "k": {"const": true},
      "tags": {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 4},
      "free": {"type": "object"},
      "closed": {"type": "object", "additionalProperties": false},
      "any": {}
    },
    "required": ["name", "n"]})");
  auto r = compile_json_schema(schema);
  ASSERT_TRUE(r) << r.error();
  const JsonSchema& s = *r.value();
  const SchemaNode& root = s.nodes[0];
  ASSERT_EQ(root.type, Type::kObject);
  // nlohmann::json keeps object members sorted by name: that is the written order.
  EXPECT_EQ(root.keys, (std::vector<std::string>{"\"any\"", "\"closed\"", "\"free\"", "\"k\"",
                                                  "\"kind\"", "\"n\"", "\"name\"", "\"tags\""}));
  auto child = [&](int i) { return s.nodes[static_cast<size_t>(root.children[i])]; };
  EXPECT_EQ(child(0).type, Type::kAny);
  EXPECT_EQ(child(1).type, Type::kObject);
  EXPECT_FALSE(child(1).free);
  EXPECT_TRUE(child(2).free);
  EXPECT_EQ(child(3).literals, (std::vector<std::string>{"true"}));
  EXPECT_EQ(child(4).literals, (std::vector<std::string>{"\"a\"", "\"b\\\"c\"", "1", "null"}));
  EXPECT_EQ(child(5).type, Type::kInteger);
  EXPECT_EQ(child(6).type, Type::kString);
  EXPECT_EQ(child(7).type, Type::kArray);
  EXPECT_EQ(child(7).min_items, 1);
  EXPECT_EQ(child(7).max_items, 4);
  EXPECT_EQ(s.nodes[static_cast<size_t>(child(7).items)].type, Type::kNumber);
}

TEST(CompileJsonSchema, RefusesWhatItCannotEnforce) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"type": "object", "properties": {"s": {"type": "string", "pattern": "^a"}}})",
       "'pattern'"},
      {R"({"type": "object", "properties": {"x": {"anyOf": [{"type": "string"}]}}})", "'anyOf'"},
      {R"({"type": "object", "properties": {"x": {"$ref": "#/$defs/a"}}})", "'$ref'"},
      {R"({"type": "object", "properties": {"x": {"type": "integer", "minimum": 3}}})",
       "'minimum'"},
      {R"({"type": "object", "properties": {"x": {"type": ["string", "null"]}}})", "one type"},
      {R"({"type": "object", "properties": {"x": {"type": "date"}}})", "'date'"},
      {R"({"type": "object", "properties": {"x": {"enum": []}}})", "enum"},
      {R"({"type": "object", "properties": {"x": {"enum": [[1]]}}})", "enum"},
      {R"({"type": "object", "properties": {"a": {}}, "required": ["b"]})", "required"},
      {R"({"type": "array", "items": {}})", "root must be an object"},
      {R"({"type": "object", "properties": {"x": {"type": "array", "minItems": 3,
          "maxItems": 2}}})", "minItems"},
      {R"({"type": "object", "properties": {"x": false}})", "false"},
      {R"("object")", "schema object"},
  };
  for (const auto& [text, needle] : cases) {
    auto r = compile_json_schema(json::parse(text));
    ASSERT_FALSE(r) << text;
    EXPECT_NE(r.error().find(needle), std::string::npos) << r.error();
  }
  // Nesting and size limits.
  json deep = {{"type", "string"}};
  for (int i = 0; i < 40; ++i) deep = {{"type", "object"}, {"properties", {{"x", deep}}}};
  auto r = compile_json_schema(deep);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("deeper"), std::string::npos);
}

}  // namespace
}  // namespace carpool::server
