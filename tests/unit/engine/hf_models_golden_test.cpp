// Tiny random-weight Hugging Face models (Llama-3-style with rope scaling and GQA, Qwen2-style
// with QKV bias and tied embeddings, Mistral-style sharded) against transformers in float32
// (fixtures from scripts/golden/make_tiny_models.py): last-position logits within 1e-4 and the
// 16-token greedy continuation identical.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "backend/cpu/cpu_backend.h"
#include "engine/generator.h"
#include "model/llama.h"
#include "model/open_model.h"

namespace carpool {
namespace {

class TinyModelGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(TinyModelGolden, MatchesTransformers) {
  const std::string dir = std::string(CARPOOL_SOURCE_DIR) + "/tests/golden/models/" + GetParam();
  std::ifstream in(dir + "/golden.json");
  ASSERT_TRUE(in.good()) << dir;
  nlohmann::json golden = nlohmann::json::parse(in);
  auto opened = open_model(dir);
  ASSERT_TRUE(opened.is_ok()) << opened.error();
  // f32 KV cache: the models are f32, so the arithmetic is the reference's (the f16 cache is
  // checked against a reference by the attention tests).
  auto backend = make_cpu_backend({.kv_dtype = DType::kF32});
  ModelLimits limits;
  limits.max_batch_tokens = 8;  // several prefill chunks for the longer prompts
  auto model = LlamaModel::load(*backend, opened->source, limits);
  ASSERT_TRUE(model.is_ok()) << model.error();
  Generator gen(*model.value());
  for (const auto& p : golden["prompts"]) {
    auto ids = p["token_ids"].get<std::vector<int32_t>>();
    auto ref = p["logits_last"].get<std::vector<float>>();
    auto logits = gen.last_logits(ids);
    ASSERT_TRUE(logits.is_ok()) << logits.error();
    ASSERT_EQ(logits->size(), ref.size());
    double max_diff = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      max_diff = std::max(max_diff, std::fabs(static_cast<double>(logits.value()[i] - ref[i])));
    }
    std::printf("%s, prompt of %zu tokens: max |logit diff| %.3g\n", GetParam().c_str(), ids.size(),
                max_diff);
    EXPECT_LT(max_diff, 1e-4);

    auto want = p["greedy"].get<std::vector<int32_t>>();
    GenerateOptions opt;
    opt.max_tokens = static_cast<int>(want.size());
    opt.sampling.temperature = 0;
    std::vector<int32_t> got;
    auto st = gen.run(ids, opt, [&](int32_t t) {
      got.push_back(t);
      return true;
    });
    ASSERT_TRUE(st.is_ok()) << st.error();
    EXPECT_EQ(got, want);
  }
}

INSTANTIATE_TEST_SUITE_P(Families, TinyModelGolden,
                         ::testing::Values("tiny-llama3", "tiny-qwen2", "tiny-mistral"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) c = c == '-' ? '_' : c;
                           return n;
                         });

}  // namespace
}  // namespace carpool
