// Host sampler (engine/sampler.h): one call of Sampler::sample per iteration on a logits row
// shaped like a language model's (Gaussian logits, a few tokens well above the rest), for the
// vocabularies of SmolLM2 (49,152) and Llama 3 (128,256).
//
//   BM_Sample/<vocab>/<mode>: mode 0 greedy, 1 temperature 1 (the OpenAI API's default: no
//   top-k, top-p or min-p), 2 top_p 0.9, 3 top_k 50, 4 min_p 0.05, 5 top_p 0.95 at temperature
//   1.5 (a flat distribution).
//   BM_Logprobs/<vocab>: a token's logprob and the top 5 of one row (logprobs_of, as the runner
//   asks for `logprobs: 5`).
//   BM_JsonMask/<vocab>/<where>: JSON mode's mask (mask_json) over a BPE-like vocabulary (the 256
//   single bytes, then pieces of 2-10 letters, half with a leading space, some with
//   punctuation); where 0: at a value (after {"a":), 1: inside a string, 2: after a value.
//   BM_JsonSchemaMask/<vocab>/<where>: the same with a schema (json_schema.h).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "engine/json_constraint.h"
#include "engine/json_schema.h"
#include "engine/sampler.h"

namespace carpool {
namespace {

std::vector<float> lm_logits(int vocab) {
  std::mt19937 g(7);
  std::normal_distribution<float> nd(0.f, 2.f);
  std::vector<float> l(static_cast<size_t>(vocab));
  for (float& v : l) v = nd(g);
  for (int i = 0; i < 8; ++i) l[static_cast<size_t>((i * 7919) % vocab)] += 12.f - i;
  return l;
}

void BM_Sample(benchmark::State& state) {
  const int vocab = static_cast<int>(state.range(0));
  SamplingParams p;
  switch (state.range(1)) {
    case 0:
      p.temperature = 0.f;
      break;
    case 1:
      break;
    case 2:
      p.top_p = 0.9f;
      break;
    case 3:
      p.top_k = 50;
      break;
    case 4:
      p.min_p = 0.05f;
      break;
    default:
      p.temperature = 1.5f;
      p.top_p = 0.95f;
      break;
  }
  p.seed = 1;
  Sampler s(p, {});
  const std::vector<float> base = lm_logits(vocab);
  std::vector<float> l(base.size());
  for (auto _ : state) {
    state.PauseTiming();
    l = base;
    state.ResumeTiming();
    benchmark::DoNotOptimize(s.sample(l));
  }
}
BENCHMARK(BM_Sample)->ArgsProduct({{49152, 128256}, {0, 1, 2, 3, 4, 5}});

// A sampled token's logprob and the top 5 (a request with logprobs: 5).
void BM_Logprobs(benchmark::State& state) {
  const std::vector<float> l = lm_logits(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    benchmark::DoNotOptimize(logprobs_of(l, 7, 5));
  }
}
BENCHMARK(BM_Logprobs)->Arg(49152)->Arg(128256);

TokenBytes bpe_like_vocab(int vocab) {
  TokenBytes v;
  v.text.resize(static_cast<size_t>(vocab));
  std::mt19937 g(3);
  const std::string punct = "{}[]\":,. 0123456789";
  for (int id = 0; id < vocab; ++id) {
    std::string& t = v.text[static_cast<size_t>(id)];
    if (id < 256) {
      t = std::string(1, static_cast<char>(id));
      continue;
    }
    if (g() % 2 == 0) t += ' ';
    const int len = 2 + static_cast<int>(g() % 9);
    for (int i = 0; i < len; ++i) {
      t += g() % 8 == 0 ? punct[g() % punct.size()] : static_cast<char>('a' + g() % 26);
    }
  }
  v.end_ids = {0};
  v.text[0].clear();
  v.index();
  return v;
}

void BM_JsonMask(benchmark::State& state) {
  const int vocab = static_cast<int>(state.range(0));
  const TokenBytes v = bpe_like_vocab(vocab);
  JsonState s;
  const char* prefix =
      state.range(1) == 0 ? "{\"a\":" : (state.range(1) == 1 ? "{\"a\":\"b" : "{\"a\":1");
  s.feed(prefix);
  std::vector<float> logits(static_cast<size_t>(vocab));
  for (auto _ : state) {
    std::fill(logits.begin(), logits.end(), 0.f);
    mask_json(s, v, logits);
    benchmark::DoNotOptimize(logits.data());
  }
}
BENCHMARK(BM_JsonMask)->ArgsProduct({{49152, 128256}, {0, 1, 2}});

// The same with a schema (SchemaState: {"a": string, "n": integer}), where 0: at the string value
// (after {"a":), 1: inside it, 2: at the integer (after {"a":"b","n":).
void BM_JsonSchemaMask(benchmark::State& state) {
  const TokenBytes v = bpe_like_vocab(static_cast<int>(state.range(0)));
  JsonSchema schema;
  schema.nodes.resize(3);
  schema.nodes[0].type = SchemaNode::Type::kObject;
  schema.nodes[0].keys = {"\"a\"", "\"n\""};
  schema.nodes[0].children = {1, 2};
  schema.nodes[1].type = SchemaNode::Type::kString;
  schema.nodes[2].type = SchemaNode::Type::kInteger;
  SchemaState s(&schema);
  const char* prefix = state.range(1) == 0   ? "{\"a\":"
                       : state.range(1) == 1 ? "{\"a\":\"b"
                                             : "{\"a\":\"b\",\"n\":";
  if (!s.feed(prefix)) state.SkipWithError("prefix rejected");
  std::vector<float> logits(v.text.size());
  for (auto _ : state) {
    std::fill(logits.begin(), logits.end(), 0.f);
    mask_tokens(s, v, logits);
    benchmark::DoNotOptimize(logits.data());
  }
}
BENCHMARK(BM_JsonSchemaMask)->ArgsProduct({{49152, 128256}, {0, 1, 2}});

}  // namespace
}  // namespace carpool

BENCHMARK_MAIN();
