"""Wrong command lines get one clear line on stderr and a non-zero exit, never a crash, a silent
fallback or a server that says it is listening before refusing its options."""
import subprocess
import time

import pytest
import requests

from conftest import carpool_bin, free_port


def run(*args, timeout=120):
    return subprocess.run([carpool_bin(), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args,message", [
    (["generate", "-p", "hi", "-n", "1", "--threads", "100000"], "--threads must be in [0, 1024]"),
    (["generate", "-p", "hi", "-n", "1", "--threads", "-1"], "--threads must be in [0, 1024]"),
    (["generate", "-p", "hi", "-n", "1", "extra"], "unexpected argument 'extra'"),
    (["tokenize", "--text", "hi", "extra"], "unexpected argument 'extra'"),
    (["inspect", "smollm2", "more"], "unexpected argument 'more'"),
    (["pull", "smollm2", "more"], "unexpected argument 'more'"),
    (["generate", "--model", "", "-p", "hi", "-n", "1"], "--model has an empty value"),
    (["generate", "--chat", "--prompt-ids", "1,2", "-n", "2"], "does not take --prompt-ids"),
    (["generate", "--seed", "-5", "-p", "hi", "-n", "1"], "--seed must be -1 (random) or"),
    (["bench", "-b", "1000000", "-n", "1", "--prefill-len", "0"], "--batch must be in [1, 4096]"),
    (["bench", "--chunk", "0"], "--chunk must be in [1, "),
])
def test_bad_command_lines(args, message):
    p = run(*args)
    assert p.returncode != 0, p.stdout
    assert message in p.stderr, p.stderr
    assert "terminate called" not in p.stderr and "Abort" not in p.stderr


@pytest.mark.parametrize("args,message", [
    (["--served-model-name", ""], "--served-model-name has an empty value"),
    (["--api-key", ""], "--api-key has an empty value"),
    (["--gpu-catalog", "/nonexistent/gpus.json"], "--gpu-catalog: no such file"),
    (["--max-num-seqs", "0"], "--max-num-seqs must be at least 1"),
    (["--max-num-seqs", "64", "--max-num-batched-tokens", "8"], "at least --max-num-seqs"),
    (["--model", "/nonexistent/model.gguf"], "is neither a file, a folder, nor a known name"),
    (["--threads", "5000"], "--threads must be in [0, 1024]"),
    (["--device", "tpu"], "--device must be auto, cpu or cuda"),
    # Checked against the model's config, read before listening where no download is needed.
    (["--max-model-len", "100000"], "max_model_len (100000) exceeds the model's context length"),
    (["--model", "synthetic:smollm2-135m", "--max-model-len", "9000"], "exceeds the model's"),
])
def test_serve_refuses_bad_options_before_listening(args, message):
    p = run("serve", "--port", str(free_port()), *args, timeout=60)
    assert p.returncode != 0
    assert message in p.stderr, p.stderr
    assert "listening" not in p.stderr


def test_serve_kv_cache_beyond_the_machine_is_refused():
    p = run("serve", "--port", str(free_port()), "--kv-cache-memory", "100000G", timeout=120)
    assert p.returncode != 0
    assert "more than this machine's memory" in p.stderr, p.stderr


def test_serve_takes_a_host_name():
    port = free_port()
    proc = subprocess.Popen([carpool_bin(), "serve", "--host", "localhost", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        else:
            raise AssertionError("no /health on localhost")
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
