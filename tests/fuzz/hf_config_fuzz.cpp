// libFuzzer target for the Hugging Face JSON readers (config.json, the safetensors index and
// generation_config.json): the same input goes to all three. Errors are expected; crashes,
// sanitizer reports and out-of-range values that pass are bugs.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "formats/hf_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto c = carpool::parse_hf_config(text); c.is_ok()) {
    const carpool::HfModelConfig& h = c.value();
    // Every size that parses is in range.
    for (int64_t v :
         {h.vocab_size, h.hidden_size, h.intermediate_size, h.num_hidden_layers,
          h.num_attention_heads, h.num_key_value_heads, h.head_dim, h.max_position_embeddings}) {
      if (v < 1 || v > carpool::kMaxHfDim) __builtin_trap();
    }
    if (!(h.rms_norm_eps > 0) || !(h.rope_theta > 0)) __builtin_trap();
  }
  if (auto i = carpool::parse_hf_safetensors_index(text); i.is_ok()) {
    for (const auto& [tensor, shard] : i.value().weight_map) {
      if (shard.find('/') != std::string::npos) __builtin_trap();
    }
  }
  (void)carpool::parse_hf_generation_config(text);
  return 0;
}
