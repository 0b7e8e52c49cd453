#include "telemetry/advisor.h"

#include <cstdarg>
#include <cstdio>

namespace carpool::telemetry {
namespace {

std::string format(const char* fmt, ...) {
  char buf[512];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, args);
  va_end(args);
  return buf;
}

// The phase that took most of the loop's time decides the wording ("decode memory-bound").
const char* dominant_phase(const WindowFigures& f) {
  if (f.decode.bound && !f.prefill.bound) return "decode";
  if (f.prefill.bound && !f.decode.bound) return "prefill";
  return "";
}

std::string bound_phrase(const WindowFigures& f) {
  if (!f.all.bound) return "busy";
  const char* phase = dominant_phase(f);
  std::string s = *phase ? std::string(phase) + " " : std::string();
  return s + bound_name(*f.all.bound) + "-bound";
}

// "batch 3.0 does 2.9 FLOPs per byte, below the ridge point 95" when both are known.
std::string intensity_phrase(const WindowFigures& f) {
  auto ridge = f.peaks.ridge_flops_per_byte();
  if (!f.all.arithmetic_intensity || !ridge || !f.batch_size) return "";
  return format("batch %.1f does %.2g FLOPs per byte, %s the ridge point %.3g", *f.batch_size,
                *f.all.arithmetic_intensity,
                *f.all.arithmetic_intensity < *ridge ? "below" : "above", *ridge);
}

}  // namespace

Advice advise(const WindowFigures& f, const AdvisorLimits& limits) {
  Advice a;
  if (f.all.bound) a.bound = bound_name(*f.all.bound);
  const int running = f.engine ? f.engine->running : 0;
  const int waiting = f.engine ? f.engine->waiting : 0;
  std::optional<double> kv;
  if (f.engine && f.engine->kv_blocks_total > 0)
    kv = static_cast<double>(f.engine->kv_blocks_used) /
         static_cast<double>(f.engine->kv_blocks_total);
  const std::string intensity = intensity_phrase(f);

  if (f.steps == 0 && waiting == 0) {
    a.state = "idle";
    a.text =
        format("idle: no engine steps in the last %lld s; nothing to tune until traffic arrives",
               static_cast<long long>(f.window_s));
    return a;
  }
  const double preempted = f.preemptions.value_or(0);
  if (preempted > 0 || (waiting > 0 && kv && *kv >= 0.9)) {
    a.state = "kv";
    a.lever = "--kv-cache-memory";
    const std::string usage = kv ? format("KV cache %.0f%% full", *kv * 100) : "KV cache full";
    a.text = format(
        "%s with %d waiting and %.0f preemptions in %lld s: raise --kv-cache-memory (sequences "
        "wait for KV blocks, and preempted ones recompute their prompt)",
        usage.c_str(), waiting, preempted, static_cast<long long>(f.window_s));
    return a;
  }
  if (waiting > 0 && limits.max_num_seqs > 0 && running >= limits.max_num_seqs) {
    a.state = "seqs";
    if (f.all.bound == Bound::kCompute) {
      a.lever = "replicas";
      a.text = format(
          "%s at %d running sequences with %d waiting: add replicas (%s: a larger batch only "
          "lengthens each step)",
          bound_phrase(f).c_str(), running, waiting,
          intensity.empty() ? "the device is compute-bound" : intensity.c_str());
    } else {
      a.lever = "--max-num-seqs";
      a.text = format(
          "%s at %d running sequences with %d waiting: raise --max-num-seqs (%s: more sequences "
          "per step reuse each weight byte for more tokens at almost the same step time)",
          bound_phrase(f).c_str(), running, waiting,
          intensity.empty() ? "the batch is at its cap" : intensity.c_str());
    }
    return a;
  }
  if (waiting > 0 && f.batch_tokens && limits.max_num_batched_tokens > 0 &&
      *f.batch_tokens >= 0.9 * limits.max_num_batched_tokens) {
    a.state = "tokens";
    a.lever = "--max-num-batched-tokens";
    a.text = format(
        "%s with %d waiting and steps full at %.0f of %d tokens: raise --max-num-batched-tokens "
        "(prompts wait for room in the step's token budget)",
        bound_phrase(f).c_str(), waiting, *f.batch_tokens, limits.max_num_batched_tokens);
    return a;
  }
  if (waiting > 0) {
    a.state = "queue";
    a.text = format(
        "%s with %d waiting while the batch has room (%d of %d sequences): they wait only for "
        "their prefill chunk; no change needed",
        bound_phrase(f).c_str(), waiting, running, limits.max_num_seqs);
    return a;
  }
  if (!f.all.bound || *f.all.bound == Bound::kOverhead) {
    a.state = "overhead";
    a.lever = "concurrency";
    a.text = format(
        "overhead-bound at batch %.1f: the device is busy %.0f%% of the time, waiting on the host "
        "between steps; send more concurrent requests so each step's host work serves more "
        "tokens",
        f.batch_size.value_or(0), f.all.busy.value_or(0) * 100);
    return a;
  }
  if (*f.all.bound == Bound::kMemory) {
    a.state = "memory";
    a.lever = "concurrency";
    a.text = format(
        "%s at %d running sequences with no queue: send more concurrent requests or run fewer "
        "replicas (%s: a larger batch costs almost no extra step time)",
        bound_phrase(f).c_str(), running,
        intensity.empty() ? "weights are read once per step whatever the batch"
                          : intensity.c_str());
    return a;
  }
  a.state = "compute";
  a.lever = "replicas";
  a.text = format(
      "%s at %d running sequences (MFU %.0f%%): the device is full; add replicas or a faster "
      "device for more throughput, or lower --max-num-seqs for lower latency",
      bound_phrase(f).c_str(), running, f.all.mfu.value_or(0) * 100);
  return a;
}

}  // namespace carpool::telemetry
