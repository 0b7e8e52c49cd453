#!/usr/bin/env python3
"""Writes the seed corpora of the format fuzzers: small valid files and slightly broken ones.

  tests/fuzz/corpus/gguf/         GGUF v2/v3 files built byte by byte (struct only)
  tests/fuzz/corpus/safetensors/  safetensors files
  tests/fuzz/corpus/hf_config/    config.json, model.safetensors.index.json, generation_config.json
  tests/fuzz/corpus/server_request/  /v1/completions and /v1/chat/completions request bodies

Standard library only. Run: python3 tests/fuzz/make_corpus.py
"""

import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
GOLDEN_MODELS = os.path.join(os.path.dirname(HERE), "golden", "models")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- GGUF ---

GGUF_U8, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL = range(8)
GGUF_STRING, GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64 = range(8, 13)
SCALAR_FMT = {GGUF_U8: "<B", GGUF_I8: "<b", GGUF_U16: "<H", GGUF_I16: "<h", GGUF_U32: "<I",
              GGUF_I32: "<i", GGUF_F32: "<f", GGUF_BOOL: "<?", GGUF_U64: "<Q", GGUF_I64: "<q",
              GGUF_F64: "<d"}


def gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_value(vtype, value):
    if vtype == GGUF_STRING:
        return gguf_str(value)
    if vtype == GGUF_ARRAY:
        etype, items = value
        out = struct.pack("<IQ", etype, len(items))
        for it in items:
            out += gguf_value(etype, it)
        return out
    return struct.pack(SCALAR_FMT[vtype], value)


def gguf_file(kvs, tensors, version=3, alignment=32):
    """kvs: [(key, type, value)]; tensors: [(name, dims (ggml order), ggml type, data bytes)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, vtype, value in kvs:
        out += gguf_str(key) + struct.pack("<I", vtype) + gguf_value(vtype, value)
    offset = 0
    for name, dims, ttype, data in tensors:
        out += gguf_str(name) + struct.pack("<I", len(dims))
        for d in dims:
            out += struct.pack("<Q", d)
        out += struct.pack("<IQ", ttype, offset)
        offset += (len(data) + alignment - 1) // alignment * alignment
    out += b"\0" * (-len(out) % alignment)
    for _, _, _, data in tensors:
        out += data + b"\0" * (-len(data) % alignment)
    return out


def q8_0_block(scale_f16_bits, qs):
    return struct.pack("<H", scale_f16_bits) + bytes(q & 0xFF for q in qs)


def make_gguf():
    kvs = [
        ("general.architecture", GGUF_STRING, "llama"),
        ("general.name", GGUF_STRING, "tiny"),
        ("general.alignment", GGUF_U32, 32),
        ("llama.block_count", GGUF_U32, 1),
        ("llama.embedding_length", GGUF_U32, 32),
        ("llama.attention.head_count", GGUF_U32, 4),
        ("llama.attention.layer_norm_rms_epsilon", GGUF_F32, 1e-5),
        ("llama.rope.freq_base", GGUF_F64, 10000.0),
        ("tokenizer.ggml.tokens", GGUF_ARRAY, (GGUF_STRING, ["<s>", "</s>", "a", "b", "ab"])),
        ("tokenizer.ggml.scores", GGUF_ARRAY, (GGUF_F32, [0.0, 0.0, -1.0, -2.0, -0.5])),
        ("tokenizer.ggml.token_type", GGUF_ARRAY, (GGUF_I32, [3, 3, 1, 1, 1])),
        ("some.bool", GGUF_BOOL, True),
        ("some.i8", GGUF_I8, -3),
        ("some.u64", GGUF_U64, 1 << 40),
        ("some.i64", GGUF_I64, -(1 << 40)),
        ("some.u16", GGUF_U16, 65535),
        ("some.i16", GGUF_I16, -2),
        ("some.u8", GGUF_U8, 200),
    ]
    f32 = struct.pack("<8f", *[0.5 * i for i in range(8)])
    f16 = struct.pack("<8H", *[0x3C00] * 8)
    q8 = q8_0_block(0x3C00, list(range(-16, 16)))
    tensors = [
        ("token_embd.weight", [4, 2], 0, f32),
        ("output_norm.weight", [8], 1, f16),
        ("blk.0.attn_q.weight", [32, 1], 8, q8),
    ]
    good = gguf_file(kvs, tensors)
    write("gguf", "valid_v3.gguf", good)
    write("gguf", "valid_v2.gguf", gguf_file(kvs[:4], tensors[:1], version=2))
    write("gguf", "empty_v3.gguf", gguf_file([], []))
    write("gguf", "align64.gguf",
          gguf_file([("general.alignment", GGUF_U32, 64)], tensors[:2], alignment=64))
    # Slightly broken.
    write("gguf", "truncated_header.gguf", good[:40])
    write("gguf", "truncated_data.gguf", good[:-10])
    write("gguf", "bad_magic.gguf", b"GGUG" + good[4:])
    write("gguf", "version_9.gguf", good[:4] + struct.pack("<I", 9) + good[8:])
    write("gguf", "huge_tensor_count.gguf", good[:8] + struct.pack("<Q", 1 << 62) + good[16:])
    write("gguf", "huge_kv_count.gguf", good[:16] + struct.pack("<Q", 1 << 62) + good[24:])
    write("gguf", "bad_tensor_type.gguf", gguf_file([], [("w", [4], 99, b"\0" * 32)]))
    write("gguf", "bad_dims.gguf", gguf_file([], [("w", [1 << 40, 1 << 40], 0, b"\0" * 32)]))
    write("gguf", "nested_array.gguf",
          gguf_file([("a", GGUF_ARRAY, (GGUF_ARRAY, []))], []))
    write("gguf", "bad_alignment.gguf", gguf_file([("general.alignment", GGUF_U32, 3)], []))
    write("gguf", "huge_string.gguf",
          b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 60) + b"key")


# --- safetensors ---

def st_file(entries, metadata=None, pad=True, extra=b""):
    """entries: [(name, dtype, shape, data bytes)]; offsets assigned in order."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name, dtype, shape, blob in entries:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data + extra


def st_raw(header_text, data):
    h = header_text.encode()
    return struct.pack("<Q", len(h)) + h + data


def make_safetensors():
    f32 = struct.pack("<6f", *[0.25 * i - 0.5 for i in range(6)])
    f16 = struct.pack("<4H", 0x3C00, 0xBC00, 0x0001, 0x7BFF)
    bf16 = struct.pack("<2H", 0x3F80, 0xC000)
    entries = [("model.embed_tokens.weight", "F32", [2, 3], f32),
               ("model.norm.weight", "F16", [4], f16),
               ("model.layers.0.self_attn.q_proj.bias", "BF16", [2], bf16),
               ("empty", "F32", [0, 7], b""),
               ("scalar", "F32", [], struct.pack("<f", 1.0))]
    write("safetensors", "valid.safetensors", st_file(entries, {"format": "pt"}))
    write("safetensors", "valid_unpadded.safetensors", st_file(entries[:2], pad=False))
    write("safetensors", "empty_header.safetensors", st_file([]))
    # Slightly broken.
    good = st_file(entries, {"format": "pt"})
    write("safetensors", "truncated.safetensors", good[:-5])
    write("safetensors", "trailing.safetensors", good + b"\0\0\0\0")
    write("safetensors", "huge_header_len.safetensors", struct.pack("<Q", 1 << 50) + good[8:])
    write("safetensors", "bad_dtype.safetensors", st_file([("w", "I64", [1], b"\0" * 8)]))
    write("safetensors", "mismatch.safetensors", st_file([("w", "F32", [3], b"\0" * 8)]))
    write("safetensors", "overlap.safetensors", st_raw(
        '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
        '"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', b"\0" * 12))
    write("safetensors", "hole.safetensors", st_raw(
        '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
        '"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}', b"\0" * 12))
    write("safetensors", "duplicate.safetensors", st_raw(
        '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
        '"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8))
    write("safetensors", "overflow.safetensors", st_raw(
        '{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}}',
        b"\0" * 4))
    write("safetensors", "deep.safetensors", st_raw('{"a":[[[[[[1]]]]]]}', b""))


# --- Hugging Face JSON files ---

def make_hf_config():
    for model in sorted(os.listdir(GOLDEN_MODELS)) if os.path.isdir(GOLDEN_MODELS) else []:
        for name in ("config.json", "generation_config.json", "model.safetensors.index.json"):
            path = os.path.join(GOLDEN_MODELS, model, name)
            if os.path.exists(path):
                shutil.copy(path, os.path.join(CORPUS, "hf_config", model + "_" + name))
    llama31 = {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "hidden_act": "silu",
        "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 131072,
        "mlp_bias": False, "model_type": "llama", "num_attention_heads": 32,
        "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": False, "vocab_size": 128256}
    write("hf_config", "llama31_config.json", json.dumps(llama31, indent=2))
    qwen = {"architectures": ["Qwen2ForCausalLM"], "hidden_size": 896, "intermediate_size": 4864,
            "max_position_embeddings": 32768, "num_attention_heads": 14, "num_hidden_layers": 24,
            "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
            "sliding_window": 32768, "tie_word_embeddings": True, "use_sliding_window": False,
            "vocab_size": 151936, "max_window_layers": 21, "hidden_act": "silu"}
    write("hf_config", "qwen25_config.json", json.dumps(qwen))
    write("hf_config", "generation_config.json", json.dumps(
        {"bos_token_id": 128000, "do_sample": True, "eos_token_id": [128001, 128008, 128009],
         "temperature": 0.6, "top_p": 0.9, "top_k": 50, "repetition_penalty": 1.1}))
    # Slightly broken.
    bad = dict(llama31)
    del bad["hidden_size"]
    write("hf_config", "missing_hidden.json", json.dumps(bad))
    bad = dict(llama31, num_key_value_heads=-8)
    write("hf_config", "negative_kv.json", json.dumps(bad))
    bad = dict(llama31, rope_scaling={"rope_type": "yarn", "factor": 4.0})
    write("hf_config", "yarn.json", json.dumps(bad))
    write("hf_config", "duplicate_key.json", '{"vocab_size": 1, "vocab_size": 2}')
    write("hf_config", "truncated.json", json.dumps(llama31)[:100])
    write("hf_config", "index_traversal.json", '{"weight_map": {"w": "../../x.safetensors"}}')


def make_server_request():
    seeds = {
        "completion.json": {"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 16,
                            "temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05,
                            "stop": ["\n", "END"], "n": 2, "logprobs": 3, "echo": True,
                            "seed": 7, "presence_penalty": 0.5, "frequency_penalty": -0.5,
                            "repetition_penalty": 1.1, "logit_bias": {"42": -100}},
        "completion_ids.json": {"prompt": [[1, 2, 3], [4, 5]], "max_tokens": 4, "stream": True,
                                "stream_options": {"include_usage": True}},
        "chat.json": {"model": "smollm2", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Why?"}],
            "max_completion_tokens": 8, "logprobs": True, "top_logprobs": 2, "user": "u"},
        "chat_schema.json": {"messages": [{"role": "user", "content": "x"}], "response_format": {
            "type": "json_schema", "json_schema": {"name": "p", "schema": {
                "type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                                 "age": {"type": "integer", "minimum": 0}},
                "required": ["name"]}}}},
        # pydantic's shapes: $defs and $ref (one refers to itself), anyOf with null, type lists
        "chat_schema_refs.json": {"messages": [{"role": "user", "content": "x"}],
                                  "response_format": {"type": "json_schema", "json_schema": {
                                      "name": "p", "schema": {
                                          "$defs": {"N": {"type": "object", "properties": {
                                              "up": {"anyOf": [{"$ref": "#/$defs/N"},
                                                               {"type": "null"}]}}}},
                                          "type": "object", "properties": {
                                              "n": {"$ref": "#/$defs/N"},
                                              "t": {"type": ["string", "null"]}}}}}},
        "chat_json_mode.json": {"messages": [{"role": "user", "content": "x"}],
                                "response_format": {"type": "json_object"}},
        # vLLM's extensions
        "vllm_completion.json": {"prompt": "x", "stop_token_ids": [2, 3], "min_tokens": 0,
                                 "include_stop_str_in_output": True, "max_tokens": 2.0,
                                 "guided_json": "{\"type\": \"object\", \"properties\": "
                                                "{\"a\": {\"type\": \"integer\"}}}"},
        "vllm_chat.json": {"messages": [{"role": "user", "content": "x"}],
                           "add_generation_prompt": False,
                           "chat_template_kwargs": {"enable_thinking": False},
                           "guided_json": {"type": "object"}, "top_logprobs": 0},
        # tools: a history with a call and its result, a required choice over two tools; a named
        # choice whose user text is itself a Hermes call (the bytes are also read as answers)
        "chat_tools.json": {"messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "18 C"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
                "type": "object", "properties": {"city": {"type": "string"}}}}},
                {"type": "function", "function": {"name": "now"}}],
            "tool_choice": "required", "parallel_tool_calls": False},
        "chat_tools_named.json": {"messages": [{"role": "user", "content":
            "<tool_call>{\"name\": \"now\", \"arguments\": {}}</tool_call>"}],
            "tools": [{"type": "function", "function": {"name": "now"}}],
            "tool_choice": {"type": "function", "function": {"name": "now"}}},
    }
    for name, body in seeds.items():
        write("server_request", name, json.dumps(body))
    # Broken: numbers beyond double (this once ended the server), wrong types, truncation.
    write("server_request", "overflow.json", '{"prompt": "hi", "temperature": 1e400}')
    write("server_request", "wrong_types.json", '{"prompt": 5, "n": "2", "stop": [1]}')
    write("server_request", "truncated.json", json.dumps(seeds["chat.json"])[:60])
    # A schema nested deep inside a string (once overflowed the stack at 200,000 levels).
    deep = '{"type": "object", "required": [' + "[" * 80 + "]" * 80 + "]}"
    write("server_request", "deep_string_schema.json", json.dumps({"prompt": "x",
                                                                  "guided_json": deep}))


def main():
    make_server_request()
    for target in ("gguf", "safetensors", "hf_config"):
        # Inputs that once found a bug (regress_*) are kept; the rest is written anew.
        d = os.path.join(CORPUS, target)
        os.makedirs(d, exist_ok=True)
        for name in os.listdir(d):
            if not name.startswith("regress_"):
                os.remove(os.path.join(d, name))
    make_gguf()
    make_safetensors()
    make_hf_config()
    for target in ("gguf", "safetensors", "hf_config", "server_request"):
        print("%s: %d files" % (target, len(os.listdir(os.path.join(CORPUS, target)))))


if __name__ == "__main__":
    main()
