"""--chat-template FILE: a Jinja chat template used instead of the model's own (a model without
one, or a different format), in `carpool serve` and `carpool generate --chat`; a missing or
broken file is refused before the server says it is listening."""
import os
import subprocess
import tempfile

import openai
import pytest

from conftest import Server, carpool_bin, free_port

# A format the default model's own template (ChatML) never writes.
TEMPLATE = ("{%- for m in messages %}<<{{ m.role | upper }}>> {{ m.content | trim }}\n"
            "{% endfor %}{% if add_generation_prompt %}<<ASSISTANT>>{% endif %}")
MESSAGES = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "  What is the capital of France?  "}]


def rendered(messages, add_generation_prompt=True):
    """TEMPLATE rendered by hand for these messages."""
    text = "".join(f"<<{m['role'].upper()}>> {m['content'].strip()}\n" for m in messages)
    return text + ("<<ASSISTANT>>" if add_generation_prompt else "")


@pytest.fixture(scope="module")
def template_file():
    with tempfile.NamedTemporaryFile("w", suffix=".jinja", delete=False) as f:
        f.write(TEMPLATE)
    yield f.name
    os.unlink(f.name)


def test_serve_renders_chats_with_the_given_template(template_file):
    server = Server("--chat-template", template_file)
    try:
        t = server.post("/tokenize", json={"messages": MESSAGES}).json()
        d = server.post("/detokenize", json={"tokens": t["tokens"]}).json()
        assert d["prompt"] == rendered(MESSAGES), d["prompt"]
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
        r = client.chat.completions.create(model="smollm2", messages=MESSAGES,
                                           max_tokens=4, temperature=0)
        assert r.usage.prompt_tokens == t["count"]
        assert r.choices[0].finish_reason in ("stop", "length")
    finally:
        assert server.stop() == 0


def test_serve_without_the_option_keeps_the_models_template():
    server = Server()
    try:
        t = server.post("/tokenize", json={"messages": MESSAGES}).json()
        d = server.post("/detokenize", json={"tokens": t["tokens"]}).json()
        assert "<|im_start|>system\nBe brief.<|im_end|>" in d["prompt"], d["prompt"]
        assert "<<" not in d["prompt"]
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("content,message", [
    (None, "--chat-template: no such file"),
    ("{% for %}", "does not parse"),
    ("{% if x %}never closed", "does not parse"),
])
def test_serve_refuses_a_missing_or_broken_template_before_listening(content, message):
    path = "/nonexistent/template.jinja"
    if content is not None:
        with tempfile.NamedTemporaryFile("w", suffix=".jinja", delete=False) as f:
            f.write(content)
        path = f.name
    try:
        p = subprocess.run([carpool_bin(), "serve", "--port", str(free_port()),
                            "--chat-template", path], capture_output=True, text=True, timeout=60)
    finally:
        if content is not None:
            os.unlink(path)
    assert p.returncode != 0
    assert message in p.stderr and "--chat-template" in p.stderr, p.stderr
    assert "listening" not in p.stderr
    assert "terminate called" not in p.stderr


def test_generate_chat_uses_the_given_template(template_file):
    p = subprocess.run([carpool_bin(), "generate", "--chat", "--chat-template", template_file,
                        "--prompt", "Hi there", "-n", "1", "--temperature", "0"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    line = [x for x in p.stderr.splitlines() if x.startswith("prompt:")]
    assert line, p.stderr
    # The prompt is the hand-rendered text, token for token.
    ids = subprocess.run([carpool_bin(), "tokenize", "--text",
                          rendered([{"role": "user", "content": "Hi there"}])],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert int(line[0].split()[1]) == len(ids.strip().strip("[]").split(",")), (line, ids)
    p = subprocess.run([carpool_bin(), "generate", "--prompt", "x", "--chat-template",
                        template_file], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "--chat-template needs --chat" in p.stderr, p.stderr
