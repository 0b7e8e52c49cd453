// Runner: greedy sampling on the device (Backend::argmax_rows) against the host sampler, on a
// tiny random-weight model on the CPU backend. Hand-made plans: each sequence prefills its whole
// prompt in step 0, then decodes one token per step (no scheduler).
//
//   step      0          1     2     3     4     5
//   seq 0     [prompt]   d     d     d     d     d      d: one decode token, sampled
//   seq 1     [prompt]   d     d     d     d     d
//   seq 2     [prompt]   d     d     d     d     d
//
// The device path serves the plain greedy rows (the others, which read the logits, are sampled
// on the host beside them) and must give the tokens the host path gives.
#include "engine/runner.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "model/llama.h"

namespace carpool {
namespace {

constexpr int kBlockSize = 16;
constexpr int kBlocksPerSeq = 4;
constexpr int kSteps = 6;

ModelConfig tiny_config() {
  ModelConfig c;
  c.name = "tiny";
  c.vocab_size = 301;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  c.max_position = 4096;
  return c;
}

struct SeqSetup {
  SamplingParams params;
  int logprobs = -1;
};

struct RunResult {
  std::vector<std::vector<int32_t>> tokens;  // [seq][generated]
  std::vector<std::vector<float>> logprobs;  // [seq][generated] where asked
  int64_t device_steps = 0;
  int64_t draw_steps = 0;
};

class RunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CpuBackendOptions o;
    o.n_threads = 2;
    o.quantize_activations = false;
    backend_ = make_cpu_backend(o);
    ModelLimits limits;
    limits.max_batch_tokens = 64;
    limits.max_seqs = 4;
    limits.max_logit_rows = 4;
    limits.max_blocks_per_seq = kBlocksPerSeq;
    auto m = LlamaModel::synthetic(*backend_, tiny_config(), DType::kF32, 7, limits);
    ASSERT_TRUE(m.is_ok());
    model_ = std::move(m.value());
    auto kv = model_->alloc_kv_cache(4 * kBlocksPerSeq + 1, kBlockSize);
    ASSERT_TRUE(kv.is_ok());
    kv_ = std::move(kv.value());
  }

  // Runs the timeline above for `setups` (one sequence each) with device greedy on or off.
  RunResult run(const std::vector<SeqSetup>& setups, bool device_greedy) {
    Runner runner(*model_, kv_);
    runner.set_device_greedy(device_greedy);
    const int n = static_cast<int>(setups.size());
    std::vector<Sequence> seqs(static_cast<size_t>(n));
    for (int s = 0; s < n; ++s) {
      Sequence& q = seqs[static_cast<size_t>(s)];
      q.id = static_cast<SeqId>(s + 1);
      for (int i = 0; i < 5 + 3 * s; ++i) q.tokens.push_back((37 * s + 11 * i + 5) % 301);
      q.num_prompt_tokens = q.num_tokens();
      for (int b = 0; b < kBlocksPerSeq; ++b) q.blocks.blocks.push_back(1 + s * kBlocksPerSeq + b);
      runner.add(q.id, setups[static_cast<size_t>(s)].params, q.tokens,
                 setups[static_cast<size_t>(s)].logprobs);
    }
    RunResult r;
    r.tokens.resize(static_cast<size_t>(n));
    r.logprobs.resize(static_cast<size_t>(n));
    for (int step = 0; step < kSteps; ++step) {
      StepPlan plan;
      for (Sequence& q : seqs) {
        ScheduledSeq e;
        e.id = q.id;
        e.seq = &q;
        e.start = q.num_computed_tokens;
        e.num_tokens = q.num_uncomputed();
        e.needs_logits = true;
        e.is_prefill = step == 0;
        plan.seqs.push_back(e);
      }
      auto out = runner.execute(plan);
      EXPECT_TRUE(out.is_ok());
      if (!out.is_ok()) return r;
      EXPECT_EQ(out.value().size(), seqs.size());
      for (size_t s = 0; s < seqs.size(); ++s) {
        const SampledToken& t = out.value()[s];
        EXPECT_GE(t.token, 0);
        EXPECT_LT(t.token, 301);
        seqs[s].num_computed_tokens = seqs[s].num_tokens();
        seqs[s].tokens.push_back(t.token);
        r.tokens[s].push_back(t.token);
        if (setups[s].logprobs >= 0) r.logprobs[s].push_back(t.logprob);
      }
    }
    r.device_steps = runner.device_greedy_steps();
    r.draw_steps = runner.device_draw_steps();
    return r;
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LlamaModel> model_;
  KvCache kv_;
};

SeqSetup greedy() {
  SeqSetup s;
  s.params.temperature = 0.f;
  return s;
}

TEST_F(RunnerTest, GreedyStepsSampleOnTheDeviceWithTheHostsTokens) {
  // top_k, top_p, min_p and a seed are not read at temperature 0: still plain greedy.
  SeqSetup filtered = greedy();
  filtered.params.top_k = 5;
  filtered.params.top_p = 0.5f;
  filtered.params.min_p = 0.2f;
  filtered.params.seed = 3;
  const std::vector<SeqSetup> setups = {greedy(), filtered, greedy()};
  RunResult device = run(setups, true);
  RunResult host = run(setups, false);
  EXPECT_EQ(device.device_steps, kSteps);
  EXPECT_EQ(host.device_steps, 0);
  EXPECT_EQ(device.tokens, host.tokens);
}

TEST_F(RunnerTest, RowsThatReadTheLogitsAreSampledOnTheHostBesideTheDeviceRows) {
  SeqSetup logprobs = greedy();
  logprobs.logprobs = 2;
  SeqSetup presence = greedy();
  presence.params.presence_penalty = 1.5f;
  SeqSetup frequency = greedy();
  frequency.params.frequency_penalty = 0.5f;
  SeqSetup repetition = greedy();
  repetition.params.repetition_penalty = 1.3f;
  SeqSetup bias = greedy();
  bias.params.logit_bias = {{17, 5.f}, {99, -100.f}};
  // The plain greedy rows take the device's argmax; the odd one is sampled on the host from its
  // own row: the same tokens (and logprobs) as with every row on the host.
  for (const SeqSetup& odd : {logprobs, presence, frequency, repetition, bias}) {
    const std::vector<SeqSetup> setups = {greedy(), odd, greedy()};
    RunResult device = run(setups, true);
    RunResult host = run(setups, false);
    EXPECT_EQ(device.device_steps, kSteps);
    EXPECT_EQ(device.tokens, host.tokens);
    EXPECT_EQ(device.logprobs, host.logprobs);
  }
  // No row for the device: the step stays on the host.
  RunResult all_host = run({logprobs, presence}, true);
  EXPECT_EQ(all_host.device_steps, 0);
  EXPECT_EQ(all_host.tokens, run({logprobs, presence}, false).tokens);
  // A sampled row: the CPU backend has no sample_rows, and asking must not advance any
  // generator, so the tokens stay the host's.
  SeqSetup sampled;
  sampled.params.temperature = 0.8f;
  sampled.params.seed = 42;
  RunResult device = run({greedy(), sampled, greedy()}, true);
  EXPECT_EQ(device.device_steps, 0);
  EXPECT_EQ(device.draw_steps, 0);
  EXPECT_EQ(device.tokens, run({greedy(), sampled, greedy()}, false).tokens);
  // The greedy rows get the same tokens alone as beside the odd one.
  RunResult alone = run({greedy(), greedy(), greedy()}, true);
  RunResult mixed = run({greedy(), presence, greedy()}, true);
  EXPECT_EQ(alone.tokens[0], mixed.tokens[0]);
  EXPECT_EQ(alone.tokens[2], mixed.tokens[2]);
}

}  // namespace
}  // namespace carpool
