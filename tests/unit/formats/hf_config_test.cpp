// Hugging Face config.json / index / generation_config readers: real files written by
// transformers, published configs in both rope formats, and hostile inputs.
#include "formats/hf_config.h"

#include <gtest/gtest.h>

#include <string>

#include "util/mapped_file.h"

namespace carpool {
namespace {

std::string golden_file(const std::string& model, const std::string& file) {
  auto r = read_file(std::string(CARPOOL_SOURCE_DIR) + "/tests/golden/models/" + model + "/" + file,
                     1 << 20);
  EXPECT_TRUE(r.is_ok()) << r.error();
  return r.is_ok() ? r.value() : std::string();
}

// The config.json of meta-llama/Llama-3.1-8B-Instruct (transformers 4.x format).
const char* kLlama31 = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
  "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
  "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.42.3", "use_cache": true, "vocab_size": 128256})";

TEST(HfConfig, ParsesLlama31InTransformers4Format) {
  auto r = parse_hf_config(kLlama31);
  ASSERT_TRUE(r.is_ok()) << r.error();
  const HfModelConfig& c = r.value();
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.num_hidden_layers, 32);
  EXPECT_EQ(c.num_attention_heads, 32);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_TRUE(c.rope_llama3);
  EXPECT_DOUBLE_EQ(c.rope_factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_original_max_position, 8192);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
}

TEST(HfConfig, ParsesGoldenLlama3InTransformers5Format) {
  auto r = parse_hf_config(golden_file("tiny-llama3", "config.json"));
  ASSERT_TRUE(r.is_ok()) << r.error();
  const HfModelConfig& c = r.value();
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.vocab_size, 311);
  EXPECT_EQ(c.hidden_size, 96);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.head_dim, 16);  // explicit, not hidden / heads
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_TRUE(c.rope_llama3);
  EXPECT_EQ(c.rope_original_max_position, 32);
}

TEST(HfConfig, ParsesGoldenQwen2AndMistral) {
  auto q = parse_hf_config(golden_file("tiny-qwen2", "config.json"));
  ASSERT_TRUE(q.is_ok()) << q.error();
  EXPECT_EQ(q->architecture, "qwen2");
  EXPECT_TRUE(q->attention_bias);  // Qwen2 always has q/k/v biases
  EXPECT_TRUE(q->tie_word_embeddings);
  EXPECT_EQ(q->head_dim, 16);
  EXPECT_DOUBLE_EQ(q->rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(q->rope_theta, 1e6);
  EXPECT_FALSE(q->rope_llama3);

  auto m = parse_hf_config(golden_file("tiny-mistral", "config.json"));
  ASSERT_TRUE(m.is_ok()) << m.error();
  EXPECT_EQ(m->architecture, "mistral");
  EXPECT_EQ(m->num_key_value_heads, 1);
  EXPECT_EQ(m->head_dim, 32);
  ASSERT_TRUE(m->sliding_window.has_value());
  EXPECT_EQ(*m->sliding_window, 128);
}

TEST(HfConfig, AppliesTransformersDefaults) {
  auto r = parse_hf_config(R"({"model_type":"llama","vocab_size":10,"hidden_size":8,
      "intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2})");
  ASSERT_TRUE(r.is_ok()) << r.error();
  EXPECT_EQ(r->num_key_value_heads, 2);
  EXPECT_EQ(r->head_dim, 4);
  EXPECT_EQ(r->max_position_embeddings, 2048);
  EXPECT_DOUBLE_EQ(r->rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(r->rope_theta, 10000.0);
  EXPECT_FALSE(r->tie_word_embeddings);
}

void expect_config_error(const std::string& json, std::initializer_list<const char*> fragments) {
  auto r = parse_hf_config(json);
  ASSERT_FALSE(r.is_ok()) << json;
  EXPECT_EQ(r.error().find('\n'), std::string::npos) << r.error();
  EXPECT_EQ(r.error().rfind("config.json", 0), 0u) << r.error();
  for (const char* f : fragments) EXPECT_NE(r.error().find(f), std::string::npos) << r.error();
}

// kLlama31 with `from` replaced by `to`.
std::string llama_with(const std::string& from, const std::string& to) {
  std::string s = kLlama31;
  auto pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  if (pos != std::string::npos) s.replace(pos, from.size(), to);
  return s;
}

TEST(HfConfig, RejectsMissingFields) {
  for (const char* field : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                            "num_attention_heads"}) {
    std::string key = std::string("\"") + field + "\"";
    expect_config_error(llama_with(key, "\"x_renamed\""), {"missing", field});
  }
  // Without "architectures", model_type decides.
  auto r = parse_hf_config(llama_with(R"("architectures": ["LlamaForCausalLM"],)", ""));
  ASSERT_TRUE(r.is_ok()) << r.error();
  EXPECT_EQ(r->architecture, "llama");
}

TEST(HfConfig, RejectsBadValues) {
  expect_config_error(llama_with("\"hidden_size\": 4096", "\"hidden_size\": -4096"),
                      {"'hidden_size'", "out of range"});
  expect_config_error(llama_with("\"hidden_size\": 4096", "\"hidden_size\": 0"),
                      {"'hidden_size'", "out of range"});
  expect_config_error(llama_with("\"hidden_size\": 4096", "\"hidden_size\": 99999999999999999999"),
                      {"'hidden_size'"});
  expect_config_error(llama_with("\"hidden_size\": 4096", "\"hidden_size\": 4096.5"),
                      {"'hidden_size'", "not an integer"});
  expect_config_error(llama_with("\"hidden_size\": 4096", "\"hidden_size\": \"4096\""),
                      {"'hidden_size'", "not an integer"});
  expect_config_error(llama_with("\"num_attention_heads\": 32", "\"num_attention_heads\": 30"),
                      {"not divisible"});
  expect_config_error(llama_with("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": -1"),
                      {"rms_norm_eps"});
  expect_config_error(llama_with("\"rope_theta\": 500000.0", "\"rope_theta\": 0"), {"rope_theta"});
  expect_config_error(llama_with("\"tie_word_embeddings\": false", "\"tie_word_embeddings\": 0"),
                      {"'tie_word_embeddings'", "boolean"});
}

TEST(HfConfig, RejectsUnsupportedModels) {
  expect_config_error(llama_with("LlamaForCausalLM", "GPT2LMHeadModel"),
                      {"unsupported architecture", "GPT2LMHeadModel"});
  expect_config_error(llama_with("\"rope_type\": \"llama3\"", "\"rope_type\": \"yarn\""),
                      {"rope scaling", "'yarn'"});
  expect_config_error(llama_with("\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\""),
                      {"hidden_act", "'gelu'"});
  expect_config_error(llama_with("\"mlp_bias\": false", "\"mlp_bias\": true"), {"mlp_bias"});
  expect_config_error(llama_with("\"attention_bias\": false", "\"attention_bias\": true"),
                      {"attention_bias"});
  expect_config_error(llama_with("\"factor\": 8.0, ", ""), {"llama3", "factor"});
  expect_config_error(R"({"model_type":"qwen2","vocab_size":10,"hidden_size":8,
      "intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,
      "use_sliding_window":true})",
                      {"use_sliding_window"});
  expect_config_error(R"({"model_type":"qwen2","vocab_size":10,"hidden_size":8,
      "intermediate_size":16,"num_hidden_layers":2,"num_attention_heads":2,
      "layer_types":["full_attention","sliding_attention"]})",
                      {"layer_types"});
  expect_config_error(R"({"vocab_size":10})", {"architectures", "model_type"});
}

TEST(HfConfig, RejectsBadJson) {
  expect_config_error("{", {"invalid JSON"});
  expect_config_error("", {"invalid JSON"});
  expect_config_error("[]", {"not an object"});
  expect_config_error(std::string(100, '[') + std::string(100, ']'), {"nested"});
  expect_config_error(llama_with("\"vocab_size\": 128256", "\"vocab_size\": 1, \"vocab_size\": 2"),
                      {"duplicate", "'vocab_size'"});
}

TEST(HfSafetensorsIndex, ParsesGoldenIndex) {
  auto r = parse_hf_safetensors_index(golden_file("tiny-mistral", "model.safetensors.index.json"));
  ASSERT_TRUE(r.is_ok()) << r.error();
  EXPECT_GT(r->shards.size(), 1u);
  EXPECT_EQ(r->weight_map.count("model.embed_tokens.weight"), 1u);
  EXPECT_EQ(r->weight_map.count("lm_head.weight"), 1u);
}

TEST(HfSafetensorsIndex, RejectsHostileIndex) {
  for (const char* shard : {"../model.safetensors", "/etc/passwd", "a/b.safetensors", "", ".."}) {
    auto r = parse_hf_safetensors_index(std::string(R"({"weight_map":{"w":")") + shard + "\"}}");
    ASSERT_FALSE(r.is_ok()) << shard;
    EXPECT_NE(r.error().find("plain file name"), std::string::npos) << r.error();
  }
  EXPECT_FALSE(parse_hf_safetensors_index(R"({"weight_map":{}})").is_ok());
  EXPECT_FALSE(parse_hf_safetensors_index(R"({"metadata":{}})").is_ok());
  EXPECT_FALSE(parse_hf_safetensors_index(R"({"weight_map":{"w":3}})").is_ok());
  auto dup = parse_hf_safetensors_index(R"({"weight_map":{"w":"a","w":"b"}})");
  ASSERT_FALSE(dup.is_ok());
  EXPECT_NE(dup.error().find("duplicate key 'w'"), std::string::npos) << dup.error();
}

TEST(HfGenerationConfig, ParsesFields) {
  auto r = parse_hf_generation_config(R"({"bos_token_id": 128000, "do_sample": true,
      "eos_token_id": [128001, 128008, 128009], "temperature": 0.6, "top_p": 0.9, "top_k": 20,
      "repetition_penalty": 1.05})");
  ASSERT_TRUE(r.is_ok()) << r.error();
  EXPECT_EQ(r->eos_token_ids, (std::vector<int32_t>{128001, 128008, 128009}));
  EXPECT_EQ(r->bos_token_id, 128000);
  EXPECT_FLOAT_EQ(*r->temperature, 0.6f);
  EXPECT_FLOAT_EQ(*r->top_p, 0.9f);
  EXPECT_EQ(r->top_k, 20);
  EXPECT_FLOAT_EQ(*r->repetition_penalty, 1.05f);
  EXPECT_EQ(r->do_sample, true);

  auto single = parse_hf_generation_config(R"({"eos_token_id": 2})");
  ASSERT_TRUE(single.is_ok()) << single.error();
  EXPECT_EQ(single->eos_token_ids, (std::vector<int32_t>{2}));
  EXPECT_FALSE(single->temperature.has_value());

  auto golden = parse_hf_generation_config(golden_file("tiny-llama3", "generation_config.json"));
  ASSERT_TRUE(golden.is_ok()) << golden.error();
}

TEST(HfGenerationConfig, RejectsBadValues) {
  EXPECT_FALSE(parse_hf_generation_config(R"({"eos_token_id": -1})").is_ok());
  EXPECT_FALSE(parse_hf_generation_config(R"({"eos_token_id": [1, "x"]})").is_ok());
  EXPECT_FALSE(parse_hf_generation_config(R"({"eos_token_id": 4294967296})").is_ok());
  EXPECT_FALSE(parse_hf_generation_config(R"({"top_p": 1.5})").is_ok());
  EXPECT_FALSE(parse_hf_generation_config(R"({"temperature": "hot"})").is_ok());
  EXPECT_FALSE(parse_hf_generation_config("nope").is_ok());
}

}  // namespace
}  // namespace carpool
