#!/usr/bin/env python3
"""Writes golden fixtures for carpool's dequantization and 16-bit float conversions.

The reference is the `gguf` PyPI package (gguf.quants), the GGML project's own Python
implementation of the block formats. For each type the script writes:

  tests/golden/quants/<type>.bin  raw block bytes (as stored in a GGUF file)
  tests/golden/quants/<type>.f32  their dequantized values, float32 little-endian

Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 blocks come from gguf's reference quantizer applied to random data (plus some
blocks of random bytes); gguf has no quantizer for the K and IQ4 types, so their blocks are random bytes
whose f16 scale fields are set to random finite values, dequantized by gguf.

Float conversions (numpy is the reference for f16; gguf's BF16 for bf16, round to nearest even):
  f16_bits.u16 -> f16_bits.f32         (every special class: zeros, subnormals, inf, nan)
  f32_inputs.f32 -> f32_to_f16.u16, f32_to_bf16.u16

Usage: python3 scripts/golden/make_quant_fixtures.py [--out tests/golden/quants]
"""
import argparse
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

BLOCK = {  # type -> (elements per block, bytes per block, offsets of f16 scale fields)
    "q4_0": (32, 18, [0]),
    "q4_1": (32, 20, [0, 2]),
    "q8_0": (32, 34, [0]),
    "q4_k": (256, 144, [0, 2]),
    "q5_k": (256, 176, [0, 2]),
    "q6_k": (256, 210, [208]),
}
# Written after the others from their own generator (--seed + 1), so adding them left the
# fixtures above unchanged.
LATER_BLOCK = {
    "q5_0": (32, 22, [0]),
    "q5_1": (32, 24, [0, 2]),
}
# The 2- and 3-bit K types, from a third generator (--seed + 2).
LOW_BIT_BLOCK = {
    "q2_k": (256, 84, [80, 82]),
    "q3_k": (256, 110, [108]),
}
# The IQ4 types, from a fourth generator (--seed + 3).
IQ4_BLOCK = {
    "iq4_nl": (32, 18, [0]),
    "iq4_xs": (256, 136, [0]),
}
BLOCK.update(LATER_BLOCK)
BLOCK.update(LOW_BIT_BLOCK)
BLOCK.update(IQ4_BLOCK)
QTYPE = {"q4_0": T.Q4_0, "q4_1": T.Q4_1, "q8_0": T.Q8_0, "q4_k": T.Q4_K, "q5_k": T.Q5_K,
         "q6_k": T.Q6_K, "q5_0": T.Q5_0, "q5_1": T.Q5_1, "q2_k": T.Q2_K, "q3_k": T.Q3_K,
         "iq4_nl": T.IQ4_NL, "iq4_xs": T.IQ4_XS}


def random_finite_f16(rng, n):
    """Random f16 bit patterns that are finite (normal or subnormal), any sign."""
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
    exp = (bits >> 10) & 0x1F
    bits = np.where(exp == 0x1F, bits & np.uint16(0xBFFF), bits)  # clear an exponent bit: finite
    return bits.astype(np.uint16)


def moderate_f16(rng, n, lo, hi):
    return rng.uniform(lo, hi, size=n).astype(np.float16).view(np.uint16)


def random_blocks(rng, name, n_blocks, extreme_scales):
    elems, nbytes, scale_offsets = BLOCK[name]
    raw = rng.integers(0, 256, size=(n_blocks, nbytes), dtype=np.uint32).astype(np.uint8)
    for off in scale_offsets:
        if extreme_scales:
            vals = random_finite_f16(rng, n_blocks)
        else:
            vals = moderate_f16(rng, n_blocks, -0.05, 0.05)
        raw[:, off:off + 2] = vals.view(np.uint8).reshape(n_blocks, 2)
    return raw


def write_type(out, rng, name):
    elems, nbytes, _ = BLOCK[name]
    parts = []
    if name in ("q4_0", "q4_1", "q8_0", "q5_0", "q5_1"):
        data = (rng.standard_normal((6, elems)) * rng.uniform(0.01, 10.0, size=(6, 1)))
        data = data.astype(np.float32)
        data[0, :7] = 0.0  # a block with exact zeros and an all-constant block
        data[1, :] = 0.75
        parts.append(quants.quantize(data, QTYPE[name]).reshape(-1, nbytes))
    parts.append(random_blocks(rng, name, 4 if elems == 256 else 6, extreme_scales=False))
    parts.append(random_blocks(rng, name, 2 if elems == 256 else 4, extreme_scales=True))
    blocks = np.concatenate(parts, axis=0).astype(np.uint8)
    values = quants.dequantize(blocks.reshape(-1), QTYPE[name]).astype(np.float32).reshape(-1)
    assert values.size == blocks.shape[0] * elems
    blocks.tofile(os.path.join(out, name + ".bin"))
    values.astype("<f4").tofile(os.path.join(out, name + ".f32"))


def write_floats(out, rng):
    # f16 -> f32: random patterns plus every special class.
    special = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x7C00,
                        0xFC00, 0x7E00, 0x7C01, 0xFE00, 0x3C00, 0x3555], dtype=np.uint16)
    bits = np.concatenate([special, rng.integers(0, 1 << 16, size=497, dtype=np.uint32)
                           .astype(np.uint16)])
    bits.astype("<u2").tofile(os.path.join(out, "f16_bits.u16"))
    bits.view(np.float16).astype(np.float32).astype("<f4").tofile(os.path.join(out, "f16_bits.f32"))

    # f32 -> f16 / bf16: magnitudes across the f16 range, ties, overflow, subnormals, specials.
    mags = np.exp2(rng.uniform(-30, 20, size=400)) * rng.choice([-1.0, 1.0], size=400)
    f16_ties = (np.arange(1, 40, dtype=np.float32) + 0.5) * np.float32(2.0 ** -24)  # subnormal ties
    normal_ties = np.float32(1.0) + (np.arange(0, 24, dtype=np.float32) * 2 + 1) * np.float32(2.0 ** -11)
    bf16_ties = (np.uint32(0x3F800000) + np.arange(0, 16, dtype=np.uint32) * 0x10000 + 0x8000).view(np.float32)
    specials = np.array([0.0, -0.0, 65504.0, 65519.0, 65520.0, 1e6, -1e6, np.inf, -np.inf,
                         5.96e-8, 2.98e-8, 2.99e-8, 6.1e-5, 6.09e-5, 1e-40, 3.4e38], dtype=np.float32)
    vals = np.concatenate([mags.astype(np.float32), f16_ties, normal_ties, bf16_ties, specials])
    vals = vals.astype(np.float32)
    vals.astype("<f4").tofile(os.path.join(out, "f32_inputs.f32"))
    with np.errstate(over="ignore"):
        vals.astype(np.float16).view(np.uint16).astype("<u2").tofile(os.path.join(out, "f32_to_f16.u16"))
    quants.quantize(vals.reshape(1, -1), T.BF16).view(np.uint16).astype("<u2").tofile(
        os.path.join(out, "f32_to_bf16.u16"))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "golden", "quants"))
    ap.add_argument("--seed", type=int, default=20240607)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for name in BLOCK:
        if name not in LATER_BLOCK and name not in LOW_BIT_BLOCK and name not in IQ4_BLOCK:
            write_type(args.out, rng, name)
    write_floats(args.out, rng)
    later = np.random.default_rng(args.seed + 1)
    for name in LATER_BLOCK:
        write_type(args.out, later, name)
    low_bit = np.random.default_rng(args.seed + 2)
    for name in LOW_BIT_BLOCK:
        write_type(args.out, low_bit, name)
    iq4 = np.random.default_rng(args.seed + 3)
    for name in IQ4_BLOCK:
        write_type(args.out, iq4, name)
    print("wrote fixtures to", os.path.normpath(args.out))


if __name__ == "__main__":
    main()
