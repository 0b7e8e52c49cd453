#!/usr/bin/env python3
"""End-to-end check of carpool's CUDA backend against Hugging Face transformers, on the GPU.

Creates a random-weight Llama-3-style model (GQA, llama3 rope scaling), saves it as bf16
safetensors, then for several prompts compares:
  - last-position logits: carpool (CUDA, bf16) and transformers (bf16 on the GPU), both against
    transformers in float32 on the GPU (relative max error, so carpool's error can be set beside
    the reference implementation's own bf16 error);
  - 64 greedy tokens: carpool vs transformers float32, identical or, at the first difference,
    carpool's token in the reference's top 5 (transformers' own bf16 run is reported beside it);
  - batched: the same prompts run together through carpool's engine (`generate --prompt-ids
    A;B;C`), each held to the same rule, and set beside its single run.
Usage: e2e_transformers.py CARPOOL_BIN OUT_DIR. Prints one JSON line per prompt and a verdict.
"""
import json
import os
import subprocess
import sys

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM


DEV = os.environ.get("E2E_DEVICE", "cuda")  # "cpu" for a dry run of the script itself


def main():
    carpool, out = sys.argv[1], sys.argv[2]
    model_dir = os.path.join(out, "e2e-llama")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=8192, hidden_size=1024, intermediate_size=2816,
                      num_hidden_layers=8, num_attention_heads=16, num_key_value_heads=4,
                      max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=500000.0,
                      rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 256},
                      tie_word_embeddings=False, initializer_range=0.02)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(model_dir, safe_serialization=True)
    m16 = model.to(DEV).eval()
    m32 = LlamaForCausalLM(cfg).to(DEV).eval()
    m32.load_state_dict({k: v.float() for k, v in m16.state_dict().items()})
    rng = np.random.default_rng(1)
    results, ok = [], True
    runs = []  # (prompt ids, transformers f32 tokens, carpool single-run tokens)

    def first_diff_top5(ids, ref_tokens, tokens):
        """Identical tokens before the first difference, and whether carpool's token there is in
        the float32 reference's top 5 (True when there is no difference)."""
        first = next((i for i, (a, b) in enumerate(zip(tokens, ref_tokens)) if a != b), None)
        if first is None:
            return 64, True
        prefix = torch.tensor([ids + ref_tokens[:first]], device=DEV)
        with torch.no_grad():
            top5 = torch.topk(m32(prefix).logits[0, -1].float(), 5).indices.tolist()
        return first, tokens[first] in top5

    for plen in (5, 37, 300):
        ids = rng.integers(0, cfg.vocab_size, plen).tolist()
        x = torch.tensor([ids], device=DEV)
        with torch.no_grad():
            ref32 = m32(x).logits[0, -1].float().cpu().numpy()
            hf16 = m16(x).logits[0, -1].float().cpu().numpy()
            gen = m32.generate(x, max_new_tokens=64, do_sample=False, min_new_tokens=64)
            gen16 = m16.generate(x, max_new_tokens=64, do_sample=False, min_new_tokens=64)
        hf_tokens = gen[0, plen:].tolist()
        hf16_tokens = gen16[0, plen:].tolist()
        logits_path = os.path.join(out, f"e2e-logits-{plen}.bin")
        cmd = [carpool, "generate", "--model", model_dir, "--device", DEV,
               "--prompt-ids", ",".join(map(str, ids)), "-n", "64", "--temperature", "0",
               "--ignore-eos", "--print-ids", "--dump-logits", logits_path]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            print(json.dumps({"prompt_len": plen, "error": p.stderr[-2000:]}))
            ok = False
            continue
        ours_tokens = json.loads(p.stdout.strip().splitlines()[-1])
        runs.append((ids, hf_tokens, ours_tokens))
        ours = np.fromfile(logits_path, dtype="<f4")
        scale = float(np.abs(ref32).max())
        err_ours = float(np.abs(ours - ref32).max()) / scale
        err_hf16 = float(np.abs(hf16 - ref32).max()) / scale
        first = next((i for i, (a, b) in enumerate(zip(ours_tokens, hf_tokens)) if a != b), None)
        first16 = next((i for i, (a, b) in enumerate(zip(hf16_tokens, hf_tokens)) if a != b), 64)
        top5_ok = True
        if first is not None:
            prefix = torch.tensor([ids + hf_tokens[:first]], device=DEV)
            with torch.no_grad():
                hf_top5 = torch.topk(m32(prefix).logits[0, -1].float(), 5).indices.tolist()
            top5_ok = ours_tokens[first] in hf_top5
        r = {"prompt_len": plen, "logits_rel_err_carpool_bf16": err_ours,
             "logits_rel_err_transformers_bf16": err_hf16,
             "argmax_match_f32": int(np.argmax(ours)) == int(np.argmax(ref32)),
             "greedy_identical_tokens_carpool_vs_f32": first if first is not None else 64,
             "greedy_identical_tokens_transformers_bf16_vs_f32": first16,
             "first_diff_in_hf_top5": top5_ok}
        results.append(r)
        print(json.dumps(r))
        # carpool's bf16 error may be at most a few times transformers' own bf16 error.
        if err_ours > max(3 * err_hf16, 2e-2) or not top5_ok:
            ok = False
    # The same prompts as one batch through the engine.
    if runs:
        cmd = [carpool, "generate", "--model", model_dir, "--device", DEV, "--prompt-ids",
               ";".join(",".join(map(str, ids)) for ids, _, _ in runs), "-n", "64",
               "--temperature", "0", "--ignore-eos", "--print-ids"]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            print(json.dumps({"batched": True, "error": p.stderr[-2000:]}))
            ok = False
        else:
            batched = json.loads(p.stdout.strip().splitlines()[-1])
            for (ids, hf_tokens, single), tokens in zip(runs, batched):
                first, top5 = first_diff_top5(ids, hf_tokens, tokens)
                same_as_single = next((i for i, (a, b) in enumerate(zip(tokens, single)) if a != b),
                                      64)
                r = {"prompt_len": len(ids), "batched": len(runs),
                     "greedy_identical_tokens_carpool_vs_f32": first,
                     "identical_tokens_batched_vs_single": same_as_single,
                     "first_diff_in_hf_top5": top5}
                results.append(r)
                print(json.dumps(r))
                ok = ok and top5 and len(tokens) == 64
    with open(os.path.join(out, "e2e.json"), "w") as f:
        json.dump({"ok": ok, "results": results}, f, indent=1)
    print("e2e:", "PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
