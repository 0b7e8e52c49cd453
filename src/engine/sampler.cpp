#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

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
  return Status::ok();
}

Sampler::Sampler(const SamplingParams& params, std::span<const int32_t> prompt) : params_(params) {
  if (params.seed >= 0) {
    rng_.seed(static_cast<uint64_t>(params.seed));
  } else {
    rng_.seed(std::random_device{}());
  }
  if (params_.repetition_penalty != 1.f) {
    for (int32_t t : prompt) prompt_seen_[t] = 1;
  }
}

void Sampler::accept(int32_t token) {
  output_counts_[token] += 1;
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

int32_t Sampler::sample(std::span<float> logits) {
  apply_penalties(logits);
  const int32_t vocab = static_cast<int32_t>(logits.size());
  if (params_.temperature == 0.f) {
    // Greedy; ties go to the lowest id, as torch.argmax does.
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  const float inv_t = 1.f / params_.temperature;
  candidates_.clear();
  candidates_.reserve(vocab);
  for (int32_t i = 0; i < vocab; ++i) candidates_.emplace_back(logits[i] * inv_t, i);
  auto by_logit = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  size_t keep = candidates_.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < keep) {
    keep = static_cast<size_t>(params_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + keep, candidates_.end(), by_logit);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  candidates_.resize(keep);
  // Softmax over the kept candidates.
  const float max_l = candidates_[0].first;
  double sum = 0;
  for (auto& c : candidates_) {
    c.first = std::exp(c.first - max_l);
    sum += c.first;
  }
  for (auto& c : candidates_) c.first = static_cast<float>(c.first / sum);
  // top-p: smallest prefix whose mass reaches top_p (always keeps the first).
  if (params_.top_p < 1.f) {
    double cum = 0;
    size_t n = 0;
    while (n < candidates_.size()) {
      cum += candidates_[n].first;
      ++n;
      if (cum >= params_.top_p) break;
    }
    candidates_.resize(n);
  }
  // min-p: drop tokens below min_p times the most likely one.
  if (params_.min_p > 0.f) {
    const float cut = params_.min_p * candidates_[0].first;
    size_t n = 1;
    while (n < candidates_.size() && candidates_[n].first >= cut) ++n;
    candidates_.resize(n);
  }
  double total = 0;
  for (const auto& c : candidates_) total += c.first;
  std::uniform_real_distribution<double> dist(0.0, total);
  double r = dist(rng_);
  for (const auto& c : candidates_) {
    r -= c.first;
    if (r <= 0) return c.second;
  }
  return candidates_.back().second;
}

float token_logprob(std::span<const float> logits, int32_t token) {
  float max_l = -std::numeric_limits<float>::infinity();
  for (float l : logits) max_l = std::max(max_l, l);
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l - max_l));
  return static_cast<float>(logits[token] - max_l - std::log(sum));
}

std::vector<std::pair<int32_t, float>> top_logprobs(std::span<const float> logits, int k) {
  float max_l = -std::numeric_limits<float>::infinity();
  for (float l : logits) max_l = std::max(max_l, l);
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l - max_l));
  const double log_sum = std::log(sum);
  std::vector<std::pair<int32_t, float>> all;
  all.reserve(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) all.emplace_back(static_cast<int32_t>(i), logits[i]);
  k = std::min<int>(k, static_cast<int>(all.size()));
  std::partial_sort(all.begin(), all.begin() + k, all.end(), [](const auto& a, const auto& b) {
    return a.second > b.second || (a.second == b.second && a.first < b.first);
  });
  all.resize(k);
  // token_logprob's arithmetic, so that a token's value is the same in both lists.
  for (auto& p : all) p.second = static_cast<float>(p.second - max_l - log_sum);
  return all;
}

}  // namespace carpool
