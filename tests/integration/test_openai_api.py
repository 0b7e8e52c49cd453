"""The OpenAI routes through the openai Python SDK and raw HTTP."""
import json
import subprocess

import openai
import pytest

MODEL = "smollm2"
PROMPT = "The capital of France is"
MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Name three colors."}]


def test_health_ready_models(server, client):
    assert server.get("/health").status_code == 200
    assert server.get("/ready").json()["status"] == "ready"
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("gpt-4o")
    assert e.value.body["code"] == "model_not_found"


def test_completion(client):
    r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0)
    assert r.object == "text_completion"
    assert len(r.choices) == 1
    assert r.choices[0].finish_reason in ("length", "stop")
    assert "Paris" in r.choices[0].text
    assert r.usage.prompt_tokens == 5
    assert 1 <= r.usage.completion_tokens <= 8
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_completion_length_and_token_prompt(server, client):
    toks = server.post("/tokenize", json={"prompt": PROMPT}).json()["tokens"]
    a = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, temperature=0,
                                  extra_body={"ignore_eos": True})
    b = client.completions.create(model=MODEL, prompt=toks, max_tokens=6, temperature=0,
                                  extra_body={"ignore_eos": True})
    assert a.choices[0].finish_reason == "length"
    assert a.usage.completion_tokens == 6
    assert a.choices[0].text == b.choices[0].text


def test_list_of_prompts_and_n(client):
    r = client.completions.create(model=MODEL, prompt=[PROMPT, "One, two, three,"], n=2,
                                  max_tokens=4, temperature=0)
    assert sorted(c.index for c in r.choices) == [0, 1, 2, 3]
    by_index = {c.index: c.text for c in r.choices}
    assert by_index[0] == by_index[1]  # greedy: both choices of a prompt agree
    assert by_index[2] == by_index[3]
    assert by_index[0] != by_index[2]


def test_chat(client):
    r = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=24,
                                       temperature=0)
    assert r.object == "chat.completion"
    msg = r.choices[0].message
    assert msg.role == "assistant"
    assert msg.content
    assert r.usage.completion_tokens <= 24


def test_chat_text_parts_equal_string_content(client):
    parts = [{"role": "user", "content": [{"type": "text", "text": "Name three "},
                                          {"type": "text", "text": "colors."}]}]
    a = client.chat.completions.create(model=MODEL, messages=parts, max_tokens=8, temperature=0)
    b = client.chat.completions.create(model=MODEL, messages=[MESSAGES[1]], max_tokens=8,
                                       temperature=0)
    assert a.choices[0].message.content == b.choices[0].message.content


def test_stream_equals_non_stream_chat(client):
    kw = dict(model=MODEL, messages=MESSAGES, max_tokens=20, temperature=0)
    full = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(stream=True,
                                                 stream_options={"include_usage": True}, **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [full.choices[0].finish_reason]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens


def test_stream_equals_non_stream_completion(client):
    kw = dict(model=MODEL, prompt="Once upon a time", max_tokens=16, temperature=0)
    full = client.completions.create(**kw)
    text = "".join(c.choices[0].text for c in client.completions.create(stream=True, **kw))
    assert text == full.choices[0].text


def test_seeded_sampling_is_reproducible(client):
    kw = dict(model=MODEL, prompt="My favourite animal is", max_tokens=12, temperature=1.0,
              top_p=0.95, extra_body={"top_k": 50, "ignore_eos": True})
    a = client.completions.create(seed=1234, **kw).choices[0].text
    b = client.completions.create(seed=1234, **kw).choices[0].text
    others = {client.completions.create(seed=s, **kw).choices[0].text for s in (1, 2, 3)}
    assert a == b
    assert len(others | {a}) > 1  # different seeds sample differently


def test_tiny_temperatures_are_greedy(client):
    # 1 / temperature once overflowed the logits (an empty answer, "<|endoftext|>" drawn); below
    # 1e-5 a request is greedy, as with vLLM.
    ask = dict(model=MODEL, prompt="The capital of France is", max_tokens=8,
               extra_body={"ignore_eos": True})
    greedy = client.completions.create(temperature=0, **ask).choices[0].text
    for t in (1e-39, 1e-20, 5e-6):
        assert client.completions.create(temperature=t, seed=1, **ask).choices[0].text == greedy


def test_stop_string_is_cut(client):
    kw = dict(model=MODEL, prompt="Count: 1, 2, 3, 4, 5, 6,", max_tokens=30, temperature=0)
    free = client.completions.create(**kw).choices[0].text
    assert " 9" in free, free
    r = client.completions.create(stop=[" 9"], **kw)
    text = r.choices[0].text
    assert r.choices[0].finish_reason == "stop"
    assert text == free[:free.index(" 9")]
    streamed = "".join(c.choices[0].text
                       for c in client.completions.create(stop=[" 9"], stream=True, **kw))
    assert streamed == text


def test_logprobs(client):
    r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=3, temperature=0,
                                  logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 3
    for chosen, lpv, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert lpv <= 0
        assert len(top) == 2
        assert max(top.values()) == pytest.approx(lpv, abs=1e-4)  # greedy: the most likely
    assert "".join(lp.tokens) == r.choices[0].text
    c = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=3,
                                       temperature=0, logprobs=True, top_logprobs=3)
    content = c.choices[0].logprobs.content
    assert len(content) == c.usage.completion_tokens
    assert all(len(t.top_logprobs) == 3 for t in content)


def test_sampled_token_is_in_its_top_logprobs(client):
    # OpenAI: "the logprob of the sampled token, so there may be up to logprobs+1 elements".
    for k in (0, 1):
        r = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=6,
                                      temperature=1.5, seed=3, logprobs=k)
        lp = r.choices[0].logprobs
        assert len(lp.tokens) == 6
        for chosen, lpv, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
            assert top[chosen] == pytest.approx(lpv)
            assert k <= len(top) <= k + 1


def test_chat_logprobs_rebuild_the_answer(client):
    # The end-of-generation token is not in the answer's text, so not among its tokens.
    for q in ("What is the capital of France? Answer in one word.", "Say hi."):
        r = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": q}], max_tokens=64,
            temperature=0, logprobs=True)
        ch = r.choices[0]
        assert ch.finish_reason == "stop"
        content = ch.logprobs.content
        assert bytes(b for t in content for b in t.bytes).decode() == ch.message.content
        assert len(content) == r.usage.completion_tokens - 1  # usage counts the end token


def test_echo(client):
    r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=3, temperature=0,
                                  echo=True)
    assert r.choices[0].text.startswith(PROMPT)


def test_tokenize_detokenize(server):
    t = server.post("/tokenize", json={"prompt": "Hello world"}).json()
    assert t["count"] == len(t["tokens"]) > 0
    d = server.post("/detokenize", json={"tokens": t["tokens"]}).json()
    assert d["prompt"] == "Hello world"
    chat = server.post("/tokenize", json={"messages": MESSAGES}).json()
    r = server.post("/v1/chat/completions",
                    json={"messages": MESSAGES, "max_tokens": 1}).json()
    assert r["usage"]["prompt_tokens"] == chat["count"]


def test_curl_raw_sse(server):
    body = json.dumps({"model": MODEL, "prompt": PROMPT, "max_tokens": 4, "temperature": 0,
                       "stream": True, "stream_options": {"include_usage": True}})
    out = subprocess.run(["curl", "-sN", "-H", "Content-Type: application/json", "-d", body,
                          server.url + "/v1/completions"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    events = [e for e in out.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    usage = json.loads(events[-2][len("data: "):])["usage"]
    assert usage["completion_tokens"] == 4 or usage["completion_tokens"] < 4
    texts = [json.loads(e[6:])["choices"][0]["text"] for e in events[:-2]]
    full = server.post("/v1/completions", json={"model": MODEL, "prompt": PROMPT,
                                                "max_tokens": 4, "temperature": 0}).json()
    assert "".join(texts) == full["choices"][0]["text"]


def test_logit_bias_bans_and_forces_tokens(server, client):
    kw = dict(model=MODEL, prompt=PROMPT, max_tokens=3, temperature=0, logprobs=0)
    plain = client.completions.create(**kw)
    first = server.post("/tokenize", json={"prompt": plain.choices[0].logprobs.tokens[0]}).json()
    banned = first["tokens"][0]
    r = client.completions.create(logit_bias={str(banned): -100}, **kw)
    ids = server.post("/tokenize", json={"prompt": r.choices[0].text}).json()["tokens"]
    assert banned not in ids
    forced = server.post("/tokenize", json={"prompt": " banana"}).json()["tokens"]
    assert len(forced) == 1
    r = client.completions.create(logit_bias={str(forced[0]): 100}, **kw)
    assert r.choices[0].text == " banana" * 3
    # Sampled requests take the bias too (host sampling).
    r = client.completions.create(logit_bias={str(forced[0]): 100}, **{**kw, "temperature": 1.0})
    assert r.choices[0].text == " banana" * 3


def test_vllm_stop_token_ids_and_include_stop_str(server, client):
    """vLLM's stop_token_ids end the answer (the token is not in the text, as a stop string),
    ignore_eos leaves them in force, and include_stop_str_in_output keeps a matched stop."""
    prompt = "The capital of France is"
    full = client.completions.create(model=MODEL, prompt=prompt, max_tokens=12, temperature=0,
                                     logprobs=0, extra_body={"ignore_eos": True})
    tokens = full.choices[0].logprobs.tokens
    ids = server.post("/tokenize", json={"prompt": full.choices[0].text,
                                         "add_special_tokens": False}).json()["tokens"]
    assert len(ids) == len(tokens) >= 8
    k = 5
    stop_id = ids[k]
    assert stop_id not in ids[:k]
    r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=12, temperature=0,
                                  extra_body={"ignore_eos": True, "stop_token_ids": [stop_id]})
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text == "".join(tokens[:k])
    assert r.usage.completion_tokens == k + 1
    r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=12, temperature=0,
                                  extra_body={"stop_token_ids": [stop_id], "ignore_eos": True,
                                              "include_stop_str_in_output": True})
    assert r.choices[0].text == "".join(tokens[:k + 1])
    stop = tokens[3].strip() or tokens[4].strip()
    r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=12, temperature=0,
                                  stop=[stop], extra_body={"ignore_eos": True,
                                                           "include_stop_str_in_output": True})
    assert r.choices[0].finish_reason == "stop" and r.choices[0].text.endswith(stop)
    assert full.choices[0].text.startswith(r.choices[0].text)


def test_vllm_guided_json_and_refused_extensions(client):
    schema = {"type": "object", "properties": {"city": {"type": "string"},
                                               "population": {"type": "integer"}}}
    r = client.chat.completions.create(
        model=MODEL, max_tokens=60, temperature=0,
        messages=[{"role": "user", "content": "Describe Paris as JSON."}],
        extra_body={"guided_json": schema})
    obj = json.loads(r.choices[0].message.content)
    assert list(obj) == ["city", "population"] and isinstance(obj["population"], int)
    for extra in ({"guided_choice": ["yes", "no"]}, {"min_tokens": 5000},
                  {"use_beam_search": True}, {"prompt_logprobs": 1}):
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model=MODEL, max_tokens=4,
                                           messages=[{"role": "user", "content": "Hi"}],
                                           extra_body=extra)
        assert e.value.body["param"] == list(extra)[0]


def test_chat_add_generation_prompt_and_template_kwargs(server, client):
    msgs = [{"role": "user", "content": "Hi"}]
    on = server.post("/tokenize", json={"messages": msgs}).json()["count"]
    off = server.post("/tokenize", json={"messages": msgs,
                                         "add_generation_prompt": False}).json()["count"]
    assert off < on
    r = client.chat.completions.create(model=MODEL, max_tokens=2, messages=msgs,
                                       extra_body={"add_generation_prompt": False,
                                                   "chat_template_kwargs": {"x": 1}})
    assert r.usage.prompt_tokens == off
    r = client.chat.completions.create(model=MODEL, max_tokens=2, messages=msgs,
                                       extra_body={"chat_template_kwargs": {"x": 1}})
    assert r.usage.prompt_tokens == on
    assert server.post("/tokenize", json={"messages": msgs, "chat_template_kwargs": {"x": 1}}
                       ).json()["count"] == on
    r = server.post("/tokenize", json={"messages": msgs, "chat_template_kwargs": 3})
    assert r.status_code == 400 and r.json()["error"]["param"] == "chat_template_kwargs"


def test_response_shapes_follow_openai(server, client):
    """Fields OpenAI's schema requires or clients read: usage.prompt_tokens_details.cached_tokens
    (the prefix cache's hits), the chat message's nullable refusal, x-request-id (the SDK's
    request_id), OpenAI's error type for a wrong model."""
    prompt = "A long shared preamble that the prefix cache can keep. " * 8
    first = client.completions.create(model=MODEL, prompt=prompt + "First?", max_tokens=2,
                                      temperature=0)
    again = client.completions.with_raw_response.create(model=MODEL, prompt=prompt + "Second?",
                                                        max_tokens=2, temperature=0)
    assert again.headers["x-request-id"].startswith("cmpl-")
    again = again.parse()
    n_prompt = again.usage.prompt_tokens
    cached = again.usage.prompt_tokens_details.cached_tokens
    assert first.usage.prompt_tokens_details.cached_tokens == 0  # a prompt never seen
    assert 16 <= cached < n_prompt and cached % 16 == 0, (cached, n_prompt)  # whole blocks
    stream = client.completions.create(model=MODEL, prompt=prompt + "Third?", max_tokens=2,
                                       temperature=0, stream=True,
                                       stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == cached
    chat = client.chat.completions.with_raw_response.create(
        model=MODEL, max_tokens=2, logprobs=True, messages=[{"role": "user", "content": "Hi"}])
    assert chat.headers["x-request-id"].startswith("chatcmpl-")
    body = json.loads(chat.text)
    assert body["choices"][0]["message"]["refusal"] is None
    assert body["choices"][0]["logprobs"]["refusal"] is None
    r = server.post("/v1/chat/completions", json={"model": "gpt-9", "messages": [
        {"role": "user", "content": "Hi"}]})
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["code"] == "model_not_found"


def test_tokenize_returns_token_strings_when_asked(server):
    # The vocabulary's own strings (as vLLM's convert_ids_to_tokens): lossless where a character
    # is split over tokens, byte-level symbols and all.
    r = server.post("/tokenize", json={"prompt": "Hello world \U0001F389", "add_special_tokens": False,
                                       "return_token_strs": True}).json()
    assert len(r["token_strs"]) == r["count"] > 3
    assert r["token_strs"][:2] == ["Hello", "\u0120world"]
    assert not any("\ufffd" in t for t in r["token_strs"])
    assert "token_strs" not in server.post("/tokenize", json={"prompt": "Hello"}).json()


def test_vllm_min_tokens_holds_off_the_end(client):
    msgs = [{"role": "user", "content": "Say hi."}]
    short = client.chat.completions.create(model=MODEL, max_tokens=64, temperature=0,
                                           messages=msgs)
    n = short.usage.completion_tokens
    assert short.choices[0].finish_reason == "stop" and n < 40, short
    held = client.chat.completions.create(model=MODEL, max_tokens=64, temperature=0,
                                          messages=msgs, extra_body={"min_tokens": n + 8})
    assert held.usage.completion_tokens >= n + 8
    assert held.choices[0].message.content.startswith(short.choices[0].message.content)
