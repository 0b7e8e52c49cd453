// TokenizerSpec: everything a tokenizer file says, as plain data, before validation.
//
// The loaders (tokenizer.json in hf_loader.cpp, GGUF metadata in gguf_loader.cpp) only translate
// their file format into this struct; Tokenizer::from_spec validates it (ids in range, merges that
// name known tokens) and builds the lookup tables. Tests can build small specs by hand.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/pretokenizer.h"

namespace carpool {

enum class TokenizerModel {
  // GPT-2 style: text is pre-tokenized, each word's bytes are the initial symbols, and token
  // texts are stored with the GPT-2 byte-to-character mapping (space as 'Ġ', ...).
  kByteLevelBpe,
  // SentencePiece style: spaces become U+2581 ('▁'), the initial symbols are characters, and
  // characters missing from the vocabulary fall back to <0xXX> byte tokens.
  kSentencePieceBpe,
};

// Same numbering as GGUF's tokenizer.ggml.token_type.
enum class TokenType : uint8_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,      // special: <s>, <|im_end|>, ...; parsed in text only when asked to
  kUserDefined = 4,  // added token that is not special: always parsed in text
  kUnused = 5,
  kByte = 6,  // <0xXX> byte-fallback token
};

struct AddedTokenOptions {
  bool lstrip = false;  // the match swallows whitespace on its left
  bool rstrip = false;  // ... and on its right
};

struct TokenizerSpec {
  TokenizerModel model = TokenizerModel::kByteLevelBpe;
  PreTokenizerKind pre_tokenizer = PreTokenizerKind::kGpt2;
  bool nfc = false;  // NFC-normalize text between added tokens (Qwen2)
  // SentencePiece: put a '▁' before text segments (the segments between added tokens).
  bool add_dummy_prefix = false;
  bool dummy_prefix_first_only = false;    // only before the segment that starts the input
  bool dummy_prefix_unless_space = false;  // not before a segment that starts with a space
  // SentencePiece: each '▁' starts a new word (Metaspace split=true); otherwise a segment is one
  // word.
  bool split_on_space_marker = false;
  // SentencePiece decode: drop one leading space of the text (the Strip decoder) ...
  bool strip_leading_space = false;
  // ... or every space of the first token (the Metaspace decoder).
  bool strip_first_token_spaces = false;
  bool ignore_merges = false;  // a word that is itself a vocabulary entry is taken whole
  bool byte_fallback = false;  // SentencePiece: unknown characters become <0xXX> tokens
  bool fuse_unk = false;       // consecutive unknown characters give one unk token

  // id -> token text as the file stores it. Empty strings are allowed for unused ids.
  std::vector<std::string> tokens;
  std::vector<TokenType> types;                  // same length as tokens
  std::vector<AddedTokenOptions> added_options;  // same length as tokens, or empty

  // Merges in rank order (first = applied first), as pairs of token texts. When empty and
  // `scores` is set (SentencePiece GGUF), merges are derived from the scores: any two tokens
  // whose concatenation is a normal token merge, the higher the result's score the earlier.
  std::vector<std::pair<std::string, std::string>> merges;
  std::vector<float> scores;  // empty or same length as tokens

  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  std::vector<int32_t> extra_eog_ids;  // eot/eom ids named by the file, if any
  bool add_bos = false;
  std::string chat_template;
};

}  // namespace carpool
