#!/usr/bin/env python3
"""Writes a GGUF file of random weights for a ~1B Llama config (TinyLlama-1.1B shapes, the
config carpool calls synthetic:llama-1b), for timing carpool and llama.cpp on the same bytes.

Every matrix is stored in the chosen type (the token embedding and the output matrix included);
norms are f32. Blocks are random but valid: small positive f16 scales and uniformly random quants
(float types: small uniform values), so activations stay finite through every layer. The vocabulary is a
placeholder SentencePiece-style list (control tokens, the 256 byte tokens, then filler pieces):
both programs are fed token ids directly.

usage: make_synthetic_gguf.py --dtype TYPE --out FILE [--layers N]
       TYPE: q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k q4_k q5_k q6_k iq4_nl iq4_xs f16 bf16 f32
"""
import argparse
import sys

import numpy as np
import gguf

# TinyLlama-1.1B (synthetic:llama-1b in carpool).
VOCAB, HIDDEN, FF, LAYERS, HEADS, KV_HEADS, CTX = 32000, 2048, 5632, 22, 32, 4, 2048

QT = gguf.GGMLQuantizationType


def f16_bytes(rng, n, lo, hi):
    return rng.uniform(lo, hi, size=n).astype(np.float16).view(np.uint8).reshape(n, 2)


def random_q8_0(rng, rows, cols):
    nb = rows * cols // 32
    d = f16_bytes(rng, nb, 1e-4, 4e-4)
    qs = rng.integers(-127, 128, size=(nb, 32), dtype=np.int8).view(np.uint8)
    return np.concatenate([d, qs], axis=1).reshape(rows, cols // 32 * 34), QT.Q8_0


def scale_and_nibbles(rng, rows, cols, d_lo, d_hi):
    """Blocks of 32 as one f16 scale and 16 bytes of nibbles (Q4_0 and IQ4_NL)."""
    nb = rows * cols // 32
    d = f16_bytes(rng, nb, d_lo, d_hi)
    qs = rng.integers(0, 256, size=(nb, 16), dtype=np.uint8)
    return np.concatenate([d, qs], axis=1).reshape(rows, cols // 32 * 18)


def random_q4_0(rng, rows, cols):
    return scale_and_nibbles(rng, rows, cols, 1e-4, 4e-4), QT.Q4_0


def random_q4_1(rng, rows, cols):
    nb = rows * cols // 32
    d = f16_bytes(rng, nb, 1e-4, 4e-4)
    m = f16_bytes(rng, nb, -8e-4, -4e-4)  # about -8 d: centred as Q4_0
    qs = rng.integers(0, 256, size=(nb, 16), dtype=np.uint8)
    return np.concatenate([d, m, qs], axis=1).reshape(rows, cols // 32 * 20), QT.Q4_1


def random_q5_0(rng, rows, cols):
    nb = rows * cols // 32
    d = f16_bytes(rng, nb, 1e-4, 4e-4)
    rest = rng.integers(0, 256, size=(nb, 4 + 16), dtype=np.uint8)
    return np.concatenate([d, rest], axis=1).reshape(rows, cols // 32 * 22), QT.Q5_0


def random_q5_1(rng, rows, cols):
    nb = rows * cols // 32
    d = f16_bytes(rng, nb, 1e-4, 4e-4)
    m = f16_bytes(rng, nb, -64e-4, -32e-4)  # about -16 d: centred as Q5_0
    rest = rng.integers(0, 256, size=(nb, 4 + 16), dtype=np.uint8)
    return np.concatenate([d, m, rest], axis=1).reshape(rows, cols // 32 * 24), QT.Q5_1


def random_q2_k(rng, rows, cols):
    nb = rows * cols // 256
    rest = rng.integers(0, 256, size=(nb, 16 + 64), dtype=np.uint8)  # scale-and-min bytes, quants
    d = f16_bytes(rng, nb, 2e-4, 8e-4)
    dmin = f16_bytes(rng, nb, 3e-4, 1.2e-3)  # about half the largest d sc q: centred
    return np.concatenate([rest, d, dmin], axis=1).reshape(rows, cols // 256 * 84), QT.Q2_K


def random_q3_k(rng, rows, cols):
    nb = rows * cols // 256
    rest = rng.integers(0, 256, size=(nb, 32 + 64 + 12), dtype=np.uint8)  # hmask, qs, scales
    d = f16_bytes(rng, nb, 1e-4, 3e-4)
    return np.concatenate([rest, d], axis=1).reshape(rows, cols // 256 * 110), QT.Q3_K


def random_iq4_nl(rng, rows, cols):
    return scale_and_nibbles(rng, rows, cols, 1e-4, 3e-4), QT.IQ4_NL


def random_iq4_xs(rng, rows, cols):
    nb = rows * cols // 256
    d = f16_bytes(rng, nb, 5e-6, 1.5e-5)
    rest = rng.integers(0, 256, size=(nb, 2 + 4 + 128), dtype=np.uint8)  # scales_h, scales_l, qs
    return np.concatenate([d, rest], axis=1).reshape(rows, cols // 256 * 136), QT.IQ4_XS


def random_q5_k(rng, rows, cols):
    nb = rows * cols // 256
    d = f16_bytes(rng, nb, 1e-5, 4e-5)
    dmin = f16_bytes(rng, nb, 1e-5, 4e-5)
    rest = rng.integers(0, 256, size=(nb, 12 + 32 + 128), dtype=np.uint8)
    return np.concatenate([d, dmin, rest], axis=1).reshape(rows, cols // 256 * 176), QT.Q5_K


def random_q6_k(rng, rows, cols):
    nb = rows * cols // 256
    quants = rng.integers(0, 256, size=(nb, 128 + 64), dtype=np.uint8)
    scales = rng.integers(-64, 64, size=(nb, 16), dtype=np.int8).view(np.uint8)
    d = f16_bytes(rng, nb, 1e-6, 4e-6)
    return np.concatenate([quants, scales, d], axis=1).reshape(rows, cols // 256 * 210), QT.Q6_K


def random_float(rng, rows, cols, kind):
    x = rng.uniform(-0.02, 0.02, size=(rows, cols)).astype(np.float32)
    if kind == "f32":
        return x.view(np.uint8), QT.F32
    if kind == "f16":
        return x.astype(np.float16).view(np.uint8), QT.F16
    bits = x.view(np.uint32)  # bf16: round to nearest even on the upper 16 bits
    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    return bits.view(np.uint8), QT.BF16


def random_q4_k(rng, rows, cols):
    nb = rows * cols // 256
    d = f16_bytes(rng, nb, 1e-5, 4e-5)
    dmin = f16_bytes(rng, nb, 1e-5, 4e-5)
    rest = rng.integers(0, 256, size=(nb, 12 + 128), dtype=np.uint8)
    return np.concatenate([d, dmin, rest], axis=1).reshape(rows, cols // 256 * 144), QT.Q4_K


FT = gguf.LlamaFileType
MAKERS = {
    "q4_0": (random_q4_0, FT.MOSTLY_Q4_0),
    "q4_1": (random_q4_1, FT.MOSTLY_Q4_1),
    "q5_0": (random_q5_0, FT.MOSTLY_Q5_0),
    "q5_1": (random_q5_1, FT.MOSTLY_Q5_1),
    "q8_0": (random_q8_0, FT.MOSTLY_Q8_0),
    "q2_k": (random_q2_k, FT.MOSTLY_Q2_K),
    "q3_k": (random_q3_k, FT.MOSTLY_Q3_K_M),
    "q4_k": (random_q4_k, FT.MOSTLY_Q4_K_M),
    "iq4_nl": (random_iq4_nl, FT.MOSTLY_IQ4_NL),
    "iq4_xs": (random_iq4_xs, FT.MOSTLY_IQ4_XS),
    "q5_k": (random_q5_k, FT.MOSTLY_Q5_K_M),
    "q6_k": (random_q6_k, FT.MOSTLY_Q6_K),
    "f16": (lambda r, a, b: random_float(r, a, b, "f16"), FT.MOSTLY_F16),
    "bf16": (lambda r, a, b: random_float(r, a, b, "bf16"), FT.MOSTLY_BF16),
    "f32": (lambda r, a, b: random_float(r, a, b, "f32"), FT.ALL_F32),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", choices=sorted(MAKERS), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=LAYERS)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    make, ftype = MAKERS[args.dtype]

    w = gguf.GGUFWriter(args.out, "llama")
    w.add_name(f"synthetic-llama-1b-{args.dtype}")
    w.add_context_length(CTX)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(args.layers)
    w.add_feed_forward_length(FF)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_dimension_count(HIDDEN // HEADS)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(ftype)
    w.add_vocab_size(VOCAB)

    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{i:02X}>".encode() for i in range(256)]
    types = [2, 3, 3] + [6] * 256
    while len(tokens) < VOCAB:
        tokens.append(f"\u2581p{len(tokens)}".encode())
        types.append(1)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([-float(i) for i in range(VOCAB)])
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)

    def add(name, rows, cols):
        data, qt = make(rng, rows, cols)
        w.add_tensor(name, data, raw_dtype=qt)

    def norm(name):
        w.add_tensor(name, np.ones(HIDDEN, dtype=np.float32))

    kv = KV_HEADS * (HIDDEN // HEADS)
    add("token_embd.weight", VOCAB, HIDDEN)
    for i in range(args.layers):
        p = f"blk.{i}."
        norm(p + "attn_norm.weight")
        add(p + "attn_q.weight", HIDDEN, HIDDEN)
        add(p + "attn_k.weight", kv, HIDDEN)
        add(p + "attn_v.weight", kv, HIDDEN)
        add(p + "attn_output.weight", HIDDEN, HIDDEN)
        norm(p + "ffn_norm.weight")
        add(p + "ffn_gate.weight", FF, HIDDEN)
        add(p + "ffn_up.weight", FF, HIDDEN)
        add(p + "ffn_down.weight", HIDDEN, FF)
    norm("output_norm.weight")
    add("output.weight", VOCAB, HIDDEN)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
