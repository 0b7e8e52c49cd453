// carpool bench: drive the model directly (no HTTP) and report prefill and decode throughput.
//
// Decode: `batch` sequences, each with a `prompt-len` context, step together for `gen` steps;
// every step computes logits for every sequence. Tokens fed back are drawn at random rather
// than sampled, so the figure is the forward pass; with --temperature each step also draws every
// row's token on the device (Backend::sample_rows with --top-k / --top-p / --min-p), and that
// kernel's time is part of the step.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/load.h"

namespace carpool::cli {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  Args args(
      "bench", "Measures prefill and decode throughput by driving the engine directly.",
      {
          {"model", "m", "PATH_OR_NAME", "model file, known name, or synthetic:NAME", "smollm2"},
          {"batch", "b", "N", "sequences decoding together", "1"},
          {"prompt-len", "p", "N", "context length of each sequence before decoding", "128"},
          {"gen", "n", "N", "decode steps to time", "32"},
          {"prefill-len", "", "N", "length of the single prompt timed for prefill (0: skip)",
           "512"},
          {"chunk", "", "N", "max tokens per step (prefill chunk)", "512"},
          {"dtype", "", "TYPE", "weight type of synthetic models", "q4_1 on CPU, bf16 on GPU"},
          {"device", "", "DEVICE", "auto, cpu or cuda", "auto"},
          {"kv-cache-dtype", "", "TYPE",
           "KV cache element type: auto (CPU f16; CUDA bf16), f16, f32, int8 (CPU: int8 with a "
           "scale per token and KV head), bf16",
           "auto"},
          {"threads", "t", "N", "CPU threads, up to 1024 (0: every core)", "0"},
          {"no-graphs", "", "", "run every step directly (no recorded step graphs; A/B)", ""},
          {"check-graphs", "", "",
           "also run every decode step without graphs and compare the logits (fails above 2% "
           "of the largest logit)",
           ""},
          {"op-times", "", "",
           "time every op of the timed decode steps and print a table of them (steps run "
           "without graphs)",
           ""},
          {"temperature", "", "T",
           "also draw each row's token on the device every decode step (0: no draw)", "0"},
          {"top-k", "", "K", "top-k of those draws (0: off)", "0"},
          {"top-p", "", "P", "top-p of those draws", "1"},
          {"min-p", "", "P", "min-p of those draws", "0"},
          {"json", "", "", "print one JSON object instead of text", ""},
      });
  if (Status st = args.parse(argc, argv); !st) {
    std::fprintf(stderr, "carpool bench: %s\n", st.message().c_str());
    return 2;
  }
  if (args.help_requested()) {
    std::fputs(args.help().c_str(), stdout);
    return 0;
  }
  auto fail = [](const std::string& m) {
    std::fprintf(stderr, "carpool bench: %s\n", m.c_str());
    return 1;
  };
  auto batch = args.get_int("batch", 1), plen = args.get_int("prompt-len", 128),
       gen = args.get_int("gen", 32), prefill_len = args.get_int("prefill-len", 512),
       chunk = args.get_int("chunk", 512), threads = args.get_int("threads", 0);
  auto temperature = args.get_float("temperature", 0), top_p = args.get_float("top-p", 1),
       min_p = args.get_float("min-p", 0);
  auto top_k = args.get_int("top-k", 0);
  for (const Status& st :
       {batch.status(), plen.status(), gen.status(), prefill_len.status(), chunk.status(),
        threads.status(), temperature.status(), top_p.status(), min_p.status(), top_k.status()}) {
    if (!st) return fail(st.message());
  }
  const bool draw = temperature.value() > 0;
  if (!(temperature.value() >= 0 && temperature.value() <= 100) || top_k.value() < 0 ||
      !(top_p.value() > 0 && top_p.value() <= 1) || !(min_p.value() >= 0 && min_p.value() <= 1))
    return fail("sampling: temperature in [0, 100], top-k >= 0, top-p in (0, 1], min-p in [0, 1]");
  // Each size in its range (positions stay far inside int; the model's context is checked later).
  struct Range {
    const char* flag;
    int64_t value, lo, hi;
  };
  for (const Range& r :
       {Range{"--batch", batch.value(), 1, 4096}, Range{"--prompt-len", plen.value(), 1, 1 << 22},
        Range{"--gen", gen.value(), 1, 1 << 22},
        Range{"--prefill-len", prefill_len.value(), 0, 1 << 22},
        Range{"--chunk", chunk.value(), 1, 1 << 22}}) {
    if (r.value < r.lo || r.value > r.hi) {
      return fail(std::string(r.flag) + " must be in [" + std::to_string(r.lo) + ", " +
                  std::to_string(r.hi) + "], got " + std::to_string(r.value));
    }
  }
  const int B = static_cast<int>(batch.value()), P = static_cast<int>(plen.value());
  const int G = static_cast<int>(gen.value()), PF = static_cast<int>(prefill_len.value());
  const int C = static_cast<int>(chunk.value());
  const int bs = 16;
  const int ctx = std::max(P + G, PF);
  const int blocks_per_seq = (ctx + bs - 1) / bs;

  LoadOptions lo;
  lo.model = args.get("model");
  lo.device = args.get("device", "auto");
  lo.kv_cache_dtype = args.get("kv-cache-dtype", "auto");
  lo.threads = static_cast<int>(threads.value());
  lo.synthetic_dtype = args.get("dtype");
  lo.limits.max_batch_tokens = std::max(C, B);
  lo.limits.max_seqs = B;
  lo.limits.max_logit_rows = B;
  lo.limits.max_blocks_per_seq = blocks_per_seq;
  auto lm = load_model(lo);
  if (!lm) return fail(lm.error());
  LlamaModel& model = *lm->model;
  Backend& be = *lm->backend;
  const bool op_times = args.flag("op-times");
  if (args.flag("no-graphs") || op_times) be.set_graphs_enabled(false);
  const bool graphs = be.graphs_enabled();
  const bool check_graphs = args.flag("check-graphs") && graphs;
  const ModelConfig& cfg = model.config();
  if (ctx > cfg.max_position) return fail("context exceeds the model's context length");
  auto kv = model.alloc_kv_cache(B * blocks_per_seq, bs);
  if (!kv) return fail(kv.error());
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(cfg.vocab_size - 1));
  float sink = 0;

  // Runs sequence s's tokens [begin, end) in chunks (prefill).
  auto prefill_seq = [&](int s, int begin, int end) -> Status {
    std::vector<int32_t> table(blocks_per_seq);
    for (int i = 0; i < blocks_per_seq; ++i) table[i] = s * blocks_per_seq + i;
    for (int start = begin; start < end; start += C) {
      int n = std::min(C, end - start);
      std::vector<int32_t> ids(n), pos(n), slots(n);
      for (int i = 0; i < n; ++i) {
        ids[i] = tok(rng);
        pos[i] = start + i;
        slots[i] = table[(start + i) / bs] * bs + (start + i) % bs;
      }
      int32_t qs[2] = {0, n}, kvl[1] = {start + n}, last[1] = {n - 1};
      ForwardBatch b{ids, pos, slots, qs, kvl, table, blocks_per_seq, last};
      auto out = model.forward(b, kv.value());
      if (!out) return out.status();
    }
    return Status::ok();
  };

  // --- prefill of one long prompt ---
  double prefill_tps = 0, prefill_s = 0;
  if (PF > 0) {
    if (Status st = prefill_seq(0, 0, std::min(PF, C)); !st) return fail(st.message());  // warm-up
    be.synchronize();
    double t0 = now_s();
    if (Status st = prefill_seq(0, 0, PF); !st) return fail(st.message());
    be.synchronize();
    prefill_s = now_s() - t0;
    prefill_tps = PF / prefill_s;
  }
  // --op-times: the prefill once more, op by op (not the timed run: each op's timing marks cost
  // a little).
  std::vector<OpTime> prefill_ops;
  if (op_times && PF > 0) {
    be.set_op_timing(true);
    if (Status st = prefill_seq(0, 0, PF); !st) return fail(st.message());
    prefill_ops = be.take_op_times();
    be.set_op_timing(false);
  }

  // --- decode at batch B ---
  for (int s = 0; s < B; ++s) {
    if (Status st = prefill_seq(s, 0, P); !st) return fail(st.message());
  }
  std::vector<int32_t> table(static_cast<size_t>(B) * blocks_per_seq), ids(B), pos(B), slots(B),
      qs(B + 1), kvl(B), rows(B);
  for (int s = 0; s < B; ++s) {
    for (int i = 0; i < blocks_per_seq; ++i) table[s * blocks_per_seq + i] = s * blocks_per_seq + i;
    qs[s] = s;
    rows[s] = s;
  }
  qs[B] = B;
  // --temperature: every step's rows drawn on the device, tokens downloaded.
  Tensor draw_params, draw_out;
  std::vector<float> params(static_cast<size_t>(B) * Backend::kRowSamplingFloats);
  std::vector<int32_t> drawn(static_cast<size_t>(B));
  std::uniform_real_distribution<float> unif(0.f, 1.f);
  if (draw) {
    auto tp = be.alloc(DType::kF32, B, Backend::kRowSamplingFloats);
    auto to = be.alloc(DType::kI32, B, 1);
    if (!tp || !to) return fail("could not allocate the sampling buffers");
    draw_params = tp.value();
    draw_out = to.value();
  }
  std::vector<double> step_s;
  const int warmup = std::min(3, G);
  // --check-graphs: each step again without graphs (same inputs, so the KV it rewrites is the
  // same up to rounding), logits compared.
  const size_t vocab = static_cast<size_t>(cfg.vocab_size);
  std::vector<float> with_graph, direct;
  double check_max_rel = 0;
  int64_t check_rows = 0, check_argmax_same = 0;
  auto argmax = [](const float* v, size_t n) { return std::max_element(v, v + n) - v; };
  for (int step = 0; step < G + warmup; ++step) {
    const int p = P + std::min(step, G - 1);  // warm-up steps rewrite the first decode position
    for (int s = 0; s < B; ++s) {
      ids[s] = tok(rng);
      pos[s] = p;
      slots[s] = table[s * blocks_per_seq + p / bs] * bs + p % bs;
      kvl[s] = p + 1;
    }
    ForwardBatch b{ids, pos, slots, qs, kvl, table, blocks_per_seq, rows};
    if (op_times && step == warmup) be.set_op_timing(true);
    double t0 = now_s();
    auto out = model.forward(b, kv.value());
    if (!out) return fail(out.error());
    if (draw) {
      for (int s = 0; s < B; ++s) {
        float* row = params.data() + static_cast<size_t>(s) * Backend::kRowSamplingFloats;
        row[0] = static_cast<float>(temperature.value());
        row[1] = static_cast<float>(top_k.value());
        row[2] = static_cast<float>(top_p.value());
        row[3] = static_cast<float>(min_p.value());
        row[4] = unif(rng);
      }
      be.upload(draw_params, params.data(), params.size() * sizeof(float));
      if (!be.sample_rows(draw_out, out.value(), draw_params))
        return fail("--temperature: this backend does not draw tokens on the device");
      be.download(drawn.data(), draw_out, drawn.size() * sizeof(int32_t));  // waits for the step
      for (int32_t t : drawn) {
        if (t < 0 || t >= cfg.vocab_size) return fail("a drawn token is out of the vocabulary");
      }
      sink += static_cast<float>(drawn[0]);
    } else {
      float v = 0;
      be.download(&v, out.value(), sizeof(float));  // waits for the step
      sink += v;
    }
    if (step >= warmup) step_s.push_back(now_s() - t0);
    if (check_graphs) {
      with_graph.resize(static_cast<size_t>(B) * vocab);
      direct.resize(with_graph.size());
      be.download(with_graph.data(), out.value(), with_graph.size() * sizeof(float));
      be.set_graphs_enabled(false);
      auto out2 = model.forward(b, kv.value());
      be.set_graphs_enabled(true);
      if (!out2) return fail(out2.error());
      be.download(direct.data(), out2.value(), direct.size() * sizeof(float));
      for (int s = 0; s < B; ++s) {
        const float* g = with_graph.data() + s * vocab;
        const float* d = direct.data() + s * vocab;
        double max_abs = 0, max_diff = 0;
        for (size_t i = 0; i < vocab; ++i) {
          max_abs = std::max(max_abs, std::fabs(static_cast<double>(d[i])));
          max_diff = std::max(max_diff, std::fabs(static_cast<double>(g[i]) - d[i]));
        }
        if (!(max_diff <= max_abs)) max_diff = 1e30;  // NaN
        check_max_rel = std::max(check_max_rel, max_abs > 0 ? max_diff / max_abs : max_diff);
        check_argmax_same += argmax(g, vocab) == argmax(d, vocab) ? 1 : 0;
        ++check_rows;
      }
    }
  }
  be.set_op_timing(false);
  const std::vector<OpTime> ops = op_times ? be.take_op_times() : std::vector<OpTime>{};
  double ops_s = 0;
  for (const OpTime& o : ops) ops_s += o.seconds;
  std::sort(step_s.begin(), step_s.end());
  const double median = step_s[step_s.size() / 2];
  double total = 0;
  for (double s : step_s) total += s;
  const double decode_tps = B * step_s.size() / total;
  // Bytes per decode step: every weight a step streams (all but the embedding table, of which
  // only the batch's rows are read, unless it doubles as the output matrix), plus each
  // sequence's KV read: the telemetry cost model's count.
  const double kv_read =
      static_cast<double>(B) * (P + G / 2.0) * cfg.kv_bytes_per_token(be.kv_cache_dtype());
  const WeightRoleBytes& roles = model.weight_role_bytes();
  const double streamed = static_cast<double>(roles.attention + roles.ffn + roles.norms +
                                              (roles.output > 0 ? roles.output : roles.embedding));
  const double step_bytes = streamed + kv_read;
  const double achieved_bw = step_bytes / median;

  if (args.flag("json")) {
    std::printf(
        "{\"model\": \"%s\", \"device\": \"%s\", \"backend\": \"%s\", \"batch\": %d, "
        "\"prompt_len\": %d, \"gen\": %d, \"weight_bytes\": %zu, \"decode_step_s_median\": %.6f, "
        "\"decode_tokens_per_s\": %.2f, \"decode_bytes_per_s\": %.4g, \"prefill_len\": %d, "
        "\"prefill_s\": %.6f, \"prefill_tokens_per_s\": %.2f, \"params\": %lld, \"graphs\": %s, "
        "\"graph_check_rows\": %lld, \"graph_check_max_rel_diff\": %.3g, "
        "\"graph_check_argmax_same\": %lld, \"draw_temperature\": %g, \"draw_top_k\": %lld, "
        "\"draw_top_p\": %g, \"sink\": %g",
        lo.model.empty() ? "smollm2" : lo.model.c_str(), be.device_name().c_str(),
        be.name().c_str(), B, P, G, model.weight_bytes(), median, decode_tps, achieved_bw, PF,
        prefill_s, prefill_tps, static_cast<long long>(cfg.parameter_count()),
        graphs ? "true" : "false", static_cast<long long>(check_rows), check_max_rel,
        static_cast<long long>(check_argmax_same), temperature.value(),
        static_cast<long long>(top_k.value()), top_p.value(), static_cast<double>(sink));
    // Ops of `per` steps as a JSON list, figures per step.
    auto op_list = [](const std::vector<OpTime>& list, int per) {
      for (size_t i = 0; i < list.size(); ++i) {
        const OpTime& o = list[i];
        std::printf(
            "%s{\"op\": \"%s\", \"calls_per_step\": %.3g, \"ms_per_step\": %.6g, "
            "\"bytes_per_s\": %.4g, \"flops_per_s\": %.4g}",
            i ? ", " : "", o.op.c_str(), double(o.calls) / per, o.seconds * 1e3 / per,
            o.seconds > 0 ? o.bytes / o.seconds : 0.0, o.seconds > 0 ? o.flops / o.seconds : 0.0);
      }
    };
    if (op_times) {
      std::printf(", \"op_times\": [");
      op_list(ops, G);
      std::printf("], \"op_ms_per_step\": %.6g", ops_s * 1e3 / G);
      if (!prefill_ops.empty()) {
        double pf_s = 0;
        for (const OpTime& o : prefill_ops) pf_s += o.seconds;
        std::printf(", \"prefill_op_times\": [");
        op_list(prefill_ops, 1);
        std::printf("], \"prefill_op_ms\": %.6g", pf_s * 1e3);
      }
    }
    std::printf("}\n");
  } else {
    std::printf("model %s on %s (%s), weights %.1f MB\n",
                lo.model.empty() ? "smollm2" : lo.model.c_str(), be.device_name().c_str(),
                be.name().c_str(), model.weight_bytes() / 1e6);
    if (PF > 0)
      std::printf("prefill  %d tokens: %.3f s, %.1f tokens/s\n", PF, prefill_s, prefill_tps);
    std::printf(
        "decode   batch %d, context %d: median step %.2f ms, %.1f tokens/s, %.1f GB/s "
        "(weights + KV read per step / median step)\n",
        B, P, median * 1e3, decode_tps, achieved_bw / 1e9);
    std::printf("graphs   %s\n", graphs ? "on" : "off");
    // A table of ops, figures per `per` runs, shares of `sum` seconds.
    auto op_table = [](const std::vector<OpTime>& list, int per, double sum) {
      std::printf("  %-44s %6s %9s %6s %9s %9s\n", "op", "calls", "ms", "share", "GB/s", "GFLOP/s");
      for (const OpTime& o : list) {
        std::printf("  %-44s %6.3g %9.4f %5.1f%% %9.1f %9.1f\n", o.op.c_str(),
                    double(o.calls) / per, o.seconds * 1e3 / per,
                    sum > 0 ? 100.0 * o.seconds / sum : 0.0,
                    o.seconds > 0 ? o.bytes / o.seconds / 1e9 : 0.0,
                    o.seconds > 0 ? o.flops / o.seconds / 1e9 : 0.0);
      }
    };
    if (op_times && !prefill_ops.empty()) {
      double pf_s = 0;
      for (const OpTime& o : prefill_ops) pf_s += o.seconds;
      std::printf("ops of the %d-token prefill: %.3f ms of device time in ops\n", PF, pf_s * 1e3);
      op_table(prefill_ops, 1, pf_s);
    }
    if (op_times) {
      // Per decode step: the ops' device time (their sum against the step's wall time shows
      // what lies between ops: launches, uploads, host work), and each op against the roofs.
      std::printf("ops per decode step: %.3f ms of device time in ops (mean step %.3f ms)\n",
                  ops_s * 1e3 / G, total * 1e3 / static_cast<double>(step_s.size()));
      op_table(ops, G, ops_s);
    }
    if (check_rows > 0) {
      std::printf(
          "graph check: %lld rows, max |diff| %.3g of the largest logit, argmax same in "
          "%lld\n",
          static_cast<long long>(check_rows), check_max_rel,
          static_cast<long long>(check_argmax_same));
    }
  }
  be.free_kv(kv.value());
  if (draw) {
    be.free(draw_params);
    be.free(draw_out);
  }
  if (check_rows > 0 && !(check_max_rel <= 0.02)) {
    std::fprintf(stderr, "carpool bench: graph steps differ from direct steps (%.3g)\n",
                 check_max_rel);
    return 1;
  }
  return 0;
}

}  // namespace carpool::cli
