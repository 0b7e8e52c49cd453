"""Helpers for the metrics and dashboard tests: a Prometheus text parser and a load driver."""
import concurrent.futures as cf
import re
import threading
import time

import openai

_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text):
    """{(name, frozenset(labels.items())): value} for every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        assert m, f"unparsable sample line: {line!r}"
        labels = frozenset(_LABEL.findall(m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def sample(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def total(samples, name, **labels):
    """Sum over every sample of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


class Load:
    """Background completions through the openai SDK until stop(): `concurrency` clients."""

    PROMPTS = ["The capital of France is", "Once upon a time", "def fibonacci(n):",
               "The three primary colors are", "Water boils at"]

    def __init__(self, url, concurrency=4, max_tokens=16):
        self.client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0,
                                    timeout=120)
        self.stopping = threading.Event()
        self.done = 0
        self.tokens = 0
        self.lock = threading.Lock()
        self.pool = cf.ThreadPoolExecutor(concurrency)
        self.futures = [self.pool.submit(self._run, i, max_tokens) for i in range(concurrency)]

    def _run(self, worker, max_tokens):
        i = 0
        while not self.stopping.is_set():
            stream = i % 2 == 1
            prompt = self.PROMPTS[(worker + i) % len(self.PROMPTS)]
            if stream:
                n = 0
                for chunk in self.client.completions.create(
                        model="smollm2", prompt=prompt, max_tokens=max_tokens, stream=True,
                        temperature=0.8, seed=i, extra_body={"ignore_eos": True}):
                    n += sum(1 for c in chunk.choices if c.text is not None)
            else:
                r = self.client.completions.create(
                    model="smollm2", prompt=prompt, max_tokens=max_tokens, temperature=0.8,
                    seed=i, extra_body={"ignore_eos": True})
                n = r.usage.completion_tokens
            with self.lock:
                self.done += 1
                self.tokens += n
            i += 1

    def stop(self):
        self.stopping.set()
        for f in self.futures:
            f.result(timeout=120)
        self.pool.shutdown()
        return self.done


def wait_for(predicate, timeout, interval=0.25):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()
