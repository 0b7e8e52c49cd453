#!/usr/bin/env python3
"""Requantizes a GGUF file with llama.cpp's own quantizer (the llama-cpp-python package), for
comparing carpool and llama.cpp on mixed-type files like the ones people download (Q4_K_M keeps
some matrices in Q6_K, and rows whose length is not a multiple of 256 fall back to Q5_0, Q8_0 or
IQ4_NL, as llama.cpp decides).

usage: requantize.py IN.gguf OUT.gguf TYPE     TYPE: q4_k_m q3_k_m q2_k iq4_xs iq4_nl q4_0 ...
(llama.cpp's LLAMA_FTYPE_MOSTLY_<TYPE> names; requantizing an already quantized file is allowed.)
"""
import ctypes
import sys

import llama_cpp


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    src, dst, kind = sys.argv[1:]
    ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + kind.upper(), None)
    if ftype is None:
        sys.exit(f"unknown type {kind}")
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = ftype
    p.allow_requantize = True
    p.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))
    if rc != 0:
        sys.exit(f"llama_model_quantize failed ({rc})")


if __name__ == "__main__":
    main()
