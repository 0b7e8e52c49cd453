#!/usr/bin/env python3
"""Output tokens/s through HTTP (`carpool serve`) next to the engine driven directly
(engine_direct, same requests, same engine options), at several concurrencies.

  http_vs_direct.py --carpool BUILD/carpool --direct BUILD/engine_direct [--model PATH]
                    [--concurrency 1,4,16,64] [--max-tokens 32] [--rounds 3] [--settle 5]
                    [--kv-cache-dtype f16|f32|int8] [--fresh-server]

Closed loop at each concurrency: C requests in flight, REQUESTS = max(2C, --min-requests) in all; request i's
prompt is 32 token ids 1000 + (i*7919 + k*104729) % 19000 (as engine_direct builds them), and every
run, direct or HTTP, uses fresh values of i, so no run is helped by the prefix cache; greedy,
ignore_eos, exactly --max-tokens generated. The HTTP client uses one keep-alive connection per
worker thread and non-streamed completions. Each of --rounds rounds runs every concurrency,
direct then HTTP (odd rounds: HTTP then direct); the table gives medians over the rounds, and each ratio is the median of the
ratios taken within one round (the machine is shared and its speed drifts over minutes).

Every timed run, direct or HTTP, starts --settle seconds after the last process started or ended
(engine_direct sleeps that long after loading and warming up; the HTTP side sleeps before its
run). On the 2-core VM the runs in the seconds after a process had faulted in or freed its ~1 GB
were slower, and without the pause every HTTP run came right after an engine_direct exit: HTTP
read 5-10% below direct in seven of eight alternations at c = 4; with a 5 s pause, six
alternations read 92-119%, median 102% (2026-11-26, bench/RESULTS.md).

By default one server serves every HTTP run; --fresh-server starts one for each HTTP run instead,
as engine_direct is started for each direct run. On the Xeon VM a long-lived server ran 5-9%
below engine_direct at c = 1 with the same work per step (perf), and a server started for each
run read 99%: a process's speed there depends on the memory it was given (2026-11-27,
bench/RESULTS.md).
"""
import argparse
import concurrent.futures as cf
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import time


def prompt(i, n=32):
    return [1000 + (i * 7919 + k * 104729) % 19000 for k in range(n)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NEXT = [0]  # the first prompt index of the next run


def fresh_range(total):
    first = NEXT[0]
    NEXT[0] += total + 1
    return first


def http_run(port, conc, total, max_tokens, settle=0.0):
    first = fresh_range(total)
    time.sleep(settle)
    counter = iter(range(first, first + total))
    import threading
    lock = threading.Lock()

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        tokens = 0
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return tokens
            body = json.dumps({"prompt": prompt(i), "max_tokens": max_tokens, "temperature": 0,
                               "ignore_eos": True})
            conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            data = json.loads(r.read())
            assert r.status == 200, data
            tokens += data["usage"]["completion_tokens"]

    t0 = time.time()
    with cf.ThreadPoolExecutor(conc) as pool:
        tokens = sum(f.result() for f in [pool.submit(worker) for _ in range(conc)])
    s = time.time() - t0
    return tokens / s


class Server:
    """carpool serve on a free port; start() waits until it is ready."""

    def __init__(self, argv):
        self.argv = argv
        self.proc = None
        self.port = 0

    def start(self):
        self.port = free_port()
        self.proc = subprocess.Popen(self.argv + ["--port", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(600):
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/ready")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("carpool serve did not become ready")

    def stop(self):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
            self.proc = None


def direct_run(direct, model, conc, total, max_tokens, settle=0.0, kv="f16"):
    first = fresh_range(total)
    out = subprocess.run([direct, model, str(conc), str(total), str(max_tokens), "32", str(first),
                          str(settle)],
                         capture_output=True, text=True, check=True,
                         env=dict(os.environ, CARPOOL_DIRECT_KV=kv)).stdout
    return json.loads(out.strip().splitlines()[-1])["tokens_per_s"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--carpool", required=True)
    ap.add_argument("--min-requests", type=int, default=8)
    ap.add_argument("--direct", required=True)
    ap.add_argument("--model", default=os.path.expanduser(
        "~/.cache/carpool/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--concurrency", default="1,4,16,64")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settle", type=float, default=5.0,
                    help="seconds between a process starting or ending and a timed run")
    ap.add_argument("--kv-cache-dtype", default="f16", choices=["f16", "f32", "int8"],
                    help="the KV cache type of both sides")
    ap.add_argument("--fresh-server", action="store_true",
                    help="start carpool serve anew for each HTTP run, as engine_direct is (see above)")
    ap.add_argument("--serve-arg", action="append", default=[],
                    help="extra argument for carpool serve (repeatable), e.g. --serve-arg=--no-telemetry")
    a = ap.parse_args()

    server = Server([a.carpool, "serve", "--model", a.model, "--kv-cache-dtype", a.kv_cache_dtype] +
                    a.serve_arg)

    def via_server(conc, total):
        if a.fresh_server:
            server.start()
        try:
            return http_run(server.port, conc, total, a.max_tokens, a.settle)
        finally:
            if a.fresh_server:
                server.stop()

    try:
        if not a.fresh_server:
            server.start()
        concs = [int(x) for x in a.concurrency.split(",")]
        direct = {c: [] for c in concs}
        via_http = {c: [] for c in concs}
        # Rounds outermost: each round runs every concurrency, direct and HTTP back to back, so
        # the ratios taken within a round (HTTP / direct, c / first c) see the machine at the same
        # speed; odd rounds run HTTP first, so neither side always runs in the other's wake.
        for r in range(a.rounds):
            for conc in concs:
                total = max(2 * conc, a.min_requests)
                if r % 2 == 0:
                    d = direct_run(a.direct, a.model, conc, total, a.max_tokens, a.settle,
                                   a.kv_cache_dtype)
                    h = via_server(conc, total)
                else:
                    h = via_server(conc, total)
                    d = direct_run(a.direct, a.model, conc, total, a.max_tokens, a.settle,
                                   a.kv_cache_dtype)
                direct[conc].append(d)
                via_http[conc].append(h)
                print(f"  round {r}, concurrency {conc}: direct {d:.1f} tok/s, http {h:.1f} tok/s",
                      flush=True)
    finally:
        server.stop()
    first = concs[0]
    print(f"\nmedians over {a.rounds} rounds; ratios are medians of the per-round ratios")
    print(f"| concurrency | requests | direct tok/s | HTTP tok/s | HTTP / direct | "
          f"HTTP / direct per round | HTTP vs c={first} |")
    print("|---|---|---|---|---|---|---|")
    for conc in concs:
        total = max(2 * conc, a.min_requests)
        ratios = [h / d for h, d in zip(via_http[conc], direct[conc])]
        hd = statistics.median(ratios)
        vs1 = statistics.median(h / h1 for h, h1 in zip(via_http[conc], via_http[first]))
        per_round = " ".join(f"{100 * r:.0f}%" for r in ratios)
        print(f"| {conc} | {total} | {statistics.median(direct[conc]):.1f} | "
              f"{statistics.median(via_http[conc]):.1f} | {100 * hd:.0f}% | {per_round} | "
              f"{vs1:.2f}x |")

if __name__ == "__main__":
    main()
