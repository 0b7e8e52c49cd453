"""JSON mode (response_format json_object / json_schema) through the openai SDK: the text is one
JSON object that Python's json module parses (and, with a schema, that follows it), streamed or
not, greedy or sampled; the SDK's own structured output (`chat.completions.parse` with pydantic
models: $defs and $ref, Optional fields as anyOf with null, enums, string lengths, integer
and number bounds, dates, times and uuids, a model that contains itself)
and pydantic function tools; unsupported formats and schemas get a 400 naming the field."""
import datetime
import enum
import json
import uuid
from typing import Optional

import openai
import pydantic
import pytest

MODEL = "smollm2"
# Prompts the default model answers with a closed object well within max_tokens (greedy); others
# can nest until max_tokens ends them ("List three colors as JSON." does), still as a JSON prefix.
ASKS = [
    "Give me a JSON object describing a cat with a name and an age.",
    "Describe a book with title and author as JSON.",
    "What is the capital of France? Answer in JSON.",
    "Give a person's first name and last name in JSON.",
]


def parse_object(text):
    value = json.loads(text)
    assert isinstance(value, dict), text
    return value


@pytest.mark.parametrize("ask", ASKS)
def test_chat_json_object_parses(client, ask):
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": ask}], max_tokens=400, temperature=0,
        response_format={"type": "json_object"})
    choice = r.choices[0]
    assert choice.finish_reason == "stop", choice.message.content
    parse_object(choice.message.content)
    # The answer ends at the closing brace (at most the whitespace of the token that closed it),
    # not padded with whitespace tokens.
    text = choice.message.content
    assert len(text) - len(text.rstrip()) <= 2, repr(text[-40:])
    assert text.rstrip().endswith("}")


def test_sampled_choices_and_stream_parse(client):
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": ASKS[0]}], max_tokens=400,
        temperature=1.0, seed=7, n=4, response_format={"type": "json_object"})
    for choice in r.choices:
        if choice.finish_reason == "stop":
            parse_object(choice.message.content)
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": ASKS[1]}], max_tokens=400,
        temperature=0, stream=True, response_format={"type": "json_object"})
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    parse_object(text)


def test_completion_json_object(client):
    # The SDK's completions.create has no response_format argument; vLLM takes it there too.
    r = client.completions.create(model=MODEL, prompt="A user record in JSON:", max_tokens=400,
                                  temperature=0,
                                  extra_body={"response_format": {"type": "json_object"}})
    assert r.choices[0].finish_reason == "stop", r.choices[0].text
    parse_object(r.choices[0].text)


def test_plain_text_unchanged(client):
    kw = dict(model=MODEL, messages=[{"role": "user", "content": ASKS[2]}], max_tokens=24,
              temperature=0)
    plain = client.chat.completions.create(**kw)
    text = client.chat.completions.create(response_format={"type": "text"}, **kw)
    assert plain.choices[0].message.content == text.choices[0].message.content


PET = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "name": {"type": "string"}, "age": {"type": "integer"},
        "kind": {"enum": ["cat", "dog", "bird"]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "vaccinated": {"type": "boolean"}, "weight": {"type": "number"},
        "owner": {"type": "object", "additionalProperties": False,
                  "properties": {"first": {"type": "string"}, "last": {"type": "string"}},
                  "required": ["first", "last"]},
    },
    "required": ["name", "age", "kind", "tags", "vaccinated", "weight", "owner"],
}


def check_pet(text):
    """What the schema says, checked by hand (no JSON Schema library needed)."""
    pet = parse_object(text)
    assert list(pet) == list(PET["properties"]), pet  # every property, in the declared order
    assert isinstance(pet["name"], str)
    assert isinstance(pet["age"], int) and not isinstance(pet["age"], bool)
    assert pet["kind"] in ("cat", "dog", "bird")
    assert 1 <= len(pet["tags"]) <= 3 and all(isinstance(t, str) for t in pet["tags"])
    assert isinstance(pet["vaccinated"], bool)
    assert isinstance(pet["weight"], (int, float)) and not isinstance(pet["weight"], bool)
    assert set(pet["owner"]) == {"first", "last"}
    assert all(isinstance(v, str) for v in pet["owner"].values())


# Whether the small default model closes its strings within max_tokens depends on the last bits
# of its arithmetic, which differ between processors (the same build decodes "Describe a pet as
# JSON." at temperature 0 into a closed object on one 2-vCPU VM and into "Luna-12-12-12-..." until
# max_tokens on another). So each case asks twice, and every answer that ends must follow the
# schema, and at least one must end.
PET_PROMPTS = ["Describe a pet as JSON.", "Give me a JSON record of a pet."]


@pytest.mark.parametrize("temperature,seed", [(0, None), (1.0, 3), (1.0, 4)])
def test_json_schema_is_followed(client, temperature, seed):
    fmt = {"type": "json_schema", "json_schema": {"name": "pet", "strict": True, "schema": PET}}
    ended = []
    for prompt in PET_PROMPTS:
        r = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}],
            max_tokens=300, temperature=temperature, seed=seed, response_format=fmt)
        choice = r.choices[0]
        assert choice.finish_reason in ("stop", "length"), choice.finish_reason
        if choice.finish_reason == "stop":
            check_pet(choice.message.content)
            ended.append(prompt)
    assert ended, "no answer ended within max_tokens"


def test_answer_ends_at_the_closing_brace(client):
    """Once the object is closed only the end may follow: the default model, offered whitespace
    there, pads this answer with newlines until max_tokens."""
    person = {"type": "object", "additionalProperties": False,
              "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Give a person as JSON"}],
        max_tokens=60, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": person}})
    choice = r.choices[0]
    text = choice.message.content
    assert choice.finish_reason == "stop", repr(text)
    assert set(parse_object(text)) == {"name", "age"}
    assert len(text) - len(text.rstrip()) <= 2, repr(text[-40:])
    assert r.usage.completion_tokens < 40, r.usage


class Color(str, enum.Enum):
    red = "red"
    green = "green"
    blue = "blue"


class Address(pydantic.BaseModel):
    city: str
    zip: Optional[str]


class Person(pydantic.BaseModel):
    name: str = pydantic.Field(min_length=2, max_length=12)  # minLength / maxLength
    age: int = pydantic.Field(ge=18, lt=100)  # minimum / exclusiveMaximum
    confidence: float = pydantic.Field(ge=0, le=1)
    born: datetime.date  # format date
    favorite: Color
    home: Address
    previous: list[Address] = pydantic.Field(max_length=2)
    nickname: Optional[str]


class Event(pydantic.BaseModel):
    title: str = pydantic.Field(max_length=40)
    starts: datetime.datetime  # format date-time
    id: uuid.UUID  # format uuid


class Node(pydantic.BaseModel):
    name: str
    children: list["Node"] = pydantic.Field(max_length=2)


def parse_or_length(client, model, prompt, seed, max_tokens=400):
    """The SDK's structured output: the parsed model, or None where max_tokens ended the answer
    first (the SDK raises then; see PET_PROMPTS on why the small model may run on)."""
    try:
        r = client.chat.completions.parse(
            model=MODEL, messages=[{"role": "user", "content": prompt}], response_format=model,
            max_tokens=max_tokens, temperature=0 if seed is None else 1.0, seed=seed)
    except openai.LengthFinishReasonError:
        return None
    choice = r.choices[0]
    assert choice.finish_reason == "stop"
    # The text is the model's JSON (every property, in the declared order), and the SDK parsed
    # it into the pydantic model.
    assert list(json.loads(choice.message.content)) == list(model.model_fields)
    assert isinstance(choice.message.parsed, model)
    return choice.message.parsed


@pytest.mark.parametrize("seed", [None, 1, 2])
def test_sdk_parse_with_pydantic_models(client, seed):
    people = [parse_or_length(client, Person, p, seed)
              for p in ("Describe a person as JSON.", "Give me a JSON record of a person.")]
    assert any(p is not None for p in people), "no answer ended within max_tokens"
    for p in people:
        if p is not None:
            assert len(p.previous) <= 2 and isinstance(p.favorite, Color)
            assert 2 <= len(p.name) <= 12, p.name
            assert 18 <= p.age < 100, p.age
            assert 0 <= p.confidence <= 1, p.confidence
            assert isinstance(p.born, datetime.date)
    events = [parse_or_length(client, Event, p, seed)
              for p in ("Describe a concert as JSON.", "A meeting invitation as JSON.")]
    assert any(e is not None for e in events), "no answer ended within max_tokens"
    for e in events:
        if e is not None:
            assert isinstance(e.starts, datetime.datetime) and e.starts.tzinfo is not None


def test_sdk_parse_with_a_model_that_contains_itself(client):
    # Greedy (sampled, the small model tends to nest until max_tokens): on the 2-vCPU VMs four of
    # five such prompts ended within 600 tokens, each 4-8 levels deep.
    trees = [parse_or_length(client, Node, p, None, max_tokens=600)
             for p in ("Describe a family tree as JSON.", "A tree of two people as JSON.",
                       "Describe a company's teams as a JSON tree.")]
    assert any(t is not None for t in trees), "no answer ended within max_tokens"


class GetWeather(pydantic.BaseModel):
    """Current weather for a city."""
    city: str
    unit: Optional[Color]  # (any enum will do)


def test_pydantic_function_tool_with_optional_arguments(client):
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[openai.pydantic_function_tool(GetWeather)], tool_choice="required",
        max_tokens=120, temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    for call in choice.message.tool_calls:
        assert call.function.name == "GetWeather"
        GetWeather.model_validate_json(call.function.arguments)


@pytest.mark.parametrize("fmt,param", [
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"s": {"type": "string", "pattern": "^a"}}}}},
     "response_format.json_schema"),
    # Alternatives the first byte cannot tell apart (two objects).
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"s": {"anyOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}},
            {"type": "object", "properties": {"b": {"type": "string"}}}]}}}}},
     "response_format.json_schema"),
    ({"type": "json_schema", "json_schema": {"name": "x"}}, "response_format.json_schema"),
    ({"type": "yaml"}, "response_format.type"),
    ({"kind": "json_object"}, "response_format.type"),
])
def test_unsupported_formats_are_refused(client, fmt, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=4, response_format=fmt)
    assert e.value.body["param"] == param
