#!/usr/bin/env python3
"""Compare carpool's device probe with pynvml on a GPU machine.

Runs carpool-probe (one JSON line per second) while the GPU goes through four workloads, each for
a few seconds: idle, a 1 GiB device copy loop, an 8192^3 bf16 matmul loop, and a loop of tiny
64x64 kernels. Beside it, this script reads the same counters through pynvml (NVML utilization and,
where pynvml and the GPU support it, GPM). Prints one table row per workload and source, and
writes everything to $OUT/probe_check.json.

    python3 scripts/gpu/probe_check.py --probe gpu-bin/carpool-probe [--seconds 6]

Needs torch (for the workloads) and pynvml. Expected on Hopper (see REFERENCE measurements):
copy -> DRAM BW high, tensor 0; matmul -> tensor high; tiny -> NVML util well above SM activity.
"""
import argparse
import json
import os
import subprocess
import threading
import time

import pynvml

FIELDS = ["util_gpu", "util_memory", "sm_util", "sm_occupancy", "tensor_util", "dram_bw_util"]
GPM_IDS = {
    "sm_util": "NVML_GPM_METRIC_SM_UTIL",
    "sm_occupancy": "NVML_GPM_METRIC_SM_OCCUPANCY",
    "tensor_util": "NVML_GPM_METRIC_ANY_TENSOR_UTIL",
    "dram_bw_util": "NVML_GPM_METRIC_DRAM_BW_UTIL",
}


def workload(name, stop):
    import torch

    dev = torch.device("cuda")
    if name == "idle":
        while not stop.is_set():
            time.sleep(0.05)
        return
    if name == "copy":
        a = torch.empty(1 << 30, dtype=torch.uint8, device=dev)
        b = torch.empty_like(a)
        step = lambda: b.copy_(a)
    elif name == "matmul":
        a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
        b = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
        step = lambda: torch.mm(a, b)
    else:  # tiny
        a = torch.randn(64, 64, device=dev)
        step = lambda: a.mul_(1.0)
    while not stop.is_set():
        for _ in range(10):
            step()
        torch.cuda.synchronize()


class PynvmlSampler:
    def __init__(self, index):
        self.h = pynvml.nvmlDeviceGetHandleByIndex(index)
        self.gpm = False
        try:
            self.gpm = bool(pynvml.nvmlGpmQueryDeviceSupport(self.h).isSupportedDevice)
            self.samples = [pynvml.nvmlGpmSampleAlloc(), pynvml.nvmlGpmSampleAlloc()]
            pynvml.nvmlGpmSampleGet(self.h, self.samples[0])
        except Exception as e:  # older pynvml or no GPM
            print(f"pynvml GPM unavailable: {e}")
            self.gpm = False

    def sample(self):
        r = {}
        u = pynvml.nvmlDeviceGetUtilizationRates(self.h)
        r["util_gpu"], r["util_memory"] = u.gpu / 100.0, u.memory / 100.0
        if self.gpm:
            try:
                self._gpm(r)
            except Exception as e:
                print(f"pynvml GPM failed: {e}")
                self.gpm = False
        return r

    def _gpm(self, r):
        pynvml.nvmlGpmSampleGet(self.h, self.samples[1])
        m = pynvml.c_nvmlGpmMetricsGet_t()
        m.version = pynvml.NVML_GPM_METRICS_GET_VERSION
        m.numMetrics = len(GPM_IDS)
        m.sample1, m.sample2 = self.samples[0], self.samples[1]
        for i, key in enumerate(GPM_IDS.values()):
            m.metrics[i].metricId = getattr(pynvml, key)
        pynvml.nvmlGpmMetricsGet(m)
        for i, field in enumerate(GPM_IDS):
            if m.metrics[i].nvmlReturn == 0:
                r[field] = m.metrics[i].value / 100.0
        self.samples.reverse()


def mean(rows, field):
    vals = [r[field] for r in rows if r.get(field) is not None]
    return sum(vals) / len(vals) if vals else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--probe", default="gpu-bin/carpool-probe")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--device", type=int, default=0)
    args = ap.parse_args()
    out_dir = os.environ.get("OUT", "gpu-out")
    os.makedirs(out_dir, exist_ok=True)

    pynvml.nvmlInit()
    sampler = PynvmlSampler(args.device)
    probe = subprocess.Popen([args.probe, "--device", str(args.device)], stdout=subprocess.PIPE,
                             text=True, bufsize=1)
    carpool_rows = []
    reader = threading.Thread(
        target=lambda: [carpool_rows.append(json.loads(l)) for l in probe.stdout], daemon=True)
    reader.start()

    results = []
    for name in ["idle", "copy", "matmul", "tiny"]:
        stop = threading.Event()
        t = threading.Thread(target=workload, args=(name, stop))
        t.start()
        time.sleep(1.5)  # warm-up: allocation, first kernels, one GPM interval
        start = time.time()
        ours = []
        while time.time() - start < args.seconds:
            time.sleep(1.0)
            ours.append(sampler.sample())
        end = time.time()
        stop.set()
        t.join()
        theirs = [r["gpu"] for r in carpool_rows if r["gpu"] and start + 1.0 <= r["t"] <= end]
        row = {"workload": name,
               "carpool": {f: mean(theirs, f) for f in FIELDS},
               "pynvml": {f: mean(ours, f) for f in FIELDS},
               "carpool_samples": len(theirs), "pynvml_samples": len(ours)}
        results.append(row)
    probe.terminate()

    fmt = lambda v: "   -  " if v is None else f"{100 * v:6.1f}"
    print(f"{'workload':8} {'source':8} " + " ".join(f"{f:>12}" for f in FIELDS) + "   (percent)")
    for row in results:
        for src in ("carpool", "pynvml"):
            print(f"{row['workload']:8} {src:8} " + " ".join(f"{fmt(row[src][f]):>12}" for f in FIELDS))
    with open(os.path.join(out_dir, "probe_check.json"), "w") as f:
        json.dump({"device": pynvml.nvmlDeviceGetName(sampler.h), "results": results,
                   "carpool_raw": carpool_rows}, f, indent=1)


if __name__ == "__main__":
    main()
