#!/usr/bin/env python3
"""Golden prompt-token logprobs for the default model, from Hugging Face transformers.

What `POST /v1/completions` with `echo: true, logprobs: k` must report for the prompt: for every
prompt token after the first, the log-probability of that token given the tokens before it
(log-softmax over the whole vocabulary of the raw logits, no temperature), and the TOP_K most
likely tokens at that position. transformers loads the same GGUF file carpool loads (every tensor
dequantized to float32) and runs one float32 forward over each prompt on the CPU; the
log-softmax is taken in float64 from those float32 logits.

Prompt token ids come from transformers' own tokenizer for the GGUF (no special tokens added),
so the test does not depend on carpool's tokenizer.

Usage: scripts/golden/make_prompt_logprob_fixtures.py [GGUF_PATH]
Needs: torch, transformers, gguf (PyPI). Writes tests/golden/model/smollm2/prompt_logprobs.json.
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "golden", "model", "smollm2", "prompt_logprobs.json")
DEFAULT_GGUF = os.path.join(os.path.expanduser("~"), ".cache", "carpool", "models",
                            "SmolLM2-135M-Instruct.Q4_1.gguf")

PROMPTS = [
    "The capital of France is Paris, and the capital of Italy is Rome.",
    "def add(a, b):\n    return a + b\n",
    "Colorless green ideas sleep furiously.",
]
TOP_K = 5


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_GGUF
    folder, name = os.path.dirname(path), os.path.basename(path)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.eval()
    cases = []
    for text in PROMPTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float()  # [n, vocab]
        logprobs = torch.log_softmax(logits.double(), dim=-1)
        # Position p's row predicts token p + 1; the first token has no logprob.
        token_logprobs, top_ids, top_logprobs = [None], [None], [None]
        for p in range(len(ids) - 1):
            row = logprobs[p]
            token_logprobs.append(float(row[ids[p + 1]]))
            top = torch.topk(row, TOP_K)
            top_ids.append([int(i) for i in top.indices])
            top_logprobs.append([float(v) for v in top.values])
        cases.append({"prompt": text, "prompt_ids": ids, "token_logprobs": token_logprobs,
                      "top_ids": top_ids, "top_logprobs": top_logprobs})
        print(f"{len(ids)} tokens, sum logprob {sum(token_logprobs[1:]):.4f}: {text!r}")
    meta = {"source": "transformers " + __import__("transformers").__version__ + ", torch " +
                      torch.__version__ + ", float32 forward, float64 log-softmax, CPU",
            "model_file": name, "top_k": TOP_K, "cases": cases}
    with open(OUT, "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
