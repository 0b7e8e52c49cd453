#!/usr/bin/env python3
"""Hugging Face transformers on the same GPU as `carpool bench`: the same-run baseline.

A random-weight Llama-3.1-8B (bf16, created on the device) measured the way carpool bench
measures carpool:
  - prefill: one forward pass over a 4,096-token prompt (no cache), median of 3 after a warm-up;
    tokens/s and TFLOP/s counted as carpool counts them (2 x parameters per token plus the causal
    attention's 4 x layers x heads x head_dim x T^2 / 2);
  - decode at each batch size: `generate` with greedy tokens from 128-token prompts, timed once for
    1 new token and once for 1 + G, so that (B x G) / (difference) is the decode rate without the
    prefill; eager (the default cache), and with --compile a static cache and
    torch.compile(mode="reduce-overhead"), warmed with the same shapes first (compiling takes
    minutes: gpu-check runs it only when asked).
Usage: transformers_baseline.py OUT_DIR [--compile] [--batches 1,64,256] [--gen 32]
Writes OUT_DIR/transformers-baseline.json (one JSON object per line) and prints a summary.
BASELINE_DEVICE=cpu with --tiny runs the script itself on a small model (a dry run).
"""
import argparse
import json
import os
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

DEV = os.environ.get("BASELINE_DEVICE", "cuda")


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def llama_31_8b(tiny=False):
    if tiny:  # the same architecture, small enough for a CPU
        return LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=500000.0,
                           tie_word_embeddings=False)
    return LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                       max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0,
                       rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 8192},
                       tie_word_embeddings=False, initializer_range=0.02)


def timed(fn, reps):
    """Median seconds of `reps` calls of fn after one warm-up call."""
    fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--batches", default="1,64,256")
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--prefill", type=int, default=4096)
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "transformers-baseline.json")
    cfg = llama_31_8b(args.tiny)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(DEV):
        model = LlamaForCausalLM(cfg).eval()
    torch.set_default_dtype(torch.float32)
    params = sum(p.numel() for p in model.parameters())
    info = {"what": "setup", "device": torch.cuda.get_device_name() if DEV == "cuda" else DEV,
            "torch": torch.__version__,
            "params": params, "create_s": round(time.perf_counter() - t0, 1)}
    try:
        import transformers
        info["transformers"] = transformers.__version__
    except Exception:  # version only
        pass
    rows = [info]
    print(json.dumps(info), flush=True)

    def emit(row):
        rows.append(row)
        print(json.dumps(row), flush=True)
        with open(path, "w") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))

    L, H, D = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
    T = args.prefill
    ids = torch.randint(0, cfg.vocab_size, (1, T), device=DEV)
    def prefill():
        try:  # logits of the last position only, as carpool computes them
            return model(ids, use_cache=False, logits_to_keep=1)
        except TypeError:  # a transformers without logits_to_keep
            return model(ids, use_cache=False)
    with torch.inference_mode():
        s = timed(prefill, 3)
    flops = 2.0 * params * T + 4.0 * L * H * D * T * T / 2
    emit({"what": "prefill", "tokens": T, "s": s, "tokens_per_s": T / s,
          "tflops": flops / s / 1e12})

    if args.compile:
        model.generation_config.cache_implementation = "static"
        model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
    G = args.gen
    for B in (int(b) for b in args.batches.split(",")):
        prompt = torch.randint(0, cfg.vocab_size, (B, args.prompt), device=DEV)
        mask = torch.ones_like(prompt)

        def gen(n):
            return lambda: model.generate(prompt, attention_mask=mask, max_new_tokens=n,
                                          min_new_tokens=n, do_sample=False, pad_token_id=0)
        with torch.inference_mode():
            if args.compile:  # compile for these shapes before timing
                gen(1 + G)()
            t1 = timed(gen(1), 2)
            tg = timed(gen(1 + G), 2)
        emit({"what": "decode", "mode": "static cache + torch.compile" if args.compile else "eager",
              "batch": B, "prompt": args.prompt, "gen": G, "decode_s": tg - t1,
              "decode_tokens_per_s": B * G / (tg - t1), "step_ms": (tg - t1) / G * 1e3})


if __name__ == "__main__":
    main()
