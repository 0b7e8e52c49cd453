"""GET /metrics, /api/v1/series and /api/v1/status on a real server under openai SDK load."""
import shutil
import subprocess
import time

import openai
import pytest
import requests

from metrics_util import parse_prometheus, sample, total


def metrics(server):
    r = server.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return r.text


def test_metrics_count_requests_tokens_and_status_classes(server, client):
    before = parse_prometheus(metrics(server))
    for i in range(3):
        r = client.completions.create(model="smollm2", prompt=f"Count to {i}", max_tokens=5,
                                      temperature=0, extra_body={"ignore_eos": True})
        assert r.usage.completion_tokens == 5
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="x", max_tokens=1)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="smollm2", prompt="x", max_tokens=1, temperature=9)
    assert server.get("/no/such/route").status_code == 404
    for path in ("/health", "/ready", "/metrics", "/api/v1/status", "/"):  # monitoring: not counted
        assert server.get(path).status_code == 200
    time.sleep(1.2)  # the probe thread's next sample of the engine state
    text = metrics(server)
    after = parse_prometheus(text)

    def delta(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    # The API's answers are counted: 3 completions (2xx); the 404 model, the 400 and the unknown
    # route (4xx). The monitoring routes (scrapes, probes, the dashboard) are not.
    assert delta("carpool_http_requests_total", code="2xx") == 3
    assert delta("carpool_http_requests_total", code="4xx") == 3
    assert delta("carpool_http_requests_total", code="5xx") == 0
    assert delta("carpool_generation_tokens_total") >= 15
    assert delta("carpool_request_finished_total", finished_reason="length") >= 3
    for h in ["time_to_first_token_seconds", "e2e_request_latency_seconds",
              "request_queue_time_seconds", "request_prompt_tokens",
              "request_generation_tokens"]:
        assert delta(f"carpool_{h}_count") >= 3, h
        inf = sample(after, f"carpool_{h}_bucket", le="+Inf")
        assert inf == sample(after, f"carpool_{h}_count"), h
    assert delta("carpool_inter_token_latency_seconds_count") >= 12
    # Gauges of the engine and of utilization, labelled by device.
    assert sample(after, "carpool_num_requests_running") is not None
    assert sample(after, "carpool_num_requests_waiting") is not None
    assert 0 <= sample(after, "carpool_kv_cache_usage_ratio") <= 1
    assert sample(after, "carpool_http_requests_in_flight") is not None
    assert sample(after, "carpool_memory_bytes", device="cpu", arena="weights") > 1e6
    busy = sample(after, "carpool_device_busy_ratio", device="cpu", phase="all")
    assert busy is not None and 0 < busy <= 1
    mbu = sample(after, "carpool_mbu_ratio", device="cpu", phase="all")
    assert mbu is not None and 0 < mbu < 1.5  # against a measured triad peak
    assert sample(after, "carpool_peak_bandwidth_bytes_per_second", device="cpu",
                  source="measured") > 1e8
    assert sample(after, "carpool_replicas", state="active") == 1
    assert sample(after, "carpool_replicas", state="desired") == 1
    assert sample(after, "carpool_process_resident_memory_bytes", device="cpu") > 1e6


def test_stop_strings_and_scoring_are_counted_as_the_client_sees_them(server, client):
    """A stop string ends its request as "stop" with the tokens the answer kept (the server finds
    it after the engine has generated further tokens), and a prompt scored with max_tokens 0
    generates nothing."""
    prompt = "The three primary colors are"
    full = client.completions.create(model="smollm2", prompt=prompt, max_tokens=24, temperature=0,
                                     extra_body={"ignore_eos": True}).choices[0].text
    words = full.split()
    assert len(words) >= 6, full
    stop = words[3]

    def settled(before, name, want):
        """The samples once `name` has risen by `want` (the engine records a stopped request
        when the server's stop reaches it, a step after the answer), or after 10 s."""
        deadline = time.time() + 10
        while True:
            after = parse_prometheus(metrics(server))
            if total(after, name) - total(before, name) >= want or time.time() > deadline:
                return after
            time.sleep(0.1)

    before = parse_prometheus(metrics(server))
    kept = 0
    for stream in (False, True, False):
        r = client.completions.create(model="smollm2", prompt=prompt, max_tokens=24,
                                      temperature=0, stop=[stop], stream=stream,
                                      extra_body={"ignore_eos": True},
                                      **({"stream_options": {"include_usage": True}}
                                         if stream else {}))
        if stream:
            chunks = list(r)
            assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
            kept += chunks[-1].usage.completion_tokens
        else:
            assert r.choices[0].finish_reason == "stop" and stop not in r.choices[0].text, r
            kept += r.usage.completion_tokens
    after = settled(before, "carpool_request_finished_total", 3)

    def delta(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("carpool_request_finished_total", finished_reason="stop") == 3
    assert delta("carpool_request_finished_total", finished_reason="abort") == 0
    assert delta("carpool_request_generation_tokens_sum") == kept
    assert delta("carpool_generation_tokens_total") >= kept  # and what was computed past stop

    before = after
    scored = client.completions.create(model="smollm2", prompt=prompt, max_tokens=0, echo=True,
                                       logprobs=1)
    assert scored.usage.completion_tokens == 0
    after = settled(before, "carpool_request_finished_total", 1)
    assert delta("carpool_request_finished_total", finished_reason="length") == 1
    assert delta("carpool_generation_tokens_total") == 0
    assert delta("carpool_request_generation_tokens_sum") == 0


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_metrics_under_load(server, client):
    client.completions.create(model="smollm2", prompt="Hello", max_tokens=4)
    p = subprocess.run(["promtool", "check", "metrics"], input=metrics(server),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout + p.stderr == ""


def test_series_api_returns_aligned_points(server, client):
    r = client.completions.create(model="smollm2", prompt="Series", max_tokens=6,
                                  extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 6
    time.sleep(1.1)
    now = int(time.time()) + 1
    names = "generation_tokens:sum,http_2xx:sum,ttft_seconds:p90,running,mbu,bound"
    doc = server.get(f"/api/v1/series?names={names}&from={now - 60}&to={now}&step=1").json()
    assert doc["from"] == now - 60 and doc["to"] == now and doc["step"] == 1
    series = {s["name"]: s["points"] for s in doc["series"]}
    assert list(series) == names.split(",")
    times = [[p[0] for p in pts] for pts in series.values()]
    assert all(t == times[0] for t in times) and len(times[0]) == 60
    assert sum(v for _, v in series["generation_tokens:sum"] if v) >= 6
    assert sum(v for _, v in series["http_2xx:sum"] if v) >= 1
    assert any(v is not None for _, v in series["ttft_seconds:p90"])
    assert any(v in ("overhead", "memory", "compute") for _, v in series["bound"])
    # Defaults: the last 5 minutes at 1 s.
    doc = server.get("/api/v1/series?names=running").json()
    assert doc["to"] - doc["from"] == 300 and doc["step"] == 1


@pytest.mark.parametrize("query", [
    "", "names=", "names=no_such_series", "names=bad%20name", "names=running&from=10&to=5",
    "names=running&step=abc", "names=running&from=0&to=999999999", "names=running&from=%zz",
])
def test_series_api_rejects_bad_input(server, query):
    r = server.get("/api/v1/series?" + query)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"]
    assert set(err) == {"message", "type", "param", "code"}


def test_status_reports_model_device_peaks_and_advice(server, client):
    client.completions.create(model="smollm2", prompt="Status", max_tokens=4)
    s = server.get("/api/v1/status").json()
    assert s["model"] == "smollm2"
    assert s["device_label"] == "cpu" and s["device"]
    assert s["ready"] is True
    assert s["peaks"]["flops_source"] == "measured" and s["peaks"]["flops_per_second"] > 0
    assert s["peaks"]["bandwidth_source"] == "measured"
    assert s["peaks"]["ridge_point"] > 0
    assert s["limits"]["max_num_seqs"] == 64
    assert s["advice"]["state"] in {"idle", "kv", "seqs", "tokens", "queue", "overhead",
                                    "memory", "compute"}
    assert len(s["advice"]["text"]) > 20
    assert abs(s["now"] - time.time()) < 5


def test_dashboard_assets_are_served_from_the_binary(server):
    page = server.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for src in ["/assets/dygraph.min.js", "/assets/dashboard.js", "/assets/dashboard.css",
                "/assets/dygraph.min.css"]:
        assert src in page.text
        r = server.get(src)
        assert r.status_code == 200 and len(r.content) > 500, src
    assert "http://" not in page.text and "https://" not in page.text
    assert "fetch('http" not in server.get("/assets/dashboard.js").text


def test_no_telemetry_serves_without_metrics():
    from conftest import Server

    s = Server("--no-telemetry")
    try:
        assert s.get("/metrics").status_code == 404
        assert s.get("/").status_code == 404
        r = s.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 2})
        assert r.status_code == 200
    finally:
        assert s.stop() == 0


def test_the_warm_up_request_is_not_traffic():
    # The server runs one request of its own before /ready; it is no user's, so no counter,
    # histogram or advice may show it.
    from conftest import Server
    s = Server()
    try:
        time.sleep(2.2)  # past the probe's samples of the start
        after = parse_prometheus(metrics(s))
        assert total(after, "carpool_request_finished_total") == 0
        assert total(after, "carpool_generation_tokens_total") == 0
        assert total(after, "carpool_prompt_tokens_total") == 0
        assert total(after, "carpool_time_to_first_token_seconds_count") == 0
        assert s.get("/api/v1/status").json()["advice"]["state"] == "idle"
    finally:
        assert s.stop() == 0
