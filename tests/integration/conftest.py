"""Fixtures: a real `carpool serve` on a free port with the default model.

CARPOOL_BIN names the binary (scripts/test sets it); otherwise build/carpool.
"""
import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import requests

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def carpool_bin():
    return os.environ.get("CARPOOL_BIN", os.path.join(REPO, "build", "carpool"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running `carpool serve` process."""

    def __init__(self, *extra_args, api_key=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        args = [carpool_bin(), "serve", "--port", str(self.port)] + list(extra_args)
        if api_key:
            args += ["--api-key", api_key]
        self.log = tempfile.NamedTemporaryFile("w+", prefix=f"carpool-serve-{self.port}-",
                                               suffix=".log", delete=False)
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready()

    def log_text(self):
        with open(self.log.name) as f:
            return f.read()

    def headers(self):
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def wait_ready(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"carpool serve exited with {self.proc.returncode}: "
                                   + self.log_text())
            try:
                r = requests.get(self.url + "/ready", headers=self.headers(), timeout=1)
                if r.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("carpool serve did not become ready")

    def get(self, path, **kw):
        kw.setdefault("headers", self.headers())
        return requests.get(self.url + path, timeout=60, **kw)

    def post(self, path, **kw):
        kw.setdefault("headers", self.headers())
        return requests.post(self.url + path, timeout=120, **kw)

    def engine_stats(self):
        return self.get("/v1/internal/engine").json()

    def stop(self, timeout=60):
        """SIGTERM; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def server():
    s = Server()
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="session")
def client(server):
    import openai

    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0,
                         timeout=120)
