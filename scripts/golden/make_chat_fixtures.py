#!/usr/bin/env python3
"""Writes the chat-template golden fixtures: renders from Python `jinja2`, configured exactly as
Hugging Face transformers' apply_chat_template configures it.

Reference environment (transformers' _compile_jinja_template):
  ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                extensions=[AssistantTracker ({% generation %}), loopcontrols])
  filters["tojson"]   = json.dumps(x, ensure_ascii=False, indent=indent, separators=separators,
                                   sort_keys=sort_keys)          (no HTML escaping, unsorted)
  globals["raise_exception"] raises TemplateError(message)
  globals["strftime_now"]    datetime.now().strftime(fmt); here the time is fixed per case ("now",
                             Unix seconds, formatted in UTC) so fixtures are reproducible.
The render context is what apply_chat_template passes: messages, tools (None when absent),
documents (None), add_generation_prompt, the tokenizer's bos_token/eos_token, extra kwargs.

Templates:
  smollm2   tokenizer.chat_template of the default GGUF, read with the `gguf` package
  llama3, llama3_1, qwen3, gemma3
            chat_template of <data>/tokenizers/<name>/tokenizer_config.json
  features  small templates that exercise one engine feature each (same environment)

It also writes the fuzz seed corpus tests/fuzz/corpus/chat_template/ (one file per template).

Each output file tests/golden/chat/<name>.json holds {"name", "template", "cases": [{"name",
"context", "now", "expected" | "error"}]}; "error" is jinja2's message when it raised.

Usage: python3 scripts/golden/make_chat_fixtures.py [--gguf PATH] [--data DIR]
Needs: pip install jinja2 gguf
"""
import argparse
import datetime
import json
import os

import jinja2
import jinja2.ext
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(ROOT, 'tests', 'golden', 'chat')
DEFAULT_GGUF = os.path.expanduser('~/.cache/carpool/models/SmolLM2-135M-Instruct.Q4_1.gguf')
DEFAULT_DATA = os.path.join(ROOT, '..', 'shared', 'data', 'tokenizers')
FIXED_NOW = 1735787045  # 2025-01-02 03:04:05 UTC


class GenerationTracker(Extension):
    """{% generation %}...{% endgeneration %} renders its body, as transformers' AssistantTracker
    does when no assistant mask is requested."""
    tags = {'generation'}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(['name:endgeneration'], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method('_render', []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_env(now):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTracker, jinja2.ext.loopcontrols])
    env.filters['tojson'] = tojson
    env.globals['raise_exception'] = raise_exception
    env.globals['strftime_now'] = strftime_now
    return env


def render_case(template, name, context, now=FIXED_NOW):
    case = {'name': name, 'context': context, 'now': now}
    try:
        case['expected'] = make_env(now).from_string(template).render(**context)
    except Exception as e:  # jinja2 raised: our engine must fail too
        case['error'] = f'{type(e).__name__}: {e}'
    return case


# ---------------------------------------------------------------- conversations for model templates
SYSTEM = {'role': 'system', 'content': 'You are a concise assistant.'}
U1 = {'role': 'user', 'content': 'Hello! What is 2+2?'}
A1 = {'role': 'assistant', 'content': '2+2 is 4.'}
U2 = {'role': 'user', 'content': '  And in French, please?  \n'}
U_UNICODE = {'role': 'user', 'content': 'Ünïcödé 世界 🚀 <tag> & "quotes" \'single\'\tTab\n'}
A_THINK = {'role': 'assistant',
           'content': '<think>\nThe user wants French.\n</think>\n\nQuatre.'}
WEATHER_TOOL = {'type': 'function', 'function': {
    'name': 'get_weather', 'description': 'Weather for a city (°C).',
    'parameters': {'type': 'object', 'properties': {'city': {'type': 'string'}},
                   'required': ['city']}}}
A_TOOL_CALL = {'role': 'assistant', 'content': '', 'tool_calls': [
    {'type': 'function', 'function': {'name': 'get_weather', 'arguments': {'city': 'Paris'}}}]}
A_TOOL_CALL_STR = {'role': 'assistant', 'content': 'Let me check.', 'tool_calls': [
    {'type': 'function', 'function': {'name': 'get_weather', 'arguments': '{"city": "Lyon"}'}}]}
TOOL_RESULT = {'role': 'tool', 'content': '{"temp_c": 18, "sky": "cloudy"}'}


def text_parts(msg):
    return {'role': msg['role'], 'content': [{'type': 'text', 'text': msg['content']}]}


def conversations(family):
    convs = [
        ('single_user', [U1], {}),
        ('system_user', [SYSTEM, U1], {}),
        ('multi_turn', [U1, A1, U2], {}),
        ('system_multi_turn', [SYSTEM, U1, A1, U2], {}),
        ('unicode', [SYSTEM, U_UNICODE], {}),
    ]
    if family == 'gemma3':
        convs += [
            ('text_parts', [text_parts(SYSTEM), text_parts(U1), text_parts(A1), text_parts(U2)], {}),
            ('image_part', [{'role': 'user', 'content': [{'type': 'image'},
                                                         {'type': 'text', 'text': ' Describe. '}]}], {}),
            ('not_alternating', [U1, U2], {}),
        ]
    if family == 'qwen3':
        convs += [
            ('reasoning_in_content', [U1, A_THINK, U2], {}),
            ('reasoning_last_turn', [U1, A_THINK], {}),
            ('reasoning_field', [U1, dict(A1, reasoning_content='Simple sum.')], {}),
            ('no_thinking', [U1], {'enable_thinking': False}),
            ('tools', [SYSTEM, U1], {'tools': [WEATHER_TOOL]}),
            ('tools_no_system', [U1], {'tools': [WEATHER_TOOL]}),
            ('tool_round_trip', [U1, A_TOOL_CALL, TOOL_RESULT, TOOL_RESULT, A_TOOL_CALL_STR],
             {'tools': [WEATHER_TOOL]}),
        ]
    if family in ('smollm2', 'llama3', 'llama3_1'):
        convs += [('text_parts_unsupported', [text_parts(U1)], {})]
    return convs


# ---------------------------------------------------------------- feature snippets
FEATURES = [
    # whitespace control (trim_blocks, lstrip_blocks, -, +)
    ('ws_blocks', '  {% if true %}\n  x\n  {% endif %}\n  {{ 1 }}\n{# c #}\n  {#- c #} y\n', {}),
    ('ws_minus', 'a  {%- if true -%}  b  {%- endif -%}  c\n\n{{- " d " -}}\n e', {}),
    ('ws_plus', '  {%+ if true +%}\nx\n{%- endif %}|', {}),
    ('ws_var_no_trim', '{{ "a" }}\n{{ "b" }}\n', {}),
    ('ws_tail_text', 'line1\n    {% for i in [1, 2] %}\n    {{ i }}\n    {% endfor %}\nend\n\n', {}),
    ('raw_block', '{% raw %}{{ not parsed }}{% endraw %}|', {}),
    # literals and printing (Python str/repr)
    ('print_values', '{{ none }}|{{ true }}|{{ [1, "a", none, true, 1.5] }}|{{ {"a": 1, "b": [2]} }}|'
     '{{ (1, 2) }}|{{ (1,) }}|{{ 1e20 }}|{{ 1.0 }}|{{ 0.1 }}|{{ 1/3 }}|{{ 10/2 }}|{{ 2.5e-7 }}|{{ undefined_name }}|'
     '{{ "it\'s" }}|{{ [\'it\\\'s\', "q\\"d", "a\\nb"] }}', {}),
    ('string_escapes', '{{ "tab\\tnl\\nuni\\u00e9\\x41" }}|{{ \'a\' "b" \'c\' }}', {}),
    # arithmetic and operators
    ('arith', '{{ 3 // 2 }} {{ -3 // 2 }} {{ -3 % 2 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2.0 ** 2 }} {{ 7 % 3.5 }} '
     '{{ 1 + 2 * 3 - 4 }} {{ (1 + 2) * 3 }} {{ 10 - 2 - 3 }} {{ -2 ** 2 }} {{ 5 / 2 }} {{ 1 + 1.5 }}', {}),
    ('concat', '{{ "a" ~ 1 ~ none ~ true ~ 1.5 ~ [1] }}|{{ "x" + "y" }}|{{ [1] + [2, 3] }}|{{ "ab" * 3 }}|'
     '{{ [0] * 3 }}|{{ x ~ "!" }}', {}),
    ('compare', '{{ 1 == 1.0 }} {{ 1 != 2 }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ "a" < "b" }} {{ [1, 2] < [1, 3] }} '
     '{{ true == 1 }} {{ none == none }} {{ "a" in "cat" }} {{ 2 in [1, 2] }} {{ "k" in {"k": 1} }} '
     '{{ "z" not in "abc" }} {{ not 1 == 2 }}', {}),
    ('logic', '{{ 0 or "x" }}|{{ 1 and "y" }}|{{ "" and 1 }}|{{ none or [] }}|{{ not "" }}|'
     '{{ "yes" if 1 else "no" }}|{{ "yes" if 0 }}|{{ "a" if false else "b" if true else "c" }}', {}),
    # attribute / item access, slicing
    ('access', '{{ d.a }}|{{ d["a"] }}|{{ d.missing }}|{{ l[0] }}|{{ l[-1] }}|{{ l[5] }}|{{ s[1] }}|'
     '{{ d.items() | list }}|{{ d.keys() | list }}|{{ d.values() | list }}|{{ d.get("a") }}|{{ d.get("zz", 7) }}|'
     '{{ d.get("zz") }}|{{ l.0 }}|{{ d.n.m }}',
     {'d': {'a': 1, 'n': {'m': 'deep'}}, 'l': [10, 20, 30], 's': 'héllo'}),
    ('slicing', '{{ l[1:] }}|{{ l[:-1] }}|{{ l[::-1] }}|{{ l[::2] }}|{{ l[-2:] }}|{{ l[5:] }}|{{ s[::-1] }}|'
     '{{ s[1:3] }}|{{ l[3:0:-1] }}|{{ s[-100:100] }}', {'l': [1, 2, 3, 4, 5], 's': 'héllo wörld'}),
    # statements
    ('if_elif', '{% for x in [1, 2, 3, 4] %}{% if x == 1 %}one{% elif x == 2 %}two{% elif x is even %}even{% else %}odd{% endif %},{% endfor %}', {}),
    ('loop_vars', '{% for x in "abc" %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}'
     '{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.cycle("o", "e") }}'
     '{{ loop.previtem | default("^") }}{{ loop.nextitem | default("$") }};{% endfor %}', {}),
    ('loop_dict', '{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{% for k in d %}{{ k }}{% endfor %}|'
     '{% for k, v in d | items %}{{ k }}{{ v }}{% endfor %}', {'d': {'z': 1, 'a': 2, 'm': 3}}),
    ('loop_filter_else', '{% for x in l if x > 1 %}{{ x }}/{{ loop.length }} {% else %}none{% endfor %}|'
     '{% for x in [] %}x{% else %}empty{% endfor %}', {'l': [1, 2, 3]}),
    ('loop_scope', '{% set x = 1 %}{% for i in [1, 2, 3] %}[{{ x }}]{% set x = x + 10 %}{{ x }}{% endfor %}{{ x }}|'
     '{% for i in [1, 2] %}{% if i > 1 %}[{{ y }}]{% endif %}{% set y = i %}{% endfor %}', {}),
    ('loop_nested', '{% for a in [1, 2] %}{% for b in "xy" %}{{ loop.index }}{{ a }}{{ b }} {% endfor %}{{ loop.index }}|{% endfor %}', {}),
    ('loop_controls', '{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}', {}),
    ('range', '{{ range(3) | list }}{{ range(1, 4) | list }}{{ range(10, 0, -3) | list }}', {}),
    ('set_forms', '{% set a, b = 1, 2 %}{{ a }}{{ b }}|{% set t = 1, 2 %}{{ t }}|{% set blk %}in {{ a }} block{% endset %}{{ blk }}|'
     '{% set up | upper %}shout{% endset %}{{ up }}|{% if true %}{% set inner = "leaks" %}{% endif %}{{ inner }}', {}),
    ('namespace', '{% set ns = namespace(count=0, found=false) %}{% for m in msgs %}{% if m.role == "user" %}'
     '{% set ns.count = ns.count + 1 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.count }} {{ ns.found }}',
     {'msgs': [{'role': 'user'}, {'role': 'assistant'}, {'role': 'user'}]}),
    ('macro', '{% macro greet(name, punct="!") %}Hi {{ name }}{{ punct }}{{ suffix }}{% endmacro %}{% set suffix = "~" %}'
     '{{ greet("Ann") }}|{{ greet("Bob", "?") }}|{{ greet(punct=".", name="Cy") }}|{{ greet() }}', {}),
    ('macro_recursive', '{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * (fact(n - 1) | int) }}{% endif %}{% endmacro %}{{ fact(10) }}', {}),
    ('generation_block', '{% for m in messages %}{% if m.role == "assistant" %}{% generation %}{{ m.content }}{% endgeneration %}'
     '{% else %}{{ m.content }}{% endif %}|{% endfor %}', {'messages': [U1, A1]}),
    ('filter_block', '{% filter upper %}hello {{ "there" }}{% endfilter %}', {}),
    # filters
    ('filters_text', '{{ "  pad  " | trim }}|{{ "xxhixx" | trim("x") }}|{{ "MiXeD" | upper }}{{ "MiXeD" | lower }}|'
     '{{ "hello world-foo(bar" | title }}|{{ "hELLO wORLD" | capitalize }}|{{ 42 | string }}|{{ "a-b-c" | replace("-", "+") }}|'
     '{{ "aaa" | replace("a", "b", 2) }}|{{ "x" | length }}{{ "héllo" | length }}{{ [1, 2] | length }}{{ {"a": 1} | count }}|'
     '{{ "<a href=\'x\'>&</a>" | escape }}|{{ "one two  three" | wordcount }}', {}),
    ('filters_numbers', '{{ "42" | int }} {{ "4.7" | int }} {{ "x" | int }} {{ "x" | int(7) }} {{ 3.9 | int }} {{ "2.5" | float }} '
     '{{ 3 | float }} {{ "z" | float }} {{ -3 | abs }} {{ 2.567 | round(2) }} {{ 2.5 | round }} {{ 3.5 | round }} '
     '{{ 2.1 | round(0, "ceil") }} {{ [1, 2, 3] | sum }} {{ [3, 1, 2] | min }} {{ [3, 1, 2] | max }}', {}),
    ('filters_lists', '{{ [3, 1, 2] | sort }}|{{ ["b", "A", "c"] | sort }}|{{ [3, 1, 2] | sort(reverse=true) }}|{{ [1, 2] | first }}|'
     '{{ [1, 2] | last }}|{{ "abc" | list }}|{{ [1, 2, 1, 3] | unique | list }}|{{ [1, 2, 3] | reverse | list }}|'
     '{{ "abc" | reverse }}|{{ [1, 2, 3] | join(", ") }}|{{ ["a", "b"] | join }}|{{ {"b": 1, "a": 2} | dictsort }}', {}),
    ('filters_default', '{{ x | default("dflt") }}|{{ none | default("dflt") }}|{{ "" | default("dflt", true) }}|'
     '{{ x | d("short") }}|{{ 0 | default(5) }}', {}),
    ('filters_attr', '{{ users | map(attribute="name") | join(",") }}|{{ users | selectattr("admin") | map(attribute="name") | list }}|'
     '{{ users | rejectattr("admin") | map(attribute="name") | list }}|{{ users | selectattr("name", "equalto", "b") | list | length }}|'
     '{{ users | map(attribute="age", default=0) | list }}|{{ ["a", "B"] | map("upper") | list }}|{{ [1, 2, 3, 4] | select("even") | list }}|'
     '{{ [1, 2, 3, 4] | reject("odd") | list }}|{{ users | sort(attribute="name", reverse=true) | map(attribute="name") | join }}|'
     '{{ users | selectattr("age", "defined") | list | length }}|{{ users | join(";", attribute="name") }}',
     {'users': [{'name': 'a', 'admin': True, 'age': 3}, {'name': 'b', 'admin': False}, {'name': 'c'}]}),
    ('tojson', '{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ [] | tojson }}|{{ {} | tojson(indent=2) }}|{{ "é<>&\'\\"\\n" | tojson }}|'
     '{{ d | tojson(sort_keys=true) }}|{{ [1.5, 1e20, none, true] | tojson }}|{{ d | tojson(separators=(",", ":")) }}|{{ d | tojson(indent="\\t") }}',
     {'d': {'z': [1, {'y': None}], 'a': 'x', 'e': {}}}),
    ('case_unicode', "{{ 'Ünïcödé ßtraße'|upper }}|{{ 'ÀÉÎ ΑΒΓ ПРИВЕТ'|lower }}|{{ 'élan vital'|title }}|"
     "{{ 'éCOLE'.capitalize() }}|{{ 'ÿ'.upper() }}", {}),
    ('indent', '{{ "a\\nb\\n\\nc" | indent }}|{{ "a\\nb" | indent(2, true) }}|{{ "a\\n\\nb" | indent(1, blank=true) }}', {}),
    # string methods
    ('str_methods', '{{ s.startswith("He") }}{{ s.endswith("!") }}{{ s.startswith(("x", "H")) }}|{{ s.strip() }}|{{ "xxaxx".strip("x") }}|'
     '{{ "  a ".lstrip() }}.|{{ "  a ".rstrip() }}.|{{ "\\n\\na\\n".lstrip("\\n") }}|{{ "a,b,,c".split(",") }}|{{ " a  b ".split() }}|'
     '{{ "a b c".split(" ", 1) }}|{{ s.upper() }}{{ s.lower() }}|{{ "hello wORLD".title() }}|{{ "hello".capitalize() }}|'
     '{{ s.replace("l", "L") }}|{{ s.find("l") }}{{ s.find("z") }}|{{ s.count("l") }}|{{ "-".join(["a", "b"]) }}|{{ "42".isdigit() }}',
     {'s': 'Hello, world!'}),
    ('split_index', '{{ c.split("</think>")[-1].lstrip("\\n") }}|{{ c.split("</think>")[0].rstrip("\\n").split("<think>")[-1].lstrip("\\n") }}',
     {'c': '<think>\nreason\n</think>\n\nanswer'}),
    # tests
    ('tests', '{{ x is defined }}{{ y is defined }}{{ y is undefined }}{{ n is none }}{{ x is string }}{{ x is number }}'
     '{{ 1 is number }}{{ 1.5 is float }}{{ 1 is integer }}{{ true is boolean }}{{ d is mapping }}{{ l is mapping }}'
     '{{ l is iterable }}{{ x is iterable }}{{ 1 is iterable }}{{ l is sequence }}{{ f is false }}{{ 0 is false }}{{ t is true }}'
     '{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(4) }}{{ 1 is eq 1 }}{{ 2 is gt 1 }}{{ 2 is in [1, 2] }}'
     '{{ "ab" is lower }}{{ "AB" is upper }}{{ x is not none }}{{ y is not defined }}{{ raise_exception is callable }}',
     {'x': 'str', 'n': None, 'd': {}, 'l': [1], 'f': False, 't': True}),
    ('dict_literal_order', '{% set d = {"b": 1, "a": 2} %}{{ d }}{{ d | tojson }}{% for k in d %}{{ k }}{% endfor %}', {}),
    ('strftime', '{{ strftime_now("%Y-%m-%d %H:%M:%S") }}|{{ strftime_now("%d %b %Y") }}|{{ strftime_now("%A %B") }}', {}),
    # errors: jinja2 raises, so must we
    ('err_raise', '{{ raise_exception("Bad roles: " ~ n) }}', {'n': 3}),
    ('err_undefined_attr', '{{ x.y }}', {}),
    ('err_add_types', '{{ "a" + 1 }}', {}),
    ('err_undefined_add', '{{ x + "a" }}', {}),
    ('err_unknown_filter', '{{ 1 | nosuchfilter }}', {}),
    ('err_unclosed', '{% if true %}never closed', {}),
    ('err_not_iterable', '{% for x in 5 %}{% endfor %}', {}),
    ('err_div_zero', '{{ 1 // 0 }}', {}),
    ('err_ns_assign', '{% set d = {} %}{% set d.x = 1 %}', {}),
]


def load_gguf_template(path):
    import gguf
    reader = gguf.GGUFReader(path)
    field = reader.fields['tokenizer.chat_template']
    text = bytes(field.parts[field.data[0]]).decode('utf-8')
    tokens = reader.fields['tokenizer.ggml.tokens']

    def token(key):
        f = reader.fields[key]
        tid = int(f.parts[f.data[0]][0])
        return bytes(tokens.parts[tokens.data[tid]]).decode('utf-8')

    return text, token('tokenizer.ggml.bos_token_id'), token('tokenizer.ggml.eos_token_id')


def special(value):
    if isinstance(value, dict):
        return value.get('content')
    return value


def load_config_template(data_dir, name):
    with open(os.path.join(data_dir, name, 'tokenizer_config.json'), encoding='utf-8') as f:
        cfg = json.load(f)
    return cfg['chat_template'], special(cfg.get('bos_token')), special(cfg.get('eos_token'))


def write(name, template, cases):
    path = os.path.join(OUT_DIR, name + '.json')
    with open(path, 'w', encoding='utf-8') as f:
        json.dump({'name': name, 'template': template, 'cases': cases}, f, ensure_ascii=False, indent=1)
        f.write('\n')
    n_err = sum(1 for c in cases if 'error' in c)
    print(f'{path}: {len(cases)} cases ({n_err} expected errors)')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--gguf', default=DEFAULT_GGUF)
    ap.add_argument('--data', default=DEFAULT_DATA)
    args = ap.parse_args()
    os.makedirs(OUT_DIR, exist_ok=True)

    families = [('smollm2', load_gguf_template(args.gguf))]
    for name in ('llama3', 'llama3_1', 'qwen3', 'gemma3'):
        families.append((name, load_config_template(args.data, name)))

    for family, (template, bos, eos) in families:
        cases = []
        for conv_name, messages, extra in conversations(family):
            for gen in (False, True):
                context = {'messages': messages, 'tools': None, 'documents': None,
                           'add_generation_prompt': gen, 'bos_token': bos, 'eos_token': eos}
                context.update(extra)
                cases.append(render_case(template, f'{conv_name}/gen={int(gen)}', context))
        write(family, template, cases)

    feature_cases = []
    for name, template, context in FEATURES:
        case = render_case(template, name, context)
        case['template'] = template
        feature_cases.append(case)
    write('features', '', feature_cases)

    # Seed corpus of the libFuzzer target: every template above, one file each.
    corpus = os.path.join(ROOT, 'tests', 'fuzz', 'corpus', 'chat_template')
    os.makedirs(corpus, exist_ok=True)
    seeds = [(family, template) for family, (template, _, _) in families]
    seeds += [('feature_' + c['name'], c['template']) for c in feature_cases]
    for name, template in seeds:
        with open(os.path.join(corpus, name + '.jinja'), 'w', encoding='utf-8') as f:
            f.write(template)
    print(f'{corpus}: {len(seeds)} seeds')


if __name__ == '__main__':
    main()
