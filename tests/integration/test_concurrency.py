"""Many streams at once, batching invariance, and aborts on disconnect."""
import concurrent.futures as cf
import json
import socket
import time

import requests

MODEL = "smollm2"
PROMPTS = ["The capital of France is", "Once upon a time", "def fibonacci(n):",
           "The three primary colors are", "In 1969, astronauts", "Water boils at"]


def stream_completion(url, prompt, max_tokens, **extra):
    body = {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "stream": True,
            "stream_options": {"include_usage": True}, "ignore_eos": True, **extra}
    text, usage, finish = "", None, None
    with requests.post(url + "/v1/completions", json=body, stream=True, timeout=300) as r:
        assert r.status_code == 200, r.text
        for line in r.iter_lines():
            if not line:
                continue
            assert line.startswith(b"data: ")
            if line == b"data: [DONE]":
                break
            ev = json.loads(line[6:])
            if ev["choices"]:
                text += ev["choices"][0]["text"]
                finish = ev["choices"][0]["finish_reason"] or finish
            else:
                usage = ev["usage"]
    return text, usage, finish


def test_64_simultaneous_streams(server):
    n, max_tokens = 64, 8
    with cf.ThreadPoolExecutor(n) as pool:
        futs = [pool.submit(stream_completion, server.url, PROMPTS[i % len(PROMPTS)] + f" {i}",
                            max_tokens, temperature=0.7, seed=i) for i in range(n)]
        results = [f.result() for f in futs]
    for text, usage, finish in results:
        assert usage["completion_tokens"] == max_tokens
        assert finish == "length"


def test_greedy_tokens_same_alone_and_batched(server):
    def complete(prompt):
        r = server.post("/v1/completions", json={"prompt": prompt, "max_tokens": 12,
                                                 "temperature": 0, "ignore_eos": True,
                                                 "logprobs": 0})
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["logprobs"]["tokens"]

    target = "A list of fruits: apple,"
    alone = complete(target)
    with cf.ThreadPoolExecutor(32) as pool:
        others = [pool.submit(stream_completion, server.url, PROMPTS[i % len(PROMPTS)], 24,
                              temperature=1.0, seed=100 + i) for i in range(31)]
        time.sleep(0.2)  # the target joins a running batch
        batched = pool.submit(complete, target).result()
        for f in others:
            f.result()
    assert batched == alone


def wait_for_idle(server, idle_blocks, timeout=30):
    deadline = time.time() + timeout
    stats = None
    while time.time() < deadline:
        stats = server.engine_stats()
        if stats["running"] == 0 and stats["waiting"] == 0 and \
                stats["kv_blocks_used"] == idle_blocks:
            return stats
        time.sleep(0.05)
    raise AssertionError(f"engine did not return to idle: {stats}, idle {idle_blocks}")


def raw_request(port, body):
    s = socket.create_connection(("127.0.0.1", port))
    data = json.dumps(body).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    return s


def busy_until_generating(server):
    deadline = time.time() + 30
    while time.time() < deadline:
        s = server.engine_stats()
        if s["running"] > 0 and s["kv_blocks_used"] > 0:
            return s
        time.sleep(0.01)
    raise AssertionError("the request never started")


def test_disconnect_streaming_frees_kv_blocks(server):
    idle = wait_for_idle(server, server.engine_stats()["kv_blocks_used"])["kv_blocks_used"]
    s = raw_request(server.port, {"prompt": "Tell me a long story.", "max_tokens": 4000,
                                  "stream": True, "ignore_eos": True})
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    busy = busy_until_generating(server)
    assert busy["kv_blocks_used"] > idle
    s.close()
    after = wait_for_idle(server, idle, timeout=10)
    assert after["generated_tokens"] < busy["generated_tokens"] + 4000


def test_disconnect_non_streaming_frees_kv_blocks(server):
    idle = wait_for_idle(server, server.engine_stats()["kv_blocks_used"])["kv_blocks_used"]
    s = raw_request(server.port, {"prompt": "Tell me another long story.", "max_tokens": 4000,
                                  "ignore_eos": True})
    busy_until_generating(server)
    s.close()
    wait_for_idle(server, idle, timeout=10)
