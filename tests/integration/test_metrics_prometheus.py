"""A real Prometheus server scrapes carpool every second while the openai SDK drives load; the
series come back through PromQL on Prometheus's HTTP API."""
import os
import shutil
import subprocess
import tempfile
import time

import pytest
import requests

from conftest import free_port
from metrics_util import Load, parse_prometheus, total, wait_for

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None,
                                reason="prometheus not installed (Debian package prometheus)")


class Prometheus:
    def __init__(self, target):
        self.dir = tempfile.mkdtemp(prefix="carpool-prometheus-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: carpool\n"
                    f"    static_configs:\n      - targets: ['{target}']\n")
        self.log = open(os.path.join(self.dir, "prometheus.log"), "w+")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}",
             f"--storage.tsdb.path={os.path.join(self.dir, 'data')}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=self.log, stderr=subprocess.STDOUT)
        ok = wait_for(self._ready, 30)
        assert ok, "prometheus did not become ready: " + self._log_text()

    def _ready(self):
        assert self.proc.poll() is None, "prometheus exited: " + self._log_text()
        try:
            return requests.get(self.url + "/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def _log_text(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-3000:]

    def query(self, promql):
        r = requests.get(self.url + "/api/v1/query", params={"query": promql}, timeout=10)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    def scalar(self, promql):
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_prometheus_scrapes_and_answers_promql(server):
    prom = Prometheus(f"127.0.0.1:{server.port}")
    try:
        assert wait_for(lambda: prom.scalar('up{job="carpool"}') == 1, 20), prom.query("up")
        load = Load(server.url, concurrency=4, max_tokens=12)
        time.sleep(6)
        done = load.stop()
        assert done >= 4
        # Let two more scrapes see the final counters, then compare with carpool's own text.
        time.sleep(2.5)
        own = parse_prometheus(requests.get(server.url + "/metrics", timeout=10).text)
        gen = prom.scalar('carpool_generation_tokens_total{job="carpool"}')
        assert gen == total(own, "carpool_generation_tokens_total")
        assert gen >= load.tokens
        ok = prom.scalar('sum(carpool_http_requests_total{job="carpool",code="2xx"})')
        assert ok >= done
        # Rates and quantiles over the load window.
        assert prom.scalar("sum(increase(carpool_request_finished_total[30s]))") >= done * 0.5
        p90 = prom.scalar(
            "histogram_quantile(0.9, sum by (le) (rate(carpool_time_to_first_token_seconds_bucket"
            "[30s])))")
        assert p90 is not None and 0 < p90 < 60
        itl = prom.scalar(
            "histogram_quantile(0.5, sum by (le) (rate(carpool_inter_token_latency_seconds_bucket"
            "[30s])))")
        assert itl is not None and 0 < itl < 10
        # Gauges labelled by device, ratios within 0..1.
        busy = prom.query('max_over_time(carpool_device_busy_ratio{phase="all"}[30s])')
        assert busy and busy[0]["metric"]["device"] == "cpu"
        assert 0 < float(busy[0]["value"][1]) <= 1
        assert prom.scalar("max_over_time(carpool_mbu_ratio{phase=\"all\"}[30s])") > 0
        assert prom.scalar("max_over_time(carpool_num_requests_running[30s])") >= 1
        assert prom.scalar('carpool_replicas{state="active"}') == 1
    finally:
        prom.stop()
