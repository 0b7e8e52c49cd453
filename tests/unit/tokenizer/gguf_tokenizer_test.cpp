// Tokenizer::from_gguf on small GGUF files built in memory, well-formed and malformed.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"

namespace carpool {
namespace {

// Writes GGUF v3 metadata (no tensors).
class GgufBuilder {
 public:
  void str(const std::string& key, const std::string& v) {
    header(key, GgufType::kString);
    put_str(v);
  }
  void u32(const std::string& key, uint32_t v) {
    header(key, GgufType::kU32);
    put(v);
  }
  void boolean(const std::string& key, bool v) {
    header(key, GgufType::kBool);
    put(static_cast<uint8_t>(v));
  }
  void str_array(const std::string& key, const std::vector<std::string>& v) {
    header(key, GgufType::kArray);
    put(static_cast<uint32_t>(GgufType::kString));
    put(static_cast<uint64_t>(v.size()));
    for (const auto& s : v) put_str(s);
  }
  void i32_array(const std::string& key, const std::vector<int32_t>& v) {
    header(key, GgufType::kArray);
    put(static_cast<uint32_t>(GgufType::kI32));
    put(static_cast<uint64_t>(v.size()));
    for (int32_t x : v) put(x);
  }
  void f32_array(const std::string& key, const std::vector<float>& v) {
    header(key, GgufType::kArray);
    put(static_cast<uint32_t>(GgufType::kF32));
    put(static_cast<uint64_t>(v.size()));
    for (float x : v) put(x);
  }
  std::vector<uint8_t> bytes() const {
    std::vector<uint8_t> out;
    auto append = [&](const void* p, size_t n) {
      out.insert(out.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
    };
    append("GGUF", 4);
    uint32_t version = 3;
    uint64_t n_tensors = 0;
    append(&version, 4);
    append(&n_tensors, 8);
    append(&n_kv_, 8);
    out.insert(out.end(), body_.begin(), body_.end());
    while (out.size() % 32 != 0) out.push_back(0);
    return out;
  }

 private:
  template <typename T>
  void put(T v) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(&v);
    body_.insert(body_.end(), p, p + sizeof(T));
  }
  void put_str(const std::string& s) {
    put(static_cast<uint64_t>(s.size()));
    body_.insert(body_.end(), s.begin(), s.end());
  }
  void header(const std::string& key, GgufType t) {
    ++n_kv_;
    put_str(key);
    put(static_cast<uint32_t>(t));
  }
  std::vector<uint8_t> body_;
  uint64_t n_kv_ = 0;
};

struct Gpt2Vocab {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<std::string> merges;
};

Gpt2Vocab gpt2_vocab() {
  Gpt2Vocab v;
  v.tokens.push_back("<|im_end|>");
  v.types.push_back(3);
  for (int b = 0; b < 256; ++b) {
    v.tokens.push_back(byte_level_encode(std::string(1, static_cast<char>(b))));
    v.types.push_back(1);
  }
  v.tokens.push_back("he");  // 257
  v.tokens.push_back("hel");
  v.tokens.push_back("hell");
  v.tokens.push_back("hello");  // 260
  v.types.insert(v.types.end(), 4, 1);
  v.merges = {"h e", "he l", "hel l", "hell o"};
  return v;
}

// Builds and parses a GGUF from `fill`, then loads its tokenizer.
template <typename Fill>
Result<Tokenizer> load(Fill fill) {
  GgufBuilder b;
  fill(b);
  std::vector<uint8_t> data = b.bytes();
  auto gguf = GgufFile::parse(data.data(), data.size());
  if (!gguf) return gguf.status();
  return Tokenizer::from_gguf(*gguf);
}

void write_gpt2(GgufBuilder& b, const Gpt2Vocab& v) {
  b.str("tokenizer.ggml.model", "gpt2");
  b.str("tokenizer.ggml.pre", "smollm");
  b.str_array("tokenizer.ggml.tokens", v.tokens);
  b.i32_array("tokenizer.ggml.token_type", v.types);
  b.str_array("tokenizer.ggml.merges", v.merges);
  b.u32("tokenizer.ggml.eos_token_id", 0);
}

TEST(GgufTokenizer, Gpt2Vocabulary) {
  auto tok = load([](GgufBuilder& b) {
    write_gpt2(b, gpt2_vocab());
    b.str("tokenizer.chat_template", "{{ messages }}");
  });
  ASSERT_TRUE(tok.is_ok()) << tok.error();
  EXPECT_EQ(tok->encode("hello<|im_end|>", false, true), (std::vector<int32_t>{260, 0}));
  EXPECT_EQ(tok->encode("hello 42", false, true),
            (std::vector<int32_t>{260, 1 + ' ', 1 + '4', 1 + '2'}));
  EXPECT_EQ(tok->chat_template(), "{{ messages }}");
  EXPECT_TRUE(tok->is_end_of_generation(0));
  EXPECT_FALSE(tok->add_bos_default());
}

TEST(GgufTokenizer, SentencePieceVocabulary) {
  auto tok = load([](GgufBuilder& b) {
    b.str("tokenizer.ggml.model", "llama");
    std::vector<std::string> tokens = {"<unk>",
                                       "<s>",
                                       "</s>",
                                       "<0x0A>",
                                       "\xE2\x96\x81",
                                       "a",
                                       "\xE2\x96\x81"
                                       "a"};
    b.str_array("tokenizer.ggml.tokens", tokens);
    b.i32_array("tokenizer.ggml.token_type", {2, 3, 3, 6, 1, 1, 1});
    b.f32_array("tokenizer.ggml.scores", {0, 0, 0, 0, -1, -2, -3});
    b.u32("tokenizer.ggml.bos_token_id", 1);
    b.u32("tokenizer.ggml.eos_token_id", 2);
    b.u32("tokenizer.ggml.unknown_token_id", 0);
  });
  ASSERT_TRUE(tok.is_ok()) << tok.error();
  EXPECT_TRUE(tok->add_bos_default());
  EXPECT_EQ(tok->encode("a\na", true, true), (std::vector<int32_t>{1, 6, 3, 5}));
  EXPECT_EQ(tok->decode(std::vector<int32_t>{1, 6, 3, 5}, true), "a\na");
  // 'z' has neither a token nor a byte token: unknown.
  EXPECT_EQ(tok->encode("z", false, true), (std::vector<int32_t>{4, 0}));
}

TEST(GgufTokenizer, MalformedMetadataGivesErrors) {
  struct Case {
    const char* name;
    std::function<void(GgufBuilder&)> fill;
  };
  const std::vector<Case> cases = {
      {"no tokenizer", [](GgufBuilder& b) { b.str("general.name", "x"); }},
      {"unknown model",
       [](GgufBuilder& b) {
         auto v = gpt2_vocab();
         write_gpt2(b, v);
         b.str("tokenizer.ggml.model", "bert");
       }},
      {"model of wrong type", [](GgufBuilder& b) { b.u32("tokenizer.ggml.model", 7); }},
      {"unknown pre-tokenizer",
       [](GgufBuilder& b) {
         auto v = gpt2_vocab();
         b.str("tokenizer.ggml.model", "gpt2");
         b.str("tokenizer.ggml.pre", "mystery");
         b.str_array("tokenizer.ggml.tokens", v.tokens);
         b.str_array("tokenizer.ggml.merges", v.merges);
       }},
      {"type count mismatch",
       [](GgufBuilder& b) {
         auto v = gpt2_vocab();
         v.types.pop_back();
         write_gpt2(b, v);
       }},
      {"bad type value",
       [](GgufBuilder& b) {
         auto v = gpt2_vocab();
         v.types[5] = 42;
         write_gpt2(b, v);
       }},
      {"merge names unknown token",
       [](GgufBuilder& b) {
         auto v = gpt2_vocab();
         v.merges.push_back("hello zz");
         write_gpt2(b, v);
       }},
      {"merge without space",
       [](GgufBuilder& b) {
         auto v = gpt2_vocab();
         v.merges.push_back("hello");
         write_gpt2(b, v);
       }},
      {"missing merges",
       [](GgufBuilder& b) {
         auto v = gpt2_vocab();
         b.str("tokenizer.ggml.model", "gpt2");
         b.str_array("tokenizer.ggml.tokens", v.tokens);
       }},
      {"bos out of range",
       [](GgufBuilder& b) {
         write_gpt2(b, gpt2_vocab());
         b.u32("tokenizer.ggml.bos_token_id", 1000000);
       }},
      {"sentencepiece without scores",
       [](GgufBuilder& b) {
         b.str("tokenizer.ggml.model", "llama");
         b.str_array("tokenizer.ggml.tokens", {"<unk>", "a"});
       }},
      {"scores count mismatch",
       [](GgufBuilder& b) {
         b.str("tokenizer.ggml.model", "llama");
         b.str_array("tokenizer.ggml.tokens", {"<unk>", "a"});
         b.f32_array("tokenizer.ggml.scores", {0});
       }},
      {"empty vocabulary",
       [](GgufBuilder& b) {
         b.str("tokenizer.ggml.model", "llama");
         b.str_array("tokenizer.ggml.tokens", {});
         b.f32_array("tokenizer.ggml.scores", {});
       }},
  };
  for (const auto& c : cases) {
    auto tok = load(c.fill);
    EXPECT_FALSE(tok.is_ok()) << c.name;
    if (!tok.is_ok()) {
      EXPECT_FALSE(tok.error().empty()) << c.name;
    }
  }
}

}  // namespace
}  // namespace carpool
