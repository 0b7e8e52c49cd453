"""Servers with their own flags: API key, a full waiting queue, SIGTERM draining."""
import concurrent.futures as cf
import json
import signal
import time

import openai
import pytest
import requests

from conftest import Server
from test_concurrency import stream_completion

MODEL = "smollm2"


def test_api_key():
    s = Server(api_key="sekret-123")
    try:
        assert requests.get(s.url + "/health").status_code == 200  # liveness stays open
        for path in ("/ready", "/v1/models", "/v1/internal/engine"):
            r = requests.get(s.url + path)
            assert r.status_code == 401
            assert r.json()["error"]["type"] == "invalid_request_error"  # as OpenAI's API
            assert r.json()["error"]["code"] == "invalid_api_key"
        assert requests.get(s.url + "/v1/models",
                            headers={"Authorization": "Bearer sekret-12"}).status_code == 401
        assert requests.post(s.url + "/v1/completions", json={"prompt": "x"}).status_code == 401
        bad = openai.OpenAI(base_url=s.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        good = openai.OpenAI(base_url=s.url + "/v1", api_key="sekret-123", max_retries=0)
        r = good.completions.create(model=MODEL, prompt="Hi", max_tokens=2)
        assert r.usage.completion_tokens >= 1
    finally:
        assert s.stop() == 0


def wait_stats(server, pred, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = server.engine_stats()
        if pred(st):
            return st
        time.sleep(0.01)
    raise AssertionError(f"engine never reached the state: {st}")


def test_full_queue_answers_429_quickly():
    s = Server("--max-num-seqs", "2", "--max-queued-requests", "2")
    try:
        with cf.ThreadPoolExecutor(4) as pool:
            # Two running, then two waiting: the engine is full.
            longs = [pool.submit(stream_completion, s.url, "Write a poem.", 120, temperature=0)
                     for _ in range(2)]
            wait_stats(s, lambda st: st["running"] == 2)
            for _ in range(2):
                longs.append(pool.submit(stream_completion, s.url, "Write a song.", 120,
                                         temperature=0))
                n = len(longs) - 2
                wait_stats(s, lambda st: st["waiting"] >= n)
            t0 = time.time()
            r = requests.post(s.url + "/v1/completions", json={"prompt": "x", "max_tokens": 4})
            elapsed = time.time() - t0
            assert r.status_code == 429, r.text
            assert r.headers["Retry-After"]
            assert r.json()["error"]["type"] == "rate_limit_error"
            assert elapsed < 1.0
            # More choices than the queue can ever hold: a 400 naming n, not a 429 to retry.
            r = requests.post(s.url + "/v1/completions",
                              json={"prompt": "x", "max_tokens": 4, "n": 3})
            assert r.status_code == 400, r.text
            assert r.json()["error"]["param"] == "n"
            for f in longs:  # the admitted requests are undisturbed
                text, usage, finish = f.result()
                assert usage["completion_tokens"] == 120 and finish == "length"
    finally:
        assert s.stop() == 0


def test_sigterm_drains_in_flight_and_exits_0():
    s = Server("--shutdown-timeout", "60")
    with cf.ThreadPoolExecutor(2) as pool:
        inflight = pool.submit(stream_completion, s.url, "Tell me about the sea.", 64,
                               temperature=0)
        deadline = time.time() + 20
        while s.engine_stats()["running"] == 0 and time.time() < deadline:
            time.sleep(0.01)
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        # Readiness is off and new work is refused while the stream finishes.
        refused = False
        try:
            assert requests.get(s.url + "/ready", timeout=5).status_code == 503
            r = requests.post(s.url + "/v1/completions", json={"prompt": "x", "max_tokens": 2},
                              timeout=5)
            refused = r.status_code == 503
        except requests.ConnectionError:
            refused = True  # already closed: also a refusal
        assert refused
        text, usage, finish = inflight.result()
        assert usage["completion_tokens"] == 64 and finish == "length"
    assert s.proc.wait(timeout=60) == 0
    s.stop()


def test_sigterm_timeout_aborts_what_is_left():
    s = Server("--shutdown-timeout", "0.5")
    with cf.ThreadPoolExecutor(1) as pool:
        inflight = pool.submit(stream_completion, s.url, "Tell me about the sea.", 4000,
                               temperature=0)
        deadline = time.time() + 20
        while s.engine_stats()["running"] == 0 and time.time() < deadline:
            time.sleep(0.01)
        s.proc.send_signal(signal.SIGTERM)
        text, usage, finish = inflight.result()
        assert finish == "abort" and usage["completion_tokens"] < 4000
    assert s.proc.wait(timeout=30) == 0
    s.stop()


def stream_lines(url, body):
    """A streamed completion's raw SSE lines (errors included)."""
    with requests.post(url + "/v1/completions", json=body, stream=True, timeout=300) as r:
        assert r.status_code == 200, r.text
        return [line for line in r.iter_lines() if line]


def test_sigterm_refuses_queued_requests_at_once():
    # Requests that have not started get 503 + Retry-After when the drain begins (a load
    # balancer retries them elsewhere) instead of an empty 200 at the end of the drain.
    s = Server("--max-num-seqs", "1", "--shutdown-timeout", "300")
    with cf.ThreadPoolExecutor(4) as pool:
        running = pool.submit(stream_completion, s.url, "Tell me about the sea.", 1000,
                              temperature=0)
        wait_stats(s, lambda st: st["running"] == 1)
        queued = [pool.submit(requests.post, s.url + "/v1/completions", timeout=60,
                              json={"model": MODEL, "prompt": "x", "max_tokens": 8})
                  for _ in range(2)]
        queued_stream = pool.submit(stream_lines, s.url, {
            "model": MODEL, "prompt": "y", "max_tokens": 8, "stream": True})
        wait_stats(s, lambda st: st["waiting"] == 3)
        t0 = time.time()
        s.proc.send_signal(signal.SIGTERM)
        for f in queued:
            r = f.result()
            assert r.status_code == 503, r.text
            assert r.headers["Retry-After"]
            assert r.json()["error"]["type"] == "service_unavailable"
        lines = queued_stream.result()
        assert time.time() - t0 < 5  # not at the end of the drain
        assert lines[-1] == b"data: [DONE]"
        assert json.loads(lines[-2][6:])["error"]["type"] == "service_unavailable"
        # The running request is not disturbed.
        text, usage, finish = running.result()
        assert usage["completion_tokens"] == 1000 and finish == "length"
    assert s.proc.wait(timeout=60) == 0
    s.stop()


def test_second_signal_ends_the_drain_now():
    s = Server("--shutdown-timeout", "60")
    with cf.ThreadPoolExecutor(1) as pool:
        inflight = pool.submit(stream_completion, s.url, "Tell me about the sea.", 4000,
                               temperature=0)
        wait_stats(s, lambda st: st["running"] == 1)
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        t0 = time.time()
        s.proc.send_signal(signal.SIGINT)
        text, usage, finish = inflight.result()
        assert finish == "abort" and usage["completion_tokens"] < 4000
        assert s.proc.wait(timeout=10) == 0
        assert time.time() - t0 < 10
    s.stop()
