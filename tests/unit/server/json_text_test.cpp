// JSON text as written: compact_json keeps numbers and strings byte for byte and refuses what
// RFC 8259 refuses; json_members / json_elements split compact containers.
#include "server/json_text.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace carpool::server {
namespace {

TEST(JsonText, CompactKeepsNumbersAndStringsAsWritten) {
  EXPECT_EQ(compact_json(" { \"a\" : [ 1 , 2.50, -0e+7 ] ,\n\"b\":\"x \\\" \\u00e9 y\" } "),
            "{\"a\":[1,2.50,-0e+7],\"b\":\"x \\\" \\u00e9 y\"}");
  EXPECT_EQ(compact_json("{\"n\": 123456789012345678901234567890, \"x\": 5e400}"),
            "{\"n\":123456789012345678901234567890,\"x\":5e400}");
  EXPECT_EQ(compact_json("true"), "true");
  EXPECT_EQ(compact_json("\"\""), "\"\"");
  EXPECT_EQ(compact_json("[]"), "[]");
  EXPECT_EQ(compact_json("{ }"), "{}");
  // Every valid text compacts to one nlohmann reads as the same value.
  for (const char* t : {"{\"k\": [true, false, null, {\"z\": -1.5E-3}], \"\": \"\\n\\t\"}",
                        "[ \"a\" , [ [ ] ] , { } ]", "-0", "0.5"}) {
    auto c = compact_json(t);
    ASSERT_TRUE(c) << t;
    EXPECT_EQ(nlohmann::json::parse(*c), nlohmann::json::parse(t)) << t;
  }
}

TEST(JsonText, CompactRefusesInvalidText) {
  for (const char* t :
       {"",      " ",       "{",           "{\"a\"}",  "{\"a\":}", "{a:1}",      "[1,]", "[1 2]",
        "01",    "1.",      ".5",          "1e",       "-",        "+1",         "tru",  "nul",
        "\"abc", "\"\\x\"", "\"\\u12g4\"", "\"a\nb\"", "{} {}",    "{\"a\":1,}", "NaN",  "[1]]"}) {
    EXPECT_FALSE(compact_json(t)) << t;
  }
  std::string deep(65, '[');
  deep += std::string(65, ']');
  EXPECT_FALSE(compact_json(deep));
  EXPECT_TRUE(compact_json(deep, 65));
}

TEST(JsonText, MembersAndElements) {
  const std::string obj = *compact_json(
      "{\"name\": \"f\", \"arguments\": {\"a\": [1, {\"b\": \"}\"}]}, \"q\\\"k\": 2e9}");
  auto m = json_members(obj);
  ASSERT_TRUE(m);
  ASSERT_EQ(m->size(), 3u);
  EXPECT_EQ((*m)[0].first, "name");
  EXPECT_EQ((*m)[0].second, "\"f\"");
  EXPECT_EQ((*m)[1].first, "arguments");
  EXPECT_EQ((*m)[1].second, "{\"a\":[1,{\"b\":\"}\"}]}");
  EXPECT_EQ((*m)[2].first, "q\"k");
  EXPECT_EQ((*m)[2].second, "2e9");
  EXPECT_TRUE(json_members("{}")->empty());
  EXPECT_FALSE(json_members("[1]"));
  const std::string arr = *compact_json("[1, \"a,b\", [2, 3], {\"c\": null}, true]");
  auto e = json_elements(arr);  // (views into arr)
  ASSERT_TRUE(e);
  EXPECT_EQ(*e, (std::vector<std::string_view>{"1", "\"a,b\"", "[2,3]", "{\"c\":null}", "true"}));
  EXPECT_TRUE(json_elements("[]")->empty());
  EXPECT_FALSE(json_elements("{}"));
  EXPECT_EQ(json_string("\"a\\u00e9\""), "a\xc3\xa9");
  const std::string raw = "{ \"a\": [1, \"]}\"] } ; {\"b\": 2}";
  EXPECT_EQ(json_container_end(raw), raw.find(';') - 1);
  EXPECT_EQ(json_container_end("[ [ ]"), std::string_view::npos);
  EXPECT_EQ(json_container_end("1"), std::string_view::npos);
  EXPECT_TRUE(json_integers_fit("{\"a\":[18446744073709551615,-9223372036854775808,1.5e999]}"));
  EXPECT_FALSE(json_integers_fit("{\"a\":18446744073709551616}"));
  EXPECT_FALSE(json_integers_fit("[-9223372036854775809]"));
  EXPECT_TRUE(json_integers_fit("[\"123456789012345678901234567890\",\"\\\"9\"]"));
  EXPECT_FALSE(json_string("1"));
}

}  // namespace
}  // namespace carpool::server
