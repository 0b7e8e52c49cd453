"""The CPU KV cache type: f16 by default (twice the tokens of f32 in the same memory), f32 on
request or with --cpu-exact, int8 on request (nearly twice the tokens of f16), and clear errors
for a misspelt or unsupported type."""
import re
import subprocess

from conftest import Server, carpool_bin


def kv_tokens(server):
    m = re.search(r"KV cache: \d+ blocks × \d+ tokens = (\d+) tokens", server.log_text())
    assert m, server.log_text()
    return int(m.group(1))


def greedy(server):
    r = server.post("/v1/completions", json={"prompt": "The capital of France is", "max_tokens": 8,
                                             "temperature": 0})
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["text"]


def test_f16_cache_holds_twice_the_tokens_of_f32():
    f16 = Server("--kv-cache-memory", "128MiB", "--max-model-len", "1024")
    f32 = Server("--kv-cache-memory", "128MiB", "--max-model-len", "1024", "--kv-cache-dtype", "f32")
    try:
        assert kv_tokens(f16) == 2 * kv_tokens(f32)
        assert greedy(f16).strip() and greedy(f32).strip()
    finally:
        assert f16.stop() == 0
        assert f32.stop() == 0


def test_int8_cache_holds_nearly_twice_the_tokens_of_f16():
    f16 = Server("--kv-cache-memory", "128MiB", "--max-model-len", "1024")
    i8 = Server("--kv-cache-memory", "128MiB", "--max-model-len", "1024", "--kv-cache-dtype", "int8")
    try:
        # Per token and layer, K and V: f16 2 x 192 x 2 bytes; int8 2 x (192 + 3 scales x 4).
        ratio = kv_tokens(i8) / kv_tokens(f16)
        assert abs(ratio - 768 / 408) < 0.01, ratio
        # A whole answer, and one that runs over many blocks of the cache (streamed as well).
        assert "Paris" in greedy(i8), greedy(i8)
        r = i8.post("/v1/completions", json={"prompt": "Count: 1, 2, 3,", "max_tokens": 200,
                                             "temperature": 0, "ignore_eos": True})
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] == 200
        assert "10, 11, 12" in r.json()["choices"][0]["text"], r.json()["choices"][0]["text"]
    finally:
        assert f16.stop() == 0
        assert i8.stop() == 0


def test_bad_kv_cache_dtype_is_refused_with_a_message():
    for value, words in [("f8", "must be auto, f16, f32"), ("bf16", "bf16")]:
        p = subprocess.run([carpool_bin(), "serve", "--port", "0", "--kv-cache-dtype", value,
                            "--device", "cpu"], capture_output=True, text=True, timeout=120)
        assert p.returncode != 0
        assert "--kv-cache-dtype" in p.stderr and words in p.stderr, p.stderr
