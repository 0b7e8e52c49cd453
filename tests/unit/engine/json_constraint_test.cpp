// JSON mode: the byte recognizer (JsonState) against hand-checked documents, every prefix of a
// valid document, and the token mask on a small vocabulary; then the sampler with JSON mode on.
#include "engine/json_constraint.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "mask_walks.h"

namespace carpool {
namespace {

// Whole text accepted and the object closed.
bool accepts(const std::string& text) {
  JsonState s;
  return s.feed(text) && s.complete();
}

// Every byte accepted (the text is a prefix of some JSON object text).
bool prefix_ok(const std::string& text) {
  JsonState s;
  return s.feed(text);
}

TEST(JsonState, AcceptsObjects) {
  const std::vector<std::string> ok = {
      "{}",
      " {}",
      "{\"a\":1}",
      "{ \"a\" : 1 , \"b\" : [1, 2.5, -3e+2, 0, -0.0, 1E5] }",
      "{\"nested\":{\"x\":[{\"y\":null},true,false,[]],\"z\":{}}}",
      "{\"s\":\"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9\\uD83D\\uDE00\"}",
      "{\"utf8\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}",
      "{\n  \"name\": \"carpool\",\n  \"tags\": [\"a\", \"b\"]\n}",
      "{\"n\":0.5,\"m\":10,\"e\":2e-3}",
  };
  for (const std::string& t : ok) EXPECT_TRUE(accepts(t)) << t;
}

TEST(JsonState, RejectsWhatJsonRejects) {
  const std::vector<std::string> bad = {
      "[]",                        // the top level must be an object
      "\"s\"",                     // likewise
      "{a:1}",                     // unquoted key
      "{\"a\" 1}",                 // missing colon
      "{\"a\":1,}",                // trailing comma
      "{\"a\":01}",                // leading zero
      "{\"a\":1.}",                // no digit after the point
      "{\"a\":.5}",                // no digit before it
      "{\"a\":-}",                 // a lone minus
      "{\"a\":1e}",                // no exponent digits
      "{\"a\":tru}",               // truncated literal
      "{\"a\":True}",              // wrong case
      "{\"a\":NaN}",               // not JSON
      "{\"a\":\"\\x\"}",           // bad escape
      "{\"a\":\"\\u12G4\"}",       // bad hex digit
      "{\"a\":\"line\nbreak\"}",   // raw control character
      "{\"a\":\"\xc3\"}",          // truncated UTF-8
      "{\"a\":\"\xc0\xaf\"}",      // overlong UTF-8
      "{\"a\":\"\xed\xa0\x80\"}",  // UTF-8 surrogate
      "{\"a\":[1,2}",              // mismatched bracket
      "{\"a\":1}}",                // text after the object
      "{\"a\":1} x",               // even after whitespace
  };
  for (const std::string& t : bad) EXPECT_FALSE(accepts(t)) << t;
}

TEST(JsonState, EveryPrefixOfAValidDocumentIsAccepted) {
  const std::string doc =
      "{\"id\": 12, \"name\": \"x\\u0041y\", \"vals\": [1.25e-3, -7, true, null], "
      "\"obj\": {\"k\": [[], {}]}}";
  JsonState s;
  for (size_t i = 0; i < doc.size(); ++i) {
    EXPECT_FALSE(s.complete()) << "complete before byte " << i;
    ASSERT_TRUE(s.feed(static_cast<uint8_t>(doc[i]))) << "rejected byte " << i << " of " << doc;
  }
  EXPECT_TRUE(s.complete());
}

TEST(JsonState, Limits) {
  EXPECT_FALSE(prefix_ok("{\"a\":" + std::string(JsonState::kMaxDepth, '[')));
  EXPECT_TRUE(prefix_ok("{\"a\":" + std::string(JsonState::kMaxDepth - 1, '[')));
  // (append: GCC 12 warns falsely on "{" + std::string(n, ' ') here, bug 105329)
  const auto brace_then_spaces = [](int n) { return std::string("{").append(n, ' '); };
  EXPECT_TRUE(prefix_ok(brace_then_spaces(JsonState::kMaxWhitespace)));
  EXPECT_FALSE(prefix_ok(brace_then_spaces(JsonState::kMaxWhitespace + 1)));
  EXPECT_TRUE(prefix_ok("{\"a\":" + std::string(JsonState::kMaxNumberBytes, '1')));
  EXPECT_FALSE(prefix_ok("{\"a\":" + std::string(JsonState::kMaxNumberBytes + 1, '1')));
  // Whitespace inside strings does not count.
  EXPECT_TRUE(accepts("{\"a\":\"" + std::string(100, ' ') + "\"}"));
}

TokenBytes small_vocab() {
  TokenBytes v;
  v.text = {"",  "{", "}",   "\"", "a",   "\":", " ",     "1",    "x",    "\"}", "[",
            "]", ",", "{\"", "}}", "tru", "e",   "null}", "\xc3", "\xa9", "",    ":"};
  v.end_ids = {0, 20};  // 0: an end-of-generation token, 20: another control token
  v.index();
  return v;
}

std::vector<int32_t> allowed(const JsonState& s, const TokenBytes& v) {
  std::vector<float> logits(v.text.size(), 1.f);
  mask_json(s, v, logits);
  std::vector<int32_t> out;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isfinite(logits[i])) out.push_back(static_cast<int32_t>(i));
  }
  return out;
}

TEST(MaskJson, KeepsExactlyTheTokensThatContinue) {
  const TokenBytes v = small_vocab();
  JsonState s;
  // Start: "{", " " and "{\"" only.
  EXPECT_EQ(allowed(s, v), (std::vector<int32_t>{1, 6, 13}));
  ASSERT_TRUE(s.feed("{\"a\":"));
  // A value: "{", "\"", "\":" and "\"}" (strings holding ':' and '}'), " ", "1", "[", "{\"",
  // "tru", and "null}" (which also closes the object).
  EXPECT_EQ(allowed(s, v), (std::vector<int32_t>{1, 3, 5, 6, 7, 9, 10, 13, 15, 17}));
  ASSERT_TRUE(s.feed("\"caf"));
  // In a string: everything printable, the closing quote, and a UTF-8 lead byte; not a lone
  // continuation byte.
  std::vector<int32_t> in_string = allowed(s, v);
  EXPECT_EQ(std::count(in_string.begin(), in_string.end(), 18), 1);
  EXPECT_EQ(std::count(in_string.begin(), in_string.end(), 19), 0);
  EXPECT_EQ(std::count(in_string.begin(), in_string.end(), 0), 0);  // no end inside
  ASSERT_TRUE(s.feed("\xc3"));
  EXPECT_EQ(allowed(s, v), (std::vector<int32_t>{19}));  // only the continuation byte
  ASSERT_TRUE(s.feed("\xa9\"}"));
  ASSERT_TRUE(s.complete());
  // Closed: the end ids only (no whitespace padding after the answer).
  EXPECT_EQ(allowed(s, v), (std::vector<int32_t>{0, 20}));
}

// With every single byte a token, some token is allowed in every reachable state (no dead ends
// within the limits), and an end id exactly when the object is closed. Random walks, half of the
// bytes from digits, '.', 'e', '-', whitespace and brackets to reach the limits.
TEST(MaskJson, NoDeadEnds) {
  int closed = 0;
  random_walks(
      JsonState{}, "0123456789.eE-+ \n[{\"a:,", [](std::mt19937& g) { return g() % 2 == 0; }, 300,
      400, 5, &closed);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  EXPECT_GT(closed, 0);
}

TEST(MaskJson, LongNumbersCanAlwaysEnd) {
  for (const std::string tail : {".", "e", "e-", "E+", ".5e"}) {
    for (int digits = 1; digits <= JsonState::kMaxNumberBytes; ++digits) {
      JsonState s;
      if (!s.feed("{\"a\":" + std::string(static_cast<size_t>(digits), '7') + tail)) continue;
      EXPECT_TRUE(s.feed("1}")) << digits << " digits then " << tail;
    }
  }
}

TEST(MaskJson, LogitsPastTheVocabularyAreMasked) {
  const TokenBytes v = small_vocab();
  JsonState s;
  std::vector<float> logits(v.text.size() + 5, 1.f);
  mask_json(s, v, logits);
  for (size_t i = v.text.size(); i < logits.size(); ++i) EXPECT_TRUE(std::isinf(logits[i]));
}

TEST(SamplerJson, SampledTextIsAJsonObject) {
  auto v = std::make_shared<TokenBytes>(small_vocab());
  std::mt19937 g(11);
  std::normal_distribution<float> nd(0.f, 2.f);
  for (int trial = 0; trial < 50; ++trial) {
    SamplingParams p;
    p.temperature = 1.f;
    p.seed = trial;
    p.json_vocab = v;
    Sampler sampler(p, {});
    std::string text;
    bool ended = false;
    for (int step = 0; step < 200 && !ended; ++step) {
      std::vector<float> logits(v->text.size());
      for (float& l : logits) l = nd(g);
      const int32_t t = sampler.sample(logits);
      if (t == 0 || t == 20) {
        ended = true;
        break;
      }
      text += v->text[static_cast<size_t>(t)];
      sampler.accept(t);
    }
    JsonState check;
    ASSERT_TRUE(check.feed(text)) << text;
    if (ended) {
      EXPECT_TRUE(check.complete()) << text;
    }
  }
}

}  // namespace
}  // namespace carpool
