// Step cost formulas pinned to hand-computed values for Llama-3.1-8B in bf16.
#include <gtest/gtest.h>

#include "telemetry/cost_model.h"

namespace carpool::telemetry {
namespace {

CostModel llama8b_bf16() {
  auto config = named_config("llama-3.1-8b");
  EXPECT_TRUE(config.is_ok());
  const WeightBytes w = weight_bytes_from_dtypes(*config, WeightDTypes{});
  return make_cost_model(*config, w, DType::kF16, /*act_bytes_per_elem=*/2);
}

TEST(TelemetryCostModel, Llama8bWeightsAndKvPerToken) {
  auto config = named_config("llama-3.1-8b");
  ASSERT_TRUE(config.is_ok());
  const WeightBytes w = weight_bytes_from_dtypes(*config, WeightDTypes{});
  // vocab 128256 × hidden 4096 × 2 bytes
  EXPECT_EQ(w.embedding, 1'050'673'152);
  EXPECT_EQ(w.output, 1'050'673'152);
  // 32 layers × (2·4096² + 2·1024·4096) × 2 bytes
  EXPECT_EQ(w.attention, 2'684'354'560);
  // 32 layers × 3·4096·14336 × 2 bytes
  EXPECT_EQ(w.ffn, 11'274'289'152);
  // (2·32 + 1) norms × 4096 × 2 bytes
  EXPECT_EQ(w.norms, 532'480);
  EXPECT_EQ(w.total(), 16'060'522'496);  // 16.06 GB
  EXPECT_EQ(w.total(), config->parameter_count() * 2);
  const CostModel m = llama8b_bf16();
  EXPECT_EQ(m.kv_bytes_per_token, 131'072);  // 2 · 32 layers · 8 kv heads · 128 · 2 bytes
  EXPECT_EQ(m.matmul_params_per_token, 6'979'321'856);
}

TEST(TelemetryCostModel, DecodeStepBatchOne) {
  const CostModel m = llama8b_bf16();
  StepShape s;
  s.add_sequence(/*q_len=*/1, /*kv_len=*/1000, /*prefill=*/false, /*needs_logits=*/true);
  const StepCost c = compute_step_cost(m, s);
  EXPECT_DOUBLE_EQ(c.flops_matmul, 13'958'643'712.0);  // 2 · 6,979,321,856
  EXPECT_DOUBLE_EQ(c.flops_attention, 524'288'000.0);  // 4 · 32 · 32 · 128 · 1000
  EXPECT_DOUBLE_EQ(c.flops_logits, 1'050'673'152.0);   // 2 · 128256 · 4096
  // All layer weights + norms + output matrix + one embedding row (4096 · 2).
  EXPECT_DOUBLE_EQ(c.bytes_weights, 15'009'857'536.0);
  EXPECT_DOUBLE_EQ(c.bytes_kv_read, 131'072'000.0);
  EXPECT_DOUBLE_EQ(c.bytes_kv_write, 131'072.0);
  EXPECT_DOUBLE_EQ(c.bytes(), 15'009'857'536.0 + 131'072'000.0 + 131'072.0);
  // Activations: 32 layers × (17·4096 + 4·4096 + 2·1024 + 6·14336) × 2 bytes + logits in F32.
  EXPECT_DOUBLE_EQ(c.bytes_activations, 32.0 * 174'080 * 2 + 128256.0 * 4);
}

TEST(TelemetryCostModel, DecodeBatch64ReadsWeightsOnce) {
  const CostModel m = llama8b_bf16();
  StepShape s;
  for (int i = 0; i < 64; ++i) s.add_sequence(1, 128, false, true);
  const StepCost c = compute_step_cost(m, s);
  EXPECT_DOUBLE_EQ(c.bytes_weights, 15'010'373'632.0);  // + 64 embedding rows
  EXPECT_DOUBLE_EQ(c.flops_matmul, 64 * 13'958'643'712.0);
  EXPECT_DOUBLE_EQ(c.bytes_kv_read, 64 * 128 * 131'072.0);
  // Arithmetic intensity grows with the batch: ~B FLOPs per byte of 16-bit weights.
  EXPECT_GT(c.flops() / c.bytes(), 55.0);
  EXPECT_LT(c.flops() / c.bytes(), 64.0);
}

TEST(TelemetryCostModel, PrefillChunkIsCausal) {
  const CostModel m = llama8b_bf16();
  StepShape s;
  s.add_sequence(512, 512, /*prefill=*/true, /*needs_logits=*/true);
  EXPECT_EQ(s.prefill.attn_pairs, 131'328);  // 512 · 513 / 2
  const StepCost c = compute_step_cost(m, s);
  EXPECT_DOUBLE_EQ(c.flops_attention, 68'853'694'464.0);  // 4 · 32 · 32 · 128 · 131328
  EXPECT_DOUBLE_EQ(c.flops_logits, 1'050'673'152.0);      // one row, not 512
  // A second chunk of 512 over a 1024-token context: 512·1024 − 512·511/2 pairs.
  StepShape s2;
  s2.add_sequence(512, 1024, true, false);
  EXPECT_EQ(s2.prefill.attn_pairs, 524'288 - 130'816);
  const StepCost c2 = compute_step_cost(m, s2);
  EXPECT_EQ(c2.flops_logits, 0.0);
  // No logits: the output matrix is not read.
  EXPECT_DOUBLE_EQ(c2.bytes_weights, 2'684'354'560.0 + 11'274'289'152.0 + 532'480 + 512 * 8192.0);
}

TEST(TelemetryCostModel, MixedStepSplitsPhases) {
  StepShape s;
  s.add_sequence(100, 100, true, true);
  s.add_sequence(1, 50, false, true);
  s.add_sequence(1, 70, false, false);
  EXPECT_EQ(s.prefill.tokens, 100);
  EXPECT_EQ(s.decode.tokens, 2);
  EXPECT_EQ(s.decode.kv_read_tokens, 120);
  EXPECT_EQ(s.decode.logit_rows, 1);
  EXPECT_EQ(s.tokens(), 102);
  EXPECT_EQ(s.seqs(), 3);
}

TEST(TelemetryCostModel, TiedEmbeddingsReadTheTableAsOutput) {
  auto config = named_config("smollm2-135m");
  ASSERT_TRUE(config.is_ok());
  ASSERT_TRUE(config->tied_embeddings);
  const WeightBytes w = weight_bytes_from_dtypes(*config, WeightDTypes{});
  EXPECT_EQ(w.output, 0);
  EXPECT_EQ(w.total(), config->parameter_count() * 2);
  const CostModel m = make_cost_model(*config, w, DType::kF32, 4);
  StepShape s;
  s.add_sequence(1, 10, false, true);
  const StepCost c = compute_step_cost(m, s);
  EXPECT_DOUBLE_EQ(c.bytes_weights,
                   static_cast<double>(w.attention + w.ffn + w.norms + w.embedding) +
                       static_cast<double>(m.embedding_row_bytes));
}

TEST(TelemetryCostModel, QuantizedWeightBytes) {
  auto config = named_config("llama-3.1-8b");
  ASSERT_TRUE(config.is_ok());
  WeightDTypes t;
  t.attention = t.ffn = DType::kQ4_0;  // 18 bytes per 32 weights
  t.norms = DType::kF32;
  const WeightBytes w = weight_bytes_from_dtypes(*config, t);
  EXPECT_EQ(w.ffn, 32LL * 3 * 4096 * 14336 / 32 * 18);
  EXPECT_EQ(w.norms, 65LL * 4096 * 4);
}

TEST(TelemetryCostModel, EmptyStepCostsNothing) {
  const StepCost c = compute_step_cost(llama8b_bf16(), StepShape{});
  EXPECT_EQ(c.flops(), 0.0);
  EXPECT_EQ(c.bytes(), 0.0);
}

}  // namespace
}  // namespace carpool::telemetry
