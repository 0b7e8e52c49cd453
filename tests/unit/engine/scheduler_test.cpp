// Scheduler tests in the TensorRT-LLM batch-manager style: each test draws every request's token
// timeline in a comment, then asserts each iteration's batch. No model: a fake runner "samples"
// tokens, and the clock is a counter.
//
// Batch notation: "id:start+n" is sequence `id` computing positions [start, start + n); a
// trailing '*' marks a row that gives logits (a token is sampled for it).
#include "engine/scheduler.h"

#include <gtest/gtest.h>

#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace carpool {
namespace {

struct FakeClock {
  double t = 0;
  Clock fn() {
    return [this] { return t; };
  }
};

std::string describe(const StepPlan& plan) {
  std::string s;
  for (const ScheduledSeq& e : plan.seqs) {
    if (!s.empty()) s += ' ';
    s += std::to_string(e.id) + ":" + std::to_string(e.start) + "+" + std::to_string(e.num_tokens);
    if (e.needs_logits) s += '*';
  }
  return s;
}

std::vector<int32_t> prompt(int n, int32_t first) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), first);
  return t;
}

SequenceParams req(SeqId id, std::vector<int32_t> p, int max_tokens,
                   std::vector<int32_t> stop_ids = {}) {
  SequenceParams r;
  r.id = id;
  r.prompt = std::move(p);
  r.max_tokens = max_tokens;
  r.stop_ids = std::move(stop_ids);
  return r;
}

// The fake model: the token after position p of sequence id is a pure function of (id, p), so a
// recomputed sequence must come out the same.
int32_t fake_token(SeqId id, int position) {
  return static_cast<int32_t>(1000 + id * 100 + position);
}

// Runs the plan through the fake model and applies it. Returns the outputs.
std::vector<SeqOutput> step(Scheduler& s, const StepPlan& plan) {
  std::vector<int32_t> sampled;
  for (const ScheduledSeq& e : plan.seqs) {
    if (e.needs_logits) sampled.push_back(fake_token(e.id, e.start + e.num_tokens - 1));
  }
  return s.update(plan, sampled);
}

SchedulerConfig config(int budget, int max_seqs, int num_blocks, int block_size,
                       int max_model_len) {
  SchedulerConfig c;
  c.max_num_batched_tokens = budget;
  c.max_num_seqs = max_seqs;
  c.num_blocks = num_blocks;
  c.block_size = block_size;
  c.max_model_len = max_model_len;
  return c;
}

// Budget 8 tokens per step. Request 1: 4-token prompt, request 2: 10-token prompt; 3 tokens each.
//
//   step   0        1        2        3
//   req1   P0-3*    D4*      D5* end
//   req2   P0-3     P4-9*    D10*     D11* end
//
// Request 2's prompt is chunked (4 tokens fit after request 1's prompt), and its second chunk
// runs in the same step as request 1's first decode.
TEST(Scheduler, ChunkedPrefillMixesWithDecode) {
  FakeClock clock;
  Scheduler s(config(8, 4, 16, 4, 32), clock.fn());
  s.add(req(1, prompt(4, 10), 3));
  s.add(req(2, prompt(10, 20), 3));

  StepPlan p = s.schedule();
  EXPECT_EQ(describe(p), "1:0+4* 2:0+4");
  EXPECT_EQ(p.num_prefill_tokens, 8);
  step(s, p);

  p = s.schedule();
  EXPECT_EQ(describe(p), "1:4+1* 2:4+6*");
  EXPECT_EQ(p.num_decode_tokens, 1);
  EXPECT_EQ(p.num_prefill_tokens, 6);
  step(s, p);

  p = s.schedule();
  EXPECT_EQ(describe(p), "1:5+1* 2:10+1*");
  auto out = step(s, p);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(out[0].finished);
  EXPECT_EQ(out[0].finish, SeqFinish::kLength);
  EXPECT_EQ(out[0].seq->tokens.size(), 7u);
  EXPECT_FALSE(out[1].finished);

  p = s.schedule();
  EXPECT_EQ(describe(p), "2:11+1*");
  out = step(s, p);
  ASSERT_TRUE(out[0].finished);
  // Tokens 10..12 of request 2 came from its positions 9, 10, 11.
  EXPECT_EQ(out[0].seq->tokens[10], fake_token(2, 9));
  EXPECT_EQ(out[0].seq->tokens[12], fake_token(2, 11));
  EXPECT_FALSE(s.has_unfinished());
  EXPECT_EQ(s.block_manager().num_used_blocks(), 0);
}

// max_num_seqs = 2. Three 2-token prompts; request 3 waits for a slot.
//
//   step   0      1      2      3
//   req1   P*     D* end
//   req2   P*     D*     D* end
//   req3   -      -      P*     D* end     (admitted the step after request 1 finishes)
TEST(Scheduler, MaxNumSeqsBudget) {
  FakeClock clock;
  Scheduler s(config(64, 2, 16, 4, 32), clock.fn());
  s.add(req(1, prompt(2, 10), 2));
  s.add(req(2, prompt(2, 20), 3));
  s.add(req(3, prompt(2, 30), 2));
  StepPlan p = s.schedule();
  EXPECT_EQ(describe(p), "1:0+2* 2:0+2*");
  EXPECT_EQ(s.num_waiting(), 1);
  step(s, p);
  p = s.schedule();
  EXPECT_EQ(describe(p), "1:2+1* 2:2+1*");
  step(s, p);
  p = s.schedule();
  EXPECT_EQ(describe(p), "2:3+1* 3:0+2*");
  step(s, p);
  p = s.schedule();
  EXPECT_EQ(describe(p), "3:2+1*");
  step(s, p);
  EXPECT_FALSE(s.has_unfinished());
}

// Budget 3 tokens: a 5-token prompt arriving while two sequences decode takes what is left.
//
//   step   0        1        2        3        4
//   req1   P0-1*    D2*      D3*      D4* end
//   req2   -        P0       P1       P2-3     P4* end  (what the decodes leave of the budget)
//   req3   P0*      D1*      D2* end
TEST(Scheduler, TokenBudgetDecodesFirstThenChunks) {
  FakeClock clock;
  Scheduler s(config(3, 8, 16, 4, 32), clock.fn());
  s.add(req(1, prompt(2, 10), 4));
  s.add(req(3, prompt(1, 30), 3));
  StepPlan p = s.schedule();
  EXPECT_EQ(describe(p), "1:0+2* 3:0+1*");
  step(s, p);
  s.add(req(2, prompt(5, 20), 1));
  p = s.schedule();
  EXPECT_EQ(describe(p), "1:2+1* 3:1+1* 2:0+1");
  step(s, p);
  p = s.schedule();
  EXPECT_EQ(describe(p), "1:3+1* 3:2+1* 2:1+1");
  step(s, p);  // req3 ends
  p = s.schedule();
  EXPECT_EQ(describe(p), "1:4+1* 2:2+2");
  step(s, p);  // req1 ends
  p = s.schedule();
  EXPECT_EQ(describe(p), "2:4+1*");
  auto out = step(s, p);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].finished);
  EXPECT_FALSE(s.has_unfinished());
}

TEST(Scheduler, StopTokenFinishesAndIgnoreEosDoesNot) {
  FakeClock clock;
  Scheduler s(config(64, 8, 16, 4, 32), clock.fn());
  // The fake model's first token for request 1 is fake_token(1, 2).
  s.add(req(1, prompt(3, 10), 5, {fake_token(1, 2)}));
  SequenceParams r2 = req(2, prompt(3, 10), 2, {fake_token(2, 2)});
  r2.ignore_eos = true;
  s.add(r2);
  auto out = step(s, s.schedule());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(out[0].finished);
  EXPECT_EQ(out[0].finish, SeqFinish::kStop);
  EXPECT_FALSE(out[1].finished);
  out = step(s, s.schedule());
  EXPECT_EQ(out[0].finish, SeqFinish::kLength);
}

// Block size 4, 4 blocks (16 slots), max_model_len 8. Three 4-token prompts, 4 tokens each
// (8 tokens = 2 blocks per sequence at the end).
//
//   step   0      1          2       3         4        5      6
//   A      P*     D4*        D5*     D6* end
//   B      P*     D4*        D5*     D6* end
//   C      P*     preempted  waits   waits     R0-4*    D5*    D6* end
//
// Step 1: A's and B's decodes each need a second block; only one is free, so the newest running
// sequence (C) is preempted by recompute and nothing is admitted that step. C comes back when
// A and B finish, recomputes its prompt and its first sampled token ("R0-4"), and continues.
TEST(Scheduler, PreemptionByRecomputeAndReadmission) {
  FakeClock clock;
  Scheduler s(config(64, 8, 4, 4, 8), clock.fn());
  s.add(req(1, prompt(4, 10), 4));
  s.add(req(2, prompt(4, 20), 4));
  s.add(req(3, prompt(4, 30), 4));
  StepPlan p = s.schedule();
  EXPECT_EQ(describe(p), "1:0+4* 2:0+4* 3:0+4*");
  step(s, p);
  EXPECT_EQ(s.block_manager().num_free_blocks(), 1);

  p = s.schedule();
  EXPECT_EQ(describe(p), "1:4+1* 2:4+1*");
  ASSERT_EQ(p.preempted.size(), 1u);
  EXPECT_EQ(p.preempted[0], 3u);
  EXPECT_EQ(s.num_waiting(), 1);
  EXPECT_EQ(s.find(3)->num_computed_tokens, 0);
  EXPECT_EQ(s.find(3)->num_tokens(), 5);  // its sampled token is kept
  step(s, p);

  p = s.schedule();
  EXPECT_EQ(describe(p), "1:5+1* 2:5+1*");  // C does not fit yet
  step(s, p);
  p = s.schedule();
  EXPECT_EQ(describe(p), "1:6+1* 2:6+1*");
  auto out = step(s, p);
  EXPECT_TRUE(out[0].finished && out[1].finished);

  p = s.schedule();
  EXPECT_EQ(describe(p), "3:0+5*");  // recompute: prompt plus the first sampled token
  EXPECT_TRUE(p.seqs[0].is_prefill);
  step(s, p);
  p = s.schedule();
  EXPECT_EQ(describe(p), "3:5+1*");
  step(s, p);
  p = s.schedule();
  EXPECT_EQ(describe(p), "3:6+1*");
  out = step(s, p);
  ASSERT_TRUE(out[0].finished);
  // The same tokens as without preemption: the fake model's (id, position) function.
  for (int pos = 3; pos < 7; ++pos) {
    EXPECT_EQ(out[0].seq->tokens[pos + 1], fake_token(3, pos)) << pos;
  }
  EXPECT_EQ(out[0].seq->num_preemptions, 1);
  EXPECT_EQ(s.num_preemptions(), 1);
  EXPECT_EQ(s.block_manager().num_used_blocks(), 0);
}

// Block size 4, 3 blocks (one max_model_len sequence of 12). A sequence that cannot grow and is
// itself the newest preempts itself; the oldest always progresses.
//
//   step   0        1           2 ...
//   A      P0-6*    D7*         D8* ... (position 7 fits A's second block)
//   B      P0-3*    preempted   (B needs a second block, none is free, and B is the newest)
TEST(Scheduler, OldestSequenceAlwaysProgresses) {
  FakeClock clock;
  Scheduler s(config(64, 8, 3, 4, 12), clock.fn());
  s.add(req(1, prompt(7, 10), 5));
  s.add(req(2, prompt(4, 20), 5));
  StepPlan p = s.schedule();
  EXPECT_EQ(describe(p), "1:0+7* 2:0+4*");
  step(s, p);
  p = s.schedule();
  EXPECT_EQ(describe(p), "1:7+1*");
  EXPECT_EQ(p.preempted, std::vector<SeqId>{2});
  step(s, p);
  // Run to completion: A first, then B.
  int steps = 0;
  while (s.has_unfinished() && steps < 100) {
    step(s, s.schedule());
    ++steps;
  }
  EXPECT_FALSE(s.has_unfinished());
}

// Prefix sharing, block size 4. Request 1 (10 tokens) runs first; request 2 shares its first 8
// tokens and skips them; request 3 repeats request 1's prompt exactly and recomputes only the
// last block (at least one token must be computed to give logits: 9 of 10 tokens are eligible,
// so 2 whole blocks = 8 are reused).
//
//   step   0        1         2
//   req1   P0-9*    D10*end
//   req2   -        P8-10*    (positions 0-7 from the cache)
//   req3   -        P8-9*
TEST(Scheduler, PrefixSharing) {
  FakeClock clock;
  Scheduler s(config(64, 8, 16, 4, 32), clock.fn());
  auto p1 = prompt(10, 100);
  s.add(req(1, p1, 2));
  StepPlan p = s.schedule();
  EXPECT_EQ(describe(p), "1:0+10*");
  step(s, p);
  auto p2 = p1;
  p2[8] = 7;
  p2.push_back(8);
  s.add(req(2, p2, 1));
  s.add(req(3, p1, 1));
  p = s.schedule();
  EXPECT_EQ(describe(p), "1:10+1* 2:8+3* 3:8+2*");
  EXPECT_EQ(s.find(2)->num_cached_prompt_tokens, 8);
  EXPECT_EQ(s.find(3)->num_cached_prompt_tokens, 8);
  const auto& b1 = s.find(1)->blocks.blocks;
  const auto& b2 = s.find(2)->blocks.blocks;
  const auto& b3 = s.find(3)->blocks.blocks;
  EXPECT_EQ(b1[0], b2[0]);
  EXPECT_EQ(b1[1], b3[1]);
  EXPECT_EQ(s.block_manager().ref_count(b1[0]), 3);
  EXPECT_NE(b1[2], b3[2]);  // the partial last block is never shared
  step(s, p);
  EXPECT_FALSE(s.has_unfinished());
  EXPECT_EQ(s.block_manager().num_used_blocks(), 0);
}

// A sequence that must compute every position (prompt logprobs) takes no cached blocks, and its
// own full blocks do not displace the cached copies. Block size 4; request 1 (10 tokens) caches
// 2 blocks; request 2 repeats its prompt with reuse_cached_prefix = false and computes all 10;
// request 3 repeats it again and still hits request 1's blocks.
//
//   step   0        1          2
//   req1   P0-9*    D10*end
//   req2   -        P0-9*end
//   req3   -        -          P8-9*  (positions 0-7 from the cache)
TEST(Scheduler, NoPrefixReuseComputesEveryPosition) {
  FakeClock clock;
  Scheduler s(config(64, 8, 16, 4, 32), clock.fn());
  auto p1 = prompt(10, 100);
  s.add(req(1, p1, 2));
  step(s, s.schedule());
  SequenceParams r2 = req(2, p1, 1);
  r2.reuse_cached_prefix = false;
  s.add(std::move(r2));
  StepPlan p = s.schedule();
  EXPECT_EQ(describe(p), "1:10+1* 2:0+10*");
  EXPECT_EQ(s.find(2)->num_cached_prompt_tokens, 0);
  EXPECT_NE(s.find(1)->blocks.blocks[0], s.find(2)->blocks.blocks[0]);
  step(s, p);
  s.add(req(3, p1, 1));
  p = s.schedule();
  EXPECT_EQ(describe(p), "3:8+2*");
  EXPECT_EQ(s.find(3)->num_cached_prompt_tokens, 8);
  step(s, p);
  EXPECT_EQ(s.block_manager().num_used_blocks(), 0);
}

TEST(Scheduler, AbortWaitingAndRunningFreesBlocks) {
  FakeClock clock;
  Scheduler s(config(64, 1, 16, 4, 32), clock.fn());
  s.add(req(1, prompt(6, 10), 8));
  s.add(req(2, prompt(6, 20), 8));
  StepPlan p = s.schedule();
  EXPECT_EQ(describe(p), "1:0+6*");
  step(s, p);
  EXPECT_GT(s.block_manager().num_used_blocks(), 0);
  EXPECT_TRUE(s.abort(2));  // waiting
  EXPECT_TRUE(s.abort(1));  // running
  EXPECT_FALSE(s.abort(1));
  EXPECT_FALSE(s.abort(42));
  EXPECT_EQ(s.block_manager().num_used_blocks(), 0);
  EXPECT_FALSE(s.has_unfinished());
  EXPECT_TRUE(s.schedule().empty());
}

TEST(Scheduler, ClockStampsArrivalAndFirstToken) {
  FakeClock clock;
  Scheduler s(config(64, 8, 16, 4, 32), clock.fn());
  clock.t = 5;
  s.add(req(1, prompt(3, 10), 2));
  clock.t = 7;
  StepPlan p = s.schedule();
  clock.t = 9;
  step(s, p);
  const Sequence* q = s.find(1);
  EXPECT_EQ(q->arrival_s, 5);
  EXPECT_EQ(q->first_scheduled_s, 7);
  EXPECT_EQ(q->first_token_s, 9);
}

// Random traffic on a cache that holds exactly one max_model_len sequence: every request must
// finish (no deadlock), with the tokens the fake model gives without any preemption, and the
// budgets must hold at every step.
TEST(Scheduler, FullCacheStressNeverDeadlocksAndKeepsAnswers) {
  FakeClock clock;
  const int block_size = 4, max_model_len = 24;
  SchedulerConfig c = config(10, 6, max_model_len / block_size, block_size, max_model_len);
  Scheduler s(c, clock.fn());
  std::mt19937 rng(7);
  std::map<SeqId, std::vector<int32_t>> prompts;
  std::map<SeqId, int> max_tokens;
  std::map<SeqId, std::vector<int32_t>> results;
  SeqId next_id = 1;
  int steps = 0;
  int64_t preempted = 0;
  while ((next_id <= 40 || s.has_unfinished()) && steps < 5000) {
    if (next_id <= 40 && rng() % 2 == 0) {
      const int n = 1 + static_cast<int>(rng() % 14);
      const int mt = 1 + static_cast<int>(rng() % (max_model_len - n));
      // Half the prompts share a 8-token prefix, to mix prefix hits with eviction.
      auto pr = prompt(n, rng() % 2 ? 500 : static_cast<int32_t>(next_id * 37));
      prompts[next_id] = pr;
      max_tokens[next_id] = mt;
      s.add(req(next_id, pr, mt));
      ++next_id;
    }
    StepPlan p = s.schedule();
    EXPECT_LE(p.num_batched_tokens, c.max_num_batched_tokens);
    EXPECT_LE(static_cast<int>(p.seqs.size()), c.max_num_seqs);
    EXPECT_LE(s.num_running(), c.max_num_seqs);
    preempted += static_cast<int64_t>(p.preempted.size());
    if (!p.empty()) {
      for (const SeqOutput& o : step(s, p)) {
        if (o.finished) results[o.id] = o.seq->tokens;
      }
    } else {
      EXPECT_FALSE(s.has_unfinished()) << "empty plan with work left at step " << steps;
    }
    ++steps;
  }
  EXPECT_FALSE(s.has_unfinished());
  ASSERT_EQ(results.size(), 40u);
  EXPECT_GT(preempted, 0);  // the test must exercise preemption
  for (const auto& [id, toks] : results) {
    const auto& pr = prompts[id];
    ASSERT_EQ(toks.size(), pr.size() + static_cast<size_t>(max_tokens[id])) << id;
    for (size_t i = pr.size(); i < toks.size(); ++i) {
      EXPECT_EQ(toks[i], fake_token(id, static_cast<int>(i) - 1)) << id << " @" << i;
    }
  }
  EXPECT_EQ(s.block_manager().num_used_blocks(), 0);
}

// unstarted() (what the engine ends at shutdown): the waiting sequences that have generated
// nothing. A sequence preempted after its first token is waiting but has started.
TEST(Scheduler, UnstartedListsWaitingSequencesWithNothingGenerated) {
  FakeClock clock;
  Scheduler s(config(64, 8, 4, 4, 8), clock.fn());
  s.add(req(1, prompt(4, 10), 4));
  s.add(req(2, prompt(4, 20), 4));
  s.add(req(3, prompt(4, 30), 4));
  EXPECT_EQ(s.unstarted(), (std::vector<SeqId>{1, 2, 3}));
  step(s, s.schedule());
  EXPECT_TRUE(s.unstarted().empty());
  s.add(req(4, prompt(4, 40), 4));
  StepPlan p = s.schedule();
  ASSERT_EQ(p.preempted, (std::vector<SeqId>{3}));
  EXPECT_EQ(s.num_waiting(), 2);
  EXPECT_EQ(s.unstarted(), (std::vector<SeqId>{4}));
}

}  // namespace
}  // namespace carpool
