"""Prompt logprobs on /v1/completions (echo + logprobs), against Hugging Face transformers.

The fixture (scripts/golden/make_prompt_logprob_fixtures.py) holds, for a few prompts of the
default model, transformers' log-probability of every prompt token after the first and the top 5
at each position (float32 forward on the same GGUF). A `--cpu-exact` server (f32 arithmetic) must
match it tightly; the default server (8-bit activations) within a looser bound.
"""
import json
import os

import pytest
import requests

from conftest import REPO, Server

MODEL = "smollm2"
FIXTURE = os.path.join(REPO, "tests", "golden", "model", "smollm2", "prompt_logprobs.json")
# |ours - transformers| over the prompt logprobs and their top 5. Measured (2026-11-26, the
# fixture's 3 prompts, 33 scored tokens): exact at most 2.5e-5 (2.8e-5 with the top values);
# fast at most 0.28 (0.42 with the top values), 0.075 on average: 8-bit activation rounding.
EXACT_TOL = 1e-4
FAST_TOL = 0.75
FAST_MEAN_TOL = 0.15


@pytest.fixture(scope="module")
def golden():
    with open(FIXTURE) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def exact_server():
    s = Server("--cpu-exact")
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def exact_client(exact_server):
    import openai

    return openai.OpenAI(base_url=exact_server.url + "/v1", api_key="unused", max_retries=0,
                         timeout=120)


def piece(server, token_id):
    return server.post("/detokenize", json={"tokens": [token_id]}).json()["prompt"]


def check_prompt_part(lp, case, tol, k, diffs=None):
    """The first len(prompt) entries of a choice's logprobs against the fixture; returns the
    largest difference seen and appends each token's to `diffs`."""
    n = len(case["prompt_ids"])
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert lp.text_offset[0] == 0
    assert lp.text_offset[:n] == sorted(lp.text_offset[:n])
    worst = 0.0
    for p in range(1, n):
        want = case["token_logprobs"][p]
        got = lp.token_logprobs[p]
        worst = max(worst, abs(got - want))
        if diffs is not None:
            diffs.append(abs(got - want))
        assert got == pytest.approx(want, abs=tol), f"position {p}"
        # The top k plus the prompt token itself when it is not among them; a dict: two ids
        # with the same text collapse.
        assert lp.top_logprobs[p][lp.tokens[p]] == pytest.approx(got)
        top = sorted(lp.top_logprobs[p].values(), reverse=True)
        assert len(top) <= k + 1
        top = top[:k]
        for g, w in zip(top, case["top_logprobs"][p][:len(top)]):
            worst = max(worst, abs(g - w))
            assert g == pytest.approx(w, abs=tol), f"position {p} top"
    return worst


def test_max_tokens_zero_scores_each_prompt_exactly(exact_server, exact_client, golden):
    worst = 0.0
    for case in golden["cases"]:
        r = exact_client.completions.create(model=MODEL, prompt=case["prompt_ids"], echo=True,
                                            logprobs=5, max_tokens=0)
        c = r.choices[0]
        assert c.finish_reason == "length"
        assert c.text == case["prompt"]
        lp = c.logprobs
        assert len(lp.tokens) == len(lp.token_logprobs) == len(case["prompt_ids"])
        assert "".join(lp.tokens) == case["prompt"]
        worst = max(worst, check_prompt_part(lp, case, EXACT_TOL, 5))
        # Top-5 ids as transformers ranks them (where the dict kept them all).
        if len(lp.top_logprobs[1]) >= 5:
            best = max(lp.top_logprobs[1], key=lp.top_logprobs[1].get)
            assert best == piece(exact_server, case["top_ids"][1][0])
        assert r.usage.prompt_tokens == len(case["prompt_ids"])
        assert r.usage.completion_tokens == 0
    print(f"exact: max |prompt logprob - transformers| = {worst:.3g}")


def test_echo_logprobs_then_generated_tokens(exact_client, golden):
    case = golden["cases"][0]
    n = len(case["prompt_ids"])
    r = exact_client.completions.create(model=MODEL, prompt=case["prompt_ids"], echo=True,
                                        logprobs=2, max_tokens=4, temperature=0,
                                        extra_body={"ignore_eos": True})
    c = r.choices[0]
    lp = c.logprobs
    assert c.text.startswith(case["prompt"])
    assert r.usage.completion_tokens == 4
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == n + 4
    check_prompt_part(lp, case, EXACT_TOL, 2)
    # The generated part: offsets continue after the echoed text, greedy picks the top token.
    assert lp.text_offset[n] == len(case["prompt"])
    assert "".join(lp.tokens[n:]) == c.text[len(case["prompt"]):]
    for p in range(n, n + 4):
        assert lp.token_logprobs[p] == pytest.approx(max(lp.top_logprobs[p].values()), abs=1e-6)
    # The same request without echo generates the same tokens with the same logprobs.
    plain = exact_client.completions.create(model=MODEL, prompt=case["prompt_ids"], logprobs=2,
                                            max_tokens=4, temperature=0,
                                            extra_body={"ignore_eos": True})
    assert plain.choices[0].logprobs.token_logprobs == lp.token_logprobs[n:]


def test_many_prompts_and_n(exact_client, golden):
    cases = golden["cases"]
    r = exact_client.completions.create(model=MODEL, prompt=[c["prompt_ids"] for c in cases],
                                        echo=True, logprobs=1, max_tokens=2, n=2, temperature=0)
    assert sorted(c.index for c in r.choices) == list(range(2 * len(cases)))
    assert r.usage.prompt_tokens == sum(len(c["prompt_ids"]) for c in cases)
    for choice in r.choices:
        case = cases[choice.index // 2]
        n = len(case["prompt_ids"])
        check_prompt_part(choice.logprobs, case, EXACT_TOL, 1)
        assert len(choice.logprobs.tokens) == n + 2 or choice.finish_reason == "stop"


def test_stream_first_chunk_carries_the_prompt(exact_server, golden):
    case = golden["cases"][1]
    n = len(case["prompt_ids"])
    body = {"model": MODEL, "prompt": case["prompt_ids"], "echo": True, "logprobs": 3,
            "max_tokens": 3, "temperature": 0, "stream": True, "ignore_eos": True,
            "stream_options": {"include_usage": True}}
    with requests.post(exact_server.url + "/v1/completions", json=body, stream=True,
                       timeout=120) as resp:
        events = [line[len(b"data: "):] for line in resp.iter_lines() if line]
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    first = chunks[0]["choices"][0]
    assert first["text"] == case["prompt"]
    lp = first["logprobs"]
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert len(lp["tokens"]) == n
    for p in range(1, n):
        assert lp["token_logprobs"][p] == pytest.approx(case["token_logprobs"][p], abs=EXACT_TOL)
    generated = [c["choices"][0] for c in chunks[1:] if c["choices"]]
    assert sum(len(g["logprobs"]["tokens"]) for g in generated if g["logprobs"]) == 3
    assert generated[0]["logprobs"]["text_offset"][0] == len(case["prompt"])
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    # Streamed and whole answers agree.
    whole = exact_server.post("/v1/completions", json={**body, "stream": False,
                                                        "stream_options": None}).json()
    wl = whole["choices"][0]["logprobs"]
    assert wl["token_logprobs"][:n] == lp["token_logprobs"]
    assert whole["choices"][0]["text"] == "".join(
        c["choices"][0]["text"] for c in chunks if c["choices"])


def test_default_mode_is_close(server, client, golden):
    worst, diffs = 0.0, []
    for case in golden["cases"]:
        r = client.completions.create(model=MODEL, prompt=case["prompt_ids"], echo=True,
                                      logprobs=5, max_tokens=0)
        worst = max(worst, check_prompt_part(r.choices[0].logprobs, case, FAST_TOL, 5, diffs))
    mean = sum(diffs) / len(diffs)
    print(f"fast: max |prompt logprob - transformers| = {worst:.3g}, mean {mean:.3g}")
    assert mean <= FAST_MEAN_TOL


def test_text_prompt_and_prefix_cache(server, client, golden):
    case = golden["cases"][0]
    # A plain request first puts the prompt's blocks in the prefix cache; the scored request
    # must still compute every position.
    client.completions.create(model=MODEL, prompt=case["prompt"] * 3, max_tokens=1)
    a = client.completions.create(model=MODEL, prompt=case["prompt"] * 3, echo=True,
                                  logprobs=0, max_tokens=0)
    lp = a.choices[0].logprobs
    assert a.choices[0].text == case["prompt"] * 3
    assert lp.token_logprobs[0] is None
    assert all(v is not None and v <= 0 for v in lp.token_logprobs[1:])
    assert len(lp.tokens) == a.usage.prompt_tokens


@pytest.fixture(scope="module")
def short_server():
    # A short context, so that scoring a whole one stays quick on any machine (8,192 tokens of
    # the default model's context took over 120 s on an AVX2-only 2-core machine).
    s = Server("--max-model-len", "1024")
    yield s
    assert s.stop() == 0


def test_bad_requests(short_server):
    server = short_server
    r = server.post("/v1/completions", json={"prompt": "hi", "echo": True, "logprobs": 21})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "logprobs"
    r = server.post("/v1/completions", json={"prompt": "hi", "max_tokens": 0, "logprobs": 1})
    assert r.status_code == 400
    assert "echo" in r.json()["error"]["message"]
    # Scoring generates nothing, so a prompt of the whole context is scored; one token more is
    # refused up front, naming the context.
    n_ctx = server.get("/v1/models").json()["data"][0]["max_model_len"]
    r = server.post("/v1/completions", json={"prompt": [42] * (n_ctx + 1), "max_tokens": 0,
                                             "echo": True, "logprobs": 0})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "context_length_exceeded"
    assert f"{n_ctx + 1} in the prompt plus 0" in r.json()["error"]["message"]
    r = server.post("/v1/completions", json={"prompt": [42] * n_ctx, "max_tokens": 0,
                                             "echo": True, "logprobs": 0})
    assert r.status_code == 200, r.text
    lp = r.json()["choices"][0]["logprobs"]["token_logprobs"]
    assert len(lp) == n_ctx and lp[0] is None and all(v <= 0 for v in lp[1:])
    usage = r.json()["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == \
        (n_ctx, 0, n_ctx)
    # Generation still needs room for its tokens.
    r = server.post("/v1/completions", json={"prompt": [42] * n_ctx, "max_tokens": 1})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


def text_tokens_offsets(r, stream):
    """(text, tokens, text offsets) of choice 0 of a completion, whole or streamed."""
    chunks = [c.choices[0] for c in r if c.choices] if stream else [r.choices[0]]
    tokens, offsets = [], []
    for c in chunks:
        if c.logprobs:
            tokens += c.logprobs.tokens
            offsets += c.logprobs.text_offset
    return "".join(c.text for c in chunks), tokens, offsets


@pytest.mark.parametrize("stream", [False, True])
def test_text_offsets_count_characters(server, client, stream):
    """text_offset counts characters of the text (as OpenAI and vLLM do), not UTF-8 bytes: each
    listed token is found at its offset in the text, after accented and CJK characters too."""
    prompt = "Le café est très bon, 中文 aussi"
    r = client.completions.create(model=MODEL, prompt=prompt, echo=True, logprobs=0, max_tokens=6,
                                  temperature=0, stream=stream, extra_body={"ignore_eos": True})
    text, tokens, offsets = text_tokens_offsets(r, stream)
    assert text.startswith(prompt)
    assert offsets[0] == 0 and offsets == sorted(offsets)
    whole = [(t, o) for t, o in zip(tokens, offsets) if "\ufffd" not in t]
    assert len(whole) >= len(tokens) - 4  # at most the pieces of split CJK characters
    for t, o in whole:
        assert text[o:o + len(t)] == t, (t, o, text)
    # The first generated token starts right after the echoed prompt, counted in characters.
    assert len(prompt) in offsets


def test_streamed_text_offsets_equal_whole_ones_when_text_is_held_back(client):
    """A stop string's possible beginning is held back from the stream; the streamed tokens'
    offsets still count the listed tokens, as the whole answer's do."""
    prompt = "The three primary colors are"
    base = client.completions.create(model=MODEL, prompt=prompt, max_tokens=10, temperature=0,
                                     logprobs=0, extra_body={"ignore_eos": True})
    toks = base.choices[0].logprobs.tokens
    stop = toks[3] + toks[4] + "\u2603never"  # matches two tokens' text, then fails
    kw = dict(model=MODEL, prompt=prompt, max_tokens=10, temperature=0, logprobs=0, echo=True,
              stop=[stop], extra_body={"ignore_eos": True})
    whole = client.completions.create(**kw).choices[0].logprobs
    _, tokens, offsets = text_tokens_offsets(client.completions.create(stream=True, **kw), True)
    assert tokens == whole.tokens
    assert offsets == whole.text_offset


@pytest.mark.parametrize("stream", [False, True])
def test_text_offsets_skip_control_tokens_left_out_of_the_text(client, stream):
    """With skip_special_tokens (the default) a control token generated mid-answer (ignore_eos
    runs past <|im_end|>) is not in the text, so it adds nothing to the offsets after it."""
    prompt = "<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n"
    r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=48, temperature=0,
                                  logprobs=0, stream=stream, extra_body={"ignore_eos": True})
    text, tokens, offsets = text_tokens_offsets(r, stream)
    special = [i for i, t in enumerate(tokens) if t.startswith("<|") and t.endswith("|>")]
    assert special and special[0] < len(tokens) - 2, tokens  # a control token mid-answer
    for t, o in zip(tokens, offsets):
        if not (t.startswith("<|") and t.endswith("|>")) and "\ufffd" not in t:
            assert text[o:o + len(t)] == t, (t, o, text)
