"""HTTP as clients other than the openai SDK use it: HEAD, OPTIONS and CORS preflights from
browsers, percent-escaped paths (the SDK escapes a model id's '/'), Allow on 405."""
import socket
import subprocess

import openai
import pytest
import requests

from conftest import Server, carpool_bin


def read_answers(sock, n):
    """The raw bytes of n answers to requests with no body in their answers but the first."""
    data = b""
    while data.count(b"HTTP/1.1 ") < n:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


def test_head_answers_the_get_head_without_a_body(server):
    # A HEAD then a GET on one connection: the GET's answer must come right after the HEAD's
    # head (a body there would be read as the next status line).
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"HEAD /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        data = read_answers(s, 2)
        while not data.endswith(b"}"):  # the GET's JSON body
            data += s.recv(65536)
    head, rest = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200")
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
                 .split(b":")[1])
    assert length == len(requests.get(server.url + "/v1/models").content)
    assert rest.startswith(b"HTTP/1.1 200"), rest[:80]
    with requests.Session() as c:  # one keep-alive connection for all of these
        for path in ("/health", "/ready", "/v1/models", "/metrics", "/"):
            r = c.head(server.url + path)
            assert r.status_code == 200 and r.content == b"", path
            assert c.get(server.url + "/health").json() is not None
        r = c.head(server.url + "/v1/completions")
        assert r.status_code == 405 and r.content == b""
        assert r.headers["allow"] == "POST, OPTIONS"
        assert c.head(server.url + "/no/such/route").status_code == 404
        assert c.get(server.url + "/health").status_code == 200


def test_a_trailing_slash_is_not_part_of_the_route(server):
    assert requests.get(server.url + "/v1/models/").json()["data"][0]["id"]
    assert requests.get(server.url + "/health/").status_code == 200
    assert requests.get(server.url + "/v1/models/smollm2/").json()["id"] == "smollm2"
    assert requests.get(server.url + "//v1/models").status_code == 404


def test_405_names_the_allowed_methods(server):
    r = requests.get(server.url + "/v1/chat/completions")
    assert r.status_code == 405 and r.headers["Allow"] == "POST, OPTIONS"
    r = requests.delete(server.url + "/v1/models")
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD, OPTIONS"


def test_percent_escaped_paths_are_decoded():
    s = Server("--served-model-name", "HuggingFaceTB/SmolLM2-135M-Instruct")
    try:
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="unused")
        # openai 2.x sends /v1/models/HuggingFaceTB%2FSmolLM2-135M-Instruct
        m = client.models.retrieve("HuggingFaceTB/SmolLM2-135M-Instruct")
        assert m.id == "HuggingFaceTB/SmolLM2-135M-Instruct"
        assert requests.get(s.url + "/v1/%6Dodels").status_code == 200
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("HuggingFaceTB/other")
        assert requests.get(s.url + "/v1/models/%zz").status_code == 404
        assert requests.get(s.url + "/v1/models/%FF%FE").status_code == 404  # not UTF-8: 404
        assert s.get("/health").status_code == 200
    finally:
        s.stop()


def preflight(url, path, origin="http://localhost:3000"):
    return requests.options(url + path, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})


def test_cors_preflight_and_origin_header_with_an_api_key():
    s = Server(api_key="sekret")
    try:
        # The preflight carries no key; it is answered before the key is checked.
        r = preflight(s.url, "/v1/chat/completions")
        assert r.status_code == 204, r.text
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in r.headers["Access-Control-Allow-Methods"]
        assert r.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
        assert "content-length" not in {k.lower() for k in r.headers}
        # A preflight is answered whatever the path or method, so that the request itself gets
        # a readable 404/405 (a failed preflight is an opaque network error in the page).
        r = preflight(s.url, "/chat/completions")
        assert r.status_code == 204 and r.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in r.headers["Access-Control-Allow-Methods"]
        r = requests.options(s.url + "/v1/models", headers={
            "Origin": "http://localhost:3000", "Access-Control-Request-Method": "DELETE"})
        assert r.status_code == 204 and "DELETE" in r.headers["Access-Control-Allow-Methods"]
        r = requests.post(s.url + "/chat/completions", headers={"Origin": "http://localhost:3000",
                                                                "Authorization": "Bearer sekret"})
        assert r.status_code == 404 and r.headers["Access-Control-Allow-Origin"] == "*"
        assert requests.options(s.url + "/no/such/route").status_code == 404  # not a preflight
        # The actual request then carries the key, and its answer names the origin.
        r = requests.post(s.url + "/v1/completions",
                          headers={"Origin": "http://localhost:3000",
                                   "Authorization": "Bearer sekret"},
                          json={"model": "smollm2", "prompt": "Hi", "max_tokens": 2})
        assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "*"
        assert "Retry-After" in r.headers["Access-Control-Expose-Headers"]
        r = requests.post(s.url + "/v1/completions", headers={"Origin": "http://x.example"},
                          json={"model": "smollm2", "prompt": "Hi", "max_tokens": 2})
        assert r.status_code == 401 and r.headers["Access-Control-Allow-Origin"] == "*"
        # Streams too.
        with requests.post(s.url + "/v1/completions", stream=True,
                           headers={"Origin": "http://localhost:3000",
                                    "Authorization": "Bearer sekret"},
                           json={"model": "smollm2", "prompt": "Hi", "max_tokens": 2,
                                 "stream": True}) as r:
            assert r.headers["Access-Control-Allow-Origin"] == "*"
            assert b"[DONE]" in r.content
        # With any origin allowed, every answer carries the header (one answer for every cache).
        r = requests.get(s.url + "/health")
        assert r.headers["Access-Control-Allow-Origin"] == "*" and "Vary" not in r.headers
        assert "X-Request-Id" in r.headers["Access-Control-Expose-Headers"]
    finally:
        s.stop()


def test_allowed_origins_restricts_and_none_turns_cors_off():
    s = Server("--allowed-origins", "http://localhost:3000, https://app.example/")
    try:
        r = preflight(s.url, "/v1/completions")
        assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
        assert "Origin" in r.headers["Vary"]
        r = preflight(s.url, "/v1/completions", origin="https://app.example")
        assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
        r = preflight(s.url, "/v1/completions", origin="http://evil.example")
        assert "Access-Control-Allow-Origin" not in r.headers  # the browser refuses
        # A request that needs no preflight (text/plain) from another origin: refused before it
        # runs, since CORS alone would only keep the page from reading the answer.
        before = requests.get(s.url + "/v1/internal/engine").json()["prompt_tokens"]
        body = '{"model": "smollm2", "prompt": "Hi", "max_tokens": 2}'
        r = requests.post(s.url + "/v1/completions", data=body,
                          headers={"Origin": "http://evil.example", "Content-Type": "text/plain"})
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
        assert requests.get(s.url + "/v1/internal/engine").json()["prompt_tokens"] == before
        # The allowed origins may, and clients that send no Origin (the dashboard's own fetches
        # are same-origin GETs, which carry none). An Origin naming the Host it was sent to is
        # no exception: a DNS-rebinding page would send exactly that.
        r = requests.post(s.url + "/v1/completions", data=body,
                          headers={"Origin": "http://localhost:3000"})
        assert r.status_code == 200, r.text
        assert requests.post(s.url + "/v1/completions", data=body).status_code == 200
        r = requests.post(s.url + "/v1/completions", data=body,
                          headers={"Origin": "http://evil.example:%d" % s.port,
                                   "Host": "evil.example:%d" % s.port})
        assert r.status_code == 403
        # The answer depends on the Origin, with it or without: caches must keep them apart.
        assert "Origin" in requests.get(s.url + "/v1/models").headers.get("Vary", "")
        # The server's own refusals carry the header too (a browser could not read a 413).
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                         b"Origin: http://localhost:3000\r\nContent-Length: 100000000\r\n\r\n")
            head = sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 413")
        assert b"Access-Control-Allow-Origin: http://localhost:3000\r\n" in head
    finally:
        s.stop()
    s = Server("--allowed-origins", "none")
    try:
        r = preflight(s.url, "/v1/completions")
        assert r.status_code == 204 and "Access-Control-Allow-Origin" not in r.headers
        assert "Origin" in r.headers["Vary"]  # the 403 below depends on it
        r = requests.post(s.url + "/v1/completions", headers={"Origin": "http://localhost:3000"},
                          json={"model": "smollm2", "prompt": "Hi", "max_tokens": 2})
        assert r.status_code == 403
        assert requests.post(s.url + "/v1/completions", json={"model": "smollm2", "prompt": "Hi",
                                                               "max_tokens": 2}).status_code == 200
    finally:
        s.stop()


@pytest.mark.parametrize("value", ["localhost:3000", "http://", "", "http://a b"])
def test_bad_allowed_origins_is_refused(value):
    p = subprocess.run([carpool_bin(), "serve", "--port", "0", "--allowed-origins", value],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert ("is not an origin" in p.stderr or "empty value" in p.stderr) and \
        "--allowed-origins" in p.stderr, p.stderr


def test_compressed_request_body_is_a_415(server):
    import gzip
    body = gzip.compress(b'{"model": "smollm2", "prompt": "Hi", "max_tokens": 2}')
    r = requests.post(server.url + "/v1/completions", data=body,
                      headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 415, r.text
    assert "Content-Encoding 'gzip'" in r.json()["error"]["message"]
    r = requests.post(server.url + "/v1/completions",
                      json={"model": "smollm2", "prompt": "Hi", "max_tokens": 2},
                      headers={"Content-Encoding": "identity"})
    assert r.status_code == 200


def recv_all(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_http10_streams_without_chunks_and_closes(server):
    # HTTP/1.0 knows no chunked bodies (RFC 9112 6.1): the stream's bytes as they are, ended by
    # the close.
    body = b'{"prompt": "Hi", "max_tokens": 3, "stream": true}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"POST /v1/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        data = recv_all(s)
    head, rest = data.split(b"\r\n\r\n", 1)
    assert b"transfer-encoding" not in head.lower(), head
    assert b"connection: close" in head.lower(), head
    assert rest.startswith(b"data: {"), rest[:40]
    assert rest.endswith(b"data: [DONE]\n\n"), rest[-40:]


def test_http10_keep_alive_is_answered_as_asked(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        data = b""
        while not data.endswith(b"}"):
            data += s.recv(65536)
        assert b"connection: keep-alive" in data.lower(), data
        s.sendall(b"GET /health HTTP/1.0\r\n\r\n")  # the same connection, then closed
        data = recv_all(s)
    assert data.startswith(b"HTTP/1.1 200") and b"connection: close" in data.lower(), data


def test_absolute_form_targets_are_routed_by_their_path(server):
    # As proxies send them; servers must accept them (RFC 9112 3.2.2).
    body = b'{"prompt": "Hi", "max_tokens": 2}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"POST http://localhost:" + str(server.port).encode() +
                  b"/v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Content-Type: application/json\r\nContent-Length: " +
                  str(len(body)).encode() + b"\r\n\r\n" + body)
        data = recv_all(s)
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert b'"text_completion"' in data
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET HTTP://example.com?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = recv_all(s)
    assert data.startswith(b"HTTP/1.1 200"), data[:200]  # "/": the dashboard page
