// Tokenizer::from_gguf: GGUF tokenizer.ggml.* metadata -> TokenizerSpec.
//
// tokenizer.ggml.model "gpt2" is byte-level BPE (merges required), "llama" SentencePiece-style
// BPE (merges derived from tokenizer.ggml.scores). tokenizer.ggml.pre names the pre-tokenizer.
#include <string>

#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

namespace carpool {
namespace {

Status err(const std::string& msg) {
  return Status::error("gguf tokenizer: " + msg);
}

Result<PreTokenizerKind> pre_tokenizer_for(std::string_view pre, bool* nfc) {
  *nfc = false;
  if (pre.empty() || pre == "default" || pre == "gpt2" || pre == "gpt-2" || pre == "mpt" ||
      pre == "olmo" || pre == "jais") {
    return PreTokenizerKind::kGpt2;
  }
  if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "command-r" ||
      pre == "codeshell" || pre == "exaone" || pre == "minerva-7b") {
    return PreTokenizerKind::kSmolLM;
  }
  if (pre == "llama3" || pre == "llama-bpe" || pre == "llama-v3" || pre == "dbrx" ||
      pre == "smaug-bpe") {
    return PreTokenizerKind::kLlama3;
  }
  if (pre == "qwen2" || pre == "deepseek-r1-qwen" || pre == "stablelm2") {
    *nfc = pre != "stablelm2";  // Qwen2's tokenizer.json normalizes to NFC
    return PreTokenizerKind::kQwen2;
  }
  return err("unsupported pre-tokenizer '" + std::string(pre) + "'");
}

// Reads an optional integer token id; -1 when absent.
Result<int32_t> optional_id(const GgufFile& gguf, std::string_view key) {
  if (gguf.find(key) == nullptr) return -1;
  auto v = gguf.get_int(key);
  if (!v) return v.status();
  if (*v < -1 || *v > INT32_MAX) return err(std::string(key) + " out of range");
  return static_cast<int32_t>(*v);
}

}  // namespace

Result<Tokenizer> Tokenizer::from_gguf(const GgufFile& gguf) {
  TokenizerSpec spec;
  auto model = gguf.get_string("tokenizer.ggml.model");
  if (!model) return model.status();
  bool sentencepiece = false;
  if (*model == "gpt2") {
    spec.model = TokenizerModel::kByteLevelBpe;
  } else if (*model == "llama") {
    spec.model = TokenizerModel::kSentencePieceBpe;
    sentencepiece = true;
  } else {
    return err("unsupported tokenizer model '" + std::string(*model) + "'");
  }

  auto tokens = gguf.get_string_array("tokenizer.ggml.tokens");
  if (!tokens) return tokens.status();
  const size_t n = tokens->size();
  spec.tokens.reserve(n);
  for (std::string_view t : *tokens) spec.tokens.emplace_back(t);

  spec.types.assign(n, TokenType::kNormal);
  if (gguf.find("tokenizer.ggml.token_type") != nullptr) {
    auto types = gguf.get_i32_array("tokenizer.ggml.token_type");
    if (!types) return types.status();
    if (types->size() != n) return err("token_type count != token count");
    for (size_t i = 0; i < n; ++i) {
      int32_t t = (*types)[i];
      if (t < 1 || t > 6)
        return err("bad token_type " + std::to_string(t) + " for token " + std::to_string(i));
      spec.types[i] = static_cast<TokenType>(t);
    }
  }

  if (sentencepiece) {
    spec.pre_tokenizer = PreTokenizerKind::kNone;
    spec.byte_fallback = true;
    auto scores = gguf.get_f32_array("tokenizer.ggml.scores");
    if (!scores) return scores.status();
    if (scores->size() != n) return err("scores count != token count");
    spec.scores = std::move(scores).value();
    bool prefix = true;
    if (gguf.find("tokenizer.ggml.add_space_prefix") != nullptr) {
      auto v = gguf.get_bool("tokenizer.ggml.add_space_prefix");
      if (!v) return v.status();
      prefix = *v;
    }
    spec.add_dummy_prefix = prefix;
    spec.strip_leading_space = prefix;
    spec.add_bos = true;
  } else {
    std::string_view pre;
    if (gguf.find("tokenizer.ggml.pre") != nullptr) {
      auto v = gguf.get_string("tokenizer.ggml.pre");
      if (!v) return v.status();
      pre = *v;
    }
    auto kind = pre_tokenizer_for(pre, &spec.nfc);
    if (!kind) return kind.status();
    spec.pre_tokenizer = *kind;
    spec.ignore_merges = spec.pre_tokenizer == PreTokenizerKind::kLlama3;
    auto merges = gguf.get_string_array("tokenizer.ggml.merges");
    if (!merges) return merges.status();
    spec.merges.reserve(merges->size());
    for (size_t i = 0; i < merges->size(); ++i) {
      std::string_view m = (*merges)[i];
      size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string_view::npos;
      if (sp == std::string_view::npos) return err("merge " + std::to_string(i) + " has no space");
      spec.merges.emplace_back(std::string(m.substr(0, sp)), std::string(m.substr(sp + 1)));
    }
  }

  auto assign = [&](std::string_view key, int32_t* out) -> Status {
    auto v = optional_id(gguf, key);
    if (!v) return v.status();
    *out = *v;
    return Status::ok();
  };
  CARPOOL_RETURN_IF_ERROR(assign("tokenizer.ggml.bos_token_id", &spec.bos_id));
  CARPOOL_RETURN_IF_ERROR(assign("tokenizer.ggml.eos_token_id", &spec.eos_id));
  CARPOOL_RETURN_IF_ERROR(assign("tokenizer.ggml.unknown_token_id", &spec.unk_id));
  // Byte-level BPE has no unknown token in use: a byte without a token is dropped, as llama.cpp
  // and the converted tokenizer.json (BPE with unk_token null) do. The id these files carry comes
  // from tokenizer_config.json (SmolLM2: <|endoftext|>, its end-of-text token, which would end
  // up in the middle of a prompt for bytes such as 0x04 that it has no token for).
  if (spec.model == TokenizerModel::kByteLevelBpe) spec.unk_id = -1;
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    int32_t id = -1;
    CARPOOL_RETURN_IF_ERROR(assign(key, &id));
    if (id >= 0) spec.extra_eog_ids.push_back(id);
  }
  if (gguf.find("tokenizer.ggml.add_bos_token") != nullptr) {
    auto v = gguf.get_bool("tokenizer.ggml.add_bos_token");
    if (!v) return v.status();
    spec.add_bos = *v;
  }
  if (gguf.find("tokenizer.chat_template") != nullptr) {
    auto v = gguf.get_string("tokenizer.chat_template");
    if (!v) return v.status();
    spec.chat_template = std::string(*v);
  }
  return from_spec(std::move(spec));
}

}  // namespace carpool
