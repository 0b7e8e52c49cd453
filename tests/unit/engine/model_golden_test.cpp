// The default model (SmolLM2-135M-Instruct Q4_1) against Hugging Face transformers loading the
// same GGUF in float32 (fixtures from scripts/golden/make_model_fixtures.py).
//
// Two rules, by backend mode:
//  - exact (weights dequantized to f32, f32 activations): last-position logits within a tight
//    tolerance and the 32-token greedy continuation identical, token for token;
//  - fast (activations quantized to 8 bits for integer dot products, the default): logits
//    within a looser tolerance, and at the first differing greedy token each side's token is in
//    the other's top 5 (the rule vLLM's tests use for legitimately different arithmetic); the
//    same rule with the int8 KV cache (--kv-cache-dtype int8).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "engine/generator.h"
#include "formats/gguf.h"
#include "model/llama.h"
#include "model/open_model.h"

namespace carpool {
namespace {

std::string fixture_dir() {
  return std::string(CARPOOL_SOURCE_DIR) + "/tests/golden/model/smollm2";
}

std::string model_path() {
  if (const char* p = std::getenv("CARPOOL_TEST_MODEL")) return p;
  std::string cache = std::getenv("CARPOOL_CACHE") ? std::getenv("CARPOOL_CACHE")
                      : std::getenv("XDG_CACHE_HOME")
                          ? std::string(std::getenv("XDG_CACHE_HOME")) + "/carpool"
                          : std::string(std::getenv("HOME")) + "/.cache/carpool";
  return cache + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

struct Case {
  std::vector<int32_t> prompt;
  std::vector<float> logits;
  std::vector<int32_t> greedy;
  std::vector<std::vector<int32_t>> top5;
};

std::vector<Case> load_cases() {
  std::ifstream in(fixture_dir() + "/cases.json");
  EXPECT_TRUE(in.good()) << "missing fixture " << fixture_dir();
  nlohmann::json j = nlohmann::json::parse(in);
  std::vector<Case> cases;
  for (const auto& c : j["cases"]) {
    Case k;
    k.prompt = c["prompt_ids"].get<std::vector<int32_t>>();
    k.greedy = c["greedy"].get<std::vector<int32_t>>();
    k.top5 = c["greedy_top5"].get<std::vector<std::vector<int32_t>>>();
    std::ifstream b(fixture_dir() + "/" + c["logits_file"].get<std::string>(), std::ios::binary);
    k.logits.resize(j["vocab_size"].get<size_t>());
    b.read(reinterpret_cast<char*>(k.logits.data()), k.logits.size() * sizeof(float));
    EXPECT_TRUE(b.good());
    cases.push_back(std::move(k));
  }
  return cases;
}

std::vector<int32_t> top_k_ids(const std::vector<float>& logits, int k) {
  std::vector<int32_t> ids(logits.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  ids.resize(k);
  return ids;
}

struct Mode {
  const char* name;
  bool exact;
  std::optional<DType> kv;  // unset: the backend's default for the mode
};

class ModelGolden : public ::testing::TestWithParam<Mode> {};

TEST_P(ModelGolden, MatchesTransformers) {
  const bool exact = GetParam().exact;
  auto cases = load_cases();
  ASSERT_GE(cases.size(), 5u);
  auto opened = open_model(model_path());
  ASSERT_TRUE(opened.is_ok()) << opened.error() << " (run `carpool pull smollm2` first)";
  CpuBackendOptions bo;
  bo.quantize_activations = !exact;
  bo.kv_dtype = GetParam().kv;
  auto backend = make_cpu_backend(bo);
  ModelLimits limits;
  limits.max_batch_tokens = 64;  // several prefill chunks for the longer prompts
  auto model = LlamaModel::load(*backend, opened->source, limits);
  ASSERT_TRUE(model.is_ok()) << model.error();
  Generator gen(*model.value());
  // Tolerances on max |ours - ref| / max |ref| over the vocabulary. Measured (2026-11-26):
  // exact <= 2.0e-6; fast <= 3.9e-2 (8-bit activation rounding through 30 layers, as in
  // llama.cpp's q8 activation path; 5.8e-2 on the Intel Xeon VM with AMX, 2026-11-27), so the
  // fast rule leans on the top-5 check below. With the int8 KV cache, on the same VM the same
  // day: <= 6.3e-2 (case by case 0.3-6.3e-3 above the f16 cache's).
  const double tol = exact ? 2e-5 : GetParam().kv == DType::kI8 ? 8e-2 : 6e-2;
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const Case& c = cases[ci];
    auto logits = gen.last_logits(c.prompt);
    ASSERT_TRUE(logits.is_ok()) << logits.error();
    double max_ref = 0, max_diff = 0;
    for (size_t i = 0; i < c.logits.size(); ++i) {
      max_ref = std::max(max_ref, std::fabs(static_cast<double>(c.logits[i])));
      max_diff =
          std::max(max_diff, std::fabs(static_cast<double>(logits.value()[i] - c.logits[i])));
    }
    const double rel = max_diff / max_ref;
    std::printf("case %zu (%s): max |diff| %.3g, relative %.3g\n", ci, GetParam().name, max_diff,
                rel);
    EXPECT_LT(rel, tol) << "case " << ci;

    GenerateOptions opt;
    opt.max_tokens = static_cast<int>(c.greedy.size());
    opt.sampling.temperature = 0;
    std::vector<int32_t> ours;
    std::vector<std::vector<int32_t>> our_top5;
    // Greedy run, recording our own top 5 at each step for the fast-mode rule.
    std::vector<int32_t> ctx = c.prompt;
    auto st = gen.run(c.prompt, opt, [&](int32_t t) {
      ours.push_back(t);
      return true;
    });
    ASSERT_TRUE(st.is_ok()) << st.error();
    ASSERT_EQ(ours.size(), c.greedy.size());
    size_t first_diff = ours.size();
    for (size_t i = 0; i < ours.size(); ++i) {
      if (ours[i] != c.greedy[i]) {
        first_diff = i;
        break;
      }
    }
    if (exact) {
      EXPECT_EQ(first_diff, ours.size())
          << "case " << ci << ": greedy differs at token " << first_diff;
    } else if (first_diff < ours.size()) {
      // Each side's token must be in the other's top 5 at the first difference.
      std::vector<int32_t> prefix = c.prompt;
      prefix.insert(prefix.end(), c.greedy.begin(), c.greedy.begin() + first_diff);
      auto l = gen.last_logits(prefix);
      ASSERT_TRUE(l.is_ok());
      auto mine5 = top_k_ids(l.value(), 5);
      const auto& ref5 = c.top5[first_diff];
      EXPECT_NE(std::find(ref5.begin(), ref5.end(), ours[first_diff]), ref5.end())
          << "case " << ci << " token " << first_diff;
      EXPECT_NE(std::find(mine5.begin(), mine5.end(), c.greedy[first_diff]), mine5.end())
          << "case " << ci << " token " << first_diff;
      std::printf("case %zu: greedy first differs at token %zu (top-5 rule holds)\n", ci,
                  first_diff);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, ModelGolden,
                         ::testing::Values(Mode{"Exact", true, std::nullopt},
                                           Mode{"Fast", false, std::nullopt},
                                           Mode{"FastInt8Kv", false, DType::kI8}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace carpool
