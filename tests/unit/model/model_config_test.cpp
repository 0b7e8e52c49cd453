// ModelConfig: named presets against the parameter counts the published checkpoints report
// (their safetensors index "total_size" / bytes per parameter), KV sizes, and validation.
#include "model/model_config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

namespace carpool {
namespace {

ModelConfig preset(const std::string& name) {
  auto r = named_config(name);
  EXPECT_TRUE(r.is_ok()) << r.error();
  return r.is_ok() ? r.value() : ModelConfig{};
}

TEST(ModelConfig, PresetsMatchPublishedParameterCounts) {
  // Exact counts of the released weights (embedding counted once when tied).
  EXPECT_EQ(preset("llama-3.1-8b").parameter_count(), 8030261248);
  EXPECT_EQ(preset("llama-3.2-1b").parameter_count(), 1235814400);
  EXPECT_EQ(preset("llama-3.2-3b").parameter_count(), 3212749824);
  EXPECT_EQ(preset("llama-2-7b").parameter_count(), 6738415616);
  EXPECT_EQ(preset("mistral-7b").parameter_count(), 7248023552);
  EXPECT_EQ(preset("qwen2.5-7b").parameter_count(), 7615616512);
  EXPECT_EQ(preset("qwen2.5-0.5b").parameter_count(), 494032768);
  EXPECT_EQ(preset("smollm2-135m").parameter_count(), 134515008);
  EXPECT_EQ(preset("smollm2-1.7b").parameter_count(), 1711376384);
  EXPECT_EQ(preset("llama-1b").parameter_count(), 1100048384);  // TinyLlama-1.1B
}

TEST(ModelConfig, PresetsAreValid) {
  for (const char* name : {"llama-3.1-8b", "llama-3.2-1b", "llama-3.2-3b", "llama-2-7b", "llama-1b",
                           "tinyllama-1.1b", "mistral-7b", "qwen2.5-7b", "qwen2.5-1.5b",
                           "qwen2.5-0.5b", "smollm2-135m", "smollm2-360m", "smollm2-1.7b"}) {
    auto r = named_config(name);
    ASSERT_TRUE(r.is_ok()) << name << ": " << r.error();
    Status st = r->validate();
    EXPECT_TRUE(st.is_ok()) << name << ": " << st.message();
    EXPECT_FALSE(r->name.empty());
  }
  const ModelConfig q = preset("qwen2.5-7b");
  EXPECT_TRUE(q.qkv_bias);
  EXPECT_EQ(q.architecture, "qwen2");
  const ModelConfig l = preset("llama-3.1-8b");
  EXPECT_TRUE(l.rope_scaling.enabled);
  EXPECT_FLOAT_EQ(l.rope_scaling.factor, 8.f);
  EXPECT_EQ(l.rope_scaling.original_max_position, 8192);
  EXPECT_FALSE(preset("llama-2-7b").rope_scaling.enabled);
}

TEST(ModelConfig, UnknownPresetListsKnownOnes) {
  auto r = named_config("gpt-5");
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.error().find("'gpt-5'"), std::string::npos) << r.error();
  EXPECT_NE(r.error().find("llama-3.1-8b"), std::string::npos) << r.error();
}

TEST(ModelConfig, KvBytesPerToken) {
  // 2 (K and V) * layers * kv_heads * head_dim * bytes.
  EXPECT_EQ(preset("llama-3.1-8b").kv_bytes_per_token(2), 2 * 32 * 8 * 128 * 2);
  EXPECT_EQ(preset("smollm2-135m").kv_bytes_per_token(2), 2 * 30 * 3 * 64 * 2);
  EXPECT_EQ(preset("qwen2.5-0.5b").kv_bytes_per_token(4), 2 * 24 * 2 * 64 * 4);
  EXPECT_EQ(preset("smollm2-135m").kv_bytes_per_token(DType::kF16), 2 * 30 * 3 * 64 * 2);
  // int8: one byte a value and one f32 scale per KV head.
  EXPECT_EQ(preset("smollm2-135m").kv_bytes_per_token(DType::kI8), 2 * 30 * (3 * 64 + 3 * 4));
}

TEST(ModelConfig, ValidateRejectsInconsistentConfigs) {
  const ModelConfig good = preset("smollm2-135m");
  auto expect_invalid = [](ModelConfig c, const char* fragment) {
    Status st = c.validate();
    ASSERT_FALSE(st.is_ok()) << fragment;
    EXPECT_NE(st.message().find(fragment), std::string::npos) << st.message();
  };
  ModelConfig c = good;
  c.n_kv_heads = 4;  // 9 heads
  expect_invalid(c, "n_kv_heads");
  c = good;
  c.hidden_size = 0;
  expect_invalid(c, "hidden_size");
  c = good;
  c.vocab_size = int64_t{1} << 40;
  expect_invalid(c, "vocab_size");
  c = good;
  c.n_layers = -3;
  expect_invalid(c, "n_layers");
  c = good;
  c.head_dim = 63;
  expect_invalid(c, "head_dim");
  c = good;
  c.rms_eps = 0.f;
  expect_invalid(c, "rms_eps");
  c = good;
  c.rope_theta = std::nanf("");
  expect_invalid(c, "rope_theta");
  c = good;
  c.rope_scaling.enabled = true;
  c.rope_scaling.factor = 0.5f;
  expect_invalid(c, "factor");
  c = good;
  c.rope_scaling.enabled = true;
  c.rope_scaling.high_freq_factor = c.rope_scaling.low_freq_factor;
  expect_invalid(c, "high_freq_factor");
  c = good;
  c.max_position = 0;
  expect_invalid(c, "max_position");
}

}  // namespace
}  // namespace carpool
