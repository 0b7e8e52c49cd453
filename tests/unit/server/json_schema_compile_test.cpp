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

// What pydantic's model_json_schema() and the openai SDK's strict schemas send: $defs and
// $ref for nested models, anyOf [X, null] for Optional fields, a list of types, a root that is
// a $ref, and a model that contains itself.
TEST(CompileJsonSchema, RefsUnionsAndTypeLists) {
  auto r = compile_json_schema(json::parse(R"({
    "$defs": {
      "Address": {"type": "object", "title": "Address", "additionalProperties": false,
                  "properties": {"city": {"type": "string"}}, "required": ["city"]},
      "Color": {"enum": ["red", "green"], "title": "Color", "type": "string"}
    },
    "type": "object", "additionalProperties": false,
    "properties": {
      "home": {"$ref": "#/$defs/Address", "description": "where"},
      "work": {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}], "default": null},
      "color": {"$ref": "#/$defs/Color"},
      "nick": {"type": ["string", "null"]},
      "size": {"oneOf": [{"type": "integer"}, {"enum": ["big", "small"]}, {"type": "boolean"}]},
      "tag": {"type": ["string", "integer", "null"], "enum": ["a", null]}
    },
    "required": ["home", "work", "color", "nick", "size", "tag"]})"));
  ASSERT_TRUE(r) << r.error();
  const JsonSchema& s = *r.value();
  const SchemaNode& root = s.nodes[0];
  auto at = [&](int32_t i) -> const SchemaNode& { return s.nodes[static_cast<size_t>(i)]; };
  const SchemaNode& home = at(root.children[0]);
  EXPECT_EQ(home.type, Type::kObject);
  EXPECT_EQ(home.keys, std::vector<std::string>{"\"city\""});
  const SchemaNode& work = at(root.children[1]);
  ASSERT_EQ(work.type, Type::kUnion);
  ASSERT_EQ(work.alternatives.size(), 2u);
  EXPECT_EQ(work.alternatives[0], root.children[0]);  // one node per $ref target
  EXPECT_EQ(at(work.alternatives[1]).type, Type::kNull);
  EXPECT_EQ(at(root.children[2]).literals, (std::vector<std::string>{"\"red\"", "\"green\""}));
  const SchemaNode& nick = at(root.children[3]);
  ASSERT_EQ(nick.type, Type::kUnion);
  EXPECT_EQ(at(nick.alternatives[0]).type, Type::kString);
  EXPECT_EQ(at(nick.alternatives[1]).type, Type::kNull);
  EXPECT_EQ(at(root.children[4]).alternatives.size(), 3u);
  // Lengths of strings (a length without a type makes a string).
  auto lengths = compile_json_schema(json::parse(R"({"type": "object", "properties": {
      "a": {"type": "string", "minLength": 1, "maxLength": 8}, "b": {"maxLength": 0}}})"));
  ASSERT_TRUE(lengths) << lengths.error();
  const JsonSchema& l = *lengths.value();
  EXPECT_EQ(l.nodes[static_cast<size_t>(l.nodes[0].children[0])].min_length, 1);
  EXPECT_EQ(l.nodes[static_cast<size_t>(l.nodes[0].children[0])].max_length, 8);
  EXPECT_EQ(l.nodes[static_cast<size_t>(l.nodes[0].children[1])].type, Type::kString);
  EXPECT_EQ(l.nodes[static_cast<size_t>(l.nodes[0].children[1])].max_length, 0);
  // Integer bounds, inclusive (exclusive ones and fractions rounded inwards); a string passes
  // numeric bounds by (JSON Schema applies them to numbers only).
  auto ints = compile_json_schema(json::parse(R"({"type": "object", "properties": {
      "a": {"type": "integer", "minimum": 1, "maximum": 5},
      "b": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10.5, "minimum": -4},
      "c": {"type": "integer", "minimum": 2.5, "maximum": -0.5e1, "exclusiveMaximum": 9},
      "d": {"type": ["integer", "string"], "minimum": -3}}})"));
  ASSERT_FALSE(ints);  // c: 3 > -5
  EXPECT_NE(ints.error().find("no integer lies within the bounds at the root.properties.c"),
            std::string::npos)
      << ints.error();
  ints = compile_json_schema(json::parse(R"({"type": "object", "properties": {
      "a": {"type": "integer", "minimum": 1, "maximum": 5},
      "b": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10.5, "minimum": -4},
      "c": {"type": "integer", "minimum": 2.5, "maximum": 7.9, "exclusiveMaximum": 7},
      "d": {"type": ["integer", "string"], "minimum": -3}}})"));
  ASSERT_TRUE(ints) << ints.error();
  const JsonSchema& in = *ints.value();
  auto bounds = [&](int i) {
    const SchemaNode& n = in.nodes[static_cast<size_t>(in.nodes[0].children[i])];
    return std::make_pair(n.minimum, n.maximum);
  };
  EXPECT_EQ(bounds(0), std::make_pair(int64_t{1}, int64_t{5}));
  EXPECT_EQ(bounds(1), std::make_pair(int64_t{1}, int64_t{10}));
  EXPECT_EQ(bounds(2), std::make_pair(int64_t{3}, int64_t{6}));
  const SchemaNode& d = in.nodes[static_cast<size_t>(in.nodes[0].children[3])];
  ASSERT_EQ(d.type, Type::kUnion);
  EXPECT_EQ(in.nodes[static_cast<size_t>(d.alternatives[0])].minimum, -3);
  EXPECT_EQ(in.nodes[static_cast<size_t>(d.alternatives[1])].type, Type::kString);
  // Number bounds in units of 10^-18, from each bound's decimal text (rounded inwards past 18
  // digits after the point; an exclusive bound moves in by one unit).
  auto nums = compile_json_schema(json::parse(R"({"type": "object", "properties": {
      "p": {"type": "number", "minimum": 0, "maximum": 1},
      "q": {"type": "number", "exclusiveMinimum": 0.95, "maximum": -2.5e-1, "minimum": -7},
      "r": {"type": "number", "minimum": 1.2345678901234567e-5, "maximum": 1.2345678901234567e-5},
      "s": {"type": "number"}}})"));
  ASSERT_FALSE(nums);  // q: 0.95 > -0.25
  nums = compile_json_schema(json::parse(R"({"type": "object", "properties": {
      "p": {"type": "number", "minimum": 0, "maximum": 1},
      "q": {"type": "number", "exclusiveMinimum": -0.95, "maximum": 1e-7},
      "r": {"type": "number", "minimum": 1.2345678901234568e-5},
      "s": {"type": "number"},
      "t": {"type": "number", "maximum": 1.2345678901234568e-5}}})"));
  ASSERT_TRUE(nums) << nums.error();
  auto num = [&](int i) -> const SchemaNode& {
    return nums.value()->nodes[static_cast<size_t>(nums.value()->nodes[0].children[i])];
  };
  const __int128 unit = kDecimalScale;
  EXPECT_TRUE(num(0).decimal_bounds);
  EXPECT_TRUE(num(0).low == 0 && num(0).high == unit);
  EXPECT_TRUE(num(1).low == -unit / 100 * 95 + 1);
  EXPECT_TRUE(num(1).high == unit / 10000000);
  // 0.000012345678901234568: 12345678901234.568 units, rounded up as a lower bound, down as an
  // upper one (and so as both, no number would lie within them).
  EXPECT_TRUE(num(2).low == 12345678901235);
  EXPECT_TRUE(num(4).high == 12345678901234);
  EXPECT_FALSE(num(3).decimal_bounds);
  EXPECT_FALSE(compile_json_schema(json::parse(R"({"type": "object", "properties": {"r":
      {"type": "number", "minimum": 1.2345678901234568e-5, "maximum": 1.2345678901234568e-5}}})")));
  // Formats (a format on another type does not apply).
  auto formats = compile_json_schema(json::parse(R"({"type": "object", "properties": {
      "a": {"type": "string", "format": "date-time"}, "b": {"type": "integer", "format": "int32"}}})"));
  ASSERT_TRUE(formats) << formats.error();
  EXPECT_EQ(
      formats.value()->nodes[static_cast<size_t>(formats.value()->nodes[0].children[0])].format,
      StringFormat::kDateTime);
  // A type without any of the enum's values is left out.
  const SchemaNode& tag = at(root.children[5]);
  ASSERT_EQ(tag.alternatives.size(), 2u);
  EXPECT_EQ(at(tag.alternatives[0]).literals, std::vector<std::string>{"\"a\""});
  EXPECT_EQ(at(tag.alternatives[1]).literals, std::vector<std::string>{"null"});

  // A root that is a $ref, to a model that contains itself (children: a list, parent: or null).
  auto tree = compile_json_schema(json::parse(R"({
    "$ref": "#/$defs/Node",
    "$defs": {"Node": {"type": "object", "properties": {
      "name": {"type": "string"},
      "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
      "parent": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}}}}})"));
  ASSERT_TRUE(tree) << tree.error();
  const JsonSchema& t = *tree.value();
  ASSERT_EQ(t.nodes[0].type, Type::kObject);
  EXPECT_EQ(t.nodes[static_cast<size_t>(t.nodes[0].children[1])].items, 0);
  EXPECT_EQ(t.nodes[static_cast<size_t>(t.nodes[0].children[2])].alternatives[0], 0);
  // "#" names the whole document; draft-07's definitions as well as $defs.
  EXPECT_TRUE(compile_json_schema(json::parse(R"({"type": "object", "properties": {
      "up": {"anyOf": [{"$ref": "#"}, {"type": "null"}]},
      "d": {"$ref": "#/definitions/D"}}, "definitions": {"D": {"type": "integer"}}})")));
}

TEST(CompileJsonSchema, RefusesWhatItCannotEnforce) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"type": "object", "properties": {"s": {"type": "string", "pattern": "^a"}}})",
       "'pattern'"},
      {R"({"type": "object", "properties": {"x": {"allOf": [{"type": "string"}]}}})", "'allOf'"},
      {R"({"type": "object", "properties": {"x": {"$ref": "#/$defs/a"}}})", "names no schema"},
      {R"({"type": "object", "properties": {"x": {"$ref": "other.json#/a"}}})",
       "only references within the schema"},
      {R"({"type": "object", "properties": {"x": {"$ref": "#", "type": "object"}}})",
       "'type' beside $ref"},
      {R"({"type": "object", "properties": {"x": {"anyOf": [{"type": "string"}],
          "type": "string"}}})",
       "'type' beside anyOf"},
      {R"({"type": "object", "properties": {"x": {"anyOf": []}}})", "1 to 16"},
      // Alternatives that begin alike: the first byte could not choose.
      {R"({"type": "object", "properties": {"x": {"anyOf": [
          {"type": "object", "properties": {"a": {"type": "string"}}},
          {"type": "object", "properties": {"b": {"type": "string"}}}]}}})",
       "alternatives 0 and 1 of the anyOf at the root.properties.x can both begin with '{'"},
      {R"({"type": "object", "properties": {"x": {"type": ["number", "integer"]}}})",
       "can both begin with '-'"},
      {R"({"type": "object", "properties": {"x": {"oneOf": [{}, {"type": "null"}]}}})",
       "can both begin with"},
      {R"({"type": "object", "properties": {"x": {"anyOf": [{"enum": ["a", 1]},
          {"type": "string"}]}}})",
       "can both begin with '\"'"},
      {R"({"type": "object", "properties": {"x": {"type": ["string", "string"]}}})", "distinct"},
      // A union that is its own alternative; an object that must contain itself.
      {R"({"type": "object", "properties": {"x": {"$ref": "#/$defs/u"}},
          "$defs": {"u": {"anyOf": [{"$ref": "#/$defs/u"}, {"type": "null"}]}}})",
       "one of its own alternatives"},
      {R"({"type": "object", "properties": {"next": {"$ref": "#"}}})", "never be completed"},
      {R"({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}})",
       "more than 32 references"},
      {R"({"type": "object", "properties": {"x": {"maximum": 3}}})", "need \"type\""},
      {R"({"type": "object", "properties": {"x": {"type": "string", "format": "email"}}})",
       "format \"email\" at the root.properties.x is not supported"},
      {R"({"type": "object", "properties": {"x": {"format": "date"}}})", "needs \"type\""},
      {R"({"type": "object", "properties": {"x": {"type": "number", "minimum": 0.5,
          "exclusiveMaximum": 0.5}}})",
       "no number"},
      {R"({"type": "object", "properties": {"x": {"type": "integer", "minimum": 3,
          "exclusiveMaximum": 3}}})",
       "no integer"},
      {R"({"type": "object", "properties": {"x": {"type": "integer", "minimum": "3"}}})",
       "must be a number"},
      {R"({"type": "object", "properties": {"x": {"type": "integer", "maximum": 1e300}}})",
       "must be a number"},
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
      {R"({"type": "object", "properties": {"x": {"type": "string", "minLength": 3,
          "maxLength": 2}}})",
       "minLength exceeds maxLength"},
      {R"({"type": "object", "properties": {"x": {"type": "string", "maxLength": -1}}})",
       "maxLength"},
      {R"({"type": "object", "properties": {"x": {"type": "string", "minLength": 5000}}})",
       "minLength"},
      {R"({"type": "object", "properties": {"x": {"type": "string", "maxLength": 2.5}}})",
       "maxLength"},
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
