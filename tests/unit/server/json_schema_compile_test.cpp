// response_format json_schema: what compile_json_schema accepts (and how it lays out the nodes)
// and what it refuses, with the keyword named.
#include "server/json_schema_compile.h"

#include <gtest/gtest.h>

#include <string>

namespace carpool::server {
namespace {

using json = nlohmann::ordered_json;
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
      "any": {},
      "never": false
    },
    "required": ["name", "n"]})");
  auto r = compile_json_schema(schema);
  ASSERT_TRUE(r) << r.error();
  const JsonSchema& s = *r.value();
  const SchemaNode& root = s.nodes[0];
  ASSERT_EQ(root.type, Type::kObject);
  // The declared order (a property that may not appear is left out).
  EXPECT_EQ(root.keys, (std::vector<std::string>{"\"name\"", "\"n\"", "\"kind\"", "\"k\"",
                                                 "\"tags\"", "\"free\"", "\"closed\"", "\"any\""}));
  auto child = [&](int i) { return s.nodes[static_cast<size_t>(root.children[i])]; };
  EXPECT_EQ(child(0).type, Type::kString);
  EXPECT_EQ(child(1).type, Type::kInteger);
  EXPECT_EQ(child(2).literals, (std::vector<std::string>{"\"a\"", "\"b\\\"c\"", "1", "null"}));
  EXPECT_EQ(child(3).literals, (std::vector<std::string>{"true"}));
  EXPECT_EQ(child(4).type, Type::kArray);
  EXPECT_EQ(child(4).min_items, 1);
  EXPECT_EQ(child(4).max_items, 4);
  EXPECT_EQ(s.nodes[static_cast<size_t>(child(4).items)].type, Type::kNumber);
  EXPECT_TRUE(child(5).free);
  EXPECT_EQ(child(6).type, Type::kObject);
  EXPECT_FALSE(child(6).free);
  EXPECT_EQ(child(7).type, Type::kAny);
}

TEST(CompileJsonSchema, TypesNarrowEnumsAndKeywordsImplyTypes) {
  auto r = compile_json_schema(json::parse(R"({"type": "object", "properties": {
      "i": {"type": "integer", "enum": [1.5, 2, 3.0, "4"]},
      "c": {"const": "a", "enum": ["a", "b"]},
      "o": {"required": [], "additionalProperties": false},
      "a": {"minItems": 2}}})"));
  ASSERT_TRUE(r) << r.error();
  const JsonSchema& s = *r.value();
  auto child = [&](int i) { return s.nodes[static_cast<size_t>(s.nodes[0].children[i])]; };
  EXPECT_EQ(child(0).literals, (std::vector<std::string>{"2", "3.0"}));
  EXPECT_EQ(child(1).literals, (std::vector<std::string>{"\"a\""}));
  EXPECT_EQ(child(2).type, Type::kObject);
  EXPECT_FALSE(child(2).free);
  EXPECT_EQ(child(3).type, Type::kArray);
  EXPECT_EQ(child(3).min_items, 2);
}

// Properties that may not appear stay out even when they are all an object lists: the object
// is not a free one (a free object could write them; {"secret": false} let "secret" through).
TEST(CompileJsonSchema, AllPropertiesFalseIsNotAFreeObject) {
  auto r = compile_json_schema(json::parse(
      R"({"type": "object", "properties": {"secret": false, "user": {"type": "object",
          "properties": {"password": false}}}})"));
  ASSERT_TRUE(r) << r.error();
  const JsonSchema& s = *r.value();
  EXPECT_FALSE(s.nodes[0].free);
  ASSERT_EQ(s.nodes[0].keys, (std::vector<std::string>{"\"user\""}));
  const SchemaNode& user = s.nodes[static_cast<size_t>(s.nodes[0].children[0])];
  EXPECT_FALSE(user.free);
  EXPECT_TRUE(user.keys.empty());
  // An empty properties object still means any members.
  auto e = compile_json_schema(json::parse(
      R"({"type": "object", "properties": {"m": {"type": "object", "properties": {}}}})"));
  ASSERT_TRUE(e) << e.error();
  EXPECT_TRUE(e.value()->nodes[static_cast<size_t>(e.value()->nodes[0].children[0])].free);
}

// Whole numbers beyond 64-bit integers would be written rounded: refused, with the advice.
TEST(CompileJsonSchema, HugeIntegerLiteralsAreRefused) {
  for (const char* text :
       {R"({"type": "object", "properties": {"a": {"const": -12345678901234567890}}})",
        R"({"type": "object", "properties": {"a": {"enum": [123456789012345678901234567890]}}})"}) {
    auto r = compile_json_schema(json::parse(text));
    ASSERT_FALSE(r) << text;
    EXPECT_NE(r.error().find("too large to write exactly"), std::string::npos) << r.error();
  }
  auto ok = compile_json_schema(json::parse(
      R"({"type": "object", "properties": {"a": {"enum": [12345678901234567890, 0.1, -3]}}})"));
  ASSERT_TRUE(ok) << ok.error();
  EXPECT_EQ(ok.value()->nodes[static_cast<size_t>(ok.value()->nodes[0].children[0])].literals,
            (std::vector<std::string>{"12345678901234567890", "0.1", "-3"}));
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
          "maxItems": 2}}})",
       "minItems"},
      {R"({"type": "object", "properties": {"x": false}, "required": ["x"]})", "required"},
      {R"({"type": "object", "properties": {"x": {"type": "string", "const": 3}}})",
       "fits its type"},
      {R"({"type": "object", "properties": {"m": {"type": "object",
          "additionalProperties": {"type": "integer"}}}})",
       "additionalProperties"},
      {R"({"type": "object", "properties": {"x": {"type": "array", "minItems": 5000}}})",
       "minItems"},
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
