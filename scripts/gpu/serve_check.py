#!/usr/bin/env python3
"""carpool serve on the GPU under load: throughput, GPU idle time, and the dashboard's data.

Starts `carpool serve` on a synthetic Llama-3.1-8B (random bf16 weights on the device) with the
Llama 3 tokenizer, drives CONCURRENCY concurrent completion requests (ignore_eos, fixed length)
from threads with the standard library only, and samples carpool's own /metrics and
/api/v1/status meanwhile. Reports output tokens/s, NVML GPU utilization (the share of time any
kernel ran: 1 - it is the time the GPU idled), GPM SM activity and DRAM bandwidth, and carpool's
MBU/MFU; saves /metrics, /api/v1/status and the dashboard's series under OUT.

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


def main():
    os.makedirs(OUT, exist_ok=True)
    log = open(os.path.join(OUT, "serve.log"), "w")
    srv = subprocess.Popen([BIN, "serve", "--model", MODEL, "--tokenizer", TOK,
                            "--device", DEVICE, "--port", str(PORT), "--max-num-seqs", str(CONC),
                            "--max-num-batched-tokens", "4096", "--max-model-len", "4096",
                            "--gpu-catalog", "data/gpus.json"], stdout=log, stderr=log)
    try:
        for _ in range(240):
            try:
                if json.loads(get("/ready")).get("status") == "ready":
                    break
            except Exception:
                pass
            time.sleep(0.5)
        else:
            print("serve_check: server never became ready")
            return 1
        stop = time.time() + SECONDS
        done_tokens = [0]
        lock = threading.Lock()

        def client(i):
            while time.time() < stop:
                r = post("/v1/completions", {"model": MODEL,
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
        while time.time() < stop - 2:
            m = get("/metrics")
            st = json.loads(get("/api/v1/status"))
            samples.append((m, st))
            time.sleep(2)
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
        return 0
    finally:
        srv.terminate()
        try:
            srv.wait(timeout=30)
        except subprocess.TimeoutExpired:
            srv.kill()


if __name__ == "__main__":
    sys.exit(main())
