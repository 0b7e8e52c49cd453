#!/usr/bin/env python3
"""Writes tiny random-weight Hugging Face models and their reference outputs.

For each model, tests/golden/models/<name>/ receives what `save_pretrained` writes (config.json,
generation_config.json, F32 safetensors; tiny-mistral is sharded through an index) and
golden.json with, for a few prompts of random token ids, all computed by `transformers` in
float32 with eager attention:
  - logits_last: the full logits at the last prompt position,
  - argmax: the argmax of the logits at every prompt position,
  - greedy: 16 tokens of greedy continuation (one full forward per token, no KV cache),
  - tensor_checks: first element and sum of every stored tensor,
  - min_top2_gap: the smallest margin of any of those argmaxes (prompts are redrawn until it is
    at least MIN_TOP2_GAP, so the expected tokens are not decided by rounding).

Needs: torch, transformers, safetensors (PyPI). Run from anywhere:
  python3 scripts/golden/make_tiny_models.py
"""

import json
import os
import shutil

import torch
import transformers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "golden", "models")
GREEDY_TOKENS = 16
PROMPT_LENGTHS = [1, 7, 23]
MIN_TOP2_GAP = 2e-3  # every argmax in a fixture wins by at least this much

# Sizes are deliberately awkward: vocabularies that are not powers of two, head_dim * n_heads
# different from hidden_size, GQA and MQA, and (Llama) llama3 rope scaling whose original context
# is short enough that all three frequency bands (kept, smoothed, scaled) occur at head_dim 16.
MODELS = {
    "tiny-llama3": dict(
        cls=transformers.LlamaConfig,
        config=dict(
            vocab_size=311,
            hidden_size=96,
            intermediate_size=112,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            max_position_embeddings=256,
            rms_norm_eps=1e-5,
            rope_theta=500000.0,
            rope_scaling=dict(
                rope_type="llama3",
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=32,
            ),
            tie_word_embeddings=False,
            attention_bias=False,
        ),
        shard=None,
        seed=1,
    ),
    "tiny-qwen2": dict(
        cls=transformers.Qwen2Config,
        config=dict(
            vocab_size=293,
            hidden_size=64,
            intermediate_size=120,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            rms_norm_eps=1e-6,
            rope_theta=1000000.0,
            tie_word_embeddings=True,
            use_sliding_window=False,
        ),
        shard=None,
        seed=2,
    ),
    "tiny-mistral": dict(
        cls=transformers.MistralConfig,
        config=dict(
            vocab_size=307,
            hidden_size=72,
            intermediate_size=100,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=32,
            max_position_embeddings=512,
            sliding_window=128,  # longer than every prompt + continuation: full attention here
            rms_norm_eps=1e-5,
            rope_theta=1000000.0,
            tie_word_embeddings=False,
        ),
        shard="150KB",  # several shards and model.safetensors.index.json
        seed=3,
    ),
}


def randomize(model, seed):
    """Random weights large enough that attention and logits are far from uniform."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=gen))


def top2_gap(row):
    top = torch.topk(row, 2).values
    return float(top[0] - top[1])


def f32_list(t):
    return [float(x) for x in t.to(torch.float32).tolist()]


def make(name, spec):
    torch.manual_seed(spec["seed"])
    config = spec["cls"](**spec["config"])
    config._attn_implementation = "eager"
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager",
                                                          dtype=torch.float32)
    randomize(model, spec["seed"])
    model.eval()

    out_dir = os.path.join(OUT, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    kwargs = dict(safe_serialization=True)
    if spec["shard"]:
        kwargs["max_shard_size"] = spec["shard"]
    model.save_pretrained(out_dir, **kwargs)

    gen = torch.Generator().manual_seed(100 + spec["seed"])
    vocab = config.vocab_size
    prompts = []
    with torch.no_grad():
        for length in PROMPT_LENGTHS:
            # Redraw prompts whose argmax anywhere is a near-tie, so that a faithful
            # implementation within the logits tolerance cannot pick a different token.
            while True:
                ids = torch.randint(0, vocab, (length,), generator=gen).tolist()
                logits = model(torch.tensor([ids])).logits[0]  # [length, vocab]
                gaps = [top2_gap(row) for row in logits]
                greedy = []
                seq = list(ids)
                for _ in range(GREEDY_TOKENS):
                    last = model(torch.tensor([seq])).logits[0, -1]
                    gaps.append(top2_gap(last))
                    nxt = int(last.argmax())
                    greedy.append(nxt)
                    seq.append(nxt)
                if min(gaps) >= MIN_TOP2_GAP:
                    break
            prompts.append(
                dict(
                    token_ids=ids,
                    logits_last=f32_list(logits[-1]),
                    argmax=[int(x) for x in logits.argmax(dim=-1).tolist()],
                    greedy=greedy,
                    min_top2_gap=min(gaps),
                ))
    golden = dict(
        model=name,
        generator="transformers %s, torch %s, float32, eager attention" %
        (transformers.__version__, torch.__version__),
        vocab_size=vocab,
        # Per stored tensor: [first element, sum in float64], to check that a loader maps each
        # name to the right bytes.
        tensor_checks={
            n: [float(t.reshape(-1)[0]), float(t.double().sum())]
            for n, t in sorted(model.state_dict().items())
            if not (config.tie_word_embeddings and n == "lm_head.weight")
        },
        prompts=prompts,
    )
    with open(os.path.join(out_dir, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(out_dir, x)) for x in os.listdir(out_dir))
    print("%s: %d parameters, %d bytes in %s" %
          (name, sum(p.numel() for p in model.parameters()), total, out_dir))


def main():
    torch.set_num_threads(1)
    for name, spec in MODELS.items():
        make(name, spec)


if __name__ == "__main__":
    main()
