"""Bad input and limits: OpenAI error objects naming the field, 4xx codes, raw sockets."""
import socket

import openai
import pytest

MODEL = "smollm2"
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def error_of(r, status):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


def test_malformed_json(server):
    r = server.post("/v1/completions", data=b'{"prompt": "x", ',
                    headers={"Content-Type": "application/json"})
    assert "malformed JSON" in error_of(r, 400)["message"]


@pytest.mark.parametrize("route,body", [
    ("/v1/completions", b'{"model": "smollm2", "prompt": "hi", "temperature": 1e400}'),
    ("/v1/chat/completions", b'{"messages": [], "temperature": -1e999}'),
    ("/tokenize", b'{"prompt": "hi", "unknown": 1e400}'),
    ("/v1/completions", b"1e400"),
])
def test_number_beyond_double_is_a_400_and_the_server_lives(server, route, body):
    err = error_of(server.post(route, data=body, headers={"Content-Type": "application/json"}), 400)
    assert "range" in err["message"]
    assert server.get("/health").status_code == 200


def test_non_object_body_and_deep_nesting(server):
    assert error_of(server.post("/v1/completions", data=b"[1, 2]"), 400)
    deep = b'{"prompt": ' + b"[" * 100000 + b"]" * 100000 + b"}"
    assert "nests deeper" in error_of(server.post("/v1/completions", data=deep), 400)["message"]


@pytest.mark.parametrize("field,value", [
    ("max_tokens", "ten"), ("max_tokens", 0), ("max_tokens", 1.5), ("temperature", 3),
    ("temperature", "hot"), ("top_p", 0), ("top_p", 1.5), ("top_k", -2), ("min_p", 2),
    ("presence_penalty", 5), ("frequency_penalty", -3), ("repetition_penalty", 0),
    ("seed", -5), ("n", 0), ("n", 1000), ("stop", 5), ("stop", [""]), ("logprobs", 99),
    ("stream", "yes"), ("echo", 1), ("model", 7), ("logit_bias", [1]),
    ("logit_bias", {"x": 1}), ("logit_bias", {"-1": 1}), ("logit_bias", {"99999999": 1}),
    ("logit_bias", {"5": 101}), ("logit_bias", {"5": "big"}), ("top_p", "x"),
    ("suffix", " world"), ("suffix", 5), ("best_of", 3), ("best_of", "2"),
])
def test_bad_field_names_the_field(server, field, value):
    err = error_of(server.post("/v1/completions",
                               json={"prompt": "hello", "max_tokens": 2, field: value}), 400)
    assert err["param"] == field
    assert field in err["message"]


def test_top_p_range_is_stated_once(server):
    for v in (0, 2, -1):
        err = error_of(server.post("/v1/completions", json={"prompt": "hi", "top_p": v}), 400)
        assert "top_p must be in (0, 1]" in err["message"]


def test_no_op_suffix_and_best_of_are_accepted(server):
    for extra in ({"suffix": ""}, {"suffix": None}, {"best_of": 1}, {"best_of": 2, "n": 2}):
        body = {"model": "smollm2", "prompt": "hello", "max_tokens": 2, **extra}
        assert server.post("/v1/completions", json=body).status_code == 200, extra


@pytest.mark.parametrize("body,param", [
    ({}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user"}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, "top_logprobs"),
    ({"messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": True}},
     "stream_options"),
    # tool_choice auto (the default) with a template that shows no tools (test_tool_calls.py)
    ({"messages": [{"role": "user", "content": "x"}], "tools": [TOOL]}, "tool_choice"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [TOOL], "tool_choice": "auto"},
     "tool_choice"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [], "tool_choice": "required"},
     "tool_choice"),
    ({"messages": [{"role": "user", "content": "x"}], "functions": [TOOL["function"]]},
     "functions"),
])
def test_bad_chat_requests(server, body, param):
    assert error_of(server.post("/v1/chat/completions", json=body), 400)["param"] == param


def test_tools_with_tool_choice_none_answer_text(client):
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=4, tools=[TOOL], tool_choice="none")
    assert r.choices[0].message.content


def test_bad_prompts(server):
    for prompt in (None, "", [], [[]], [1.5], [-1], [10**9], {"a": 1}):
        err = error_of(server.post("/v1/completions", json={"prompt": prompt}), 400)
        assert err["param"] == "prompt"


def test_context_overflow_gives_both_numbers(server, client):
    max_len = server.get("/v1/models").json()["data"][0]["max_model_len"]
    r = server.post("/v1/completions", json={"prompt": "Hello there", "max_tokens": max_len})
    err = error_of(r, 400)
    assert err["code"] == "context_length_exceeded"
    assert str(max_len) in err["message"] and f"plus {max_len}" in err["message"]
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL, prompt="Hello", max_tokens=max_len)


def test_unknown_model_route_and_method(server):
    err = error_of(server.post("/v1/completions", json={"model": "gpt-9", "prompt": "x"}), 404)
    assert err["code"] == "model_not_found"
    error_of(server.get("/v1/nothing"), 404)
    error_of(server.get("/v1/completions"), 405)


def test_oversized_body_413(server):
    big = b'{"prompt": "' + b"a" * (9 << 20) + b'"}'
    try:
        r = server.post("/v1/completions", data=big)
        assert r.status_code == 413
    except Exception:
        # The server may close before the client has sent everything; the raw test below checks
        # the status line.
        pass
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000000\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 413")


def test_oversized_headers_431(server):
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 431")


def test_garbage_request_line(server):
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"\x00\x01 nonsense \r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 400")
    assert server.get("/health").status_code == 200


def test_keep_alive_pipelined(server):
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
        data = b""
        while data.count(b"HTTP/1.1 200") < 3:
            chunk = s.recv(4096)
            assert chunk
            data += chunk


def test_expect_100_continue(server):
    body = b'{"model": "smollm2", "prompt": "Hello", "max_tokens": 2}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Expect: 100-continue\r\nContent-Length: " + str(len(body)).encode() +
                  b"\r\n\r\n")
        # The interim answer comes before the body is sent (clients otherwise wait ~1 s).
        assert s.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        assert data.startswith(b"HTTP/1.1 200")
    # Too large for the limit: 413 at once, no 100 (the body is never sent).
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 100000000\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 413")
