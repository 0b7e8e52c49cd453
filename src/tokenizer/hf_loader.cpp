// Tokenizer::from_hf_json / from_hf_dir: Hugging Face tokenizer.json (+ tokenizer_config.json)
// -> TokenizerSpec. Only the configurations the supported model families publish are accepted;
// anything else is an "unsupported" error rather than a silently different tokenization.
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "tokenizer/tokenizer.h"

namespace carpool {
namespace {

using nlohmann::json;

constexpr size_t kMaxFileBytes = size_t{512} << 20;
constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";

// The Split patterns of the published byte-level tokenizers.
constexpr std::string_view kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr std::string_view kQwen2Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

Status err(const std::string& msg) {
  return Status::error("tokenizer.json: " + msg);
}

std::string type_of(const json& j) {
  if (!j.is_object()) return "";
  auto it = j.find("type");
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

bool get_bool(const json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

std::string get_string(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

// A token named in tokenizer_config.json: a string or {"content": ...}.
std::string token_content(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object()) return get_string(j, "content");
  return "";
}

Status parse_normalizer(const json& j, TokenizerSpec& spec, bool* sentencepiece) {
  if (j.is_null()) return Status::ok();
  std::string type = type_of(j);
  std::vector<json> steps;
  if (type == "Sequence" && j.contains("normalizers") && j["normalizers"].is_array()) {
    for (const auto& s : j["normalizers"]) steps.push_back(s);
  } else {
    steps.push_back(j);
  }
  for (const auto& s : steps) {
    std::string t = type_of(s);
    if (t == "NFC") {
      spec.nfc = true;
    } else if (t == "Prepend" && get_string(s, "prepend") == kSpaceMarker) {
      spec.add_dummy_prefix = true;
    } else if (t == "Replace" && s.contains("pattern") && s["pattern"].is_object() &&
               get_string(s["pattern"], "String") == " " &&
               get_string(s, "content") == kSpaceMarker) {
      *sentencepiece = true;
    } else {
      return err("unsupported normalizer '" + t + "'");
    }
  }
  return Status::ok();
}

// Metaspace's prepend scheme: "always", "first" or "never" (older files: add_prefix_space).
std::string metaspace_scheme(const json& s) {
  std::string scheme = get_string(s, "prepend_scheme");
  if (scheme.empty()) scheme = get_bool(s, "add_prefix_space", true) ? "always" : "never";
  return scheme;
}

Status parse_pre_tokenizer(const json& j, TokenizerSpec& spec, bool* byte_level, bool* metaspace) {
  *byte_level = false;
  *metaspace = false;
  spec.pre_tokenizer = PreTokenizerKind::kNone;
  if (j.is_null()) return Status::ok();
  std::vector<json> steps;
  if (type_of(j) == "Sequence" && j.contains("pretokenizers") && j["pretokenizers"].is_array()) {
    for (const auto& s : j["pretokenizers"]) steps.push_back(s);
  } else {
    steps.push_back(j);
  }
  std::string split_pattern;
  bool digits = false;
  for (const auto& s : steps) {
    std::string t = type_of(s);
    if (t == "ByteLevel") {
      if (get_bool(s, "add_prefix_space", false))
        return err("ByteLevel add_prefix_space unsupported");
      *byte_level = true;
      if (get_bool(s, "use_regex", true)) {
        if (!split_pattern.empty()) return err("unsupported pre-tokenizer sequence");
        spec.pre_tokenizer = digits ? PreTokenizerKind::kSmolLM : PreTokenizerKind::kGpt2;
      }
    } else if (t == "Split") {
      if (!s.contains("pattern") || !s["pattern"].is_object() ||
          get_string(s, "behavior") != "Isolated" || get_bool(s, "invert", false)) {
        return err("unsupported Split pre-tokenizer");
      }
      split_pattern = get_string(s["pattern"], "Regex");
      if (split_pattern == kLlama3Pattern) {
        spec.pre_tokenizer = PreTokenizerKind::kLlama3;
      } else if (split_pattern == kQwen2Pattern) {
        spec.pre_tokenizer = PreTokenizerKind::kQwen2;
      } else {
        return err("unsupported Split pattern '" + split_pattern.substr(0, 80) + "'");
      }
    } else if (t == "Digits" && get_bool(s, "individual_digits", false)) {
      digits = true;
    } else if (t == "Metaspace" && steps.size() == 1 &&
               get_string(s, "replacement") == kSpaceMarker) {
      std::string scheme = metaspace_scheme(s);
      if (scheme != "always" && scheme != "first" && scheme != "never") {
        return err("unsupported Metaspace prepend_scheme '" + scheme + "'");
      }
      *metaspace = true;
      spec.add_dummy_prefix = scheme != "never";
      spec.dummy_prefix_first_only = scheme == "first";
      spec.dummy_prefix_unless_space = true;
      spec.split_on_space_marker = get_bool(s, "split", true);
    } else {
      return err("unsupported pre-tokenizer '" + t + "'");
    }
  }
  if (digits && spec.pre_tokenizer != PreTokenizerKind::kSmolLM) {
    return err("unsupported pre-tokenizer sequence with Digits");
  }
  return Status::ok();
}

Status parse_decoder(const json& j, TokenizerSpec& spec) {
  if (j.is_null()) return Status::ok();
  std::vector<json> steps;
  if (type_of(j) == "Sequence" && j.contains("decoders") && j["decoders"].is_array()) {
    for (const auto& s : j["decoders"]) steps.push_back(s);
  } else {
    steps.push_back(j);
  }
  for (const auto& s : steps) {
    std::string t = type_of(s);
    if (t == "Strip") {
      auto start = s.find("start");
      if (get_string(s, "content") == " " && start != s.end() && start->is_number_integer() &&
          start->get<int64_t>() >= 1) {
        spec.strip_leading_space = true;
      }
    } else if (t == "Metaspace") {
      spec.strip_first_token_spaces = metaspace_scheme(s) != "never";
    } else if (t != "ByteLevel" && t != "Replace" && t != "ByteFallback" && t != "Fuse") {
      return err("unsupported decoder '" + t + "'");
    }
  }
  return Status::ok();
}

Status parse_merges(const json& merges, TokenizerSpec& spec) {
  if (!merges.is_array()) return err("model.merges must be an array");
  spec.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      size_t sp = s.find(' ', 1);
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        return err("merge " + std::to_string(i) + " is not two tokens");
      }
      spec.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      spec.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      return err("merge " + std::to_string(i) + " is not two tokens");
    }
  }
  return Status::ok();
}

Result<TokenizerSpec> parse(const json& root, const json* config) {
  TokenizerSpec spec;
  if (!root.is_object()) return err("not a JSON object");
  auto model_it = root.find("model");
  if (model_it == root.end() || !model_it->is_object()) return err("missing model");
  const json& model = *model_it;
  std::string model_type = type_of(model);
  if (model_type != "BPE" && !(model_type.empty() && model.contains("merges"))) {
    return err("unsupported model type '" + model_type + "' (only BPE)");
  }
  if (!get_string(model, "continuing_subword_prefix").empty() ||
      !get_string(model, "end_of_word_suffix").empty()) {
    return err("BPE subword prefixes/suffixes are unsupported");
  }
  if (model.contains("dropout") && model["dropout"].is_number() &&
      model["dropout"].get<double>() > 0.0) {
    return err("BPE dropout is unsupported");
  }
  spec.byte_fallback = get_bool(model, "byte_fallback", false);
  spec.fuse_unk = get_bool(model, "fuse_unk", false);
  spec.ignore_merges = get_bool(model, "ignore_merges", false);

  // Vocabulary and added tokens.
  auto vocab_it = model.find("vocab");
  if (vocab_it == model.end() || !vocab_it->is_object())
    return err("model.vocab must be an object");
  const json& vocab = *vocab_it;
  const json empty_array = json::array();
  auto added_it = root.find("added_tokens");
  const json& added = added_it != root.end() && added_it->is_array() ? *added_it : empty_array;
  const uint64_t limit = vocab.size() + added.size();
  int64_t max_id = -1;
  auto check_id = [&](const json& v, const std::string& what) -> Result<int64_t> {
    if (!v.is_number_integer()) return err(what + ": id is not an integer");
    int64_t id = v.get<int64_t>();
    if (id < 0 || static_cast<uint64_t>(id) >= limit) {
      return err(what + ": id " + std::to_string(id) + " out of range");
    }
    max_id = std::max(max_id, id);
    return id;
  };
  std::vector<std::pair<int64_t, std::string>> entries;
  entries.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    auto id = check_id(it.value(), "vocab entry '" + it.key().substr(0, 40) + "'");
    if (!id) return id.status();
    entries.emplace_back(*id, it.key());
  }
  struct Added {
    int64_t id;
    std::string content;
    bool special;
    AddedTokenOptions options;
  };
  std::vector<Added> added_tokens;
  for (const auto& a : added) {
    if (!a.is_object() || !a.contains("id") || !a.contains("content") ||
        !a["content"].is_string()) {
      return err("malformed added token");
    }
    auto id = check_id(a["id"], "added token");
    if (!id) return id.status();
    added_tokens.push_back({*id,
                            a["content"].get<std::string>(),
                            get_bool(a, "special", false),
                            {get_bool(a, "lstrip", false), get_bool(a, "rstrip", false)}});
  }
  if (max_id < 0) return err("empty vocabulary");
  const size_t n = static_cast<size_t>(max_id) + 1;
  spec.tokens.assign(n, std::string());
  spec.types.assign(n, TokenType::kUnused);
  spec.added_options.assign(n, AddedTokenOptions{});
  for (auto& [id, text] : entries) {
    if (spec.types[id] != TokenType::kUnused) {
      return err("two vocabulary entries share id " + std::to_string(id));
    }
    spec.tokens[id] = std::move(text);
    spec.types[id] = TokenType::kNormal;
  }
  for (auto& a : added_tokens) {
    spec.tokens[a.id] = a.content;
    spec.types[a.id] = a.special ? TokenType::kControl : TokenType::kUserDefined;
    spec.added_options[a.id] = a.options;
  }
  std::unordered_map<std::string, int32_t> id_of;
  for (size_t i = 0; i < n; ++i) id_of.emplace(spec.tokens[i], static_cast<int32_t>(i));
  auto find_id = [&](const std::string& text) {
    auto it = id_of.find(text);
    return it == id_of.end() ? -1 : it->second;
  };
  if (auto unk = get_string(model, "unk_token"); !unk.empty()) spec.unk_id = find_id(unk);

  CARPOOL_RETURN_IF_ERROR(
      parse_merges(model.contains("merges") ? model["merges"] : empty_array, spec));

  // Pipeline.
  bool sentencepiece = false, byte_level = false, metaspace = false;
  CARPOOL_RETURN_IF_ERROR(parse_normalizer(
      root.contains("normalizer") ? root["normalizer"] : json(), spec, &sentencepiece));
  CARPOOL_RETURN_IF_ERROR(
      parse_pre_tokenizer(root.contains("pre_tokenizer") ? root["pre_tokenizer"] : json(), spec,
                          &byte_level, &metaspace));
  sentencepiece = sentencepiece || metaspace;
  CARPOOL_RETURN_IF_ERROR(parse_decoder(root.contains("decoder") ? root["decoder"] : json(), spec));
  if (byte_level == sentencepiece) {
    return err(
        "unsupported pipeline: expected either a ByteLevel pre-tokenizer or the "
        "SentencePiece space normalizer");
  }
  spec.model = byte_level ? TokenizerModel::kByteLevelBpe : TokenizerModel::kSentencePieceBpe;
  if (sentencepiece && spec.pre_tokenizer != PreTokenizerKind::kNone) {
    return err("unsupported pre-tokenizer for a SentencePiece-style model");
  }

  // BOS from the post-processor template ("single": [{"SpecialToken": {"id": "<s>"}}, ...]).
  auto post = root.find("post_processor");
  if (post != root.end() && type_of(*post) == "TemplateProcessing" && post->contains("single") &&
      (*post)["single"].is_array() && !(*post)["single"].empty()) {
    const json& first = (*post)["single"][0];
    if (first.is_object() && first.contains("SpecialToken") && first["SpecialToken"].is_object()) {
      int32_t id = find_id(get_string(first["SpecialToken"], "id"));
      if (id >= 0) {
        spec.bos_id = id;
        spec.add_bos = true;
      }
    }
  }

  if (config != nullptr && config->is_object()) {
    if (config->contains("bos_token")) {
      int32_t id = find_id(token_content((*config)["bos_token"]));
      if (id >= 0) spec.bos_id = id;
    }
    if (config->contains("eos_token")) {
      int32_t id = find_id(token_content((*config)["eos_token"]));
      if (id >= 0) spec.eos_id = id;
    }
    auto add_bos = config->find("add_bos_token");
    if (add_bos != config->end() && add_bos->is_boolean()) spec.add_bos = add_bos->get<bool>();
    auto tmpl = config->find("chat_template");
    if (tmpl != config->end() && tmpl->is_string()) {
      spec.chat_template = tmpl->get<std::string>();
    } else if (tmpl != config->end() && tmpl->is_array()) {
      for (const auto& t : *tmpl) {
        if (!t.is_object() || !t.contains("template") || !t["template"].is_string()) continue;
        if (spec.chat_template.empty() || get_string(t, "name") == "default") {
          spec.chat_template = t["template"].get<std::string>();
        }
      }
    }
  }
  return spec;
}

Result<std::string> read_file(const std::string& path, bool* missing) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    if (missing != nullptr) *missing = true;
    return Status::error("cannot open " + path);
  }
  f.seekg(0, std::ios::end);
  std::streamoff size = f.tellg();
  if (size < 0 || static_cast<uint64_t>(size) > kMaxFileBytes) {
    return Status::error(path + ": unreadable or too large");
  }
  f.seekg(0);
  std::string data(static_cast<size_t>(size), '\0');
  f.read(data.data(), size);
  if (!f) return Status::error("cannot read " + path);
  return data;
}

// The optional files beside tokenizer.json that from_hf_dir also reads.
struct SideFiles {
  std::string_view tokenizer_config;   // tokenizer_config.json
  std::string_view generation_config;  // generation_config.json: eos_token_id (int or list)
  std::string_view chat_template;      // chat_template.jinja: used when the config has none
};

Result<Tokenizer> from_hf(std::string_view tokenizer_json, const SideFiles& side) {
  try {
    json root = json::parse(tokenizer_json, nullptr, /*allow_exceptions=*/false);
    if (root.is_discarded()) return err("invalid JSON");
    json config;
    if (!side.tokenizer_config.empty()) {
      config = json::parse(side.tokenizer_config, nullptr, /*allow_exceptions=*/false);
      if (config.is_discarded()) return Status::error("tokenizer_config.json: invalid JSON");
    }
    auto spec = parse(root, config.is_object() ? &config : nullptr);
    if (!spec) return spec.status();
    if (spec->chat_template.empty()) spec->chat_template = std::string(side.chat_template);
    if (!side.generation_config.empty()) {
      json gen = json::parse(side.generation_config, nullptr, /*allow_exceptions=*/false);
      if (gen.is_discarded()) return Status::error("generation_config.json: invalid JSON");
      json eos = gen.is_object() && gen.contains("eos_token_id") ? gen["eos_token_id"] : json();
      if (eos.is_number_integer()) eos = json::array({eos});
      if (eos.is_array()) {
        for (const auto& e : eos) {
          if (!e.is_number_integer() || e.get<int64_t>() < 0 ||
              e.get<int64_t>() >= static_cast<int64_t>(spec->tokens.size())) {
            return Status::error("generation_config.json: bad eos_token_id");
          }
          spec->extra_eog_ids.push_back(static_cast<int32_t>(e.get<int64_t>()));
        }
      }
    }
    return Tokenizer::from_spec(std::move(spec).value());
  } catch (const std::exception& e) {
    return err(std::string("malformed: ") + e.what());
  }
}

}  // namespace

Result<Tokenizer> Tokenizer::from_hf_json(std::string_view tokenizer_json,
                                          std::string_view tokenizer_config_json) {
  return from_hf(tokenizer_json, SideFiles{tokenizer_config_json, {}, {}});
}

Result<Tokenizer> Tokenizer::from_hf_dir(const std::string& dir) {
  auto tokenizer_json = read_file(dir + "/tokenizer.json", nullptr);
  if (!tokenizer_json) return tokenizer_json.status();
  std::string side_text[3];
  const char* names[3] = {"/tokenizer_config.json", "/generation_config.json",
                          "/chat_template.jinja"};
  for (int k = 0; k < 3; ++k) {
    bool missing = false;
    auto text = read_file(dir + names[k], &missing);
    if (text) {
      side_text[k] = std::move(text).value();
    } else if (!missing) {
      return text.status();
    }
  }
  return from_hf(*tokenizer_json, SideFiles{side_text[0], side_text[1], side_text[2]});
}

}  // namespace carpool
