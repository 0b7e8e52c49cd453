// Tokenizer: text <-> token ids for byte-level BPE (GPT-2, SmolLM2, Llama 3, Qwen2/3) and
// SentencePiece-style BPE with byte fallback (Llama 2, Mistral), loaded from GGUF metadata or a
// Hugging Face tokenizer folder (tokenizer.json + optional tokenizer_config.json).
//
// Behaviour follows Hugging Face `tokenizers` (the golden tests compare ids exactly):
//  - Added tokens are found in the raw text first, leftmost-longest (their lstrip/rstrip are
//    honoured; single_word and normalized=true are not: all are matched on the raw text). Special
//    ones (<s>,
//    <|im_end|>, GGUF control tokens) only when `parse_special` is true, which is what
//    `tokenizers` does by default; added tokens that are not special (Qwen's <think>, GGUF
//    user-defined tokens) always. With parse_special=false special-token text is encoded as
//    ordinary text.
//  - Each text segment between added tokens is normalized (NFC for Qwen2; for SentencePiece
//    models spaces become '▁' and, when the file asks for it, one '▁' is prepended to every
//    non-empty segment), pre-tokenized, and each word is BPE-merged on its own.
//  - encode() adds the BOS token only when add_bos is true and the tokenizer has one;
//    add_bos_default() is what the files ask for (tokenizer_config add_bos_token, the
//    tokenizer.json post-processor, GGUF tokenizer.ggml.add_bos_token).
//  - decode() returns the text the reference decoder gives: bytes joined and invalid UTF-8
//    replaced by U+FFFD (a run of SentencePiece byte tokens that is not valid UTF-8 gives one
//    U+FFFD per byte), and for SentencePiece one leading space removed. Ids outside the
//    vocabulary are skipped (a model's embedding table may be larger than its vocabulary).
//    Transformers' clean_up_tokenization_spaces is not applied. One known difference: with a
//    bare Metaspace decoder the reference prints <0xXX> tokens as text; we decode their bytes.
//
// Malformed files (bad ids, merges naming unknown tokens, absurd counts) give an error Status.
// A Tokenizer is immutable after loading; all const methods are thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer_spec.h"
#include "util/status.h"

namespace carpool {

class GgufFile;

class Tokenizer {
 public:
  // Reads tokenizer.ggml.* and tokenizer.chat_template from GGUF metadata.
  static Result<Tokenizer> from_gguf(const GgufFile& gguf);
  // Reads `dir`/tokenizer.json and, when present, tokenizer_config.json (bos/eos, add_bos,
  // chat_template), generation_config.json (eos_token_id: more end-of-generation ids) and
  // chat_template.jinja (the template, when tokenizer_config.json has none).
  static Result<Tokenizer> from_hf_dir(const std::string& dir);
  // Parses tokenizer.json text (and tokenizer_config.json text, may be empty).
  static Result<Tokenizer> from_hf_json(std::string_view tokenizer_json,
                                        std::string_view tokenizer_config_json);
  // Validates `spec` and builds the lookup tables.
  static Result<Tokenizer> from_spec(TokenizerSpec spec);

  // Text -> ids. `text` may hold any bytes; invalid UTF-8 is encoded byte by byte.
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const;

  // Ids -> text, like the reference decoder (see above). skip_special drops control tokens.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  // The bytes token `id` stands for (may be a fragment of a UTF-8 character; for SentencePiece
  // '▁' is already a space). Empty for ids out of range.
  std::string_view token_to_piece(int32_t id) const;
  // The token's text as stored in the file ("Ġthe", "▁the", "<0x0A>", "<|im_end|>").
  std::string_view token_text(int32_t id) const;
  // Id of a token by its stored text, or -1.
  int32_t find_token(std::string_view text) const;

  int32_t vocab_size() const { return static_cast<int32_t>(spec_.tokens.size()); }
  int32_t bos_id() const { return spec_.bos_id; }  // -1 when none
  int32_t eos_id() const { return spec_.eos_id; }  // -1 when none
  bool add_bos_default() const { return spec_.add_bos; }
  // Ids that end generation: eos plus the end-of-turn tokens present in the vocabulary
  // (<|eot_id|>, <|eom_id|>, <|im_end|>, <|endoftext|>, <|end_of_text|>, <end_of_turn>, ...).
  const std::vector<int32_t>& end_of_generation_ids() const { return eog_ids_; }
  bool is_end_of_generation(int32_t id) const;
  const std::string& chat_template() const { return spec_.chat_template; }
  bool is_special(int32_t id) const;  // control tokens (not user-defined added tokens)
  TokenType token_type(int32_t id) const;
  TokenizerModel model() const { return spec_.model; }
  PreTokenizerKind pre_tokenizer() const { return spec_.pre_tokenizer; }
  // Applies the decoder's rule for the start of the text to the first non-empty piece
  // (SentencePiece: drop the space the dummy prefix stands for).
  void adjust_first_piece(std::string& piece) const;

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

 private:
  Tokenizer();
  struct AddedTokenIndex;  // the added-token matcher, defined in tokenizer.cpp

  // at_start: the segment begins the input text.
  void encode_segment(std::string_view text, bool at_start, std::vector<int32_t>& out) const;
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  TokenizerSpec spec_;
  std::vector<std::string> pieces_;                   // id -> decoded bytes
  std::unordered_map<std::string, int32_t> lookup_;   // BPE key -> id (normal/byte/unk tokens)
  std::unordered_map<std::string, int32_t> by_text_;  // stored text -> id
  int32_t byte_ids_[256];  // byte-level: id of each single byte; SentencePiece: <0xXX> ids
  BpeMerges merges_;
  std::unique_ptr<AddedTokenIndex> added_;
  std::vector<int32_t> eog_ids_;
};

}  // namespace carpool
