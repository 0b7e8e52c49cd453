// The advisor's rules, one per test, from hand-made figures; then end to end from recorded steps.
#include <gtest/gtest.h>

#include "telemetry/advisor.h"

namespace carpool::telemetry {
namespace {

constexpr int64_t kS = 1'000'000'000;

Peaks peaks_with_ridge_100() {
  Peaks p;
  p.flops_per_s = 1e13;
  p.bandwidth_bytes_per_s = 1e11;
  return p;
}

// Decode steps at batch `batch`, memory-bound, `running` and `waiting` in the engine.
WindowFigures decode_figures(int running, int waiting, Bound bound) {
  WindowFigures f;
  f.steps = 100;
  f.all.bound = bound;
  f.decode.bound = bound;
  f.all.busy = 0.95;
  f.all.mfu = 0.03;
  f.all.arithmetic_intensity = 3.0;
  f.batch_size = running;
  f.batch_tokens = running;
  f.peaks = peaks_with_ridge_100();
  EngineSnapshot e;
  e.running = running;
  e.waiting = waiting;
  e.kv_blocks_used = 10;
  e.kv_blocks_total = 100;
  f.engine = e;
  f.preemptions = 0;
  return f;
}

const AdvisorLimits kLimits{.max_num_seqs = 3, .max_num_batched_tokens = 512};

TEST(Advisor, IdleWithoutSteps) {
  WindowFigures f;
  Advice a = advise(f, kLimits);
  EXPECT_EQ(a.state, "idle");
  EXPECT_EQ(a.lever, "");
  EXPECT_NE(a.text.find("no engine steps in the last 10 s"), std::string::npos) << a.text;
}

TEST(Advisor, MemoryBoundAtTheSequenceCapRaisesMaxNumSeqs) {
  Advice a = advise(decode_figures(3, 40, Bound::kMemory), kLimits);
  EXPECT_EQ(a.state, "seqs");
  EXPECT_EQ(a.bound, "memory");
  EXPECT_EQ(a.lever, "--max-num-seqs");
  EXPECT_EQ(a.text.rfind("decode memory-bound at 3 running sequences with 40 waiting: raise "
                         "--max-num-seqs (batch 3.0 does 3 FLOPs per byte, below the ridge "
                         "point 100",
                         0),
            0u)
      << a.text;
}

TEST(Advisor, ComputeBoundAtTheCapAddsReplicas) {
  WindowFigures f = decode_figures(3, 40, Bound::kCompute);
  f.all.arithmetic_intensity = 300;
  Advice a = advise(f, kLimits);
  EXPECT_EQ(a.state, "seqs");
  EXPECT_EQ(a.lever, "replicas");
  EXPECT_NE(a.text.find("above the ridge point 100"), std::string::npos) << a.text;
}

TEST(Advisor, PreemptionsRaiseTheKvCache) {
  WindowFigures f = decode_figures(2, 5, Bound::kMemory);
  f.preemptions = 4;
  f.engine->kv_blocks_used = 97;
  Advice a = advise(f, kLimits);
  EXPECT_EQ(a.state, "kv");
  EXPECT_EQ(a.lever, "--kv-cache-memory");
  EXPECT_NE(a.text.find("KV cache 97% full with 5 waiting and 4 preemptions"), std::string::npos)
      << a.text;
}

TEST(Advisor, FullKvWithQueueRaisesTheKvCacheEvenWithoutPreemptions) {
  WindowFigures f = decode_figures(2, 5, Bound::kMemory);
  f.engine->kv_blocks_used = 95;
  EXPECT_EQ(advise(f, kLimits).lever, "--kv-cache-memory");
  f.engine->waiting = 0;  // full but nobody waits: not the bottleneck
  EXPECT_NE(advise(f, kLimits).lever, "--kv-cache-memory");
}

TEST(Advisor, FullTokenBudgetRaisesMaxNumBatchedTokens) {
  WindowFigures f = decode_figures(2, 6, Bound::kCompute);
  f.batch_tokens = 480;
  Advice a = advise(f, kLimits);
  EXPECT_EQ(a.state, "tokens");
  EXPECT_EQ(a.lever, "--max-num-batched-tokens");
  EXPECT_NE(a.text.find("480 of 512 tokens"), std::string::npos) << a.text;
}

TEST(Advisor, QueueWithRoomNeedsNoChange) {
  WindowFigures f = decode_figures(1, 2, Bound::kMemory);
  Advice a = advise(f, kLimits);
  EXPECT_EQ(a.state, "queue");
  EXPECT_EQ(a.lever, "");
}

TEST(Advisor, NoQueueByBound) {
  EXPECT_EQ(advise(decode_figures(2, 0, Bound::kMemory), kLimits).state, "memory");
  EXPECT_EQ(advise(decode_figures(2, 0, Bound::kMemory), kLimits).lever, "concurrency");
  EXPECT_EQ(advise(decode_figures(2, 0, Bound::kCompute), kLimits).state, "compute");
  WindowFigures f = decode_figures(1, 0, Bound::kOverhead);
  f.all.busy = 0.3;
  Advice a = advise(f, kLimits);
  EXPECT_EQ(a.state, "overhead");
  EXPECT_NE(a.text.find("busy 30% of the time"), std::string::npos) << a.text;
}

// From recorded steps: 10 s of memory-bound decode at batch 3 with 40 waiting.
TEST(Advisor, FromTelemetryWindow) {
  FakeClock clock(1'700'000'000 * kS);
  Telemetry t({.clock = &clock, .peaks = peaks_with_ridge_100()});
  t.set_engine_source([] {
    EngineSnapshot e;
    e.running = 3;
    e.waiting = 40;
    e.kv_blocks_used = 30;
    e.kv_blocks_total = 100;
    e.preemptions = 0;
    return e;
  });
  for (int i = 0; i < 100; ++i) {
    StepStats s;
    s.start_ns = clock.now_ns();
    s.end_ns = s.start_ns + kS / 10;
    s.device_ns = kS / 10;
    for (int q = 0; q < 3; ++q) s.shape.add_sequence(1, 100, false, true);
    s.cost.flops_matmul = 3e9;
    s.cost.bytes_weights = 1e9;
    t.record(s);
    clock.advance_ns(kS / 10);
  }
  t.sample_probes();
  clock.advance_ns(kS);
  WindowFigures f = t.window_figures(10);
  // Window [T+1, T+11): the steps that end at T+1.0, T+1.1, ..., T+10.0.
  EXPECT_EQ(f.steps, 91);
  ASSERT_TRUE(f.batch_size);
  EXPECT_DOUBLE_EQ(*f.batch_size, 3);
  ASSERT_TRUE(f.preemptions);
  EXPECT_EQ(*f.preemptions, 0);
  Advice a = advise(f, kLimits);
  EXPECT_EQ(a.lever, "--max-num-seqs") << a.text;
  EXPECT_EQ(a.bound, "memory");
}

}  // namespace
}  // namespace carpool::telemetry
