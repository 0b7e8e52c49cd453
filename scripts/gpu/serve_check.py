#!/usr/bin/env python3
"""carpool serve on the GPU under load: throughput, GPU idle time, and the dashboard's data.

Starts `carpool serve` on a synthetic Llama-3.1-8B (random bf16 weights on the device) with the
Llama 3 tokenizer, drives CONCURRENCY concurrent completion requests (ignore_eos, fixed length)
from threads with the standard library only, and samples carpool's own /metrics and
/api/v1/status meanwhile. Reports output tokens/s, NVML GPU utilization (the share of time any
kernel ran: 1 - it is the time the GPU idled), GPM SM activity and DRAM bandwidth, and carpool's
MBU/MFU; saves /metrics, /api/v1/status and the dashboard's series under OUT.

Beside carpool's own readings it samples the same counters through pynvml (NVML utilization and,
on Hopper, GPM) once a second over the same window, so the two can be compared under serve load.
At the end of the load window it also saves what the dashboard fetches at that moment (its page,
assets, /api/v1/status and the live range's /api/v1/series) under OUT/dashboard, so that
scripts/gpu/dashboard_replay.py can render the page from the GPU's own figures in a browser on a
machine that has one.

usage: serve_check.py CARPOOL_BIN TOKENIZER_DIR OUT [CONCURRENCY] [SECONDS]

SERVE_TEMPERATURE (default 0: greedy, the device argmax) and SERVE_TOP_P (default 1) set the
requests' sampling: above 0 the rows are drawn on the device (Backend::sample_rows), or on the
host with CARPOOL_CUDA_SAMPLING=0.
"""
import json
import os
import subprocess
import sys
import threading
import time
import re
import urllib.request

BIN, TOK, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
CONC = int(sys.argv[4]) if len(sys.argv) > 4 else 64
SECONDS = float(sys.argv[5]) if len(sys.argv) > 5 else 40
PORT = 8391
MODEL = os.environ.get("SERVE_MODEL", "synthetic:llama-3.1-8b")
TEMPERATURE = float(os.environ.get("SERVE_TEMPERATURE", "0"))
TOP_P = float(os.environ.get("SERVE_TOP_P", "1"))
DEVICE = os.environ.get("SERVE_DEVICE", "cuda")  # "cpu" for a dry run of the script itself
LABEL = "cuda:0" if DEVICE == "cuda" else "cpu"
BASE = f"http://127.0.0.1:{PORT}"


def get(path, timeout=10):
    with urllib.request.urlopen(BASE + path, timeout=timeout) as r:
        return r.read().decode()


def post(path, body, timeout=600):
    req = urllib.request.Request(BASE + path, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def metric(text, name, labels=""):
    for line in text.splitlines():
        if line.startswith(name + labels + " "):
            return float(line.split()[-1])
    return None


def start_pynvml_sampler(stop_event, rows):
    """Samples NVML/GPM through pynvml once a second into rows (dicts with t); None if no pynvml."""
    if DEVICE != "cuda":
        return None
    try:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import pynvml
        from probe_check import PynvmlSampler
        pynvml.nvmlInit()
        sampler = PynvmlSampler(0)
    except Exception as e:  # no pynvml, no driver
        print(f"serve_check: pynvml unavailable ({e}); carpool's readings only")
        return None

    def loop():
        while not stop_event.is_set():
            time.sleep(1.0)
            try:
                r = sampler.sample()
                r["t"] = time.time()
                rows.append(r)
            except Exception as e:
                print(f"serve_check: pynvml sample failed: {e}")
                return

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def save_dashboard_snapshot(out_dir):
    """Saves the dashboard's page and assets and the two API answers its live range fetches now."""
    d = os.path.join(out_dir, "dashboard")
    os.makedirs(os.path.join(d, "assets"), exist_ok=True)
    page = get("/")
    open(os.path.join(d, "index.html"), "w").write(page)
    for asset in re.findall(r'(?:href|src)="/assets/([A-Za-z0-9_.-]+)"', page):
        open(os.path.join(d, "assets", asset), "w").write(get("/assets/" + asset))
    js = open(os.path.join(d, "assets", "dashboard.js")).read()
    names = set(re.findall(r"q: '([a-z0-9_:]+)'", js))
    extra = re.search(r"const EXTRA = \[([^\]]*)\]", js)
    if extra:
        names.update(re.findall(r"'([a-z0-9_:]+)'", extra.group(1)))
    if "_seconds:${p}" in js:  # the latency panel builds its names from a template
        names.update(f"{h}_seconds:{p}" for h in ("ttft", "itl", "e2e") for p in ("p50", "p90", "p99"))
    status_text = get("/api/v1/status")
    status = json.loads(status_text)
    to = int(status["now"]) + 1  # the live range's query, as dashboard.js builds it
    series = get(f"/api/v1/series?names={','.join(sorted(names))}&from={to - 120}&to={to}&step=1")
    open(os.path.join(d, "status.json"), "w").write(status_text)
    open(os.path.join(d, "series.json"), "w").write(series)


def main():
    os.makedirs(OUT, exist_ok=True)
    log = open(os.path.join(OUT, "serve.log"), "w")
    srv = subprocess.Popen([BIN, "serve", "--model", MODEL, "--tokenizer", TOK,
                            "--device", DEVICE, "--port", str(PORT), "--max-num-seqs", str(CONC),
                            "--max-num-batched-tokens", "4096", "--max-model-len", "4096",
                            "--gpu-catalog", "data/gpus.json"], stdout=log, stderr=log)
    try:
        for _ in range(240):
            if srv.poll() is not None:
                print(f"serve_check: carpool serve exited with {srv.returncode} (see serve.log)")
                return 1
            try:
                if json.loads(get("/ready")).get("status") == "ready":
                    break
            except Exception:
                pass
            time.sleep(0.5)
        else:
            print("serve_check: server never became ready")
            return 1
        served = json.loads(get("/v1/models"))["data"][0]["id"]  # the name requests must use
        stop = time.time() + SECONDS
        done_tokens = [0]
        lock = threading.Lock()

        def client(i):
            while time.time() < stop:
                r = post("/v1/completions", {"model": served,
                                             "prompt": f"Request {i}: tell a long story about GPUs.",
                                             "max_tokens": 128, "ignore_eos": True,
                                             "temperature": TEMPERATURE, "top_p": TOP_P})
                with lock:
                    done_tokens[0] += r["usage"]["completion_tokens"]

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CONC)]
        t0 = time.time()
        for t in threads:
            t.start()
        samples = []
        time.sleep(8)  # ramp up
        nv_rows, nv_stop = [], threading.Event()
        window_start = time.time()
        start_pynvml_sampler(nv_stop, nv_rows)
        while time.time() < stop - 3:
            m = get("/metrics")
            st = json.loads(get("/api/v1/status"))
            samples.append((m, st))
            time.sleep(2)
        window_end = time.time()
        nv_stop.set()
        snapshot_error = None
        try:
            save_dashboard_snapshot(OUT)  # still under load: the clients run until `stop`
        except Exception as e:
            snapshot_error = str(e)
        for t in threads:
            t.join()
        wall = time.time() - t0
        # Steady-state readings: the median of the samples.
        def med(vals):
            vals = sorted(v for v in vals if v is not None)
            return vals[len(vals) // 2] if vals else None
        keys = {
            "nvml_gpu_util": ("carpool_gpu_utilization_ratio", '{device="%s"}' % LABEL),
            "gpm_sm_activity": ("carpool_gpu_sm_activity_ratio", '{device="%s"}' % LABEL),
            "gpm_tensor_activity": ("carpool_gpu_tensor_activity_ratio", '{device="%s"}' % LABEL),
            "gpm_dram_bw": ("carpool_gpu_dram_bandwidth_ratio", '{device="%s"}' % LABEL),
            "mbu": ("carpool_mbu_ratio", '{device="%s",phase="all"}' % LABEL),
            "mfu": ("carpool_mfu_ratio", '{device="%s",phase="all"}' % LABEL),
            "busy": ("carpool_device_busy_ratio", '{device="%s",phase="all"}' % LABEL),
            "running": ("carpool_num_requests_running", ""),
        }
        result = {k: med([metric(m, n, l) for m, _ in samples]) for k, (n, l) in keys.items()}
        # The same counters read through pynvml over the same window (median of 1-s samples).
        nv = [r for r in nv_rows if window_start + 1 <= r["t"] <= window_end]
        result["pynvml"] = {
            "samples": len(nv),
            "nvml_gpu_util": med([r.get("util_gpu") for r in nv]),
            "nvml_memory_util": med([r.get("util_memory") for r in nv]),
            "gpm_sm_activity": med([r.get("sm_util") for r in nv]),
            "gpm_sm_occupancy": med([r.get("sm_occupancy") for r in nv]),
            "gpm_tensor_activity": med([r.get("tensor_util") for r in nv]),
            "gpm_dram_bw": med([r.get("dram_bw_util") for r in nv]),
        } if nv else None
        if snapshot_error:
            result["dashboard_snapshot_error"] = snapshot_error
        result.update({"concurrency": CONC, "seconds": wall, "output_tokens": done_tokens[0],
                       "output_tokens_per_s": done_tokens[0] / wall,
                       "advice": samples[-1][1].get("advice", {}).get("text") if samples else None})
        if result["nvml_gpu_util"] is not None:
            result["gpu_idle_share"] = 1 - result["nvml_gpu_util"]
        now = int(time.time())
        names = ("http_2xx,running,waiting,batch_tokens,generation_tokens,ttft_seconds:p90,"
                 "itl_seconds:p90,mfu,mbu,busy,gpu_util,gpu_sm_activity,gpu_tensor_activity,"
                 "gpu_dram_bandwidth,memory_weights_bytes,memory_kv_reserved_bytes,kv_usage")
        try:
            series = get(f"/api/v1/series?names={names}&from={now - 120}&to={now}&step=1")
            open(os.path.join(OUT, "series.json"), "w").write(series)
        except Exception as e:
            result["series_error"] = str(e)
        if samples:
            open(os.path.join(OUT, "metrics.txt"), "w").write(samples[-1][0])
            open(os.path.join(OUT, "status.json"), "w").write(json.dumps(samples[-1][1], indent=1))
        open(os.path.join(OUT, "serve-check.json"), "w").write(json.dumps(result, indent=1))
        print(json.dumps(result, indent=1))
        if result["pynvml"]:
            fmt = lambda v: "  -  " if v is None else f"{100 * v:5.1f}"
            print(f"{'percent, median':16} {'NVML util':>9} {'SM activity':>11} {'tensor':>6} {'DRAM BW':>7}")
            for src, r in (("carpool probes", result), ("pynvml", result["pynvml"])):
                print(f"{src:16} {fmt(r['nvml_gpu_util']):>9} {fmt(r['gpm_sm_activity']):>11} "
                      f"{fmt(r['gpm_tensor_activity']):>6} {fmt(r['gpm_dram_bw']):>7}")
        return 0
    finally:
        srv.terminate()
        try:
            srv.wait(timeout=30)
        except subprocess.TimeoutExpired:
            srv.kill()


if __name__ == "__main__":
    sys.exit(main())
