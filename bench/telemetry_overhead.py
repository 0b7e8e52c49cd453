#!/usr/bin/env python3
"""Throughput of `carpool serve` with telemetry on vs --no-telemetry, under the same load.

Two servers run side by side (one with telemetry, one without); rounds alternate between them
(on/off, then off/on, ...) so that slow drifts of a shared machine hit both. Each run is a closed
loop of `--concurrency` clients sending `--requests` completions of fresh 32-token prompts (no
prefix-cache reuse) for `--max-tokens` greedy tokens (ignore_eos). Prints every run's output
tokens/s, the median per side, the spread, and the overhead of the medians.

  .venv/bin/python bench/telemetry_overhead.py --carpool build/carpool --rounds 4
"""
import argparse
import concurrent.futures as cf
import os
import statistics
import subprocess
import sys
import time

import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from conftest import Server  # noqa: E402  (the integration tests' server launcher)

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray").split()


def prompt(run, i):
    # 32 words, unique per run and request, so the prefix cache never helps one side.
    return " ".join(WORDS[(run * 7 + i * 3 + k) % len(WORDS)] for k in range(30)) + f" {run} {i}"


def one_run(url, run, args):
    def request(i):
        r = requests.post(url + "/v1/completions", timeout=600, json={
            "model": "smollm2", "prompt": prompt(run, i), "max_tokens": args.max_tokens,
            "temperature": 0, "ignore_eos": True})
        r.raise_for_status()
        return r.json()["usage"]["completion_tokens"]

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(args.concurrency) as pool:
        tokens = sum(pool.map(request, range(args.requests)))
    return tokens / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--carpool", default="build/carpool")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--max-tokens", type=int, default=32)
    args = ap.parse_args()
    os.environ["CARPOOL_BIN"] = os.path.abspath(args.carpool)
    servers = {"on": Server(), "off": Server("--no-telemetry")}
    results = {"on": [], "off": []}
    try:
        for name, s in servers.items():  # warm both (first-use costs, page cache)
            one_run(s.url, 10_000 + len(name), args)
        for r in range(args.rounds):
            order = ["on", "off"] if r % 2 == 0 else ["off", "on"]
            for name in order:
                tps = one_run(servers[name].url, r * 2 + (name == "on"), args)
                results[name].append(tps)
                print(f"round {r} telemetry {name:3}: {tps:8.1f} tok/s", flush=True)
    finally:
        for s in servers.values():
            s.stop()
    med = {k: statistics.median(v) for k, v in results.items()}
    for k, v in results.items():
        print(f"telemetry {k:3}: median {med[k]:.1f} tok/s, min {min(v):.1f}, max {max(v):.1f}, "
              f"spread {(max(v) - min(v)) / med[k] * 100:.1f}% of the median")
    paired = [on / off for on, off in zip(results["on"], results["off"])]
    print(f"overhead (1 - on/off, medians): {(1 - med['on'] / med['off']) * 100:+.2f}%")
    print("per-round on/off: " + ", ".join(f"{p:.3f}" for p in paired))
    load = os.getloadavg()
    print(f"load average during the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"nproc {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
