#!/usr/bin/env python3
"""Throughput with telemetry on vs off, under the same load, and telemetry's own measured cost.

--mode direct (default): the engine driven in-process by engine_direct (-DCARPOOL_BENCH=ON),
alternately with CARPOOL_DIRECT_TELEMETRY=1 (every step, request and token gap recorded, the
probe thread sampling once a second, as in `carpool serve`) and without, in rounds ordered
on/off, off/on, ... . Each run is a closed loop of --concurrency requests of fresh 32-token prompts,
--requests in all, --max-tokens greedy tokens each. Beside the A/B throughput, each telemetry-on
run reports telemetry's own time (Telemetry::self_cost: its calls on the engine thread, the probe
thread's CPU time) as a share of the run's wall time, a figure that the machine's noise does not
blur.

  .venv/bin/python bench/telemetry_overhead.py --direct build/bench/server/engine_direct --rounds 8

--mode http: two `carpool serve` processes, with telemetry and with --no-telemetry; two servers
run side by side (one with telemetry, one without); rounds alternate between them
(on/off, then off/on, ...) so that slow drifts of a shared machine hit both. Each run is a closed
loop of `--concurrency` clients sending `--requests` completions of fresh 32-token prompts (no
prefix-cache reuse) for `--max-tokens` greedy tokens (ignore_eos). Prints every run's output
tokens/s, the median per side, the spread, and the overhead of the medians.

  .venv/bin/python bench/telemetry_overhead.py --mode http --carpool build/carpool --rounds 4
"""
import argparse
import concurrent.futures as cf
import json
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


DEFAULT_MODEL = os.path.expanduser("~/.cache/carpool/models/SmolLM2-135M-Instruct.Q4_1.gguf")


def direct_run(args, on, first):
    env = dict(os.environ)
    env.pop("CARPOOL_DIRECT_TELEMETRY", None)
    if on:
        env["CARPOOL_DIRECT_TELEMETRY"] = "1"
    out = subprocess.run([args.direct, args.model, str(args.concurrency), str(args.requests),
                          str(args.max_tokens), "32", str(first)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main_direct(args):
    results = {"on": [], "off": []}
    self_shares = []
    direct_run(args, True, 90_000)  # warm the page cache and the peaks cache
    for r in range(args.rounds):
        order = ["on", "off"] if r % 2 == 0 else ["off", "on"]
        for name in order:
            res = direct_run(args, name == "on", (r * 2 + (name == "on")) * args.requests)
            results[name].append(res["tokens_per_s"])
            extra = ""
            if res["telemetry"] is not None:
                t = res["telemetry"]
                share = (t["engine_s"] + t["probes_s"]) / res["seconds"]
                self_shares.append(share)
                extra = (f"  telemetry self: engine {t['engine_s'] * 1e3:.2f} ms, probes "
                         f"{t['probes_s'] * 1e3:.2f} ms = {share * 100:.3f}% of {res['seconds']:.1f} s")
            print(f"round {r} telemetry {name:3}: {res['tokens_per_s']:8.1f} tok/s{extra}", flush=True)
    report(results)
    print(f"telemetry's own time, share of wall time: median {statistics.median(self_shares) * 100:.3f}%, "
          f"max {max(self_shares) * 100:.3f}%")
    return 0


def report(results):
    med = {k: statistics.median(v) for k, v in results.items()}
    for k, v in results.items():
        print(f"telemetry {k:3}: median {med[k]:.1f} tok/s, min {min(v):.1f}, max {max(v):.1f}, "
              f"spread {(max(v) - min(v)) / med[k] * 100:.1f}% of the median")
    paired = [on / off for on, off in zip(results["on"], results["off"])]
    print(f"overhead (1 - on/off, medians): {(1 - med['on'] / med['off']) * 100:+.2f}%")
    print(f"per-round on/off: " + ", ".join(f"{p:.3f}" for p in paired) +
          f" (median {statistics.median(paired):.4f})")
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"nproc {os.cpu_count()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=["direct", "http"], default="direct")
    ap.add_argument("--direct", default="build/bench/server/engine_direct")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--carpool", default="build/carpool")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--max-tokens", type=int, default=32)
    args = ap.parse_args()
    if args.mode == "direct":
        return main_direct(args)
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
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
