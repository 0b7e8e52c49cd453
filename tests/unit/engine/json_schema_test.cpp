// Structured output: SchemaState on a hand-built schema (every node type), documents it must
// accept and reject, and random walks over a vocabulary of single bytes that must never reach a
// state with no way forward.
#include "engine/json_schema.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "mask_walks.h"

namespace carpool {
namespace {

using Type = SchemaNode::Type;

// {"a": integer, "b": "x" | "yy" | 7, "c": [number] (1 to 2 items), "d": any, "e": any object,
//  "f": {} (additionalProperties false), "g": [{"h": boolean, "i": null}]}
JsonSchema test_schema() {
  JsonSchema s;
  s.nodes.resize(12);
  s.nodes[0].type = Type::kObject;
  s.nodes[0].keys = {"\"a\"", "\"b\"", "\"c\"", "\"d\"", "\"e\"", "\"f\"", "\"g\""};
  s.nodes[0].children = {1, 2, 3, 5, 6, 7, 8};
  s.nodes[1].type = Type::kInteger;
  s.nodes[2].type = Type::kEnum;
  s.nodes[2].literals = {"\"x\"", "\"yy\"", "7"};
  s.nodes[3].type = Type::kArray;
  s.nodes[3].items = 4;
  s.nodes[3].min_items = 1;
  s.nodes[3].max_items = 2;
  s.nodes[4].type = Type::kNumber;
  s.nodes[5].type = Type::kAny;
  s.nodes[6].type = Type::kObject;
  s.nodes[6].free = true;
  s.nodes[7].type = Type::kObject;  // no properties, closed
  s.nodes[8].type = Type::kArray;
  s.nodes[8].items = 9;
  s.nodes[9].type = Type::kObject;
  s.nodes[9].keys = {"\"h\"", "\"i\""};
  s.nodes[9].children = {10, 11};
  s.nodes[10].type = Type::kBoolean;
  s.nodes[11].type = Type::kNull;
  return s;
}

bool accepts(const JsonSchema& schema, const std::string& text) {
  SchemaState s(&schema);
  return s.feed(text) && s.complete();
}

const std::string kGood =
    "{\"a\": -12, \"b\": \"yy\", \"c\": [1.5e3, 2], \"d\": {\"any\": [1, \"x\", null]}, "
    "\"e\": {\"k\": true}, \"f\": {}, \"g\": [{\"h\": false, \"i\": null}, {\"h\": true, \"i\": "
    "null}]}";

TEST(SchemaState, AcceptsConformingDocuments) {
  const JsonSchema schema = test_schema();
  EXPECT_TRUE(accepts(schema, kGood));
  EXPECT_TRUE(
      accepts(schema, "{\"a\":0,\"b\":7,\"c\":[0],\"d\":\"s\",\"e\":{},\"f\":{ },\"g\":[]}"));
  EXPECT_TRUE(accepts(schema,
                      "{\"a\":1,\"b\":\"x\",\"c\":[-0.5],\"d\":[],\"e\":{},\"f\":{},"
                      "\"g\":[]}\n"));
}

TEST(SchemaState, EveryPrefixOfAConformingDocumentIsAccepted) {
  const JsonSchema schema = test_schema();
  SchemaState s(&schema);
  for (size_t i = 0; i < kGood.size(); ++i) {
    ASSERT_FALSE(s.complete()) << i;
    ASSERT_TRUE(s.feed(static_cast<uint8_t>(kGood[i]))) << "byte " << i << " of " << kGood;
  }
  EXPECT_TRUE(s.complete());
}

TEST(SchemaState, RejectsWhatTheSchemaForbids) {
  const JsonSchema schema = test_schema();
  const std::string tail = "\"c\":[1],\"d\":1,\"e\":{},\"f\":{},\"g\":[]}";
  const std::vector<std::string> bad = {
      "{\"b\":\"x\",\"a\":1," + tail,      // properties out of order
      "{\"a\":1.5,\"b\":\"x\"," + tail,    // integer with a fraction
      "{\"a\":1e2,\"b\":\"x\"," + tail,    // integer with an exponent
      "{\"a\":\"1\",\"b\":\"x\"," + tail,  // string for an integer
      "{\"a\":1,\"b\":\"z\"," + tail,      // not in the enum
      "{\"a\":1,\"b\":\"yyy\"," + tail,    // an enum value's prefix only matches
      "{\"a\":1,\"b\":\"y\"," + tail,      // an enum value cut short
      "{\"a\":1,\"b\":70," + tail,         // a number enum value extended
      "{\"a\":1,\"b\":\"x\",\"c\":[]," + tail.substr(tail.find("\"d\"")),           // minItems 1
      "{\"a\":1,\"b\":\"x\",\"c\":[1,2,3]," + tail.substr(tail.find("\"d\"")),      // maxItems 2
      "{\"a\":1,\"b\":\"x\",\"c\":[1],\"d\":1,\"e\":{},\"f\":{\"k\":1},\"g\":[]}",  // closed
      "{\"a\":1,\"b\":\"x\",\"c\":[1],\"d\":1,\"e\":{},\"f\":{},\"g\":[{\"h\":1,\"i\":null}]}",
      "{\"a\":1,\"b\":\"x\",\"c\":[1],\"d\":1,\"e\":{},\"f\":{},\"g\":[],\"z\":1}",  // extra
      "{\"a\":1,\"b\":\"x\",\"c\":[1],\"d\":1,\"e\":{},\"f\":{}}",                   // missing g
      "{\"a\":1}",                                                                   // missing
  };
  for (const std::string& t : bad) EXPECT_FALSE(accepts(schema, t)) << t;
}

TEST(SchemaState, PrefixLiteralsEmptyArraysAndEscapedKeys) {
  JsonSchema s;
  s.nodes.resize(5);
  s.nodes[0].type = Type::kObject;
  s.nodes[0].keys = {"\"\"", "\"q\\\"k\"", "\"n\""};  // "", q"k, n
  s.nodes[0].children = {1, 2, 3};
  s.nodes[1].type = Type::kEnum;
  s.nodes[1].literals = {"1", "10", "\"a\"", "\"ab\""};
  s.nodes[2].type = Type::kArray;
  s.nodes[2].items = 4;
  s.nodes[2].max_items = 0;
  s.nodes[3].type = Type::kEnum;
  s.nodes[3].literals = {"1", "10"};
  s.nodes[4].type = Type::kNull;
  for (const char* v : {"1", "10", "\"a\"", "\"ab\""}) {
    for (const char* n : {"1", "10"}) {
      const std::string doc = std::string("{\"\":") + v + ",\"q\\\"k\":[],\"n\":" + n + "}";
      EXPECT_TRUE(accepts(s, doc)) << doc;
    }
  }
  EXPECT_FALSE(accepts(s, "{\"\":100,\"q\\\"k\":[],\"n\":1}"));
  EXPECT_FALSE(accepts(s, "{\"\":\"abc\",\"q\\\"k\":[],\"n\":1}"));
  EXPECT_FALSE(accepts(s, "{\"\":1,\"q\\\"k\":[null],\"n\":1}"));  // maxItems 0
  EXPECT_FALSE(accepts(s, "{\"\":1,\"qk\":[],\"n\":1}"));          // the key's escape
}

// Every reachable state has a way forward, and the end is allowed exactly when the object is
// closed; random walks through the schema over a vocabulary of single bytes.
TEST(SchemaState, NoDeadEnds) {
  const JsonSchema schema = test_schema();
  int closed = 0;
  random_walks(
      SchemaState(&schema), "0123456789.e-\"xy7]}{[,: tfn",
      [](std::mt19937& g) { return g() % 3 != 0; }, 200, 600, 9, &closed);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  EXPECT_GT(closed, 10);
}

// Tool calls (server/tool_calls.h): an array root of a tagged union, [{"name": "f", "arguments":
// {"x": integer}} or {"name": "g", "arguments": {"y": boolean}} or {"name": "fg", ...{}}, ...]
// with one to two items.
JsonSchema union_schema() {
  JsonSchema s;
  s.nodes.resize(12);
  s.nodes[0].type = Type::kArray;
  s.nodes[0].items = 1;
  s.nodes[0].min_items = 1;
  s.nodes[0].max_items = 2;
  s.nodes[1].type = Type::kObject;
  s.nodes[1].keys = {"\"name\""};
  s.nodes[1].children = {2};
  s.nodes[1].variants = {3, 6, 9};
  s.nodes[2].type = Type::kEnum;
  s.nodes[2].literals = {"\"f\"", "\"g\"", "\"fg\""};
  const std::vector<std::pair<std::string, Type>> args = {{"\"x\"", Type::kInteger},
                                                          {"\"y\"", Type::kBoolean}};
  for (int k = 0; k < 3; ++k) {
    SchemaNode& v = s.nodes[static_cast<size_t>(3 + 3 * k)];
    v.type = Type::kObject;
    v.keys = {"\"name\"", "\"arguments\""};
    v.children = {2, 4 + 3 * k};
    SchemaNode& a = s.nodes[static_cast<size_t>(4 + 3 * k)];
    a.type = Type::kObject;
    if (k < 2) {
      a.keys = {args[static_cast<size_t>(k)].first};
      a.children = {5 + 3 * k};
      s.nodes[static_cast<size_t>(5 + 3 * k)].type = args[static_cast<size_t>(k)].second;
    }
  }
  return s;
}

TEST(SchemaState, TaggedUnionFollowsTheChosenVariant) {
  const JsonSchema s = union_schema();
  EXPECT_TRUE(accepts(s, "[{\"name\": \"f\", \"arguments\": {\"x\": 3}}]"));
  EXPECT_TRUE(accepts(s,
                      "[{\"name\":\"g\",\"arguments\":{\"y\":true}},"
                      "{\"name\":\"fg\",\"arguments\":{}}]"));
  EXPECT_TRUE(accepts(s, " [ {\"name\":\"f\",\"arguments\":{\"x\":-1}} ] "));
  const std::vector<std::string> bad = {
      "[]",                                             // minItems 1
      "{\"name\":\"f\",\"arguments\":{\"x\":1}}",       // not an array
      "[{\"name\":\"f\",\"arguments\":{\"y\":true}}]",  // g's arguments for f
      "[{\"name\":\"g\",\"arguments\":{\"y\":1}}]",     // wrong type for g
      "[{\"name\":\"fg\",\"arguments\":{\"x\":1}}]",    // fg takes none
      "[{\"name\":\"h\",\"arguments\":{}}]",            // not a tool
      "[{\"arguments\":{},\"name\":\"fg\"}]",           // order
      "[{\"name\":\"fg\"}]",                            // arguments missing
      "[{\"name\":\"fg\",\"arguments\":{}},{\"name\":\"fg\",\"arguments\":{}},"
      "{\"name\":\"fg\",\"arguments\":{}}]",  // maxItems 2
  };
  for (const std::string& t : bad) EXPECT_FALSE(accepts(s, t)) << t;
}

TEST(SchemaState, TaggedUnionHasNoDeadEnds) {
  const JsonSchema schema = union_schema();
  int closed = 0;
  random_walks(
      SchemaState(&schema), "0123456789\"fgxy{}[],: tr",
      [](std::mt19937& g) { return g() % 3 != 0; }, 200, 400, 11, &closed);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  EXPECT_GT(closed, 10);
}

// Unions (anyOf, type lists) and a schema that contains itself: {"a": {"x": integer} | null,
// "b": string | [<the root>, ...], "c": ("p" | 1) | boolean}.
JsonSchema recursive_union_schema() {
  JsonSchema s;
  s.nodes.resize(11);
  s.nodes[0].type = Type::kObject;
  s.nodes[0].keys = {"\"a\"", "\"b\"", "\"c\""};
  s.nodes[0].children = {1, 5, 8};
  s.nodes[1].type = Type::kUnion;
  s.nodes[1].alternatives = {2, 4};
  s.nodes[2].type = Type::kObject;
  s.nodes[2].keys = {"\"x\""};
  s.nodes[2].children = {3};
  s.nodes[3].type = Type::kInteger;
  s.nodes[4].type = Type::kNull;
  s.nodes[5].type = Type::kUnion;
  s.nodes[5].alternatives = {6, 7};
  s.nodes[6].type = Type::kString;
  s.nodes[7].type = Type::kArray;
  s.nodes[7].items = 0;  // the root again
  s.nodes[8].type = Type::kUnion;
  s.nodes[8].alternatives = {9, 10};
  s.nodes[9].type = Type::kEnum;
  s.nodes[9].literals = {"\"p\"", "1"};
  s.nodes[10].type = Type::kBoolean;
  return s;
}

TEST(SchemaState, UnionsTakeTheAlternativeTheFirstByteChooses) {
  const JsonSchema s = recursive_union_schema();
  EXPECT_TRUE(schema_value_starts_with(s, 1, '{'));
  EXPECT_TRUE(schema_value_starts_with(s, 1, 'n'));
  EXPECT_FALSE(schema_value_starts_with(s, 1, '"'));
  EXPECT_TRUE(schema_value_starts_with(s, 8, '1'));
  EXPECT_FALSE(schema_value_starts_with(s, 8, '2'));
  for (const std::string& t : {
           std::string("{\"a\": null, \"b\": \"s\", \"c\": true}"),
           std::string("{\"a\": {\"x\": -5}, \"b\": [], \"c\": \"p\"}"),
           std::string("{\"a\":null,\"b\":[{\"a\":null,\"b\":\"t\",\"c\":1},"
                       "{\"a\":{\"x\":0},\"b\":[{\"a\":null,\"b\":[],\"c\":false}],\"c\":\"p\"}],"
                       "\"c\":false}"),
       }) {
    EXPECT_TRUE(accepts(s, t)) << t;
  }
  for (const std::string& t : {
           std::string("{\"a\": 5, \"b\": \"s\", \"c\": true}"),             // neither alternative
           std::string("{\"a\": {\"x\": 1.5}, \"b\": \"s\", \"c\": true}"),  // not an integer
           std::string("{\"a\": null, \"b\": 3, \"c\": true}"),
           std::string("{\"a\": null, \"b\": [\"s\"], \"c\": true}"),  // items are the root
           std::string("{\"a\": null, \"b\": \"s\", \"c\": \"q\"}"),   // not in the enum
           std::string("{\"a\": null, \"b\": \"s\", \"c\": 12}"),
           std::string("{\"a\": null, \"b\": \"s\", \"c\": nul}"),
       }) {
    EXPECT_FALSE(accepts(s, t)) << t;
  }
}

TEST(SchemaState, RecursiveUnionsHaveNoDeadEnds) {
  const JsonSchema schema = recursive_union_schema();
  int closed = 0;
  random_walks(
      SchemaState(&schema),
      "0123456789\"pxnulltrfase{}[],: ", [](std::mt19937& g) { return g() % 4 != 0; }, 300, 800, 13,
      &closed);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  EXPECT_GT(closed, 10);
}

// {a: node 1, b: node 2}, nodes 1 and 2 left for the caller to fill.
JsonSchema two_members(const std::string& a, const std::string& b) {
  JsonSchema s;
  s.nodes.resize(3);
  s.nodes[0].type = Type::kObject;
  s.nodes[0].keys = {"\"" + a + "\"", "\"" + b + "\""};
  s.nodes[0].children = {1, 2};
  return s;
}

// {"s": a string of 2 to 3 characters, "t": any string}.
JsonSchema string_length_schema() {
  JsonSchema s = two_members("s", "t");
  s.nodes[1].type = Type::kString;
  s.nodes[1].min_length = 2;
  s.nodes[1].max_length = 3;
  s.nodes[2].type = Type::kString;
  return s;
}

TEST(SchemaState, StringLengthsCountCharacters) {
  const JsonSchema s = string_length_schema();
  auto with = [](const std::string& v) { return "{\"s\": \"" + v + "\", \"t\": \"long text\"}"; };
  // Characters, not bytes: UTF-8 characters, escapes, and a surrogate pair of escapes are one.
  for (const std::string& v :
       {std::string("ab"), std::string("abc"), std::string("\xC3\xA9\xE6\x97\xA5"),
        std::string("\\n\\u0041"), std::string("\\ud83d\\ude00x"), std::string("ab\\uD83D\\uDE00"),
        std::string("a\\\"")}) {
    EXPECT_TRUE(accepts(s, with(v))) << v;
  }
  for (const std::string& v : {std::string(""), std::string("a"), std::string("abcd"),
                               std::string("\\ud83d\\ude00"), std::string("abc\\ud83d\\ude00"),
                               std::string("\xF0\x9F\x98\x80"), std::string("ab\\u00e9x")}) {
    EXPECT_FALSE(accepts(s, with(v))) << v;
  }
  // The room left, for the mask's shortcut over plain tokens.
  SchemaState st(&s);
  ASSERT_TRUE(st.feed("{\"s\": \"a"));
  EXPECT_EQ(st.string_room(), 2);
  ASSERT_TRUE(st.feed("bc\", \"t\": \"x"));
  EXPECT_EQ(st.string_room(), std::numeric_limits<int32_t>::max());  // no limit on "t"
}

TEST(SchemaState, MaskKeepsPlainTokensWithinMaxLength) {
  const JsonSchema s = string_length_schema();
  TokenBytes v;
  v.text = {"", "ab", "abcd", "\"", "a\"", "x"};
  v.end_ids = {0};
  v.index();
  SchemaState st(&s);
  ASSERT_TRUE(st.feed("{\"s\": \"a"));
  std::vector<float> logits(v.text.size(), 0.f);
  mask_tokens(st, v, logits);
  auto allowed = [&](int id) { return std::isfinite(logits[static_cast<size_t>(id)]); };
  EXPECT_TRUE(allowed(1));   // "ab": 3 characters in all
  EXPECT_FALSE(allowed(2));  // "abcd": 5
  EXPECT_FALSE(allowed(3));  // closing at 1 character (minLength 2)
  EXPECT_TRUE(allowed(4));   // "a\"": closes at 2
  EXPECT_TRUE(allowed(5));
  EXPECT_FALSE(allowed(0));
}

TEST(SchemaState, StringLengthsHaveNoDeadEnds) {
  const JsonSchema schema = string_length_schema();
  int closed = 0;
  random_walks(
      SchemaState(&schema), "abc\"\\nu0d8e9f:{} ,st\xC3\xA9",
      [](std::mt19937& g) { return g() % 3 != 0; }, 300, 300, 17, &closed);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  EXPECT_GT(closed, 10);
}

TEST(SchemaState, IntegerPrefixes) {
  // 1, 10-19, 100-199, ...: none in [5, 9], some in [10, 19] and [150, 1000].
  EXPECT_FALSE(integer_prefix_fits(false, 1, true, false, 5, 9));
  EXPECT_TRUE(integer_prefix_fits(false, 1, true, false, 10, 19));
  EXPECT_TRUE(integer_prefix_fits(false, 1, true, false, 150, 1000));
  EXPECT_FALSE(integer_prefix_fits(false, 0, true, true, 1, 9));   // 0 takes no more digits
  EXPECT_TRUE(integer_prefix_fits(true, 0, true, true, -3, 0));    // -0
  EXPECT_TRUE(integer_prefix_fits(true, 0, false, false, -3, 5));  // '-' where -3..-1 fit
  EXPECT_FALSE(integer_prefix_fits(true, 0, false, false, 0, 5));
  EXPECT_TRUE(integer_prefix_fits(true, 2, true, false, -25, -20));  // -2x
  EXPECT_FALSE(integer_prefix_fits(true, 3, true, false, -25, -20));
  EXPECT_TRUE(integer_prefix_fits(false, 9, true, false, std::numeric_limits<int64_t>::max(),
                                  std::numeric_limits<int64_t>::max()));  // 9223372036854775807
  EXPECT_FALSE(integer_prefix_fits(false, 99, true, false, std::numeric_limits<int64_t>::max(),
                                   std::numeric_limits<int64_t>::max()));
}

// {"n": an integer in [lo, hi], "m": an integer in [-3, -1]}.
JsonSchema bounded_integer_schema(int64_t lo, int64_t hi) {
  JsonSchema s = two_members("n", "m");
  s.nodes[1].type = Type::kInteger;
  s.nodes[1].minimum = lo;
  s.nodes[1].maximum = hi;
  s.nodes[2].type = Type::kInteger;
  s.nodes[2].minimum = -3;
  s.nodes[2].maximum = -1;
  return s;
}

TEST(SchemaState, IntegersStayWithinTheirBounds) {
  const JsonSchema s = bounded_integer_schema(-5, 120);
  auto doc = [](const std::string& n, const std::string& m) {
    return "{\"n\": " + n + ", \"m\": " + m + "}";
  };
  for (const std::string& n : {"0", "-0", "7", "120", "-5", "99", "100"}) {
    EXPECT_TRUE(accepts(s, doc(n, "-2"))) << n;
  }
  for (const std::string& n : {"121", "130", "1000", "-6", "-10", "007", "5.0", "1e2"}) {
    EXPECT_FALSE(accepts(s, doc(n, "-2"))) << n;
  }
  for (const std::string& m : {"0", "-4", "1", "-0"}) EXPECT_FALSE(accepts(s, doc("1", m))) << m;
  // A prefix that fits may still end outside: 1 is not in [10, 12], 10 and 12 are.
  const JsonSchema teens = bounded_integer_schema(10, 12);
  EXPECT_FALSE(accepts(teens, doc("1", "-1")));
  EXPECT_TRUE(accepts(teens, doc("10", "-1")));
  EXPECT_TRUE(accepts(teens, doc("12", "-3")));
  EXPECT_FALSE(accepts(teens, doc("13", "-1")));
  // The first byte already: a union would not choose an integer that cannot fit.
  EXPECT_FALSE(schema_value_starts_with(s, 2, '0'));
  EXPECT_TRUE(schema_value_starts_with(s, 2, '-'));
  EXPECT_FALSE(schema_value_starts_with(bounded_integer_schema(0, 9), 1, '-'));
}

TEST(SchemaState, BoundedIntegersHaveNoDeadEnds) {
  for (const auto& [lo, hi] : std::vector<std::pair<int64_t, int64_t>>{
           {10, 12}, {0, 0}, {-120, -100}, {7, 7000}, {-1, 1}}) {
    const JsonSchema schema = bounded_integer_schema(lo, hi);
    int closed = 0;
    random_walks(
        SchemaState(&schema), "0123456789-,}: ", [](std::mt19937& g) { return g() % 4 != 0; }, 100,
        200, 19, &closed);
    ASSERT_FALSE(::testing::Test::HasFatalFailure()) << lo << " " << hi;
    EXPECT_GT(closed, 5) << lo << " " << hi;
  }
}

// {"x": a number in [lo, hi], "y": a number in (0, 1]} (bounds in units of 10^-18).
JsonSchema bounded_number_schema(__int128 lo, __int128 hi) {
  JsonSchema s = two_members("x", "y");
  s.nodes[1].type = Type::kNumber;
  s.nodes[1].decimal_bounds = true;
  s.nodes[1].low = lo;
  s.nodes[1].high = hi;
  s.nodes[2].type = Type::kNumber;
  s.nodes[2].decimal_bounds = true;
  s.nodes[2].low = 1;
  s.nodes[2].high = kDecimalScale;
  return s;
}

TEST(SchemaState, NumbersStayWithinTheirBounds) {
  const __int128 unit = kDecimalScale;
  auto doc = [](const std::string& x, const std::string& y) {
    return "{\"x\": " + x + ", \"y\": " + y + "}";
  };
  const JsonSchema s = bounded_number_schema(-unit * 5 / 2, -unit);  // [-2.5, -1]
  for (const std::string& x : {"-2.5", "-1", "-1.0", "-1.75", "-2.500", "-2"}) {
    EXPECT_TRUE(accepts(s, doc(x, "0.5"))) << x;
  }
  for (const std::string& x : {"-2.51", "-0.5", "-3", "0", "-0", "-1e0", "-25e-1", "-0.999999"}) {
    EXPECT_FALSE(accepts(s, doc(x, "0.5"))) << x;
  }
  // (0, 1]: 0 excluded; 18 digits after the point at most.
  for (const std::string& y :
       {"1", "1.0", "0.000000000000000001", "0.999", "1.000000000000000000"}) {
    EXPECT_TRUE(accepts(s, doc("-1", y))) << y;
  }
  for (const std::string& y :
       {"0", "0.0", "-0.5", "1.000000000000000001", "2", "10", "0.0000000000000000001", "1E0"}) {
    EXPECT_FALSE(accepts(s, doc("-1", y))) << y;
  }
  // Wide bounds: digits before the point.
  const JsonSchema wide = bounded_number_schema(unit * 150, unit * 1000);  // [150, 1000]
  EXPECT_TRUE(accepts(wide, doc("150.5", "1")));
  EXPECT_TRUE(accepts(wide, doc("999.999", "1")));
  EXPECT_FALSE(accepts(wide, doc("15", "1")));
  EXPECT_FALSE(accepts(wide, doc("1000.5", "1")));
  EXPECT_FALSE(schema_value_starts_with(wide, 1, '-'));
}

TEST(SchemaState, BoundedNumbersHaveNoDeadEnds) {
  const __int128 unit = kDecimalScale;
  for (const auto& [lo, hi] :
       std::vector<std::pair<__int128, __int128>>{{0, unit},
                                                  {-unit * 5 / 2, -unit},
                                                  {unit / 1000, unit / 1000 * 3},
                                                  {unit * 7, unit * 7},
                                                  {-unit, unit}}) {
    const JsonSchema schema = bounded_number_schema(lo, hi);
    int closed = 0;
    random_walks(
        SchemaState(&schema), "0123456789.-,}: ", [](std::mt19937& g) { return g() % 4 != 0; }, 100,
        200, 23, &closed);
    ASSERT_FALSE(::testing::Test::HasFatalFailure());
    EXPECT_GT(closed, 5);
  }
}

// {"d": a date, "t": a uuid of at most 36 characters} (string_format.h).
TEST(SchemaState, StringFormatsAreFollowed) {
  JsonSchema s = two_members("d", "t");
  s.nodes[1].type = Type::kString;
  s.nodes[1].format = StringFormat::kDate;
  s.nodes[2].type = Type::kString;
  s.nodes[2].format = StringFormat::kUuid;
  const std::string id = "\"123e4567-e89b-12d3-a456-426614174000\"";
  EXPECT_TRUE(accepts(s, "{\"d\": \"2024-02-29\", \"t\": " + id + "}"));
  for (const std::string& d : {"2023-02-29", "2024-02-2", "2024-02-29x", "2024\\u002d02-29", ""}) {
    EXPECT_FALSE(accepts(s, "{\"d\": \"" + d + "\", \"t\": " + id + "}")) << d;
  }
  SchemaState st(&s);
  ASSERT_TRUE(st.feed("{\"d\": \"20"));
  EXPECT_EQ(st.string_room(), 0);  // the mask feeds every token of a formatted string
  int closed = 0;
  random_walks(
      SchemaState(&s), "0123456789-abcdef\",}: ", [](std::mt19937& g) { return g() % 5 != 0; }, 100,
      300, 29, &closed);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  EXPECT_GT(closed, 5);
}

}  // namespace
}  // namespace carpool
