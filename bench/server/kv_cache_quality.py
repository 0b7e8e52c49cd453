#!/usr/bin/env python3
"""What each KV cache type costs in accuracy: the mean log-probability per token that
`carpool serve` gives texts (echo + logprobs, max_tokens 0: every prompt token scored, each
attending to the cached keys and values of the tokens before it), under each
--kv-cache-dtype, with --cpu-exact (f32 arithmetic and cache) as the reference.

  kv_cache_quality.py --carpool BUILD/carpool [--model PATH] [--chars 6000] TEXT_FILE...

Prints one line per configuration: tokens scored, mean log-probability, perplexity (exp of its
negation) and the mean per text. Texts are cut to --chars characters (about 1,500 tokens each).
"""
import argparse
import http.client
import json
import math
import os

from http_vs_direct import Server  # (this folder)

CONFIGS = [("f32 --cpu-exact", ["--cpu-exact"]), ("f32", ["--kv-cache-dtype", "f32"]),
           ("f16 (default)", ["--kv-cache-dtype", "f16"]), ("int8", ["--kv-cache-dtype", "int8"])]


def score(port, text):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", "/v1/completions",
              json.dumps({"prompt": text, "max_tokens": 0, "echo": True, "logprobs": 0}),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    d = json.loads(r.read())
    assert r.status == 200, d
    return [x for x in d["choices"][0]["logprobs"]["token_logprobs"] if x is not None]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--carpool", required=True)
    ap.add_argument("--model", default=os.path.expanduser(
        "~/.cache/carpool/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--chars", type=int, default=6000)
    ap.add_argument("texts", nargs="+")
    a = ap.parse_args()
    texts = [open(p, encoding="utf-8").read()[:a.chars] for p in a.texts]
    for name, args in CONFIGS:
        server = Server([a.carpool, "serve", "--model", a.model] + args)
        server.start()
        try:
            per_text = [score(server.port, t) for t in texts]
        finally:
            server.stop()
        lps = [x for lp in per_text for x in lp]
        mean = sum(lps) / len(lps)
        each = " ".join(f"{sum(lp) / len(lp):.4f}" for lp in per_text)
        print(f"{name:16s} tokens {len(lps)}  mean logprob {mean:.5f}  perplexity "
              f"{math.exp(-mean):.4f}  per text {each}", flush=True)


if __name__ == "__main__":
    main()
