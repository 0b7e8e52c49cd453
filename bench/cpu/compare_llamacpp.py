#!/usr/bin/env python3
"""carpool vs llama.cpp on the CPU: same GGUF files, same thread count, same run.

For each model: prefill of one --prefill-len prompt and decode at batch 1 after a --prompt-len
context, on `carpool bench` and on llama.cpp (the llama-cpp-python package, each
llama_decode call timed on its own, so Python overhead is not counted). Also carpool's decode at
batch 16, and a STREAM-like memory bandwidth (bench/cpu/stream.c) for the MBU of decode.
Each figure is the best of --reps runs, taken in alternation so both sides see similar load.
The bandwidth is measured again before each of a model's reps, and its MBU is the best decode
rate over the best read (and triad) figure of that model's window: on a virtual machine whose
memory rate drifts by up to 2x within minutes, a figure taken once at the start of a long run is
not the ceiling the later models ran under (it is printed too).

usage: compare_llamacpp.py --carpool BUILD/carpool [--threads 2] [--models default,q8_0,q4_k]
--models: "default" (SmolLM2-135M Q4_1) and any of q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k q4_k q5_k
q6_k iq4_nl iq4_xs f16 bf16 f32 (a synthetic ~1B Llama in that type), or the path of any other
GGUF file (ending in .gguf); the default list is the nine
types the CPU goals name (all but q5_0, q5_1, q2_k, q3_k, iq4_nl, iq4_xs). Synthetic files are
written by make_synthetic_gguf.py into --cache on first use (f32: 4.4 GB).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.expanduser("~/.cache/carpool/models/SmolLM2-135M-Instruct.Q4_1.gguf")


def llamacpp_worker(path, threads, prompt_len, gen, prefill_len, seed):
    """Runs in a child process; prints one JSON object."""
    import random

    import llama_cpp

    n_ctx = max(prompt_len + gen, prefill_len) + 16
    llm = llama_cpp.Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=n_ctx,
                          n_batch=512, n_ubatch=512, verbose=False)
    ctx = llm._ctx.ctx
    rng = random.Random(seed)
    vocab = llm.n_vocab()

    def decode(n):  # one llama_decode of n random tokens after the cached ones; seconds
        arr = (llama_cpp.llama_token * n)(*[rng.randrange(3, vocab) for _ in range(n)])
        t0 = time.perf_counter()
        if llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(arr, n)) != 0:
            sys.exit("llama_decode failed")
        return time.perf_counter() - t0

    def clear():
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)

    out = {}
    if prefill_len > 0:
        decode(min(prefill_len, 64))  # warm-up (pages the file in)
        clear()
        s = sum(decode(min(512, prefill_len - i)) for i in range(0, prefill_len, 512))
        out["prefill_tokens_per_s"] = prefill_len / s
    clear()
    for i in range(0, prompt_len, 512):
        decode(min(512, prompt_len - i))
    for _ in range(3):  # warm-up steps
        decode(1)
    steps = [decode(1) for _ in range(gen)]
    out["decode_tokens_per_s"] = gen / sum(steps)
    out["system_info"] = llama_cpp.llama_print_system_info().decode()
    print(json.dumps(out))


def run_json(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return json.loads([l for l in r.stdout.splitlines() if l.startswith("{")][-1])


def stream_bandwidth(threads, compile_it=True):
    exe = os.path.join(tempfile.gettempdir(), "carpool_stream")
    if compile_it:
        subprocess.run(["cc", "-O3", "-march=native", "-ffast-math", "-funroll-loops", "-fopenmp",
                        os.path.join(HERE, "stream.c"), "-o", exe], check=True)
    return run_json([exe], env=dict(os.environ, OMP_NUM_THREADS=str(threads)))


def cpu_description():
    model, flags = platform.processor(), ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and not model.strip():
                model = line.split(":", 1)[1].strip()
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                break
    keep = [f for f in flags if f.startswith(("avx", "fma", "f16c", "amx"))]
    return model, " ".join(sorted(keep))


def best(runs, key):
    return max(r[key] for r in runs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--carpool", required=True, help="path of the carpool executable")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--models", default="default,q4_0,q4_1,q8_0,q4_k,q5_k,q6_k,f16,bf16,f32")
    ap.add_argument("--default-model", default=DEFAULT_MODEL)
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/carpool/bench"))
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--prefill-len", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", help="also write every figure to this file")
    ap.add_argument("--llamacpp-worker", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.llamacpp_worker:
        p, t, pl, g, pf, s = args.llamacpp_worker
        return llamacpp_worker(p, int(t), int(pl), int(g), int(pf), int(s))

    T = args.threads
    model_name, flags = cpu_description()
    load0 = os.getloadavg()[0]
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  {model_name}, {T} threads, load {load0:.2f}")
    print(f"# cpu flags: {flags}")
    bw = stream_bandwidth(T)
    print(f"# memory bandwidth ({T} threads) at the start: read {bw['read_gb_s']:.1f} GB/s, "
          f"triad {bw['triad_gb_s']:.1f} GB/s (each model's MBU uses its own window's figure)")

    files = []
    for m in args.models.split(","):
        if m == "default":
            files.append(("SmolLM2-135M Q4_1", args.default_model))
            continue
        if m.endswith(".gguf"):  # any other file, as it is
            files.append((os.path.basename(m), m))
            continue
        path = os.path.join(args.cache, f"llama-1b-{m}.gguf")
        if not os.path.exists(path):
            os.makedirs(args.cache, exist_ok=True)
            subprocess.run([sys.executable, os.path.join(HERE, "make_synthetic_gguf.py"),
                            "--dtype", m, "--out", path], check=True)
        files.append((f"llama-1b {m.upper()}", path))

    common = ["-t", str(T), "-p", str(args.prompt_len), "-n", str(args.gen), "--json"]
    results = []
    for label, path in files:
        cp1, cp16, lc, bws = [], [], [], []
        for rep in range(args.reps):
            bws.append(stream_bandwidth(T, compile_it=False))
            cp1.append(run_json([args.carpool, "bench", "-m", path, "-b", "1",
                                 "--prefill-len", str(args.prefill_len)] + common))
            lc.append(run_json([sys.executable, __file__, "--carpool", args.carpool,
                                "--llamacpp-worker", path, str(T), str(args.prompt_len),
                                str(args.gen), str(args.prefill_len), str(rep)]))
        for rep in range(max(1, args.reps - 1)):
            cp16.append(run_json([args.carpool, "bench", "-m", path, "-b", "16",
                                  "--prefill-len", "0"] + common))
        r = {
            "model": label,
            "file": os.path.basename(path),
            "weight_bytes": cp1[0]["weight_bytes"],
            "carpool_prefill": best(cp1, "prefill_tokens_per_s"),
            "llamacpp_prefill": best(lc, "prefill_tokens_per_s"),
            "carpool_decode_b1": best(cp1, "decode_tokens_per_s"),
            "llamacpp_decode_b1": best(lc, "decode_tokens_per_s"),
            "carpool_decode_b16": best(cp16, "decode_tokens_per_s"),
            "carpool_decode_b1_bytes_per_s": best(cp1, "decode_bytes_per_s"),
        }
        r["prefill_ratio"] = r["carpool_prefill"] / r["llamacpp_prefill"]
        r["decode_ratio"] = r["carpool_decode_b1"] / r["llamacpp_decode_b1"]
        r["read_gb_s"] = max(b["read_gb_s"] for b in bws)
        r["triad_gb_s"] = max(b["triad_gb_s"] for b in bws)
        r["mbu_read"] = r["carpool_decode_b1_bytes_per_s"] / (r["read_gb_s"] * 1e9)
        r["mbu_triad"] = r["carpool_decode_b1_bytes_per_s"] / (r["triad_gb_s"] * 1e9)
        results.append(r)
        print(f"{label:20s} prefill {r['carpool_prefill']:7.1f} vs {r['llamacpp_prefill']:7.1f} "
              f"tok/s ({r['prefill_ratio']:.2f}x) | decode b1 {r['carpool_decode_b1']:6.1f} vs "
              f"{r['llamacpp_decode_b1']:6.1f} tok/s ({r['decode_ratio']:.2f}x), "
              f"{r['carpool_decode_b1_bytes_per_s'] / 1e9:.1f} GB/s = {100 * r['mbu_read']:.0f}% "
              f"of read / {100 * r['mbu_triad']:.0f}% of triad (best of the model's window: "
              f"{r['read_gb_s']:.1f} / {r['triad_gb_s']:.1f} GB/s) | carpool b16 "
              f"{r['carpool_decode_b16']:.1f} tok/s", flush=True)
    load1 = os.getloadavg()[0]
    print(f"# load at end {load1:.2f}; llama.cpp: {lc[-1]['system_info'].strip()}")
    print("\n| model | prefill carpool | prefill llama.cpp | ratio | decode b1 carpool | "
          "decode b1 llama.cpp | ratio | MBU (read / triad) | read / triad GB/s | "
          "decode b16 carpool |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['model']} | {r['carpool_prefill']:.1f} | {r['llamacpp_prefill']:.1f} | "
              f"{r['prefill_ratio']:.2f}x | {r['carpool_decode_b1']:.1f} | "
              f"{r['llamacpp_decode_b1']:.1f} | {r['decode_ratio']:.2f}x | "
              f"{100 * r['mbu_read']:.0f}% / {100 * r['mbu_triad']:.0f}% | "
              f"{r['read_gb_s']:.1f} / {r['triad_gb_s']:.1f} | {r['carpool_decode_b16']:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": model_name, "flags": flags, "threads": T, "bandwidth": bw,
                       "load_start": load0, "load_end": load1, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
