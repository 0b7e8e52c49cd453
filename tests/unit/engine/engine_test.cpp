// The engine on the default model (SmolLM2-135M-Instruct Q4_1) on the CPU backend: batching,
// chunking, prefix reuse and preemption must not change answers.
//
//  - greedy tokens of 32 requests with different prompts and lengths are the same alone (one at
//    a time, prefix caching off) as all submitted at once, and the same as the single-sequence
//    Generator's;
//  - a seeded sampled request is reproducible, alone and among others;
//  - abort returns the request's blocks;
//  - a cache far too small for the load preempts and still finishes every request with the same
//    greedy answers.
#include "engine/engine.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "backend/cpu/cpu_backend.h"
#include "engine/engine_options.h"
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

// Engine options shared by the tests; each test may shrink them (the model's limits cover these).
EngineOptions base_options() {
  EngineOptions o;
  o.max_num_seqs = 32;
  o.max_num_batched_tokens = 256;
  o.max_model_len = 256;
  o.kv_cache_bytes = int64_t{64} << 20;
  return o;
}

struct Outcome {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  FinishReason reason = FinishReason::kNone;
  int prompt_tokens = 0, generated_tokens = 0, cached_prompt_tokens = 0;
  bool refused_at_shutdown = false;
  bool done = false;
};

// Collects events of many requests; wait() blocks until every request has finished.
class Collector {
 public:
  TokenSink sink(size_t index) {
    return [this, index](const TokenEvent& ev) {
      std::lock_guard<std::mutex> lk(mu_);
      Outcome& o = outcomes_[index];
      if (ev.token >= 0) {
        o.tokens.push_back(ev.token);
        o.logprobs.push_back(ev.logprob);
      }
      if (ev.finished) {
        o.reason = ev.finish_reason;
        o.prompt_tokens = ev.prompt_tokens;
        o.generated_tokens = ev.generated_tokens;
        o.cached_prompt_tokens = ev.cached_prompt_tokens;
        o.refused_at_shutdown = ev.refused_at_shutdown;
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
  bool first_token_seen(size_t index) {
    std::lock_guard<std::mutex> lk(mu_);
    return !outcomes_[index].tokens.empty();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<size_t, Outcome> outcomes_;
};

class EngineTest : public ::testing::Test {
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

  // 32 requests: prompts of 3..50 tokens (eight of them share a 40-token prefix), 3..8 tokens.
  static std::vector<RequestParams> greedy_requests() {
    std::mt19937 rng(2024);
    std::vector<int32_t> shared(40);
    for (auto& t : shared) t = 200 + static_cast<int32_t>(rng() % 8000);
    std::vector<RequestParams> reqs;
    for (int i = 0; i < 32; ++i) {
      RequestParams r;
      const int n = 3 + static_cast<int>(rng() % 48);
      if (i % 4 == 1) r.prompt = shared;
      while (static_cast<int>(r.prompt.size()) < n || (i % 4 == 1 && r.prompt.size() < 44)) {
        r.prompt.push_back(200 + static_cast<int32_t>(rng() % 8000));
      }
      r.max_tokens = 3 + static_cast<int>(rng() % 6);
      r.sampling.temperature = 0;
      r.logprobs = 0;
      reqs.push_back(std::move(r));
    }
    return reqs;
  }

  // Runs the requests one at a time.
  static std::vector<Outcome> run_alone(Engine& e, const std::vector<RequestParams>& reqs) {
    std::vector<Outcome> out;
    for (const RequestParams& r : reqs) {
      Collector c;
      auto id = e.submit(r, c.sink(0));
      EXPECT_TRUE(id.is_ok()) << id.error();
      out.push_back(c.wait(1)[0]);
    }
    return out;
  }

  // Submits all requests at once.
  static std::vector<Outcome> run_together(Engine& e, const std::vector<RequestParams>& reqs) {
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

  // Waits up to 15 s for request i's first token.
  static bool wait_first_token(Collector& c, size_t i) {
    for (int k = 0; k < 3000 && !c.first_token_seen(i); ++k) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return c.first_token_seen(i);
  }

  // Submits a greedy request of 200 tokens as c's request 0 and waits for its first token;
  // -1 if that fails.
  static int64_t start_long_request(Engine& e, Collector& c) {
    RequestParams r;
    r.prompt = greedy_requests()[3].prompt;
    r.max_tokens = 200;
    r.sampling.temperature = 0;
    auto id = e.submit(r, c.sink(0));
    if (!id.is_ok() || !wait_first_token(c, 0)) return -1;
    return static_cast<int64_t>(id.value());
  }

  static OpenedModel* opened_;
  static Backend* backend_;
  static LlamaModel* model_;
};

OpenedModel* EngineTest::opened_ = nullptr;
Backend* EngineTest::backend_ = nullptr;
LlamaModel* EngineTest::model_ = nullptr;

TEST_F(EngineTest, GreedyTokensAreTheSameAloneAndAmong31Others) {
  const auto reqs = greedy_requests();
  EngineOptions alone_opt = base_options();
  alone_opt.enable_prefix_caching = false;
  std::vector<Outcome> alone;
  {
    auto e = make_engine(alone_opt);
    ASSERT_TRUE(e);
    alone = run_alone(*e, reqs);
  }
  auto e = make_engine(base_options());
  ASSERT_TRUE(e);
  const auto together = run_together(*e, reqs);
  ASSERT_EQ(together.size(), reqs.size());
  int cached = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(alone[i].reason, FinishReason::kLength);
    ASSERT_EQ(alone[i].tokens.size(), static_cast<size_t>(reqs[i].max_tokens)) << i;
    EXPECT_EQ(together[i].tokens, alone[i].tokens) << "request " << i;
    EXPECT_EQ(together[i].logprobs, alone[i].logprobs) << "request " << i;
    EXPECT_EQ(together[i].prompt_tokens, static_cast<int>(reqs[i].prompt.size()));
    EXPECT_EQ(together[i].generated_tokens, reqs[i].max_tokens);
    cached += together[i].cached_prompt_tokens;
  }
  // The shared 40-token prefix (2 blocks) is reused by the requests admitted after the first.
  EXPECT_GT(cached, 0);
  EXPECT_EQ(e->stats().prefix_cache_hit_tokens, cached);
  const EngineStats st = e->stats();
  EXPECT_EQ(st.running, 0);
  EXPECT_EQ(st.kv_blocks_used, 0);
  EXPECT_GT(st.steps, 0);

  // The single-sequence Generator agrees on a few of them.
  Generator gen(*model_);
  for (size_t i : {0u, 5u, 17u}) {
    GenerateOptions go;
    go.max_tokens = reqs[i].max_tokens;
    go.sampling.temperature = 0;
    std::vector<int32_t> toks;
    auto r = gen.run(reqs[i].prompt, go, [&](int32_t t) {
      toks.push_back(t);
      return true;
    });
    ASSERT_TRUE(r.is_ok()) << r.error();
    EXPECT_EQ(toks, alone[i].tokens) << "request " << i;
  }
}

TEST_F(EngineTest, SeededSamplingIsReproducibleAloneAndInABatch) {
  auto e = make_engine(base_options());
  ASSERT_TRUE(e);
  RequestParams r;
  r.prompt = {1, 9690, 2683, 314, 253, 2272, 30, 2, 198, 1, 4093, 198};
  r.max_tokens = 12;
  r.sampling.temperature = 0.9f;
  r.sampling.top_p = 0.95f;
  r.sampling.seed = 1234;
  const auto a = run_alone(*e, {r});
  const auto b = run_alone(*e, {r});
  ASSERT_EQ(a[0].tokens.size(), 12u);
  EXPECT_EQ(a[0].tokens, b[0].tokens);
  // Among others (including greedy ones and another seed).
  std::vector<RequestParams> mix = {r};
  auto others = greedy_requests();
  for (int i = 0; i < 5; ++i) mix.push_back(others[i]);
  RequestParams r2 = r;
  r2.sampling.seed = 99;
  mix.push_back(r2);
  mix.push_back(r);
  const auto t = run_together(*e, mix);
  EXPECT_EQ(t[0].tokens, a[0].tokens);
  EXPECT_EQ(t.back().tokens, a[0].tokens);
}

TEST_F(EngineTest, AbortReturnsBlocksWithinAStep) {
  auto e = make_engine(base_options());
  ASSERT_TRUE(e);
  Collector c;
  const int64_t id = start_long_request(*e, c);
  ASSERT_GE(id, 0);
  EXPECT_GT(e->stats().kv_blocks_used, 0);
  e->abort(id);
  auto out = c.wait(1);
  EXPECT_EQ(out[0].reason, FinishReason::kAbort);
  EXPECT_LT(out[0].tokens.size(), 200u);
  // Stats are published before the final event is delivered.
  const EngineStats st = e->stats();
  EXPECT_EQ(st.kv_blocks_used, 0);
  EXPECT_EQ(st.running, 0);
  e->abort(id);  // a second abort is harmless
}

TEST_F(EngineTest, StopEndsLikeAbortButAsStopWithTheTokensKept) {
  auto e = make_engine(base_options());
  ASSERT_TRUE(e);
  Collector c;
  const int64_t id = start_long_request(*e, c);
  ASSERT_GE(id, 0);
  e->stop(id, 1);  // as the server does when the first token completes a stop string
  auto out = c.wait(1);
  EXPECT_EQ(out[0].reason, FinishReason::kStop);
  EXPECT_EQ(out[0].generated_tokens, 1);  // however many the engine had generated by then
  EXPECT_LT(out[0].tokens.size(), 200u);
  const EngineStats st = e->stats();
  EXPECT_EQ(st.kv_blocks_used, 0);
  EXPECT_EQ(st.running, 0);
  e->stop(id, 1);  // harmless once finished
}

TEST_F(EngineTest, DeliveryHookBracketsEveryBatchOfEvents) {
  // The hook and the sinks all run on the engine thread: a plain log needs no lock until the
  // requests have finished.
  std::vector<std::string> log;
  EngineOptions o = base_options();
  o.delivery_hook = [&log](bool begin) { log.push_back(begin ? "begin" : "end"); };
  auto e = make_engine(o);
  ASSERT_TRUE(e);
  auto reqs = greedy_requests();
  reqs.resize(4);
  Collector c;
  for (size_t i = 0; i < reqs.size(); ++i) {
    reqs[i].max_tokens = 5;
    TokenSink inner = c.sink(i);
    ASSERT_TRUE(e->submit(reqs[i], [&log, inner](const TokenEvent& ev) {
                   log.push_back("event");
                   inner(ev);
                 }).is_ok());
  }
  c.wait(reqs.size());
  e.reset();  // joins the engine thread
  ASSERT_FALSE(log.empty());
  bool open = false;
  int events = 0, batches = 0;
  for (const std::string& entry : log) {
    if (entry == "begin") {
      EXPECT_FALSE(open);
      open = true;
      ++batches;
    } else if (entry == "end") {
      EXPECT_TRUE(open);
      open = false;
    } else {
      EXPECT_TRUE(open) << "an event outside begin/end";
      ++events;
    }
  }
  EXPECT_FALSE(open);
  EXPECT_EQ(events, 4 * 5);    // every token, the last one carrying the finish
  EXPECT_LT(batches, events);  // a step's events of several requests share one batch
}

// Overlapped delivery (on by default on GPUs; forced here on the CPU): a step's events reach the
// sinks while the next step runs. The events are the same, in the same order, every request
// finishes, and a step's events still go out while the device has work (not only at the end).
TEST_F(EngineTest, OverlappedDeliveryGivesTheSameEvents) {
  const auto reqs = greedy_requests();
  EngineOptions plain = base_options();
  plain.overlap_delivery = false;
  EngineOptions overlap = base_options();
  overlap.overlap_delivery = true;
  std::vector<Outcome> want;
  {
    auto e = make_engine(plain);
    ASSERT_TRUE(e);
    want = run_together(*e, reqs);
  }
  auto e = make_engine(overlap);
  ASSERT_TRUE(e);
  const auto got = run_together(*e, reqs);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(got[i].reason, want[i].reason) << i;
    EXPECT_EQ(got[i].tokens, want[i].tokens) << i;
    EXPECT_EQ(got[i].logprobs, want[i].logprobs) << i;
    EXPECT_EQ(got[i].generated_tokens, want[i].generated_tokens) << i;
  }
  EXPECT_EQ(e->stats().kv_blocks_used, 0);

  // One long request: its first token arrives while it is still generating (delivered inside
  // the next step), and an abort still ends it.
  RequestParams r = reqs[3];
  r.max_tokens = 200;
  Collector c;
  auto id = e->submit(r, c.sink(0));
  ASSERT_TRUE(id.is_ok());
  ASSERT_TRUE(wait_first_token(c, 0));
  e->abort(id.value());
  auto out = c.wait(1);
  EXPECT_EQ(out[0].reason, FinishReason::kAbort);
  EXPECT_LT(out[0].tokens.size(), 200u);
  EXPECT_EQ(e->stats().kv_blocks_used, 0);
}

TEST_F(EngineTest, KvPressurePreemptsAndKeepsAnswers) {
  auto reqs = greedy_requests();
  reqs.resize(8);
  for (auto& r : reqs) r.max_tokens = 10;
  // Room for one 128-token sequence and a little more: 8 requests of ~15-60 tokens cannot all
  // hold their blocks at once.
  EngineOptions o = base_options();
  o.max_model_len = 128;
  const int64_t bytes_per_block =
      2 * model_->config().n_layers * model_->config().n_kv_heads * model_->config().head_dim *
      static_cast<int64_t>(dtype_row_bytes(model_->backend().kv_cache_dtype(), 1)) * o.block_size;
  o.kv_cache_bytes = 10 * bytes_per_block;
  auto e = make_engine(o);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->stats().kv_blocks_total, 10);
  const auto alone = run_alone(*e, reqs);
  const auto together = run_together(*e, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(together[i].tokens, alone[i].tokens) << "request " << i;
    EXPECT_EQ(together[i].reason, FinishReason::kLength);
  }
  EXPECT_GT(e->stats().preemptions, 0);
  EXPECT_EQ(e->stats().kv_blocks_used, 0);
}

TEST_F(EngineTest, SubmitValidatesAndShutdownDrains) {
  EngineOptions o = base_options();
  auto e = make_engine(o);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->max_model_len(), 256);
  EXPECT_GT(e->options().kv_cache_bytes, 0);
  EXPECT_LE(e->options().kv_cache_bytes, o.kv_cache_bytes);
  auto noop = [](const TokenEvent&) {};
  RequestParams r;
  EXPECT_FALSE(e->submit(r, noop).is_ok());  // empty prompt
  r.prompt = {1, 2, 3};
  r.max_tokens = 254;
  auto too_long = e->submit(r, noop);
  ASSERT_FALSE(too_long.is_ok());
  EXPECT_NE(too_long.error().find("256"), std::string::npos) << too_long.error();
  r.max_tokens = -1;
  EXPECT_FALSE(e->submit(r, noop).is_ok());
  r.max_tokens = 4;
  r.prompt = {1, -5};
  EXPECT_FALSE(e->submit(r, noop).is_ok());
  r.prompt = {1, static_cast<int32_t>(model_->config().vocab_size)};
  EXPECT_FALSE(e->submit(r, noop).is_ok());
  r.prompt = {1, 2, 3};
  r.sampling.top_p = 0;
  EXPECT_FALSE(e->submit(r, noop).is_ok());
  r.sampling.top_p = 1;
  r.logprobs = 21;
  EXPECT_FALSE(e->submit(r, noop).is_ok());
  r.logprobs = -1;
  r.prompt_logprobs = 21;
  EXPECT_FALSE(e->submit(r, noop).is_ok());
  r.prompt_logprobs = -1;

  // Shutdown lets running requests finish.
  Collector c;
  auto reqs = greedy_requests();
  for (size_t i = 0; i < 4; ++i) {
    reqs[i].max_tokens = 40;
    ASSERT_TRUE(e->submit(reqs[i], c.sink(i)).is_ok());
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!(c.first_token_seen(0) && c.first_token_seen(1) && c.first_token_seen(2) &&
           c.first_token_seen(3)) &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  e->shutdown(120);
  auto out = c.wait(4);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(out[i].reason, FinishReason::kLength) << i;
    EXPECT_EQ(out[i].tokens.size(), 40u) << i;
    EXPECT_FALSE(out[i].refused_at_shutdown) << i;
  }
  EXPECT_FALSE(e->submit(reqs[0], noop).is_ok());
}

// Shutdown ends at once, refused, the requests that have not started (so that their clients can
// retry elsewhere), lets the running one finish, and shutdown_now() ends the wait for it.
TEST_F(EngineTest, ShutdownRefusesUnstartedAndShutdownNowEndsTheWait) {
  EngineOptions o = base_options();
  o.max_num_seqs = 1;
  auto e = make_engine(o);
  ASSERT_TRUE(e);
  Collector c;
  RequestParams r;
  r.prompt = {1, 2, 3, 4};
  r.max_tokens = 250;
  r.ignore_eos = true;
  for (size_t i = 0; i < 3; ++i) ASSERT_TRUE(e->submit(r, c.sink(i)).is_ok());
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!c.first_token_seen(0) && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::thread hurry([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    e->shutdown_now();
  });
  const auto t0 = std::chrono::steady_clock::now();
  e->shutdown(600);
  hurry.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(60));
  auto out = c.wait(3);
  EXPECT_FALSE(out[0].refused_at_shutdown);
  EXPECT_EQ(out[0].reason, FinishReason::kAbort);  // cut short by shutdown_now()
  EXPECT_GT(out[0].tokens.size(), 0u);
  for (size_t i = 1; i < 3; ++i) {
    EXPECT_TRUE(out[i].refused_at_shutdown) << i;
    EXPECT_EQ(out[i].reason, FinishReason::kAbort) << i;
    EXPECT_TRUE(out[i].tokens.empty()) << i;
  }
}

TEST_F(EngineTest, ShutdownTimeoutAbortsWhatIsLeft) {
  auto e = make_engine(base_options());
  ASSERT_TRUE(e);
  Collector c;
  RequestParams r;
  r.prompt = {1, 2, 3, 4};
  r.max_tokens = 250;
  ASSERT_TRUE(e->submit(r, c.sink(0)).is_ok());
  e->shutdown(0);
  auto out = c.wait(1);
  EXPECT_EQ(out[0].reason, FinishReason::kAbort);
}

TEST_F(EngineTest, CreateChecksModelLimitsAndCacheSize) {
  EngineOptions o = base_options();
  o.max_num_seqs = 64;  // the model was loaded for 32
  o.max_num_batched_tokens = 256;
  auto e = Engine::create(*model_, o);
  ASSERT_FALSE(e.is_ok());
  EXPECT_NE(e.error().find("engine_model_limits"), std::string::npos) << e.error();
  o = base_options();
  o.kv_cache_bytes = 1 << 20;  // not one 256-token sequence
  e = Engine::create(*model_, o);
  ASSERT_FALSE(e.is_ok());
  EXPECT_NE(e.error().find("max_model_len"), std::string::npos) << e.error();
}

}  // namespace
}  // namespace carpool
