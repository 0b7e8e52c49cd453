// ModelConfig: the hyper-parameters of a Llama-family model (Llama 2/3.x, Mistral, Qwen2/2.5,
// SmolLM2), from GGUF metadata, a Hugging Face config.json, or a named synthetic preset.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "backend/backend.h"
#include "util/status.h"

namespace carpool {

// Llama 3 "rope_type: llama3" frequency scaling (Hugging Face rope_scaling / GGUF rope.freq_base).
struct RopeScaling {
  bool enabled = false;
  float factor = 1.f;
  float low_freq_factor = 1.f;
  float high_freq_factor = 4.f;
  int64_t original_max_position = 8192;
};

struct ModelConfig {
  std::string architecture = "llama";  // "llama", "qwen2", "mistral" (names for display)
  std::string name;                    // human-readable model name
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;        // n_embd
  int64_t intermediate_size = 0;  // n_ff
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;         // usually hidden_size / n_heads
  int64_t max_position = 2048;  // context length the model was trained for
  float rms_eps = 1e-5f;
  float rope_theta = 10000.f;
  RopeScaling rope_scaling;
  RopeStyle rope_style = RopeStyle::kNeox;
  bool qkv_bias = false;         // Qwen2
  bool tied_embeddings = false;  // output projection shares token_embd

  // Validates ranges and consistency (all sizes positive and bounded, heads divide, ...).
  // Configs come from untrusted files.
  Status validate() const;

  // Parameter count (embedding counted once when tied).
  int64_t parameter_count() const;
  // Bytes of K and V for one token over all layers at `kv_bytes_per_elem` (2 for 16-bit).
  int64_t kv_bytes_per_token(int kv_bytes_per_elem) const;
  // The same for a cache of kv_dtype (kv_cache_row_bytes: an int8 cache's scales included).
  int64_t kv_bytes_per_token(DType kv_dtype) const;
};

// Well-known configs for synthetic models: "llama-3.1-8b", "llama-3.2-1b", "llama-2-7b",
// "mistral-7b", "qwen2.5-7b", "smollm2-135m", "smollm2-1.7b", ... nullopt-like error if unknown.
Result<ModelConfig> named_config(const std::string& name);

// ModelConfig from the text of a Hugging Face config.json (validated).
Result<ModelConfig> model_config_from_hf_json(std::string_view json_text);

}  // namespace carpool
