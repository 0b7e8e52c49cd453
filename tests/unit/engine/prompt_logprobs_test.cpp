// Prompt logprobs (RequestParams::prompt_logprobs, for completions' echo + logprobs) on the
// default model (SmolLM2-135M-Instruct Q4_1) on the CPU backend:
//  - LlamaModel::row_logits gives, for any row of the last step, the logits forward() gives;
//  - every prompt position is scored the same whether the prompt runs in one step or in chunks
//    of 7 tokens over several steps (and, at 39 rows, beyond the 32 rows row_logits takes at
//    once), and the same as the single-sequence Generator's logits for each prefix;
//  - a prompt whose prefix sits in the prefix cache still has every position scored (such a
//    request takes no cached blocks), and the cache still serves other requests;
//  - other requests of the same steps get the very same tokens and logprobs (batch invariance);
//  - max_tokens 0 scores the prompt and generates nothing; a cache too small for the load
//    preempts and recomputes without changing the scores.
// Transformers' values for the same prompts are compared in tests/integration (golden fixture).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>

#include "backend/cpu/cpu_backend.h"
#include "engine/engine.h"
#include "engine/generator.h"
#include "model/llama.h"
#include "model/open_model.h"

namespace carpool {
namespace {

std::string model_path() {
  if (const char* p = std::getenv("CARPOOL_TEST_MODEL")) return p;
  std::string cache = std::getenv("CARPOOL_CACHE") ? std::getenv("CARPOOL_CACHE")
                      : std::getenv("XDG_CACHE_HOME")
                          ? std::string(std::getenv("XDG_CACHE_HOME")) + "/carpool"
                          : std::string(std::getenv("HOME")) + "/.cache/carpool";
  return cache + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

EngineOptions base_options() {
  EngineOptions o;
  o.max_num_seqs = 32;  // so row_logits takes at most 32 rows at a time
  o.max_num_batched_tokens = 256;
  o.max_model_len = 256;
  o.kv_cache_bytes = int64_t{64} << 20;
  return o;
}

struct Outcome {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<TokenLogprob> prompt_logprobs;
  int events_with_prompt_logprobs = 0;
  int events = 0;
  FinishReason reason = FinishReason::kNone;
  int generated_tokens = 0, cached_prompt_tokens = 0;
  bool done = false;
};

class Collector {
 public:
  TokenSink sink(size_t index) {
    return [this, index](const TokenEvent& ev) {
      std::lock_guard<std::mutex> lk(mu_);
      Outcome& o = outcomes_[index];
      ++o.events;
      if (ev.token >= 0) {
        o.tokens.push_back(ev.token);
        o.logprobs.push_back(ev.logprob);
      }
      if (!ev.prompt_logprobs.empty()) {
        ++o.events_with_prompt_logprobs;
        o.prompt_logprobs = ev.prompt_logprobs;
      }
      if (ev.finished) {
        o.reason = ev.finish_reason;
        o.generated_tokens = ev.generated_tokens;
        o.cached_prompt_tokens = ev.cached_prompt_tokens;
        o.done = true;
        cv_.notify_all();
      }
    };
  }
  std::map<size_t, Outcome> wait(size_t n) {
    std::unique_lock<std::mutex> lk(mu_);
    const bool ok = cv_.wait_for(lk, std::chrono::seconds(300), [&] {
      size_t done = 0;
      for (const auto& [i, o] : outcomes_) done += o.done ? 1 : 0;
      return done == n;
    });
    EXPECT_TRUE(ok) << "requests did not finish";
    return outcomes_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<size_t, Outcome> outcomes_;
};

std::vector<int32_t> random_prompt(std::mt19937& rng, int n) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(200 + static_cast<int32_t>(rng() % 8000));
  return p;
}

// Max |a - b| over the logprobs and top values; top ids must agree (same order).
double max_diff(const std::vector<TokenLogprob>& a, const std::vector<TokenLogprob>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    EXPECT_EQ(a[i].token, b[i].token) << i;
    d = std::max(d, std::fabs(static_cast<double>(a[i].logprob - b[i].logprob)));
    EXPECT_EQ(a[i].top.size(), b[i].top.size()) << i;
    for (size_t k = 0; k < std::min(a[i].top.size(), b[i].top.size()); ++k) {
      EXPECT_EQ(a[i].top[k].first, b[i].top[k].first) << "position " << i << " rank " << k;
      d = std::max(d, std::fabs(static_cast<double>(a[i].top[k].second - b[i].top[k].second)));
    }
  }
  return d;
}

class PromptLogprobsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto opened = open_model(model_path());
    ASSERT_TRUE(opened.is_ok()) << opened.error() << " (run `carpool pull smollm2` first)";
    opened_ = new OpenedModel(std::move(opened.value()));
    backend_ = make_cpu_backend().release();
    auto model = LlamaModel::load(*backend_, opened_->source,
                                  engine_model_limits(base_options(), opened_->source.config));
    ASSERT_TRUE(model.is_ok()) << model.error();
    model_ = model.value().release();
  }
  static void TearDownTestSuite() {
    delete model_;
    delete backend_;
    delete opened_;
  }

  static std::unique_ptr<Engine> make_engine(const EngineOptions& o) {
    auto e = Engine::create(*model_, o);
    EXPECT_TRUE(e.is_ok()) << e.error();
    return e.is_ok() ? std::move(e.value()) : nullptr;
  }

  static RequestParams scoring_request(std::vector<int32_t> prompt, int k, int max_tokens) {
    RequestParams r;
    r.prompt = std::move(prompt);
    r.max_tokens = max_tokens;
    r.sampling.temperature = 0;
    r.logprobs = k;
    r.prompt_logprobs = k;
    return r;
  }

  static std::vector<Outcome> run(Engine& e, const std::vector<RequestParams>& reqs) {
    Collector c;
    for (size_t i = 0; i < reqs.size(); ++i) {
      auto id = e.submit(reqs[i], c.sink(i));
      EXPECT_TRUE(id.is_ok()) << id.error();
    }
    auto m = c.wait(reqs.size());
    std::vector<Outcome> out;
    for (auto& [i, o] : m) out.push_back(o);
    return out;
  }

  static OpenedModel* opened_;
  static Backend* backend_;
  static LlamaModel* model_;
};

OpenedModel* PromptLogprobsTest::opened_ = nullptr;
Backend* PromptLogprobsTest::backend_ = nullptr;
LlamaModel* PromptLogprobsTest::model_ = nullptr;

TEST_F(PromptLogprobsTest, RowLogitsAreForwardsLogits) {
  const int n = 20;
  std::mt19937 rng(7);
  const std::vector<int32_t> prompt = random_prompt(rng, n);
  const int64_t vocab = model_->config().vocab_size;
  const int block_size = 16;
  auto kv = model_->alloc_kv_cache(4, block_size);
  ASSERT_TRUE(kv.is_ok()) << kv.error();
  std::vector<int32_t> pos(n), slots(n), all_rows(n), qs = {0, n}, kvl = {n}, bt = {0, 1, 2, 3};
  for (int i = 0; i < n; ++i) pos[i] = slots[i] = all_rows[i] = i;
  ForwardBatch b;
  b.token_ids = prompt;
  b.positions = pos;
  b.slots = slots;
  b.query_start = qs;
  b.kv_len = kvl;
  b.block_tables = bt;
  b.max_blocks_per_seq = 4;
  b.logit_rows = all_rows;
  auto want_t = model_->forward(b, kv.value());
  ASSERT_TRUE(want_t.is_ok()) << want_t.error();
  std::vector<float> want(static_cast<size_t>(n) * vocab), got(want.size());
  backend_->download(want.data(), want_t.value(), want.size() * sizeof(float));

  const std::vector<int32_t> last = {n - 1};
  b.logit_rows = last;
  ASSERT_TRUE(model_->forward(b, kv.value()).is_ok());
  // Out of order and in two calls: each row is computed on its own.
  const std::vector<int32_t> first_half = {9, 0, 3, 1, 2, 4, 5, 6, 7, 8};
  const std::vector<int32_t> second_half = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
  for (const auto* rows : {&first_half, &second_half}) {
    auto t = model_->row_logits(*rows);
    ASSERT_TRUE(t.is_ok()) << t.error();
    std::vector<float> part(rows->size() * vocab);
    backend_->download(part.data(), t.value(), part.size() * sizeof(float));
    for (size_t i = 0; i < rows->size(); ++i) {
      std::copy(part.begin() + i * vocab, part.begin() + (i + 1) * vocab,
                got.begin() + static_cast<size_t>((*rows)[i]) * vocab);
    }
  }
  EXPECT_EQ(got, want);
  EXPECT_FALSE(model_->row_logits(std::vector<int32_t>{n}).is_ok());      // beyond the batch
  EXPECT_FALSE(model_->row_logits(std::vector<int32_t>(33, 0)).is_ok());  // over max_logit_rows
  EXPECT_FALSE(model_->row_logits(std::vector<int32_t>{}).is_ok());
  backend_->free_kv(kv.value());
}

TEST_F(PromptLogprobsTest, ChunkedPrefillScoresLikeOneStepAndLikeTheGenerator) {
  std::mt19937 rng(11);
  const std::vector<int32_t> prompt = random_prompt(rng, 40);  // 39 scored rows: 2 row chunks
  const int k = 3;
  auto one_step = make_engine(base_options());
  ASSERT_TRUE(one_step);
  const auto a = run(*one_step, {scoring_request(prompt, k, 4)});
  ASSERT_EQ(a[0].prompt_logprobs.size(), prompt.size() - 1);
  EXPECT_EQ(a[0].events_with_prompt_logprobs, 1);
  EXPECT_EQ(a[0].tokens.size(), 4u);

  EngineOptions small = base_options();
  small.max_num_batched_tokens = 7;  // the prompt over 6 steps
  small.max_num_seqs = 4;
  auto chunked = make_engine(small);
  ASSERT_TRUE(chunked);
  const auto b = run(*chunked, {scoring_request(prompt, k, 4)});
  const double d = max_diff(a[0].prompt_logprobs, b[0].prompt_logprobs);
  std::printf("one step vs chunks of 7: max |diff| %.3g\n", d);
  EXPECT_LE(d, 1e-5);
  EXPECT_EQ(a[0].tokens, b[0].tokens);

  // Entry i scores prompt token i + 1; the Generator's logits after each prefix agree.
  Generator gen(*model_);
  double worst = 0;
  for (size_t i = 0; i < a[0].prompt_logprobs.size(); ++i) {
    const TokenLogprob& e = a[0].prompt_logprobs[i];
    EXPECT_EQ(e.token, prompt[i + 1]);
    ASSERT_EQ(e.top.size(), static_cast<size_t>(k));
    EXPECT_LE(e.logprob, 0.f);
    EXPECT_GE(e.top[0].second, e.logprob);
    for (int j = 1; j < k; ++j) EXPECT_GE(e.top[j - 1].second, e.top[j].second);
    auto logits = gen.last_logits(std::vector<int32_t>(prompt.begin(), prompt.begin() + i + 1));
    ASSERT_TRUE(logits.is_ok()) << logits.error();
    worst = std::max(
        worst,
        std::fabs(static_cast<double>(token_logprob(logits.value(), prompt[i + 1]) - e.logprob)));
    EXPECT_EQ(top_logprobs(logits.value(), k)[0].first, e.top[0].first) << i;
  }
  std::printf("engine vs Generator: max |diff| %.3g\n", worst);
  EXPECT_LE(worst, 1e-4);
}

TEST_F(PromptLogprobsTest, CachedPrefixIsStillScored) {
  std::mt19937 rng(5);
  const std::vector<int32_t> prompt = random_prompt(rng, 50);  // 3 full blocks of 16
  auto fresh = make_engine(base_options());
  ASSERT_TRUE(fresh);
  const auto want = run(*fresh, {scoring_request(prompt, 2, 2)});

  auto e = make_engine(base_options());
  ASSERT_TRUE(e);
  RequestParams plain;
  plain.prompt = prompt;
  plain.max_tokens = 2;
  plain.sampling.temperature = 0;
  const auto warm = run(*e, {plain});  // puts the prompt's blocks in the cache
  EXPECT_EQ(warm[0].cached_prompt_tokens, 0);
  const auto scored = run(*e, {scoring_request(prompt, 2, 2)});
  EXPECT_EQ(scored[0].cached_prompt_tokens, 0);  // computed, not taken from the cache
  ASSERT_EQ(scored[0].prompt_logprobs.size(), prompt.size() - 1);
  EXPECT_LE(max_diff(want[0].prompt_logprobs, scored[0].prompt_logprobs), 1e-5);
  const auto again = run(*e, {plain});  // the cache still serves plain requests
  EXPECT_EQ(again[0].cached_prompt_tokens, 48);
  EXPECT_EQ(again[0].tokens, warm[0].tokens);
  EXPECT_EQ(e->stats().kv_blocks_used, 0);
}

TEST_F(PromptLogprobsTest, OtherRequestsAreUnchangedAndMaxTokensZeroScoresOnly) {
  std::mt19937 rng(3);
  std::vector<RequestParams> others;
  for (int i = 0; i < 6; ++i) {
    RequestParams r;
    r.prompt = random_prompt(rng, 5 + 9 * i);
    r.max_tokens = 6;
    r.sampling.temperature = 0;
    r.logprobs = 2;
    others.push_back(r);
  }
  EngineOptions o = base_options();
  o.max_num_batched_tokens = 32;  // prompt chunks and decodes share steps
  auto e = make_engine(o);
  ASSERT_TRUE(e);
  const auto alone = run(*e, others);

  std::vector<RequestParams> mix = others;
  mix.insert(mix.begin() + 2, scoring_request(random_prompt(rng, 45), 4, 0));
  mix.push_back(scoring_request(random_prompt(rng, 30), 1, 5));
  mix.push_back(scoring_request({42}, 2, 0));  // one token: nothing to score
  const int64_t generated_before = e->stats().generated_tokens;
  const auto together = run(*e, mix);
  size_t j = 0;
  int64_t generated = 0;
  for (size_t i = 0; i < mix.size(); ++i) {
    generated += together[i].generated_tokens;
    if (mix[i].prompt_logprobs >= 0) continue;
    EXPECT_EQ(together[i].tokens, alone[j].tokens) << "request " << i;
    EXPECT_EQ(together[i].logprobs, alone[j].logprobs) << "request " << i;
    EXPECT_TRUE(together[i].prompt_logprobs.empty());
    ++j;
  }
  ASSERT_EQ(j, others.size());
  // max_tokens 0: one final event, no token, reason length, the whole prompt scored.
  const Outcome& only = together[2];
  EXPECT_EQ(only.events, 1);
  EXPECT_TRUE(only.tokens.empty());
  EXPECT_EQ(only.reason, FinishReason::kLength);
  EXPECT_EQ(only.generated_tokens, 0);
  EXPECT_EQ(only.prompt_logprobs.size(), 44u);
  EXPECT_EQ(only.prompt_logprobs[0].top.size(), 4u);
  // max_tokens 5: prompt logprobs on the first token's event only.
  const Outcome& five = together[mix.size() - 2];
  EXPECT_EQ(five.tokens.size(), 5u);
  EXPECT_EQ(five.events_with_prompt_logprobs, 1);
  EXPECT_EQ(five.prompt_logprobs.size(), 29u);
  const Outcome& one = together.back();
  EXPECT_EQ(one.reason, FinishReason::kLength);
  EXPECT_TRUE(one.tokens.empty() && one.prompt_logprobs.empty());
  // The engine counts the dropped token of max_tokens 0 nowhere.
  EXPECT_EQ(e->stats().generated_tokens - generated_before, generated);
  EXPECT_EQ(e->stats().kv_blocks_used, 0);
}

TEST_F(PromptLogprobsTest, AWholeContextPromptIsScored) {
  EngineOptions o = base_options();
  o.max_model_len = 48;
  o.max_num_batched_tokens = 32;  // in two chunks
  auto e = make_engine(o);
  ASSERT_TRUE(e);
  std::mt19937 rng(5);
  const auto out = run(*e, {scoring_request(random_prompt(rng, 48), 1, 0)});
  EXPECT_EQ(out[0].reason, FinishReason::kLength);
  EXPECT_TRUE(out[0].tokens.empty());
  EXPECT_EQ(out[0].prompt_logprobs.size(), 47u);
  // One token more, or one token to generate, does not fit.
  Collector c;
  EXPECT_FALSE(e->submit(scoring_request(random_prompt(rng, 49), 1, 0), c.sink(0)).is_ok());
  EXPECT_FALSE(e->submit(scoring_request(random_prompt(rng, 48), 1, 1), c.sink(1)).is_ok());
  EXPECT_EQ(e->stats().kv_blocks_used, 0);
}

TEST_F(PromptLogprobsTest, PreemptionKeepsTheScores) {
  std::mt19937 rng(9);
  std::vector<RequestParams> reqs;
  for (int i = 0; i < 6; ++i) reqs.push_back(scoring_request(random_prompt(rng, 30 + 5 * i), 2, 8));
  EngineOptions o = base_options();
  o.max_model_len = 128;
  o.max_num_batched_tokens = 24;
  o.max_num_seqs = 8;
  const int64_t bytes_per_block =
      2 * model_->config().n_layers * model_->config().n_kv_heads * model_->config().head_dim *
      static_cast<int64_t>(dtype_row_bytes(model_->backend().kv_cache_dtype(), 1)) * o.block_size;
  o.kv_cache_bytes = 10 * bytes_per_block;
  auto e = make_engine(o);
  ASSERT_TRUE(e);
  std::vector<Outcome> alone;
  for (const auto& r : reqs) alone.push_back(run(*e, {r})[0]);
  const auto together = run(*e, reqs);
  EXPECT_GT(e->stats().preemptions, 0);
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(together[i].events_with_prompt_logprobs, 1) << i;
    EXPECT_LE(max_diff(alone[i].prompt_logprobs, together[i].prompt_logprobs), 1e-5) << i;
    EXPECT_EQ(together[i].tokens, alone[i].tokens) << i;
  }
}

}  // namespace
}  // namespace carpool
