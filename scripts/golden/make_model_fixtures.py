#!/usr/bin/env python3
"""Golden fixtures for the default model, from Hugging Face transformers.

transformers loads the same GGUF file carpool loads (dequantizing every tensor to float32) and
computes, in float32 on the CPU:
  - the last-position logits for each prompt (all 49152 of them, stored as float32 .bin),
  - a 32-token greedy continuation of each prompt, with the top-5 ids at every step.
Prompt token ids come from transformers' own tokenizer for the GGUF, so the model test does not
depend on carpool's tokenizer.

Usage: scripts/golden/make_model_fixtures.py [GGUF_PATH]
Needs: torch, transformers, gguf (PyPI). Writes tests/golden/model/smollm2/.
"""
import json
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "golden", "model", "smollm2")
DEFAULT_GGUF = os.path.join(os.path.expanduser("~"), ".cache", "carpool", "models",
                            "SmolLM2-135M-Instruct.Q4_1.gguf")

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Once upon a time, in a small village by the sea,",
    "Water boils at a temperature of",
    "<|im_start|>user\nWhat is 12 times 7?<|im_end|>\n<|im_start|>assistant\n",
    "Les fleurs du printemps sont",
]
N_GREEDY = 32


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_GGUF
    folder, name = os.path.dirname(path), os.path.basename(path)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.eval()
    os.makedirs(OUT, exist_ok=True)
    cases = []
    for i, text in enumerate(PROMPTS):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1].float().numpy()
        bin_name = f"logits_{i}.bin"
        logits.astype("<f4").tofile(os.path.join(OUT, bin_name))
        # Greedy continuation, one token at a time with the full context (no cache subtleties).
        seq = list(ids)
        greedy, top5 = [], []
        with torch.no_grad():
            for _ in range(N_GREEDY):
                step = model(torch.tensor([seq])).logits[0, -1]
                top = torch.topk(step, 5).indices.tolist()
                greedy.append(top[0])
                top5.append(top)
                seq.append(top[0])
        cases.append({"prompt": text, "prompt_ids": ids, "logits_file": bin_name,
                      "argmax": int(np.argmax(logits)), "greedy": greedy, "greedy_top5": top5})
        print(f"prompt {i}: {len(ids)} tokens, argmax {int(np.argmax(logits))}, "
              f"greedy: {tok.decode(greedy)!r}")
    meta = {"source": "transformers " + __import__("transformers").__version__ +
                      ", torch " + torch.__version__ + ", float32, CPU",
            "model_file": name, "vocab_size": int(model.config.vocab_size), "cases": cases}
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main()
