// Engine start-up arithmetic: option checks, KV sizing from a budget, the matching model limits.
#include "engine/engine_options.h"

#include <gtest/gtest.h>

namespace carpool {
namespace {

ModelConfig small_config() {
  ModelConfig c;  // SmolLM2-135M's attention geometry
  c.vocab_size = 49152;
  c.hidden_size = 576;
  c.intermediate_size = 1536;
  c.n_layers = 30;
  c.n_heads = 9;
  c.n_kv_heads = 3;
  c.head_dim = 64;
  c.max_position = 8192;
  return c;
}

TEST(EngineOptions, ResolvesMaxModelLenAndRejectsBadValues) {
  const ModelConfig c = small_config();
  EngineOptions o;
  auto r = resolve_engine_options(o, c);
  ASSERT_TRUE(r.is_ok()) << r.error();
  EXPECT_EQ(r->max_model_len, 8192);
  o.max_model_len = 9000;
  r = resolve_engine_options(o, c);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.error().find("8192"), std::string::npos) << r.error();
  o = EngineOptions{};
  o.max_num_seqs = 0;
  EXPECT_FALSE(resolve_engine_options(o, c).is_ok());
  o = EngineOptions{};
  o.max_num_batched_tokens = 32;  // below max_num_seqs = 64
  r = resolve_engine_options(o, c);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.error().find("max_num_seqs"), std::string::npos);
  o = EngineOptions{};
  o.block_size = 0;
  EXPECT_FALSE(resolve_engine_options(o, c).is_ok());
  o = EngineOptions{};
  o.gpu_memory_utilization = 1.5;
  EXPECT_FALSE(resolve_engine_options(o, c).is_ok());
  o = EngineOptions{};
  o.kv_cache_bytes = -1;
  EXPECT_FALSE(resolve_engine_options(o, c).is_ok());
}

TEST(EngineOptions, ModelLimitsFollowTheOptions) {
  EngineOptions o;
  o.max_num_seqs = 8;
  o.max_num_batched_tokens = 100;
  o.max_model_len = 1000;
  ModelLimits l = engine_model_limits(o, small_config());
  EXPECT_EQ(l.max_batch_tokens, 100);
  EXPECT_EQ(l.max_seqs, 8);
  EXPECT_EQ(l.max_logit_rows, 8);
  EXPECT_EQ(l.max_blocks_per_seq, 63);  // ceil(1000 / 16)
  o.max_model_len = 0;                  // the model's context
  EXPECT_EQ(engine_model_limits(o, small_config()).max_blocks_per_seq, 512);
}

TEST(EngineOptions, KvSizingFromExplicitBudget) {
  const ModelConfig c = small_config();
  EngineOptions o;
  o.max_model_len = 2048;
  o.kv_cache_bytes = int64_t{100} << 20;
  auto ro = resolve_engine_options(o, c);
  ASSERT_TRUE(ro.is_ok());
  auto p = plan_kv_cache(c, DType::kF32, ro.value(), false, BackendMemoryInfo{});
  ASSERT_TRUE(p.is_ok()) << p.error();
  // 2 (K, V) x 30 layers x 3 heads x 64 x 4 bytes x 16 tokens.
  EXPECT_EQ(p->bytes_per_block, 2 * 30 * 3 * 64 * 4 * 16);
  EXPECT_EQ(p->num_blocks, (int64_t{100} << 20) / p->bytes_per_block);
  EXPECT_EQ(p->tokens, int64_t{p->num_blocks} * 16);
  EXPECT_EQ(p->max_seqs_at_full_context, p->num_blocks / 128);
  EXPECT_NE(p->summary().find("blocks × 16 tokens"), std::string::npos) << p->summary();
  // BF16 halves the block.
  auto p16 = plan_kv_cache(c, DType::kBF16, ro.value(), true, BackendMemoryInfo{});
  ASSERT_TRUE(p16.is_ok());
  EXPECT_EQ(p16->bytes_per_block * 2, p->bytes_per_block);
}

TEST(EngineOptions, KvSizingFromMemoryInfo) {
  const ModelConfig c = small_config();
  EngineOptions o;
  o.max_model_len = 1024;
  o.gpu_memory_utilization = 0.5;
  auto ro = resolve_engine_options(o, c);
  ASSERT_TRUE(ro.is_ok());
  BackendMemoryInfo m;
  m.total_bytes = int64_t{8} << 30;
  m.free_bytes = int64_t{4} << 30;
  auto gpu = plan_kv_cache(c, DType::kBF16, ro.value(), true, m);
  ASSERT_TRUE(gpu.is_ok());
  EXPECT_EQ(gpu->num_blocks, (int64_t{2} << 30) / gpu->bytes_per_block);
  auto cpu = plan_kv_cache(c, DType::kF32, ro.value(), false, m);
  ASSERT_TRUE(cpu.is_ok());
  EXPECT_EQ(cpu->num_blocks, kDefaultCpuKvCacheBytes / cpu->bytes_per_block);
  m.free_bytes = int64_t{128} << 20;  // CPU: at most half the free memory
  cpu = plan_kv_cache(c, DType::kF32, ro.value(), false, m);
  ASSERT_TRUE(cpu.is_ok());
  EXPECT_EQ(cpu->num_blocks, (int64_t{64} << 20) / cpu->bytes_per_block);
}

TEST(EngineOptions, KvSizingErrorsWhenOneSequenceDoesNotFit) {
  const ModelConfig c = small_config();
  EngineOptions o;
  o.max_model_len = 8192;
  o.kv_cache_bytes = int64_t{64} << 20;  // about 1400 tokens
  auto ro = resolve_engine_options(o, c);
  ASSERT_TRUE(ro.is_ok());
  auto p = plan_kv_cache(c, DType::kF32, ro.value(), false, BackendMemoryInfo{});
  ASSERT_FALSE(p.is_ok());
  EXPECT_NE(p.error().find("max_model_len 8192"), std::string::npos) << p.error();
}

}  // namespace
}  // namespace carpool
