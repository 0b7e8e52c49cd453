// Unit tests: hand-built vocabularies, the stream decoder on split characters, loaders on
// minimal folders and on malformed files, and encoding cost on long inputs.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tokenizer/byte_level.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/unicode.h"

namespace carpool {
namespace {

namespace fs = std::filesystem;

std::string data_dir(const std::string& name) {
  const char* env = std::getenv("CARPOOL_SOURCE_DIR");
  return std::string(env != nullptr ? env : CARPOOL_SOURCE_DIR) + "/../shared/data/tokenizers/" +
         name;
}

// A byte-level vocabulary: the 256 bytes, then the merges' results.
TokenizerSpec tiny_byte_level_spec() {
  TokenizerSpec spec;
  spec.model = TokenizerModel::kByteLevelBpe;
  spec.pre_tokenizer = PreTokenizerKind::kGpt2;
  for (int b = 0; b < 256; ++b) spec.tokens.push_back(byte_level_encode(std::string(1, char(b))));
  auto add = [&](std::string bytes) { spec.tokens.push_back(byte_level_encode(bytes)); };
  add("ab");   // 256
  add("abc");  // 257
  add(" ab");  // 258
  spec.merges = {{"a", "b"}, {"ab", "c"}, {byte_level_encode(" "), "ab"}};
  spec.tokens.push_back("<|end|>");  // 259
  spec.types.assign(spec.tokens.size(), TokenType::kNormal);
  spec.types[259] = TokenType::kControl;
  spec.eos_id = 259;
  return spec;
}

TEST(Tokenizer, ByteLevelMergesAndSpecialTokens) {
  auto tok = Tokenizer::from_spec(tiny_byte_level_spec());
  ASSERT_TRUE(tok.is_ok()) << tok.error();
  EXPECT_EQ(tok->encode("abc ab", false, true), (std::vector<int32_t>{257, 258}));
  EXPECT_EQ(tok->encode("abc<|end|>", false, true), (std::vector<int32_t>{257, 259}));
  // Not parsed: the text is encoded byte by byte ('<' '|' ...).
  std::vector<int32_t> plain = tok->encode("<|end|>", false, false);
  EXPECT_EQ(plain.size(), 7u);
  EXPECT_EQ(plain[0], '<');
  EXPECT_EQ(tok->decode(plain), "<|end|>");
  EXPECT_EQ(tok->decode(std::vector<int32_t>{257, 259}), "abc<|end|>");
  EXPECT_EQ(tok->decode(std::vector<int32_t>{257, 259}, /*skip_special=*/true), "abc");
  EXPECT_TRUE(tok->is_special(259));
  EXPECT_FALSE(tok->is_special(257));
  EXPECT_TRUE(tok->is_end_of_generation(259));
  EXPECT_EQ(tok->token_to_piece(258), " ab");
  EXPECT_EQ(tok->token_to_piece(9999), "");
  // Ids outside the vocabulary are skipped.
  EXPECT_EQ(tok->decode(std::vector<int32_t>{-1, 257, 100000}), "abc");
}

// Added tokens: the longest one that the text continues with wins; special (control) ones only
// when special tokens are parsed, user-defined ones always; overlapping prefixes and bytes above
// 0x7f sort and match as bytes.
TEST(Tokenizer, AddedTokensMatchLongestAllowed) {
  TokenizerSpec spec = tiny_byte_level_spec();
  auto add = [&](const std::string& text, TokenType type) {
    spec.tokens.push_back(text);
    spec.types.push_back(type);
    return static_cast<int32_t>(spec.tokens.size() - 1);
  };
  const int32_t a = add("<a>", TokenType::kUserDefined);
  const int32_t ab = add("<a><b>", TokenType::kControl);
  const int32_t abc = add("<a><b><c>", TokenType::kUserDefined);
  const int32_t e = add("\xc3\xa9!", TokenType::kUserDefined);
  auto tok = Tokenizer::from_spec(spec);
  ASSERT_TRUE(tok.is_ok()) << tok.error();
  EXPECT_EQ(tok->encode("<a><b><c>", false, true), (std::vector<int32_t>{abc}));
  EXPECT_EQ(tok->encode("<a><b>x", false, true), (std::vector<int32_t>{ab, 'x'}));
  // Without special tokens parsed, <a><b> is not a candidate: <a> then the bytes of <b>.
  std::vector<int32_t> plain = tok->encode("<a><b>x", false, false);
  ASSERT_FALSE(plain.empty());
  EXPECT_EQ(plain.front(), a);
  EXPECT_EQ(tok->decode(plain), "<a><b>x");
  EXPECT_EQ(tok->encode("<a><b><c", false, true).front(), ab);
  EXPECT_EQ(tok->encode("\xc3\xa9!\xc3\xa9!", false, true), (std::vector<int32_t>{e, e}));
}

TEST(Tokenizer, InvalidUtf8InputEncodesByteByByte) {
  auto tok = Tokenizer::from_spec(tiny_byte_level_spec());
  ASSERT_TRUE(tok.is_ok());
  std::string bad = "a\xFF\xC3 b";
  std::vector<int32_t> ids = tok->encode(bad, false, true);
  std::string bytes;
  for (int32_t id : ids) bytes += tok->token_to_piece(id);
  EXPECT_EQ(bytes, bad);
}

TEST(StreamDecoder, HoldsBackSplitCharacters) {
  auto tok = Tokenizer::from_spec(tiny_byte_level_spec());
  ASSERT_TRUE(tok.is_ok());
  StreamDecoder dec(*tok);
  // "é" = C3 A9, "😀" = F0 9F 98 80, one byte token each.
  EXPECT_EQ(dec.push('x'), "x");
  EXPECT_EQ(dec.push(0xC3), "");
  EXPECT_EQ(dec.pending_bytes(), 1u);
  EXPECT_EQ(dec.push(0xA9), "\xC3\xA9");
  EXPECT_EQ(dec.push(0xF0), "");
  EXPECT_EQ(dec.push(0x9F), "");
  EXPECT_EQ(dec.push(0x98), "");
  EXPECT_EQ(dec.push(0x80), "\xF0\x9F\x98\x80");
  EXPECT_EQ(dec.pending_bytes(), 0u);
  // A byte that cannot continue the pending sequence: U+FFFD, then the new text.
  EXPECT_EQ(dec.push(0xE2), "");
  EXPECT_EQ(dec.push('a'),
            "\xEF\xBF\xBD"
            "a");
  // A stray continuation byte is invalid at once.
  EXPECT_EQ(dec.push(0x80), "\xEF\xBF\xBD");
  // An unfinished sequence at the end becomes U+FFFD.
  EXPECT_EQ(dec.push(0xF0), "");
  EXPECT_EQ(dec.finish(), "\xEF\xBF\xBD");
  EXPECT_EQ(dec.finish(), "");
}

TEST(StreamDecoder, RealTokenizersNeverEmitBrokenUtf8) {
  for (const char* name : {"llama3", "llama2", "qwen3"}) {
    auto tok = Tokenizer::from_hf_dir(data_dir(name));
    ASSERT_TRUE(tok.is_ok()) << name << ": " << tok.error();
    const std::string text =
        "Emoji 🍕👨‍👩‍👧 and 漢字 and ﷽ and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 — done";
    std::vector<int32_t> ids = tok->encode(text, false, true);
    StreamDecoder dec(*tok);
    std::string streamed;
    int held = 0;
    for (int32_t id : ids) {
      std::string part = dec.push(id);
      EXPECT_TRUE(unicode::is_valid_utf8(part)) << name;
      if (part.empty()) ++held;
      streamed += part;
    }
    streamed += dec.finish();
    EXPECT_EQ(streamed, tok->decode(ids)) << name;
    EXPECT_EQ(streamed, text) << name;
    EXPECT_GT(held, 0) << name << ": expected some characters split across tokens";
  }
}

TEST(StreamDecoder, SentencePieceDropsOnlyTheFirstLeadingSpace) {
  auto tok = Tokenizer::from_hf_dir(data_dir("llama2"));
  ASSERT_TRUE(tok.is_ok()) << tok.error();
  std::vector<int32_t> ids = tok->encode("  two leading", false, true);
  EXPECT_EQ(tok->decode(ids), "  two leading");
  StreamDecoder dec(*tok);
  std::string s;
  for (int32_t id : ids) s += dec.push(id);
  EXPECT_EQ(s + dec.finish(), "  two leading");
}

TEST(Unicode, NfcComposes) {
  EXPECT_EQ(unicode::nfc("cafe\u0301"), "caf\u00e9");
  EXPECT_EQ(unicode::nfc("\u1100\u1161\u11a8"), "\uac01");
  EXPECT_EQ(unicode::nfc("o\u0308\u0304"), "\u022b");  // ȫ
  EXPECT_EQ(unicode::nfc("a\u0323\u0302"), "\u1ead");  // ậ: reordered marks compose
  EXPECT_EQ(unicode::nfc("\u212b"), "\u00c5");         // Angstrom sign -> Å
  EXPECT_EQ(unicode::nfc("plain ascii"), "plain ascii");
  EXPECT_EQ(unicode::nfc("x\xFFy\u0301"), "x\xFF\u00fd");  // invalid byte passes through
}

TEST(Unicode, Lossy) {
  EXPECT_EQ(unicode::utf8_lossy("a\xF0\x9F\x98"), "a\xEF\xBF\xBD");
  EXPECT_EQ(unicode::utf8_lossy("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(unicode::utf8_complete_prefix("ab\xE2\x82"), 2u);
  EXPECT_EQ(unicode::utf8_complete_prefix("ab\xE2\x82\xAC"), 5u);
}

TEST(PreTokenizer, Llama3DigitsAndNewlines) {
  std::vector<std::string_view> w;
  pre_tokenize(PreTokenizerKind::kLlama3, "ab 12345\n\n  x", &w);
  EXPECT_EQ(w, (std::vector<std::string_view>{"ab", " ", "123", "45", "\n\n", " ", " x"}));
  w.clear();
  pre_tokenize(PreTokenizerKind::kSmolLM, "ab 12", &w);
  EXPECT_EQ(w, (std::vector<std::string_view>{"ab", " ", "1", "2"}));
}

// --- loaders ---

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("carpool_tok_test_" +
             std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string path() const { return path_.string(); }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(path_ / name, std::ios::binary) << text;
  }

 private:
  fs::path path_;
};

TEST(HfLoader, FolderWithOnlyTokenizerFiles) {
  TempDir dir;
  fs::copy_file(data_dir("qwen3") + "/tokenizer.json", dir.path() + "/tokenizer.json");
  fs::copy_file(data_dir("qwen3") + "/tokenizer_config.json",
                dir.path() + "/tokenizer_config.json");
  auto tok = Tokenizer::from_hf_dir(dir.path());
  ASSERT_TRUE(tok.is_ok()) << tok.error();
  EXPECT_EQ(tok->eos_id(), tok->find_token("<|im_end|>"));
  EXPECT_TRUE(tok->is_end_of_generation(tok->find_token("<|im_end|>")));
  EXPECT_TRUE(tok->is_end_of_generation(tok->find_token("<|endoftext|>")));
  EXPECT_FALSE(tok->chat_template().empty());
  EXPECT_FALSE(tok->add_bos_default());
  // <think> is an added token that is not special: parsed even when specials are not.
  int32_t think = tok->find_token("<think>");
  ASSERT_GE(think, 0);
  EXPECT_FALSE(tok->is_special(think));
  EXPECT_EQ(tok->encode("<think>", false, false), (std::vector<int32_t>{think}));

  // Without tokenizer_config.json it still loads, with no template.
  fs::remove(dir.path() + "/tokenizer_config.json");
  auto bare = Tokenizer::from_hf_dir(dir.path());
  ASSERT_TRUE(bare.is_ok()) << bare.error();
  EXPECT_TRUE(bare->chat_template().empty());
}

TEST(HfLoader, SideFilesGiveTemplateAndEndIds) {
  TempDir dir;
  fs::copy_file(data_dir("llama3") + "/tokenizer.json", dir.path() + "/tokenizer.json");
  dir.write("tokenizer_config.json", R"({"bos_token": "<|begin_of_text|>"})");
  dir.write("generation_config.json", R"({"eos_token_id": [128001, 128009]})");
  dir.write("chat_template.jinja", "{{ messages }}");
  auto tok = Tokenizer::from_hf_dir(dir.path());
  ASSERT_TRUE(tok.is_ok()) << tok.error();
  EXPECT_EQ(tok->chat_template(), "{{ messages }}");
  EXPECT_EQ(tok->bos_id(), 128000);
  EXPECT_TRUE(tok->is_end_of_generation(128009));
  EXPECT_TRUE(tok->is_end_of_generation(128001));
  EXPECT_FALSE(tok->is_end_of_generation(128000));

  dir.write("generation_config.json", R"({"eos_token_id": [5000000]})");
  auto bad = Tokenizer::from_hf_dir(dir.path());
  EXPECT_FALSE(bad.is_ok());
  dir.write("generation_config.json", "{not json");
  EXPECT_FALSE(Tokenizer::from_hf_dir(dir.path()).is_ok());
}

TEST(HfLoader, Llama3EndOfGenerationAndBos) {
  auto tok = Tokenizer::from_hf_dir(data_dir("llama3"));
  ASSERT_TRUE(tok.is_ok()) << tok.error();
  EXPECT_EQ(tok->bos_id(), 128000);
  EXPECT_EQ(tok->eos_id(), 128001);
  EXPECT_TRUE(tok->is_end_of_generation(128009));  // <|eot_id|>
  EXPECT_EQ(tok->encode("hi", true, true).front(), 128000);
}

TEST(HfLoader, MissingFolderIsAnError) {
  auto tok = Tokenizer::from_hf_dir("/nonexistent/carpool/tokenizer");
  ASSERT_FALSE(tok.is_ok());
  EXPECT_NE(tok.error().find("tokenizer.json"), std::string::npos);
}

std::string minimal_json(const std::string& vocab, const std::string& merges,
                         const std::string& added = "[]") {
  return R"({"added_tokens":)" + added +
         R"(,"normalizer":null,"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,)"
         R"("use_regex":true},"decoder":{"type":"ByteLevel"},"model":{"type":"BPE","vocab":)" +
         vocab + R"(,"merges":)" + merges + "}}";
}

TEST(HfLoader, MinimalByteLevelJson) {
  auto tok = Tokenizer::from_hf_json(minimal_json(R"({"a":0,"b":1,"ab":2})", R"(["a b"])"), "");
  ASSERT_TRUE(tok.is_ok()) << tok.error();
  EXPECT_EQ(tok->encode("abab", false, true), (std::vector<int32_t>{2, 2}));
}

TEST(HfLoader, MalformedFilesGiveErrors) {
  struct Case {
    const char* name;
    std::string json;
    const char* config = "";
  };
  const std::vector<Case> cases = {
      {"not json", "{\"model\": "},
      {"not an object", "[1,2,3]"},
      {"no model", R"({"added_tokens":[]})"},
      {"unigram", R"({"model":{"type":"Unigram","vocab":[]}})"},
      {"id out of range", minimal_json(R"({"a":0,"b":7})", "[]")},
      {"negative id", minimal_json(R"({"a":0,"b":-1})", "[]")},
      {"huge id", minimal_json(R"({"a":0,"b":99999999999999})", "[]")},
      {"id not a number", minimal_json(R"({"a":0,"b":"1"})", "[]")},
      {"duplicate id", minimal_json(R"({"a":0,"b":0})", "[]")},
      {"merge of unknown token", minimal_json(R"({"a":0,"b":1})", R"(["a c"])")},
      {"merge result missing", minimal_json(R"({"a":0,"b":1})", R"(["a b"])")},
      {"merge not a pair", minimal_json(R"({"a":0,"b":1,"ab":2})", R"(["a"])")},
      {"merge wrong type", minimal_json(R"({"a":0,"b":1,"ab":2})", R"([42])")},
      {"added token bad id", minimal_json(R"({"a":0})", "[]", R"([{"id":5000000,"content":"x"}])")},
      {"added token no content", minimal_json(R"({"a":0})", "[]", R"([{"id":0}])")},
      {"empty vocab", minimal_json("{}", "[]")},
      {"bad config", minimal_json(R"({"a":0})", "[]"), "{oops"},
      {"unknown pre-tokenizer",
       R"({"pre_tokenizer":{"type":"Whitespace"},"model":{"type":"BPE","vocab":{"a":0},"merges":[]}})"},
      {"unknown split pattern",
       R"({"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\w+"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","use_regex":false}]},"model":{"type":"BPE","vocab":{"a":0},"merges":[]}})"},
  };
  for (const auto& c : cases) {
    auto tok = Tokenizer::from_hf_json(c.json, c.config);
    EXPECT_FALSE(tok.is_ok()) << c.name;
    if (!tok.is_ok()) {
      EXPECT_FALSE(tok.error().empty()) << c.name;
      EXPECT_EQ(tok.error().find('\n'), std::string::npos) << c.name;
    }
  }
}

TEST(FromSpec, RejectsInconsistentSpecs) {
  TokenizerSpec spec = tiny_byte_level_spec();
  spec.bos_id = 100000;
  EXPECT_FALSE(Tokenizer::from_spec(spec).is_ok());
  spec = tiny_byte_level_spec();
  spec.types.pop_back();
  EXPECT_FALSE(Tokenizer::from_spec(spec).is_ok());
  spec = tiny_byte_level_spec();
  spec.types[3] = static_cast<TokenType>(42);
  EXPECT_FALSE(Tokenizer::from_spec(spec).is_ok());
  spec = tiny_byte_level_spec();
  spec.scores = {1.0f};
  EXPECT_FALSE(Tokenizer::from_spec(spec).is_ok());
}

// SentencePiece-style merges derived from scores (the GGUF "llama" tokenizer).
TEST(FromSpec, SentencePieceScoresAndByteFallback) {
  TokenizerSpec spec;
  spec.model = TokenizerModel::kSentencePieceBpe;
  spec.pre_tokenizer = PreTokenizerKind::kNone;
  spec.add_dummy_prefix = true;
  spec.strip_leading_space = true;
  spec.byte_fallback = true;
  spec.tokens = {"<unk>", "<s>", "</s>"};
  spec.types = {TokenType::kUnknown, TokenType::kControl, TokenType::kControl};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    spec.tokens.push_back(name);
    spec.types.push_back(TokenType::kByte);
  }
  auto add = [&](const std::string& t) {
    spec.tokens.push_back(t);
    spec.types.push_back(TokenType::kNormal);
    return static_cast<int32_t>(spec.tokens.size() - 1);
  };
  int32_t marker = add("\xE2\x96\x81");
  int32_t h = add("h"), i = add("i"), hi = add("hi"), mhi = add("\xE2\x96\x81hi");
  spec.scores.assign(spec.tokens.size(), 0.0f);
  spec.scores[hi] = -1.0f;
  spec.scores[mhi] = -2.0f;
  spec.bos_id = 1;
  spec.unk_id = 0;
  spec.add_bos = true;
  auto tok = Tokenizer::from_spec(spec);
  ASSERT_TRUE(tok.is_ok()) << tok.error();
  (void)h;
  (void)i;
  // "hi é" -> ▁hi ▁ <0xC3> <0xA9>
  std::vector<int32_t> ids = tok->encode("hi \xC3\xA9", true, true);
  EXPECT_EQ(ids, (std::vector<int32_t>{1, mhi, marker, 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(tok->decode(ids, true), "hi \xC3\xA9");
  EXPECT_EQ(tok->decode(std::vector<int32_t>{mhi, 3 + 0xC3}), "hi\xEF\xBF\xBD");
}

// --- cost on long inputs: linear-ish, not quadratic ---

TEST(Performance, LongInputsEncodeQuickly) {
  auto spm = Tokenizer::from_hf_dir(data_dir("llama2"));
  auto bl = Tokenizer::from_hf_dir(data_dir("llama3"));
  ASSERT_TRUE(spm.is_ok() && bl.is_ok());
  // One word of 300k characters for each model: SentencePiece has no pre-tokenizer, and a
  // letter run is one Llama 3 word. A quadratic merge loop would take minutes here.
  std::string prose;
  while (prose.size() < 300000) prose += "lorem ipsum dolor sit amet, consectetur adipiscing ";
  std::string one_word(300000, 'x');
  for (size_t k = 0; k < one_word.size(); k += 7) one_word[k] = 'y';
  auto start = std::chrono::steady_clock::now();
  EXPECT_GT(spm->encode(prose, false, true).size(), 10000u);
  EXPECT_GT(bl->encode(one_word, false, true).size(), 1000u);
  EXPECT_GT(bl->encode(prose, false, true).size(), 10000u);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 20.0);
}

}  // namespace
}  // namespace carpool
