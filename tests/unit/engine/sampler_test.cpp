// Sampler: greedy, temperature, top-k, top-p, min-p, penalties, seeds, logprobs.
#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <set>

namespace carpool {
namespace {

std::vector<float> logits_of(std::initializer_list<float> l) {
  return std::vector<float>(l);
}

// Draws `n` samples and returns how often each token came up.
std::map<int32_t, int> histogram(const SamplingParams& p, const std::vector<float>& logits, int n) {
  Sampler s(p, {});
  std::map<int32_t, int> h;
  for (int i = 0; i < n; ++i) {
    auto l = logits;
    h[s.sample(l)] += 1;
  }
  return h;
}

TEST(Sampler, GreedyPicksTheArgmaxAndLowestIdOnTies) {
  SamplingParams p;
  p.temperature = 0;
  Sampler s(p, {});
  auto l = logits_of({0.1f, 2.f, -1.f, 2.f});
  EXPECT_EQ(s.sample(l), 1);
  // As std::max_element (and the device argmax_rows): a NaN never beats an earlier value, one at
  // index 0 is never beaten; -0 equals +0. Long rows go through the vectorized scan.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  auto pick = [&](std::vector<float> v) { return s.sample(v); };
  EXPECT_EQ(pick({nan, 1.f, 2.f}), 0);
  EXPECT_EQ(pick({1.f, nan, 2.f, 2.f}), 2);
  EXPECT_EQ(pick({-inf, -inf}), 0);
  EXPECT_EQ(pick({-0.f, 0.f}), 0);
  std::vector<float> row(5000, -3.f);
  row[17] = nan;
  row[4321] = 7.f;
  row[4400] = 7.f;
  EXPECT_EQ(pick(row), 4321);
  row[4999] = inf;
  EXPECT_EQ(pick(row), 4999);
}

// A temperature so small that 1 / temperature overflows the scaled logits: greedy, as vLLM's
// below 1e-5 (it once took the first token with a positive logit, here id 0).
TEST(Sampler, TinyTemperaturesAreGreedy) {
  for (float t : {1e-39f, 1e-30f, 1e-6f, 9.9e-6f}) {
    SamplingParams p;
    p.temperature = t;
    p.seed = 3;
    EXPECT_TRUE(p.greedy()) << t;
    Sampler s(p, {});
    for (int i = 0; i < 20; ++i) {
      auto l = logits_of({0.5f, 3.f, 2.9f, -1.f});
      EXPECT_EQ(s.sample(l), 1) << t;
    }
  }
  SamplingParams p;
  p.temperature = 1e-5f;
  EXPECT_FALSE(p.greedy());
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferentTokens) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 42;
  std::vector<float> base(1000);
  for (size_t i = 0; i < base.size(); ++i) base[i] = std::sin(static_cast<float>(i));
  auto run = [&](int64_t seed) {
    SamplingParams q = p;
    q.seed = seed;
    Sampler s(q, {});
    std::vector<int32_t> out;
    for (int i = 0; i < 50; ++i) {
      auto l = base;
      out.push_back(s.sample(l));
    }
    return out;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
}

TEST(Sampler, TopKKeepsOnlyTheKMostLikely) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 2;
  p.seed = 1;
  auto h = histogram(p, logits_of({3.f, 2.9f, 2.8f, 0.f}), 2000);
  EXPECT_EQ(h.size(), 2u);
  EXPECT_GT(h[0], 0);
  EXPECT_GT(h[1], 0);
}

TEST(Sampler, TopPKeepsTheSmallestPrefixReachingP) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.5f;
  p.seed = 2;
  // softmax of {ln 0.6, ln 0.3, ln 0.1} = {0.6, 0.3, 0.1}: the first token alone reaches 0.5.
  auto h = histogram(p, logits_of({std::log(0.6f), std::log(0.3f), std::log(0.1f)}), 500);
  EXPECT_EQ(h.size(), 1u);
  EXPECT_EQ(h.begin()->first, 0);
  p.top_p = 0.85f;  // needs the first two
  h = histogram(p, logits_of({std::log(0.6f), std::log(0.3f), std::log(0.1f)}), 2000);
  EXPECT_EQ(h.size(), 2u);
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.min_p = 0.4f;
  p.seed = 3;
  // probabilities 0.5, 0.3, 0.2: 0.2 < 0.4 * 0.5 is dropped, 0.3 is kept.
  auto h = histogram(p, logits_of({std::log(0.5f), std::log(0.3f), std::log(0.2f)}), 3000);
  EXPECT_EQ(h.size(), 2u);
  EXPECT_EQ(h.count(2), 0u);
}

TEST(Sampler, TemperatureSharpensTheDistribution) {
  SamplingParams p;
  p.seed = 4;
  auto l = logits_of({1.f, 0.f});
  p.temperature = 1.f;
  double share_t1 = histogram(p, l, 4000)[0] / 4000.0;
  p.temperature = 0.25f;
  double share_cold = histogram(p, l, 4000)[0] / 4000.0;
  EXPECT_NEAR(share_t1, 1 / (1 + std::exp(-1.0)), 0.03);    // 0.731
  EXPECT_NEAR(share_cold, 1 / (1 + std::exp(-4.0)), 0.02);  // 0.982
}

// The distribution the order of operations in sampler.h defines, computed the plain way: sort
// by scaled logit (ties to the lower id), top-k, softmax over what is left, top-p prefix, min-p.
std::map<int32_t, double> reference_distribution(const std::vector<float>& logits,
                                                 const SamplingParams& p) {
  std::vector<std::pair<double, int32_t>> c;
  for (size_t i = 0; i < logits.size(); ++i) {
    c.emplace_back(static_cast<double>(logits[i]) / p.temperature, static_cast<int32_t>(i));
  }
  std::sort(c.begin(), c.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < c.size()) c.resize(p.top_k);
  const double max_l = c[0].first;
  double sum = 0;
  for (auto& x : c) sum += x.first = std::exp(x.first - max_l);
  for (auto& x : c) x.first /= sum;
  if (p.top_p < 1.f) {
    double cum = 0;
    size_t n = 0;
    while (n < c.size() && cum < p.top_p) cum += c[n++].first;
    c.resize(n);
  }
  if (p.min_p > 0.f) {
    const double cut = p.min_p * c[0].first;
    std::erase_if(c, [&](const auto& x) { return x.first < cut; });
  }
  double total = 0;
  for (const auto& x : c) total += x.first;
  std::map<int32_t, double> d;
  for (const auto& x : c) d[x.second] = x.first / total;
  return d;
}

// Many draws over a 3,000-token vocabulary with the shape of a model's logits (a few tokens well
// above a broad tail): every drawn token is in the reference's kept set, and each token's share
// is within 5 standard deviations of its reference probability.
TEST(Sampler, DrawsFollowTheReferenceDistribution) {
  std::mt19937 g(11);
  std::normal_distribution<float> nd(0.f, 2.f);
  std::vector<float> logits(3000);
  for (float& l : logits) l = nd(g);
  for (int i = 0; i < 6; ++i) logits[static_cast<size_t>(i * 401)] += 7.f - static_cast<float>(i);
  struct Case {
    float temperature, top_p, min_p;
    int top_k;
  };
  for (const Case& k : {Case{1.f, 1.f, 0.f, 0}, Case{1.f, 0.9f, 0.f, 0}, Case{1.f, 1.f, 0.f, 40},
                        Case{1.f, 1.f, 0.02f, 0}, Case{0.7f, 0.8f, 0.01f, 100},
                        Case{1.5f, 0.95f, 0.f, 0}, Case{1.f, 0.5f, 0.f, 3}}) {
    SCOPED_TRACE(testing::Message() << "temperature " << k.temperature << " top_p " << k.top_p
                                    << " min_p " << k.min_p << " top_k " << k.top_k);
    SamplingParams p;
    p.temperature = k.temperature;
    p.top_p = k.top_p;
    p.min_p = k.min_p;
    p.top_k = k.top_k;
    p.seed = 5;
    const std::map<int32_t, double> want = reference_distribution(logits, p);
    constexpr int kDraws = 40000;
    const std::map<int32_t, int> got = histogram(p, logits, kDraws);
    for (const auto& [token, n] : got) EXPECT_TRUE(want.count(token)) << token;
    for (const auto& [token, prob] : want) {
      const auto it = got.find(token);
      const double share = it == got.end() ? 0.0 : static_cast<double>(it->second) / kDraws;
      EXPECT_NEAR(share, prob, 5 * std::sqrt(prob * (1 - prob) / kDraws) + 1e-4) << token;
    }
  }
}

// Equal logits: top-k and top-p take the lowest ids first.
TEST(Sampler, TiesGoToTheLowerIds) {
  const std::vector<float> flat(10, 0.5f);
  SamplingParams p;
  p.seed = 6;
  p.top_k = 3;
  std::map<int32_t, int> h = histogram(p, flat, 3000);
  EXPECT_EQ(h.size(), 3u);
  EXPECT_EQ(h.rbegin()->first, 2);
  p.top_k = 0;
  p.top_p = 0.25f;  // three of ten equal tokens reach it
  h = histogram(p, flat, 3000);
  EXPECT_EQ(h.size(), 3u);
  EXPECT_EQ(h.rbegin()->first, 2);
}

// top-k over a vocabulary of many scan chunks (the sampler passes over chunks that cannot enter
// its heap): the largest logits wherever they are, and of equal ones the lower ids, also when
// the equal ones are far apart.
TEST(Sampler, TopKAcrossTheVocabularyKeepsTheLargestAndTheLowerIdsOfTies) {
  std::vector<float> l(1000, 0.f);
  l[10] = 3.f;   // fills a heap of one first
  l[100] = 5.f;  // replaces it
  l[650] = 4.f;  // below the heap's top: its chunk is passed over
  l[700] = 5.f;  // equal to the top at a higher id: stays out of a heap of one
  l[999] = 4.5f;
  SamplingParams p;
  p.seed = 8;
  p.top_k = 1;
  EXPECT_EQ(histogram(p, l, 200), (std::map<int32_t, int>{{100, 200}}));
  p.top_k = 2;
  std::map<int32_t, int> h = histogram(p, l, 2000);
  ASSERT_EQ(h.size(), 2u);
  EXPECT_NEAR(h[100], 1000, 5 * std::sqrt(500.0));
  EXPECT_NEAR(h[700], 1000, 5 * std::sqrt(500.0));
  p.top_k = 3;
  h = histogram(p, l, 3000);
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h.count(999), 1u);
  // Ascending logits (every chunk enters) and descending ones (none after the first does).
  for (int dir : {1, -1}) {
    for (size_t i = 0; i < l.size(); ++i)
      l[i] = 0.01f * static_cast<float>(dir * static_cast<int>(i));
    p.top_k = 4;
    h = histogram(p, l, 400);
    for (const auto& [token, n] : h) {
      EXPECT_TRUE(dir > 0 ? token >= 996 : token <= 3) << token;
    }
  }
}

// NaN logits are never drawn; all -inf but one gives that one.
TEST(Sampler, NanAndInfiniteLogits) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  SamplingParams p;
  p.seed = 7;
  std::map<int32_t, int> h = histogram(p, {nan, 1.f, nan, 1.f}, 500);
  EXPECT_EQ(h.count(0) + h.count(2), 0u);
  EXPECT_EQ(h.size(), 2u);
  h = histogram(p, {-inf, -inf, 3.f, -inf}, 50);
  EXPECT_EQ(h.size(), 1u);
  EXPECT_EQ(h.begin()->first, 2);
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegative) {
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 2.f;
  // Token 0 (in the prompt) has logit 3 -> 1.5, below token 1's 2: greedy switches to 1.
  std::vector<int32_t> prompt = {0};
  Sampler s(p, prompt);
  auto l = logits_of({3.f, 2.f, -1.f});
  EXPECT_EQ(s.sample(l), 1);
  EXPECT_FLOAT_EQ(l[0], 1.5f);
  // A negative logit of a seen token is multiplied.
  Sampler s2(p, std::vector<int32_t>{2});
  auto l2 = logits_of({0.f, 0.5f, -1.f});
  s2.sample(l2);
  EXPECT_FLOAT_EQ(l2[2], -2.f);
}

TEST(Sampler, FrequencyAndPresencePenaltiesCountGeneratedTokens) {
  SamplingParams p;
  p.temperature = 0;
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 0.25f;
  Sampler s(p, std::vector<int32_t>{1});  // the prompt does not count for these penalties
  s.accept(0);
  s.accept(0);
  auto l = logits_of({2.f, 1.f});
  s.sample(l);
  EXPECT_FLOAT_EQ(l[0], 2.f - 2 * 0.5f - 0.25f);
  EXPECT_FLOAT_EQ(l[1], 1.f);
}

TEST(Sampler, MinTokensBansTheStopIdsUntilEnoughAreGenerated) {
  for (const float temperature : {0.f, 1.f}) {
    SamplingParams p;
    p.temperature = temperature;
    p.seed = 3;
    p.min_tokens = 2;
    p.min_tokens_banned = {0, 7};  // 7: past the logits, skipped
    Sampler s(p, std::vector<int32_t>{});
    for (int i = 0; i < 2; ++i) {  // token 0 would win by far
      auto l = logits_of({50.f, 1.f, 0.f});
      EXPECT_NE(s.sample(l), 0) << "step " << i;
      s.accept(1);
    }
    auto l = logits_of({50.f, 1.f, 0.f});
    EXPECT_EQ(s.sample(l), 0);  // two generated: free again
  }
  SamplingParams bad;
  bad.min_tokens = -1;
  EXPECT_NE(bad.validate().message().find("min_tokens"), std::string::npos);
}

TEST(Sampler, ValidateNamesTheField) {
  SamplingParams p;
  p.top_p = 0;
  EXPECT_NE(p.validate().message().find("top_p"), std::string::npos);
  p = {};
  p.temperature = -1;
  EXPECT_NE(p.validate().message().find("temperature"), std::string::npos);
  p = {};
  p.min_p = 2;
  EXPECT_NE(p.validate().message().find("min_p"), std::string::npos);
  p = {};
  p.repetition_penalty = 0;
  EXPECT_NE(p.validate().message().find("repetition_penalty"), std::string::npos);
  EXPECT_TRUE(SamplingParams{}.validate().is_ok());
}

TEST(Sampler, LogprobsAreANormalizedLogSoftmax) {
  auto l = logits_of({1.f, 2.f, 3.f});
  double sum = 0;
  for (int i = 0; i < 3; ++i) sum += std::exp(token_logprob(l, i));
  EXPECT_NEAR(sum, 1.0, 1e-6);
  auto top = top_logprobs(l, 2);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].first, 2);
  EXPECT_EQ(top[1].first, 1);
  EXPECT_NEAR(top[0].second, token_logprob(l, 2), 1e-6);
  EXPECT_EQ(top[0].second, token_logprob(l, 2));  // the same arithmetic
  EXPECT_EQ(top[1].second, token_logprob(l, top[1].first));
}

// logprobs_of gives exactly token_logprob and top_logprobs, over a vocabulary of many scan
// chunks with NaN, ties far apart and k past the vocabulary.
TEST(Sampler, LogprobsOfMatchesTheSeparateCalls) {
  std::vector<float> l(3000);
  for (size_t i = 0; i < l.size(); ++i) l[i] = std::sin(0.37f * static_cast<float>(i)) * 4.f;
  l[5] = std::numeric_limits<float>::quiet_NaN();
  l[100] = l[2900] = 9.f;
  for (int k : {0, 1, 2, 5, 20}) {
    const TokenLogprob t = logprobs_of(l, 42, k);
    EXPECT_EQ(t.token, 42);
    EXPECT_EQ(t.logprob, token_logprob(l, 42));
    EXPECT_EQ(t.top, top_logprobs(l, k)) << k;
    ASSERT_EQ(t.top.size(), static_cast<size_t>(k));
    if (k >= 2) {
      EXPECT_EQ(t.top[0].first, 100);
      EXPECT_EQ(t.top[1].first, 2900);
    }
  }
  const std::vector<float> small = {1.f, std::numeric_limits<float>::quiet_NaN(), 1.f};
  const TokenLogprob all = logprobs_of(small, 0, 10);
  ASSERT_EQ(all.top.size(), 3u);
  EXPECT_EQ(all.top[0].first, 0);
  EXPECT_EQ(all.top[1].first, 2);
  EXPECT_EQ(all.top[2].first, 1);  // NaN last
}

}  // namespace
}  // namespace carpool
