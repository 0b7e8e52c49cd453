#!/usr/bin/env python3
"""Writes the tokenizer golden fixtures: token ids and decoded text from Hugging Face `tokenizers`.

For every string of tests/golden/tokenizer/corpus.json and every family it records:
  with_special   tokenizer.encode(text, add_special_tokens=True).ids   (special-token text parsed)
  no_special     tokenizer.encode(text, add_special_tokens=False).ids
  plain          add_special_tokens=False with tokenizer.encode_special_tokens = True
                 (special-token text encoded as ordinary text)
  decoded        tokenizer.decode(with_special, skip_special_tokens=False)
  decoded_skip   tokenizer.decode(with_special, skip_special_tokens=True)

Families and how the reference tokenizer is built:
  llama2, llama3, qwen3  tokenizers.Tokenizer.from_file(<data>/tokenizers/<name>/tokenizer.json),
                         the files as published with the models.
  llama2_metaspace       llama2/tokenizer.json with the Metaspace pre-tokenizer and decoder that
                         older SentencePiece conversions (Mistral 7B v0.1 and others) use, in
                         place of the Prepend/Replace normalizer; the change is stored in the
                         fixture ("overrides") and the C++ test applies the same one. The
                         Metaspace decoder alone leaves <0xXX> tokens as text; our decoder always
                         turns them into bytes, so those decodes are not compared.
  smollm2                The default model ships only as GGUF. Its reference is rebuilt from the
                         GGUF metadata read with the `gguf` package: the vocabulary and merges
                         become a `tokenizers` BPE model, the control tokens (token_type 3)
                         special added tokens, and the pipeline is the one SmolLM2's published
                         tokenizer.json declares: pre-tokenizer Sequence[Digits(individual_digits=
                         True), ByteLevel(add_prefix_space=False, use_regex=True)], ByteLevel
                         decoder, no normalizer. This is the pipeline llama.cpp's converter
                         identified as "smollm" (tokenizer.ggml.pre) when it wrote the GGUF, so
                         ids and merges are the model's own and only the pipeline is restated.
                         (transformers' GGUF loader would need torch, which is not installed.)

Usage: python3 scripts/golden/make_tokenizer_fixtures.py [--gguf PATH] [--data DIR]
Needs: pip install tokenizers gguf
"""
import argparse
import json
import os
import sys

import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(ROOT, 'tests', 'golden', 'tokenizer')
DEFAULT_GGUF = os.path.expanduser('~/.cache/carpool/models/SmolLM2-135M-Instruct.Q4_1.gguf')
DEFAULT_DATA = os.path.join(ROOT, '..', 'shared', 'data', 'tokenizers')


def smollm2_from_gguf(path):
    from gguf import GGUFReader
    reader = GGUFReader(path)

    def field(key):
        return reader.fields[key].contents()

    assert field('tokenizer.ggml.model') == 'gpt2'
    assert field('tokenizer.ggml.pre') == 'smollm'
    tokens = field('tokenizer.ggml.tokens')
    types = field('tokenizer.ggml.token_type')
    merges = [tuple(m.split(' ', 1)) for m in field('tokenizer.ggml.merges')]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    specials = [AddedToken(tokens[i], special=True, normalized=False)
                for i in range(len(tokens)) if types[i] == 3]
    tok.add_special_tokens(specials)
    for t in specials:
        assert tok.token_to_id(t.content) == vocab[t.content]
    return tok


METASPACE_OVERRIDES = {
    'normalizer': None,
    'pre_tokenizer': {'type': 'Metaspace', 'replacement': '\u2581', 'prepend_scheme': 'first',
                      'split': True},
    'decoder': {'type': 'Metaspace', 'replacement': '\u2581', 'prepend_scheme': 'first',
                'split': True},
}


def llama2_metaspace(data):
    with open(os.path.join(data, 'llama2', 'tokenizer.json'), encoding='utf-8') as f:
        j = json.load(f)
    j.update(METASPACE_OVERRIDES)
    return Tokenizer.from_str(json.dumps(j))


def record(tok, corpus):
    cases = []
    for text in corpus:
        tok.encode_special_tokens = False
        with_special = tok.encode(text, add_special_tokens=True).ids
        no_special = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = True
        plain = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = False
        cases.append({
            'text': text,
            'with_special': with_special,
            'no_special': no_special,
            'plain': plain,
            'decoded': tok.decode(with_special, skip_special_tokens=False),
            'decoded_skip': tok.decode(with_special, skip_special_tokens=True),
        })
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--gguf', default=DEFAULT_GGUF)
    ap.add_argument('--data', default=DEFAULT_DATA)
    args = ap.parse_args()
    with open(os.path.join(OUT_DIR, 'corpus.json'), encoding='utf-8') as f:
        corpus = json.load(f)
    families = {
        'smollm2': (lambda: smollm2_from_gguf(args.gguf), 'GGUF metadata of the default model'),
        'llama3': (lambda: Tokenizer.from_file(os.path.join(args.data, 'llama3', 'tokenizer.json')),
                   'llama3/tokenizer.json'),
        'qwen3': (lambda: Tokenizer.from_file(os.path.join(args.data, 'qwen3', 'tokenizer.json')),
                  'qwen3/tokenizer.json'),
        'llama2': (lambda: Tokenizer.from_file(os.path.join(args.data, 'llama2', 'tokenizer.json')),
                   'llama2/tokenizer.json'),
        'llama2_metaspace': (lambda: llama2_metaspace(args.data),
                             'llama2/tokenizer.json with the overrides below'),
    }
    for name, (build, source) in families.items():
        tok = build()
        fixture = {
            'family': name,
            'source': source,
            'reference': 'tokenizers ' + tokenizers.__version__,
            'cases': record(tok, corpus),
        }
        if name == 'llama2_metaspace':
            fixture['overrides'] = METASPACE_OVERRIDES
        path = os.path.join(OUT_DIR, name + '.json')
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(fixture, f, ensure_ascii=False, indent=None, separators=(',', ':'))
            f.write('\n')
        print('wrote', os.path.relpath(path, ROOT), len(corpus), 'cases', file=sys.stderr)


if __name__ == '__main__':
    main()
