#include "engine/sampler.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "engine/fast_exp.h"
#include "util/argmax.h"

namespace carpool {

Status SamplingParams::validate() const {
  if (!(temperature >= 0.f && temperature <= 100.f))
    return Status::error("temperature must be in [0, 100]");
  if (top_k < -1) return Status::error("top_k must be -1, 0 or positive");
  if (!(top_p > 0.f && top_p <= 1.f)) return Status::error("top_p must be in (0, 1]");
  if (!(min_p >= 0.f && min_p <= 1.f)) return Status::error("min_p must be in [0, 1]");
  if (!(repetition_penalty > 0.f && repetition_penalty <= 100.f)) {
    return Status::error("repetition_penalty must be in (0, 100]");
  }
  if (!(frequency_penalty >= -2.f && frequency_penalty <= 2.f))
    return Status::error("frequency_penalty must be in [-2, 2]");
  if (!(presence_penalty >= -2.f && presence_penalty <= 2.f))
    return Status::error("presence_penalty must be in [-2, 2]");
  if (min_tokens < 0) return Status::error("min_tokens must be at least 0");
  for (const auto& [token, bias] : logit_bias) {
    if (token < 0) return Status::error("logit_bias holds a negative token id");
    if (!(bias >= -100.f && bias <= 100.f))
      return Status::error("logit_bias values must be in [-100, 100]");
  }
  return Status::ok();
}

Sampler::Sampler(const SamplingParams& params, std::span<const int32_t> prompt)
    : params_(params), schema_(params.json_schema.get()) {
  if (params.seed >= 0) {
    rng_.seed(static_cast<uint64_t>(params.seed));
  } else {
    rng_.seed(std::random_device{}());
  }
  if (params_.repetition_penalty != 1.f) {
    for (int32_t t : prompt) prompt_seen_[t] = 1;
  }
}

double Sampler::draw_uniform() {
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
}

void Sampler::accept(int32_t token) {
  output_counts_[token] += 1;
  ++generated_;
  if (params_.json_vocab != nullptr && token >= 0 &&
      static_cast<size_t>(token) < params_.json_vocab->text.size()) {
    const std::string& bytes = params_.json_vocab->text[static_cast<size_t>(token)];
    if (params_.json_schema != nullptr) {
      schema_.feed(bytes);
    } else {
      json_.feed(bytes);
    }
  }
}

void Sampler::mask(std::span<float> logits) const {
  if (params_.json_vocab == nullptr) return;
  if (params_.json_schema != nullptr) {
    mask_tokens(schema_, *params_.json_vocab, logits);
  } else {
    mask_tokens(json_, *params_.json_vocab, logits);
  }
}

void Sampler::apply_penalties(std::span<float> logits) const {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  auto in_range = [&](int32_t t) { return t >= 0 && t < vocab; };
  if (params_.repetition_penalty != 1.f) {
    auto penalize = [&](int32_t t) {
      float& l = logits[t];
      l = l > 0 ? l / params_.repetition_penalty : l * params_.repetition_penalty;
    };
    for (const auto& [t, _] : prompt_seen_) {
      if (in_range(t)) penalize(t);
    }
    for (const auto& [t, _] : output_counts_) {
      if (in_range(t) && !prompt_seen_.count(t)) penalize(t);
    }
  }
  if (params_.frequency_penalty != 0.f || params_.presence_penalty != 0.f) {
    for (const auto& [t, count] : output_counts_) {
      if (!in_range(t)) continue;
      logits[t] -= params_.frequency_penalty * static_cast<float>(count) + params_.presence_penalty;
    }
  }
}

namespace {

using Candidate = std::pair<float, int32_t>;  // (weight, token)

// Offers c to `best`, which keeps the k first of what it was offered in `first` order, as a heap
// whose top is the last of them (k > 0).
template <typename T, typename First>
void keep_first_k(std::vector<T>& best, size_t k, const T& c, First first) {
  if (best.size() < k) {
    best.push_back(c);
    std::push_heap(best.begin(), best.end(), first);
  } else if (first(c, best.front())) {
    std::pop_heap(best.begin(), best.end(), first);
    best.back() = c;
    std::push_heap(best.begin(), best.end(), first);
  }
}

// The order of top-k and top-p: heavier first, ties to the lower id.
bool before(const Candidate& a, const Candidate& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

// The same for raw logits, where NaN ranks as -inf.
float rank_key(float v) {
  return std::isnan(v) ? -std::numeric_limits<float>::infinity() : v;
}
bool ranks_before(const Candidate& a, const Candidate& b) {
  const float ka = rank_key(a.first), kb = rank_key(b.first);
  return ka > kb || (ka == kb && a.second < b.second);
}

// Reorders c so that its first n elements are the first n in `before` order, for the smallest n
// whose weights sum to at least `mass` (all of c if none does); returns n. A quickselect that
// carries the weight of the part already known to be in the prefix: expected linear time, and
// only a short range is ever sorted.
size_t heaviest_prefix(std::vector<Candidate>& c, double mass) {
  size_t lo = 0, hi = c.size();
  double in = 0;  // weight of c[0, lo), all in the prefix
  while (hi - lo > 32) {
    const size_t mid = lo + (hi - lo) / 2;
    // Median of three as the pivot, moved to hi - 1.
    if (before(c[mid], c[lo])) std::swap(c[mid], c[lo]);
    if (before(c[hi - 1], c[lo])) std::swap(c[hi - 1], c[lo]);
    if (before(c[mid], c[hi - 1])) std::swap(c[mid], c[hi - 1]);
    const Candidate pivot = c[hi - 1];
    const auto split = std::partition(c.begin() + static_cast<std::ptrdiff_t>(lo),
                                      c.begin() + static_cast<std::ptrdiff_t>(hi - 1),
                                      [&](const Candidate& x) { return before(x, pivot); });
    const size_t m = static_cast<size_t>(split - c.begin());
    std::swap(c[m], c[hi - 1]);  // the pivot between the two parts
    double heavier = 0;
    for (size_t i = lo; i < m; ++i) heavier += c[i].first;
    if (in + heavier >= mass) {
      hi = m;
    } else if (in + heavier + pivot.first >= mass) {
      return m + 1;
    } else {
      in += heavier + pivot.first;
      lo = m + 1;
    }
  }
  std::sort(c.begin() + static_cast<std::ptrdiff_t>(lo),
            c.begin() + static_cast<std::ptrdiff_t>(hi), before);
  for (size_t i = lo; i < hi; ++i) {
    in += c[i].first;
    if (in >= mass) return i + 1;
  }
  return c.size();
}

// Lane-wise loops that the compiler turns into SIMD code (no reduction carried by one scalar).
// They stay out of line: inlined into Sampler::sample, GCC 12 left them scalar.

// Sum of v in double.
[[gnu::noinline]] double lane_sum(const float* v, size_t n) {
  constexpr size_t kLanes = 8;
  double lane[kLanes] = {};
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (size_t j = 0; j < kLanes; ++j) lane[j] += v[i + j];
  }
  for (; i < n; ++i) lane[0] += v[i];
  double sum = 0;
  for (double x : lane) sum += x;
  return sum;
}

// Scales the logits by inv_t in place (NaN becomes -inf: never drawn); returns their maximum.
[[gnu::noinline]] float scale_and_max(float* l, size_t n, float inv_t) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < n; ++i) l[i] = l[i] == l[i] ? l[i] * inv_t : neg_inf;
  return max_of(l, n);
}

// exp(l - max) in place; returns their sum.
[[gnu::noinline]] double weights_and_sum(float* l, size_t n, float max_l) {
  for (size_t i = 0; i < n; ++i) l[i] = exp_nonpositive(l[i] - max_l);
  return lane_sum(l, n);
}

// Weight of the tokens at least t heavy, summed in lanes (w times 0 or 1: a form the vectorizer
// takes, where a conditional would be a branch).
[[gnu::noinline]] double mass_at_least(const float* w, size_t n, float t) {
  constexpr size_t kLanes = 8;
  double lane[kLanes] = {};
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (size_t j = 0; j < kLanes; ++j) lane[j] += w[i + j] * static_cast<float>(w[i + j] >= t);
  }
  for (; i < n; ++i) lane[0] += w[i] * static_cast<float>(w[i] >= t);
  double m = 0;
  for (double v : lane) m += v;
  return m;
}

// The k largest of l[0, n) with their ids (k > 0; NaN ranks as -inf, ties to the lower id), as
// a heap whose top is the last of them in `ranks_before` order. Chunks whose largest value
// cannot enter the full heap (ids rise, so an equal value never does) are passed over after one
// vectorized max each (which skips NaN).
void select_top_k(const float* l, size_t n, size_t k, std::vector<Candidate>& best) {
  constexpr size_t kChunk = 64;
  for (size_t i = 0; i < n; i += kChunk) {
    const size_t e = std::min(n, i + kChunk);
    if (best.size() == k && !(max_of(l + i, e - i) > rank_key(best.front().first))) continue;
    for (size_t j = i; j < e; ++j) {
      keep_first_k(best, k, {l[j], static_cast<int32_t>(j)}, ranks_before);
    }
  }
}

// The largest weight t such that the tokens at least t heavy hold `mass` (0 < mass, and the
// weights, at most 1, hold more): top-p's prefix is made of tokens at least that heavy. A
// bisection over the bit patterns of non-negative floats, which order as their values: about 30
// branch-free passes instead of sorting the vocabulary.
float top_p_boundary(const float* w, size_t n, double mass) {
  uint32_t lo = 0;                                 // mass_at_least(lo) >= mass
  uint32_t hi = std::bit_cast<uint32_t>(1.f) + 1;  // mass_at_least(hi) = 0 < mass
  while (hi - lo > 1) {
    const uint32_t mid = lo + (hi - lo) / 2;
    if (mass_at_least(w, n, std::bit_cast<float>(mid)) >= mass) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return std::bit_cast<float>(lo);
}

}  // namespace

int32_t Sampler::sample(std::span<float> logits) {
  if (generated_ < params_.min_tokens) {
    for (const int32_t t : params_.min_tokens_banned) {
      if (t >= 0 && static_cast<size_t>(t) < logits.size()) {
        logits[static_cast<size_t>(t)] = -std::numeric_limits<float>::infinity();
      }
    }
  }
  mask(logits);
  for (const auto& [token, bias] : params_.logit_bias) {
    if (token >= 0 && static_cast<size_t>(token) < logits.size()) {
      logits[static_cast<size_t>(token)] += bias;
    }
  }
  apply_penalties(logits);
  if (params_.greedy()) {
    // Greedy; ties go to the lowest id, as torch.argmax does.
    return first_of_largest(logits.data(), logits.size());
  }
  const float max_l = scale_and_max(logits.data(), logits.size(), 1.f / params_.temperature);
  if (!std::isfinite(max_l)) {  // all -inf, or some +inf: the first of the largest
    return static_cast<int32_t>(std::find(logits.begin(), logits.end(), max_l) - logits.begin());
  }
  const size_t vocab = logits.size();
  const bool top_k = params_.top_k > 0 && static_cast<size_t>(params_.top_k) < vocab;
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const float floor_w = params_.min_p;
  // Candidates: tokens of weight above 0 and (min-p, which keeps only tokens of at least min_p
  // times the most likely one's weight, 1) at least min_p. Dropping those before top-p changes
  // nothing: they come after every other token in its order, so a top-p prefix that reaches them
  // keeps all the others.
  candidates_.clear();
  double z = 0;
  if (top_k) {
    // top-k on the scaled logits, whose order is the weights' (exp is monotonic): only the k
    // kept get weights, and the softmax after top-k is over them (those min-p then drops
    // included). Ties go to the lower id, in logits and so in weights (two logits a few ulps
    // apart can round to one weight; then the larger logit is kept).
    select_top_k(logits.data(), vocab, static_cast<size_t>(params_.top_k), candidates_);
    for (Candidate& c : candidates_) {
      c.first = exp_nonpositive(c.first - max_l);
      z += c.first;
    }
    std::erase_if(candidates_,
                  [&](const Candidate& c) { return !(c.first > 0 && c.first >= floor_w); });
  } else {
    // Softmax weights exp(l - max) in place (the most likely token weighs 1); the draw does not
    // need them normalized.
    z = weights_and_sum(logits.data(), vocab, max_l);
  }
  if (!top_k && params_.top_p >= 1.f && params_.min_p <= 0.f) {
    // Every token is a candidate: one walk in id order.
    double r = unit(rng_) * z;
    for (size_t i = 0; i < vocab; ++i) {
      r -= logits[i];
      if (r <= 0 && logits[i] > 0) return static_cast<int32_t>(i);
    }
    return first_of_largest(logits.data(), vocab);
  }
  if (!top_k) {
    // top-p's prefix holds only tokens at least as heavy as its boundary: the others are left out
    // (ties at the boundary stay in, for heaviest_prefix to take in id order).
    float lightest = floor_w;
    if (params_.top_p < 1.f) {
      lightest = std::max(lightest, top_p_boundary(logits.data(), vocab, params_.top_p * z));
    }
    for (size_t i = 0; i < vocab; ++i) {
      const float w = logits[i];
      if (w > 0 && w >= lightest) candidates_.emplace_back(w, static_cast<int32_t>(i));
    }
  }
  // top-p: the smallest heaviest-first prefix whose mass reaches top_p (at least one token).
  if (params_.top_p < 1.f) candidates_.resize(heaviest_prefix(candidates_, params_.top_p * z));
  double total = 0;
  for (const Candidate& c : candidates_) total += c.first;
  double r = unit(rng_) * total;
  for (const Candidate& c : candidates_) {
    r -= c.first;
    if (r <= 0) return c.second;
  }
  return candidates_.back().second;
}

namespace {

// max and log(sum exp(l - max)) of a logits row (the lane helpers above), shared by
// token_logprob and top_logprobs so that a token's value is the same in both lists.
struct LogSumExp {
  float max;
  double log_sum;
};
// Sum of exp(l - max) without writing l: through a small buffer, so that the exp loop and the
// sum each vectorize.
double sum_exp(const float* l, size_t n, float max_l) {
  constexpr size_t kChunk = 256;
  float e[kChunk];
  double sum = 0;
  for (size_t c = 0; c < n; c += kChunk) {
    const size_t m = std::min(kChunk, n - c);
    for (size_t i = 0; i < m; ++i) e[i] = exp_nonpositive(l[c + i] - max_l);
    sum += lane_sum(e, m);
  }
  return sum;
}
LogSumExp log_sum_exp(std::span<const float> logits) {
  const float max_l = max_of(logits.data(), logits.size());
  return {max_l, std::log(sum_exp(logits.data(), logits.size(), max_l))};
}

// The top k of logits, given their log-sum-exp.
std::vector<std::pair<int32_t, float>> top_given(std::span<const float> logits, int k,
                                                 const LogSumExp& s) {
  std::vector<std::pair<int32_t, float>> top;
  if (k <= 0 || logits.empty()) return top;
  std::vector<Candidate> heap;
  heap.reserve(std::min(static_cast<size_t>(k), logits.size()));
  select_top_k(logits.data(), logits.size(), static_cast<size_t>(k), heap);
  std::sort_heap(heap.begin(), heap.end(), ranks_before);
  top.reserve(heap.size());
  for (const Candidate& e : heap) {
    top.emplace_back(e.second, static_cast<float>(e.first - s.max - s.log_sum));
  }
  return top;
}

}  // namespace

float token_logprob(std::span<const float> logits, int32_t token) {
  return logprobs_of(logits, token, 0).logprob;
}

std::vector<std::pair<int32_t, float>> top_logprobs(std::span<const float> logits, int k) {
  return top_given(logits, k, log_sum_exp(logits));
}

TokenLogprob logprobs_of(std::span<const float> logits, int32_t token, int k) {
  const LogSumExp s = log_sum_exp(logits);
  TokenLogprob t;
  t.token = token;
  t.logprob = static_cast<float>(logits[token] - s.max - s.log_sum);
  t.top = top_given(logits, k, s);
  return t;
}

}  // namespace carpool
