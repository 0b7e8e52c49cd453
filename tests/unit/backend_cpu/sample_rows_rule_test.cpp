// The rule of Backend::sample_rows (backend/sample_rows_rule.h), run here through a sequential
// emulation of the CUDA kernel's block: the same 512 contiguous chunks of ids, every block-wide
// step a loop over them. Rows drawn with the stratified uniforms u = (j + 0.5) / N take each
// token about N p times (the kept tokens are walked in id order), p from the conformance
// suite's plain reference (sorts and double sums): |count - N p| <= 2 for every token, nothing
// drawn outside the reference's kept set.
#include "backend/sample_rows_rule.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "conformance/conformance.h"

namespace carpool {
namespace {

using conformance::DrawParams;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// The kernel's block, one chunk after another.
struct HostBlock {
  const float* x;
  int64_t vocab;
  static constexpr int64_t kThreads = 512;

  int64_t chunk() const { return (vocab + kThreads - 1) / kThreads; }
  int64_t begin(int64_t t) const { return std::min(vocab, t * chunk()); }
  int64_t end(int64_t t) const { return std::min(vocab, begin(t) + chunk()); }

  float load(int64_t i) const { return x[i]; }
  float exp(float v) const { return std::exp(v); }
  template <class Fn>
  float max_f(Fn fn) {
    float m = -kInf;
    for (int64_t t = 0; t < kThreads; ++t) m = std::fmax(m, fn(begin(t), end(t)));
    return m;
  }
  template <class Fn>
  double sum_d(Fn fn) {
    double a = 0;
    for (int64_t t = 0; t < kThreads; ++t) a += fn(begin(t), end(t));
    return a;
  }
  template <class Fn>
  int64_t sum_l(Fn fn) {
    int64_t a = 0;
    for (int64_t t = 0; t < kThreads; ++t) a += fn(begin(t), end(t));
    return a;
  }
  template <class Fn>
  int64_t min_l(Fn fn) {
    int64_t a = std::numeric_limits<int64_t>::max();
    for (int64_t t = 0; t < kThreads; ++t) a = std::min(a, fn(begin(t), end(t)));
    return a;
  }
  template <class Fn>
  int64_t max_l(Fn fn) {
    int64_t a = std::numeric_limits<int64_t>::min();
    for (int64_t t = 0; t < kThreads; ++t) a = std::max(a, fn(begin(t), end(t)));
    return a;
  }
  template <class Pred>
  int64_t nth_match(int64_t n, Pred pred) {
    int64_t seen = 0;
    for (int64_t i = 0; i < vocab; ++i) {
      if (pred(i) && ++seen == n) return i;
    }
    return -1;
  }
  template <int N, class T, class Fn>
  void sums(Fn fn, T* out) {
    for (int j = 0; j < N; ++j) out[j] = 0;
    for (int64_t t = 0; t < kThreads; ++t) {
      T acc[N] = {};
      fn(begin(t), end(t), acc);
      for (int j = 0; j < N; ++j) out[j] += acc[j];
    }
  }
  template <class W>
  int64_t draw(double r, W w) {
    for (int64_t i = 0; i < vocab; ++i) {
      const double wi = w(i);
      if (!(wi > 0)) continue;
      r -= wi;
      if (r < 0) return i;
    }
    return -1;
  }
};

// Thresholds per pass of the rule's searches: 2 (bisection) and 16 (the CUDA kernel's) must draw
// the same tokens; every test below runs with both.
int g_ways = 16;

int64_t sample(const std::vector<float>& x, const DrawParams& p, double u) {
  HostBlock b{x.data(), static_cast<int64_t>(x.size())};
  if (g_ways == 2)
    return sample_rule::sample<2>(b, b.vocab, p.temperature, p.top_k, p.top_p, p.min_p, u);
  return sample_rule::sample<16>(b, b.vocab, p.temperature, p.top_k, p.top_p, p.min_p, u);
}

class SampleRowsRule : public testing::TestWithParam<int> {
 protected:
  void SetUp() override { g_ways = GetParam(); }
};

// |count - N p| over the tokens, plus N for each draw outside the kept set.
double stratified_error(const std::vector<float>& x, const DrawParams& p, int n) {
  const std::vector<double> prob = conformance::reference_draw(x.data(), std::ssize(x), p);
  std::vector<int64_t> count(x.size(), 0);
  double error = 0;
  for (int j = 0; j < n; ++j) {
    const int64_t t = sample(x, p, (j + 0.5) / n);
    if (t < 0 || t >= std::ssize(x) || prob[static_cast<size_t>(t)] == 0) {
      error += n;
    } else {
      ++count[static_cast<size_t>(t)];
    }
  }
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::fabs(count[i] - n * prob[i]));
  return error + worst;
}

std::vector<float> model_like(std::mt19937& g, int64_t vocab) {
  std::normal_distribution<float> nd(0.f, 2.f);
  std::vector<float> x(static_cast<size_t>(vocab));
  for (float& v : x) v = nd(g);
  for (int i = 0; i < 6; ++i)
    x[static_cast<size_t>((i * 401) % vocab)] += 9.f - static_cast<float>(i);
  return x;
}

TEST_P(SampleRowsRule, StratifiedDrawsFollowTheReference) {
  std::mt19937 g(21);
  const std::vector<float> x = model_like(g, 701);
  const DrawParams cases[] = {{1.f, 0, 1.f, 0.f},    {0.7f, 50, 1.f, 0.f},     {1.f, 0, 0.9f, 0.f},
                              {1.3f, 0, 1.f, 0.05f}, {0.8f, 200, 0.8f, 0.01f}, {1.f, 1, 1.f, 0.f},
                              {2.f, 0, 0.3f, 0.f},   {1.f, 700, 0.95f, 0.f}};
  for (const DrawParams& p : cases) {
    SCOPED_TRACE(testing::Message() << "t " << p.temperature << " k " << p.top_k << " p " << p.top_p
                                    << " min_p " << p.min_p);
    EXPECT_LE(stratified_error(x, p, 1000), 2.0);
  }
}

// Logits on a coarse grid: the top-k and top-p boundaries fall inside runs of equal values,
// which are taken in id order; NaN and -inf are never drawn. Chunks of 512 threads hold 2 ids
// each here, so runs of ties cross chunk ends.
TEST_P(SampleRowsRule, TiesAtTheBoundariesGoInIdOrder) {
  std::mt19937 g(22);
  std::vector<float> grid = model_like(g, 1000);
  for (float& v : grid) v = std::round(v);
  grid[3] = kNaN;
  grid[500] = -kInf;
  for (const DrawParams& p : {DrawParams{1.f, 100, 1.f, 0.f}, DrawParams{1.f, 0, 0.5f, 0.f},
                              DrawParams{0.9f, 300, 0.7f, 0.f}, DrawParams{1.f, 0, 0.9f, 0.1f}}) {
    SCOPED_TRACE(testing::Message() << "k " << p.top_k << " p " << p.top_p);
    EXPECT_LE(stratified_error(grid, p, 1000), 2.0);
  }
  // Heavy ties: ten equal logits far above the rest, spread over many chunks. top-p 0.5 needs
  // six of them (five hold just under half the mass), top-k 4 the first four.
  std::vector<float> heavy(1000, -8.f);
  for (int i = 0; i < 10; ++i) heavy[static_cast<size_t>(5 + 97 * i)] = 1.f;
  for (const DrawParams& p : {DrawParams{1.f, 0, 0.5f, 0.f}, DrawParams{1.f, 4, 1.f, 0.f},
                              DrawParams{1.f, 12, 0.3f, 0.f}}) {
    SCOPED_TRACE(testing::Message() << "heavy ties, k " << p.top_k << " p " << p.top_p);
    EXPECT_LE(stratified_error(heavy, p, 1000), 2.0);
  }
  // Equal logits everywhere: top-k 3 keeps ids 0..2; top-p 0.25 of ten (2.5 tokens) keeps 0..2.
  const std::vector<float> flat(10, 0.5f);
  for (const DrawParams& p : {DrawParams{1.f, 3, 1.f, 0.f}, DrawParams{1.f, 0, 0.25f, 0.f}}) {
    std::vector<int> count(10, 0);
    for (int j = 0; j < 99; ++j) ++count[static_cast<size_t>(sample(flat, p, (j + 0.5) / 99))];
    EXPECT_EQ(count, (std::vector<int>{33, 33, 33, 0, 0, 0, 0, 0, 0, 0})) << p.top_k;
  }
}

TEST_P(SampleRowsRule, GreedyAndNonFiniteRows) {
  // Temperature 0: std::max_element's choice (NaN at index 0 wins, other NaN skipped, ties to
  // the lowest index).
  EXPECT_EQ(sample({kNaN, 1.f, 2.f}, {0.f}, 0.5), 0);
  EXPECT_EQ(sample({1.f, kNaN, 2.f, 2.f}, {0.f}, 0.5), 2);
  EXPECT_EQ(sample({-kInf, -kInf}, {0.f}, 0.5), 0);
  std::vector<float> big(5000, -1.f);
  big[4321] = 3.f;
  big[4400] = 3.f;
  EXPECT_EQ(sample(big, {0.f}, 0.5), 4321);
  // +inf, or every logit -inf (NaN counts as -inf): the first of the largest, whatever u is.
  big[1000] = kInf;
  big[3000] = kInf;
  EXPECT_EQ(sample(big, {1.f, 5, 0.5f, 0.1f}, 0.99), 1000);
  EXPECT_EQ(sample({kNaN, -kInf, kNaN}, {1.f}, 0.7), 0);
  // u at the very top still draws a kept token.
  EXPECT_EQ(sample({0.f, -100.f, 5.f}, {1.f, 1, 1.f, 0.f}, std::nextafter(1.0, 0.0)), 2);
}

// A vocabulary of a real model's size through the same chunks: the draws of a few u stay in the
// kept set (top-k 40 with top-p 0.9).
TEST_P(SampleRowsRule, LargeVocabularyDrawsStayInTheKeptSet) {
  std::mt19937 g(23);
  const std::vector<float> x = model_like(g, 128256);
  const DrawParams p{1.f, 40, 0.9f, 0.f};
  const std::vector<double> prob = conformance::reference_draw(x.data(), std::ssize(x), p);
  for (double u : {0.0, 0.1, 0.5, 0.77, 0.999}) {
    const int64_t t = sample(x, p, u);
    ASSERT_GE(t, 0);
    EXPECT_GT(prob[static_cast<size_t>(t)], 0) << u;
  }
}

INSTANTIATE_TEST_SUITE_P(Ways, SampleRowsRule, testing::Values(2, 16));

// The two searches find the same thresholds: the same token for every u on rows with ties at
// the boundaries, min-p, and a real vocabulary's size.
TEST(SampleRowsRuleWays, SixteenWaysDrawLikeBisection) {
  std::mt19937 g(24);
  std::vector<float> grid = model_like(g, 3000);
  for (float& v : grid) v = std::round(2 * v) / 2;
  const std::vector<float> big = model_like(g, 128256);
  const std::vector<float>* rows[] = {&grid, &big};
  for (const std::vector<float>* x : rows) {
    for (const DrawParams& p : {DrawParams{1.f, 50, 1.f, 0.f}, DrawParams{1.f, 0, 0.9f, 0.f},
                                DrawParams{0.7f, 0, 0.95f, 0.02f},
                                DrawParams{1.2f, 1000, 0.5f, 0.f}, DrawParams{1.f, 7, 0.8f, 0.f}}) {
      for (double u : {0.0, 0.13, 0.5, 0.87, 0.9999}) {
        g_ways = 2;
        const int64_t a = sample(*x, p, u);
        g_ways = 16;
        EXPECT_EQ(sample(*x, p, u), a) << "k " << p.top_k << " p " << p.top_p << " u " << u;
      }
    }
  }
}

}  // namespace
}  // namespace carpool

namespace carpool {
namespace {

// search_largest against the definition: the largest x in [lo, hi) whose value reaches the
// target, for random non-increasing step functions, widths below and above kWays, and ends that
// are not powers of two.
template <int kWays>
uint64_t search(uint64_t lo, uint64_t hi, const std::vector<uint64_t>& steps, int64_t target,
                int* passes) {
  // value(x) = number of steps at or above x (non-increasing in x).
  auto value = [&](uint64_t x) {
    return static_cast<int64_t>(
        std::count_if(steps.begin(), steps.end(), [&](uint64_t s) { return s >= x; }));
  };
  *passes = 0;
  return sample_rule::search_largest<kWays, int64_t>(
      lo, hi,
      [&](uint64_t l, uint64_t /*h*/, uint64_t step, int nb, int64_t* out) {
        ++*passes;
        for (int j = 1; j < nb; ++j) out[j] = value(l + static_cast<uint64_t>(j) * step);
      },
      [&](int64_t v) { return v >= target; });
}

TEST(SampleRowsRuleSearch, FindsTheLargestThresholdForEveryWidth) {
  std::mt19937_64 g(25);
  for (int trial = 0; trial < 2000; ++trial) {
    const uint64_t width = 2 + g() % (trial % 2 ? 40 : 5000000);
    const uint64_t lo = g() % 1000;
    const uint64_t hi = lo + width;
    std::vector<uint64_t> steps(1 + g() % 20);
    for (uint64_t& s : steps) s = lo + g() % width;
    const int64_t target = 1 + static_cast<int64_t>(g() % steps.size());
    // The definition: the largest x with at least `target` steps at or above it.
    std::vector<uint64_t> sorted = steps;
    std::sort(sorted.rbegin(), sorted.rend());
    const uint64_t want = sorted[static_cast<size_t>(target - 1)];
    int p2 = 0, p3 = 0, p16 = 0;
    EXPECT_EQ(search<2>(lo, hi, steps, target, &p2), want) << trial;
    EXPECT_EQ(search<3>(lo, hi, steps, target, &p3), want) << trial;
    EXPECT_EQ(search<16>(lo, hi, steps, target, &p16), want) << trial;
    EXPECT_LE(p16, (p2 + 3) / 4 + 2) << "16 ways take about a quarter of bisection's passes";
  }
}

}  // namespace
}  // namespace carpool
