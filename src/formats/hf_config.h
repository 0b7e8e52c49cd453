// Readers for the small JSON files of a Hugging Face model folder: config.json,
// model.safetensors.index.json and generation_config.json.
//
// All inputs are untrusted: sizes are checked for type and range here (each integer field within
// [1, kMaxHfDim] or its own bound); cross-field consistency is checked by ModelConfig::validate().
// Errors are one line and name the field.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace carpool {

constexpr int64_t kMaxHfDim = int64_t{1} << 24;       // bound on every size field
constexpr size_t kMaxHfJsonBytes = size_t{64} << 20;  // config/index/generation files

// config.json of a LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM. Optional fields
// carry the defaults of the matching transformers config class.
struct HfModelConfig {
  std::string architecture;  // "llama", "mistral" or "qwen2" (from architectures/model_type)
  std::string name;          // "_name_or_path" when present
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // defaults to num_attention_heads
  int64_t head_dim = 0;             // defaults to hidden_size / num_attention_heads
  int64_t max_position_embeddings = 0;
  std::optional<int64_t> sliding_window;  // Mistral: attention window, when set
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v (and o) projections carry biases; Qwen2: q/k/v only
  // rope_scaling with rope_type "llama3"; absent (or rope_type "default") leaves it disabled.
  bool rope_llama3 = false;
  double rope_factor = 1.0;
  double rope_low_freq_factor = 1.0;
  double rope_high_freq_factor = 4.0;
  int64_t rope_original_max_position = 8192;
};

// Parses config.json text. Rejects other architectures, unsupported activations (hidden_act
// other than "silu"), MLP biases, sliding-window Qwen2 and other rope scaling types.
Result<HfModelConfig> parse_hf_config(std::string_view json_text);

// model.safetensors.index.json: tensor name -> shard file name. Shard names must be plain file
// names (no directory parts), so a hostile index cannot point outside the model folder.
struct HfSafetensorsIndex {
  std::map<std::string, std::string> weight_map;
  std::vector<std::string> shards;  // distinct shard file names, sorted
};
Result<HfSafetensorsIndex> parse_hf_safetensors_index(std::string_view json_text);

// generation_config.json: the fields carpool uses for defaults.
struct HfGenerationConfig {
  std::vector<int32_t> eos_token_ids;  // eos_token_id: an integer or a list of them
  std::optional<int32_t> bos_token_id;
  std::optional<float> temperature;
  std::optional<float> top_p;
  std::optional<int32_t> top_k;
  std::optional<float> repetition_penalty;
  std::optional<bool> do_sample;
};
Result<HfGenerationConfig> parse_hf_generation_config(std::string_view json_text);

}  // namespace carpool
