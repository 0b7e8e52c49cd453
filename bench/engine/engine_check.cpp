// engine_check: the continuous-batching engine on a real model, on the CPU or a GPU.
//
//   engine_check MODEL.gguf|synthetic:NAME [cpu|cuda] [n_requests=32] [max_tokens=32]
//
// synthetic:NAME (a named config, e.g. smollm2-135m, llama-3.2-1b) uses random weights (BF16 on
// the GPU, Q4_1 on the CPU): the answers mean nothing, but they must still not depend on batching.
// 1. Greedy answers alone vs together: each request alone (prefix caching off), then all at once
//    (prefix caching on); counts requests whose tokens are identical and, for the others, the
//    first differing position.
// 2. A seeded sampled request alone twice and among the others.
// 3. KV pressure: a cache of a few sequences, all requests at once; preemptions and matches.
// 4. Throughput of the concurrent run (generated tokens / wall time).
// Prints a summary table last. Exit status 0 when every check ran (the figures are the result).
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "engine/engine.h"
#include "model/llama.h"
#include "model/open_model.h"
#ifdef CARPOOL_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace carpool {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Outcome {
  std::vector<int32_t> tokens;
  FinishReason reason = FinishReason::kNone;
  bool done = false;
};

// Submits the requests (all at once, or one at a time) and returns their tokens.
std::vector<Outcome> run(Engine& e, const std::vector<RequestParams>& reqs, bool together,
                         double* wall_s) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Outcome> out(reqs.size());
  size_t done = 0;
  auto sink = [&](size_t i) {
    return [&, i](const TokenEvent& ev) {
      std::lock_guard<std::mutex> lk(mu);
      if (ev.token >= 0) out[i].tokens.push_back(ev.token);
      if (ev.finished) {
        out[i].reason = ev.finish_reason;
        out[i].done = true;
        ++done;
        cv.notify_all();
      }
    };
  };
  const double t0 = now_s();
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto id = e.submit(reqs[i], sink(i));
    if (!id) {
      std::fprintf(stderr, "submit: %s\n", id.error().c_str());
      std::exit(1);
    }
    if (!together) {
      std::unique_lock<std::mutex> lk(mu);
      cv.wait(lk, [&] { return done == i + 1; });
    }
  }
  std::unique_lock<std::mutex> lk(mu);
  cv.wait(lk, [&] { return done == reqs.size(); });
  if (wall_s) *wall_s = now_s() - t0;
  return out;
}

struct Compare {
  int same = 0;
  int total = 0;
  std::string firsts;  // "req@pos" of the differing ones
};

Compare compare(const std::vector<Outcome>& a, const std::vector<Outcome>& b) {
  Compare c;
  for (size_t i = 0; i < a.size(); ++i) {
    ++c.total;
    if (a[i].tokens == b[i].tokens) {
      ++c.same;
      continue;
    }
    size_t p = 0;
    while (p < a[i].tokens.size() && p < b[i].tokens.size() && a[i].tokens[p] == b[i].tokens[p])
      ++p;
    char first[48];  // (snprintf: GCC 12 warns falsely on a std::string operator+ chain)
    std::snprintf(first, sizeof first, " %zu@%zu", static_cast<size_t>(i), p);
    c.firsts += first;
  }
  return c;
}

int main_impl(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: engine_check MODEL.gguf [cpu|cuda] [n_requests] [max_tokens]\n");
    return 2;
  }
  const std::string device = argc > 2 ? argv[2] : "cpu";
  const int n_req = argc > 3 ? std::atoi(argv[3]) : 32;
  const int max_tokens = argc > 4 ? std::atoi(argv[4]) : 32;
  const std::string model_arg = argv[1];
  const bool synthetic = model_arg.rfind("synthetic:", 0) == 0;
  OpenedModel opened;
  ModelConfig config;
  if (synthetic) {
    auto c = named_config(model_arg.substr(10));
    if (!c) {
      std::fprintf(stderr, "%s\n", c.error().c_str());
      return 1;
    }
    config = c.value();
  } else {
    auto o = open_model(model_arg);
    if (!o) {
      std::fprintf(stderr, "%s\n", o.error().c_str());
      return 1;
    }
    opened = std::move(o.value());
    config = opened.source.config;
  }
  std::unique_ptr<Backend> backend;
  if (device == "cuda") {
#ifdef CARPOOL_HAVE_CUDA
    auto b = make_cuda_backend();
    if (!b) {
      std::fprintf(stderr, "%s\n", b.error().c_str());
      return 1;
    }
    backend = std::move(b.value());
#else
    std::fprintf(stderr, "built without CUDA\n");
    return 1;
#endif
  } else {
    backend = make_cpu_backend();
  }
  EngineOptions o;
  o.max_num_seqs = 64;
  o.max_num_batched_tokens = 512;
  o.max_model_len = 1024;
  o.gpu_memory_utilization = 0.3;
  const ModelLimits limits = engine_model_limits(o, config);
  auto model =
      synthetic ? LlamaModel::synthetic(*backend, config,
                                        device == "cuda" ? DType::kBF16 : DType::kQ4_1, 42, limits)
                : LlamaModel::load(*backend, opened.source, limits);
  if (!model) {
    std::fprintf(stderr, "%s\n", model.error().c_str());
    return 1;
  }
  std::printf("device: %s, model: %s\n", backend->device_name().c_str(), model_arg.c_str());

  std::mt19937 rng(7);
  std::vector<int32_t> shared(48);
  for (auto& t : shared) t = 200 + static_cast<int32_t>(rng() % 8000);
  std::vector<RequestParams> reqs;
  for (int i = 0; i < n_req; ++i) {
    RequestParams r;
    const int n = 4 + static_cast<int>(rng() % 200);
    if (i % 4 == 1) r.prompt = shared;
    while (static_cast<int>(r.prompt.size()) < n)
      r.prompt.push_back(200 + static_cast<int32_t>(rng() % 8000));
    r.max_tokens = max_tokens / 2 + static_cast<int>(rng() % (max_tokens / 2 + 1));
    r.sampling.temperature = 0;
    r.ignore_eos = true;
    reqs.push_back(std::move(r));
  }

  // 1. Greedy alone vs together.
  std::vector<Outcome> alone, together;
  double alone_s = 0, together_s = 0;
  {
    EngineOptions oa = o;
    oa.enable_prefix_caching = false;
    auto e = Engine::create(*model.value(), oa);
    if (!e) return std::fprintf(stderr, "%s\n", e.error().c_str()), 1;
    alone = run(*e.value(), reqs, false, &alone_s);
  }
  int64_t preemptions = 0, hits = 0;
  {
    auto e = Engine::create(*model.value(), o);
    if (!e) return std::fprintf(stderr, "%s\n", e.error().c_str()), 1;
    together = run(*e.value(), reqs, true, &together_s);
    hits = e.value()->stats().prefix_cache_hit_tokens;
  }
  const Compare greedy = compare(alone, together);
  int64_t gen = 0;
  for (const auto& r : together) gen += static_cast<int64_t>(r.tokens.size());

  // 2. Seeded sampling.
  RequestParams s = reqs[0];
  s.sampling.temperature = 0.9f;
  s.sampling.seed = 1234;
  std::vector<RequestParams> mix(reqs.begin(), reqs.begin() + std::min(8, n_req));
  mix.push_back(s);
  Compare seeded;
  {
    auto e = Engine::create(*model.value(), o);
    if (!e) return 1;
    auto a = run(*e.value(), {s}, false, nullptr);
    auto b = run(*e.value(), {s}, false, nullptr);
    auto t = run(*e.value(), mix, true, nullptr);
    seeded = compare({a[0], a[0]}, {b[0], t.back()});
  }

  // 3. KV pressure: room for about two full-context sequences.
  Compare pressure;
  {
    EngineOptions op = o;
    const ModelConfig& c = model.value()->config();
    const int64_t elem = backend->activation_dtype() == DType::kF32 ? 4 : 2;
    op.kv_cache_bytes = 2 * c.n_layers * c.n_kv_heads * c.head_dim * elem * (2 * 1024 + 64);
    auto e = Engine::create(*model.value(), op);
    if (!e) return std::fprintf(stderr, "%s\n", e.error().c_str()), 1;
    auto t = run(*e.value(), reqs, true, nullptr);
    preemptions = e.value()->stats().preemptions;
    pressure = compare(alone, t);
  }

  std::printf("\n%-44s %s\n", "check", "result");
  std::printf("%-44s %d/%d identical%s\n", "greedy alone vs together", greedy.same, greedy.total,
              greedy.firsts.empty() ? "" : (" (first diff req@pos:" + greedy.firsts + ")").c_str());
  std::printf("%-44s %lld tokens\n", "prefix cache hits (together)", static_cast<long long>(hits));
  std::printf("%-44s %d/%d identical\n", "seeded sample: again, among others", seeded.same,
              seeded.total);
  std::printf("%-44s %d/%d identical, %lld preemptions%s\n", "KV pressure vs alone", pressure.same,
              pressure.total, static_cast<long long>(preemptions),
              pressure.firsts.empty() ? "" : (" (first diff:" + pressure.firsts + ")").c_str());
  std::printf("%-44s %.1f s alone, %.1f s together: %.0f vs %.0f generated tok/s\n", "throughput",
              alone_s, together_s, gen / alone_s, gen / together_s);
  return 0;
}

}  // namespace
}  // namespace carpool

int main(int argc, char** argv) {
  return carpool::main_impl(argc, argv);
}
