"""Tool calls through the openai SDK: tool_choice "required" or a named function constrain the
answer to calls whose arguments follow the tools' schemas (any model); tool_choice "auto" reads
the calls the model writes in its template's format (here a Hermes-style template given with
--chat-template, with a few earlier calls in the conversation for the small model to follow);
streamed answers give the same calls and content; bad tools and histories get a 400 naming the
field."""
import json
import os
import tempfile

import openai
import pytest

from conftest import Server

MODEL = "smollm2"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city.",
    "parameters": {"type": "object",
                   "properties": {"city": {"type": "string"},
                                  "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}}
NO_ARGS = {"type": "function", "function": {"name": "ping"}}
TOOLS = [WEATHER, TIME, NO_ARGS]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]

# Hermes-style (as Qwen2.5's): the tools listed in a system message, calls written as
# <tool_call>{"name": ..., "arguments": ...}</tool_call>, results given back as <tool_response>.
HERMES = """{%- if tools %}<|im_start|>system
You can call these functions:
{% for t in tools %}{{ t | tojson }}
{% endfor %}To call one, answer <tool_call>{"name": ..., "arguments": ...}</tool_call>.<|im_end|>
{% endif %}
{%- for m in messages %}
{%- if m.role == 'assistant' and m.tool_calls %}<|im_start|>assistant
{% for c in m.tool_calls %}<tool_call>
{{ {"name": c.function.name, "arguments": c.function.arguments} | tojson }}
</tool_call>{% endfor %}<|im_end|>
{% elif m.role == 'tool' %}<|im_start|>user
<tool_response>
{{ m.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


def history(cities):
    """Earlier turns in which the assistant called get_weather, as a client sends them back."""
    msgs = []
    for i, city in enumerate(cities):
        msgs += [{"role": "user", "content": f"Weather in {city}?"},
                 {"role": "assistant", "content": None, "tool_calls": [
                     {"id": f"call_{i}", "type": "function",
                      "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}]},
                 {"role": "tool", "tool_call_id": f"call_{i}", "content": "18 C, cloudy"},
                 {"role": "assistant", "content": f"It is 18 C and cloudy in {city}."}]
    return msgs


def check_call(call):
    """A call of one of TOOLS whose arguments follow its schema."""
    assert call.type == "function" and call.id.startswith("call_"), call
    args = json.loads(call.function.arguments)
    assert isinstance(args, dict)
    if call.function.name == "get_weather":
        assert list(args) == ["city", "unit"], args  # every property, in the declared order
        assert isinstance(args["city"], str) and args["unit"] in ("celsius", "fahrenheit")
    elif call.function.name == "get_time":
        assert list(args) == ["tz"] and isinstance(args["tz"], str), args
    else:
        assert call.function.name == "ping" and args == {}, call
    return args


def streamed(client, **kw):
    """A streamed chat's content, its calls rebuilt from the deltas, and its finish reason."""
    content, calls, reason = "", {}, None
    for chunk in client.chat.completions.create(stream=True, **kw):
        if not chunk.choices:
            continue
        c = chunk.choices[0]
        content += c.delta.content or ""
        for d in c.delta.tool_calls or []:
            call = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
            call["id"] = d.id or call["id"]
            if d.function:
                call["name"] += d.function.name or ""
                call["arguments"] += d.function.arguments or ""
        reason = c.finish_reason or reason
    return content, [calls[k] for k in sorted(calls)], reason


def test_required_gives_calls_that_follow_the_schemas(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS,
                                       tool_choice="required", max_tokens=100, temperature=0)
    m = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls"
    assert m.content is None and m.tool_calls, m
    for call in m.tool_calls:
        check_call(call)
    content, calls, reason = streamed(client, model=MODEL, messages=ASK, tools=TOOLS,
                                      tool_choice="required", max_tokens=100, temperature=0)
    assert reason == "tool_calls" and content == ""
    assert [(c["name"], c["arguments"]) for c in calls] == \
        [(c.function.name, c.function.arguments) for c in m.tool_calls]
    assert all(c["id"].startswith("call_") for c in calls)


@pytest.mark.parametrize("seed", range(4))
def test_required_sampled_calls_follow_the_schemas(client, seed):
    r = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, seed=seed,
                                       tool_choice="required", max_tokens=200, temperature=1)
    assert r.choices[0].finish_reason in ("tool_calls", "length")
    if r.choices[0].finish_reason == "tool_calls":
        for call in r.choices[0].message.tool_calls:
            check_call(call)


def test_required_without_parallel_calls_gives_one(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS,
                                       tool_choice="required", parallel_tool_calls=False,
                                       max_tokens=100, temperature=0)
    assert len(r.choices[0].message.tool_calls) == 1
    check_call(r.choices[0].message.tool_calls[0])


def test_named_function_streams_its_arguments(client):
    choice = {"type": "function", "function": {"name": "get_time"}}
    r = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, tool_choice=choice,
                                       max_tokens=60, temperature=0)
    assert r.choices[0].finish_reason == "stop"  # as OpenAI's API for a named function
    (call,) = r.choices[0].message.tool_calls
    assert call.function.name == "get_time"
    check_call(call)
    content, calls, reason = streamed(client, model=MODEL, messages=ASK, tools=TOOLS,
                                      tool_choice=choice, max_tokens=60, temperature=0)
    assert (content, reason) == ("", "stop")
    assert len(calls) == 1 and calls[0]["name"] == "get_time"
    assert calls[0]["arguments"] == call.function.arguments


def test_auto_needs_a_template_with_a_tool_format(client):
    # The default model's template (ChatML) shows no tools: the model could never call one.
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, max_tokens=8)
    assert e.value.body["param"] == "tool_choice"
    assert "--chat-template" in e.value.body["message"]


def test_none_answers_with_text_and_shows_no_tools(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, tool_choice="none",
                                       max_tokens=8, temperature=0)
    plain = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=8, temperature=0)
    assert r.choices[0].message.tool_calls is None
    assert r.choices[0].message.content == plain.choices[0].message.content
    assert r.usage.prompt_tokens == plain.usage.prompt_tokens


def test_a_conversation_with_calls_and_results_is_rendered(client, server):
    msgs = history(["Oslo"]) + [{"role": "user", "content": "And in Rome?"}]
    r = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=8, temperature=0)
    assert r.choices[0].finish_reason in ("stop", "length")
    t = server.post("/tokenize", json={"messages": msgs}).json()
    assert t["count"] == r.usage.prompt_tokens
    text = server.post("/detokenize", json={"tokens": t["tokens"]}).json()["prompt"]
    assert "<|im_start|>tool\n18 C, cloudy<|im_end|>" in text, text


@pytest.mark.parametrize("extra,param", [
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]},
     "tools[0].function.name"),
    ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice"),
    ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": "required", "response_format": {"type": "json_object"}},
     "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "n", "parameters": {
        "type": "object", "properties": {"x": {"type": "string", "pattern": "^a"}}}}}],
      "tool_choice": "required"}, "tools[0].function.parameters"),
    ({"functions": [WEATHER["function"]]}, "functions"),
])
def test_bad_tools_get_a_400_naming_the_field(client, extra, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=4,
                                       extra_body=extra)
    assert e.value.body["param"] == param, e.value.body


@pytest.mark.parametrize("bad,param", [
    ({"role": "assistant", "tool_calls": [{"type": "function", "function": {
        "name": "get_weather", "arguments": 7}}]},
     "messages[1].tool_calls[0].function.arguments"),
    ({"role": "assistant", "tool_calls": [{"type": "function"}]},
     "messages[1].tool_calls[0].function"),
    ({"role": "assistant", "tool_calls": {"id": "x"}}, "messages[1].tool_calls"),
    ({"role": "tool", "tool_call_id": 7, "content": "x"}, "messages[1].tool_call_id"),
    ({"role": "tool"}, "messages[1].content"),
])
def test_bad_histories_get_a_400_naming_the_field(client, bad, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=ASK + [bad], max_tokens=4)
    assert e.value.body["param"] == param, e.value.body


@pytest.fixture(scope="module")
def hermes_server():
    with tempfile.NamedTemporaryFile("w", suffix=".jinja", delete=False) as f:
        f.write(HERMES)
    s = Server("--chat-template", f.name)
    try:
        yield s
    finally:
        os.unlink(f.name)
        assert s.stop() == 0


@pytest.fixture(scope="module")
def hermes(hermes_server):
    return openai.OpenAI(base_url=hermes_server.url + "/v1", api_key="unused", max_retries=0)


def test_auto_reads_the_calls_the_model_writes(hermes):
    msgs = history(["Paris", "Berlin", "Madrid"]) + [{"role": "user", "content": "Weather in Rome?"}]
    r = hermes.chat.completions.create(model=MODEL, messages=msgs, tools=[WEATHER],
                                       max_tokens=60, temperature=0)
    m = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls", m
    assert m.content is None
    (call,) = m.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Rome"}
    content, calls, reason = streamed(hermes, model=MODEL, messages=msgs, tools=[WEATHER],
                                      max_tokens=60, temperature=0)
    assert (content, reason) == ("", "tool_calls")
    assert [(c["name"], c["arguments"]) for c in calls] == [("get_weather", call.function.arguments)]


def test_auto_answers_in_words_when_the_model_does(hermes):
    msgs = [{"role": "user", "content": "Say hello in French."}]
    r = hermes.chat.completions.create(model=MODEL, messages=msgs, tools=[WEATHER],
                                       max_tokens=24, temperature=0)
    m = r.choices[0].message
    assert m.tool_calls is None and m.content, m
    content, calls, reason = streamed(hermes, model=MODEL, messages=msgs, tools=[WEATHER],
                                      max_tokens=24, temperature=0)
    assert (content, calls, reason) == (m.content, [], r.choices[0].finish_reason)


def test_tools_are_shown_to_the_model(hermes_server):
    body = {"messages": ASK, "tools": [WEATHER]}
    t = hermes_server.post("/tokenize", json=body).json()
    text = hermes_server.post("/detokenize", json={"tokens": t["tokens"]}).json()["prompt"]
    assert text.startswith("<|im_start|>system\nYou can call these functions:\n{\"type\": "
                           "\"function\", \"function\": {\"name\": \"get_weather\""), text
    none = hermes_server.post("/tokenize", json=dict(body, tool_choice="none")).json()
    assert none["count"] < t["count"]
    client = openai.OpenAI(base_url=hermes_server.url + "/v1", api_key="unused", max_retries=0)
    r = client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], max_tokens=2)
    assert r.usage.prompt_tokens == t["count"]


@pytest.mark.parametrize("arguments", [
    "", "null",                                   # no arguments, as vLLM reads them
    '{"city": "Oslo"}', '{"n": 123456789012345678901234567890}', '{"x": 5e400}',
    '{"city": "Os',                               # a call cut short: the text as given
])
def test_history_arguments_as_clients_send_them(client, arguments):
    msgs = ASK + [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "c", "content": "18 C"}]
    r = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=2, temperature=0)
    assert r.choices[0].finish_reason in ("stop", "length")


def test_history_calls_are_rendered_with_their_arguments(hermes_server):
    msgs = ASK + [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
        {"id": "b", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"n": 123456789012345678901234567890}'}},
        {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": '{"x": 1'}}]}]
    t = hermes_server.post("/tokenize", json={"messages": msgs, "add_generation_prompt": False})
    assert t.status_code == 200, t.text
    d = hermes_server.post("/detokenize", json={"tokens": t.json()["tokens"]}).json()["prompt"]
    assert '{"name": "get_weather", "arguments": {}}' in d, d
    assert '"arguments": "{\\"n\\": 123456789012345678901234567890}"' in d, d  # kept as text
    assert '"arguments": "{\\"x\\": 1"' in d, d


def test_tokenize_refuses_what_chat_refuses(server):
    # The default model's template shows no tools: tool_choice auto is refused on both routes.
    r = server.post("/tokenize", json={"messages": ASK, "tools": [WEATHER]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tool_choice", r.text
    r = server.post("/tokenize", json={"messages": ASK,
                                       "chat_template_kwargs": {"tools": [WEATHER]}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "chat_template_kwargs", r.text
    for choice in ("none", "required"):
        r = server.post("/tokenize", json={"messages": ASK, "tools": [WEATHER],
                                           "tool_choice": choice})
        assert r.status_code == 200, r.text


def test_required_keeps_the_digits_of_numbers(client):
    tool = {"type": "function", "function": {"name": "store", "parameters": {
        "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}}
    ask = [{"role": "user", "content": "Store n = 123456789012345678901234567890"}]
    r = client.chat.completions.create(model=MODEL, messages=ask, tools=[tool],
                                       tool_choice="required", max_tokens=60, temperature=0)
    assert r.choices[0].finish_reason == "tool_calls", r.choices[0]
    (call,) = r.choices[0].message.tool_calls
    text = call.function.arguments
    assert text.startswith('{"n":') and "e" not in text.lower() and "." not in text, text
    assert isinstance(json.loads(text)["n"], int)


def test_auto_without_parallel_calls_keeps_the_first(hermes):
    msgs = history(["Paris", "Berlin", "Madrid"]) + [{"role": "user", "content": "Weather in Rome?"}]
    # Two calls per earlier turn, so that the model writes two.
    for m in msgs:
        if m.get("tool_calls"):
            m["tool_calls"] = m["tool_calls"] + [{"id": "t", "type": "function", "function": {
                "name": "get_time", "arguments": json.dumps({"tz": "UTC"})}}]
    both = hermes.chat.completions.create(model=MODEL, messages=msgs, tools=[WEATHER, TIME],
                                          max_tokens=80, temperature=0)
    one = hermes.chat.completions.create(model=MODEL, messages=msgs, tools=[WEATHER, TIME],
                                         parallel_tool_calls=False, max_tokens=80, temperature=0)
    assert len(both.choices[0].message.tool_calls) == 2, both.choices[0].message
    calls = one.choices[0].message.tool_calls
    assert len(calls) == 1
    assert calls[0].function.name == both.choices[0].message.tool_calls[0].function.name
    content, streamed_calls, reason = streamed(
        hermes, model=MODEL, messages=msgs, tools=[WEATHER, TIME], parallel_tool_calls=False,
        max_tokens=80, temperature=0)
    assert (len(streamed_calls), reason) == (1, "tool_calls")
