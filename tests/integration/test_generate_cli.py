"""`carpool generate` with several prompts (--prompt-ids A;B;C): they run together through the
engine, and at temperature 0 each one's tokens equal what the same prompt gives alone (the CPU
backend does not let batching change answers, with the default f16 KV cache as with int8)."""
import json
import subprocess

import pytest

from conftest import carpool_bin


def generate(prompt_ids, *extra):
    p = subprocess.run([carpool_bin(), "generate", "--device", "cpu", "--prompt-ids", prompt_ids,
                        "-n", "12", "--temperature", "0", "--ignore-eos", "--print-ids"]
                       + list(extra), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kv", ["f16", "int8"])
def test_a_batch_of_prompts_gives_each_prompt_its_own_tokens(kv):
    prompts = ["1,2,3,4", "5,6,7", "100,200,300,400,500,600,700,800,900,1000,1100,1200,1300"]
    together = generate(";".join(prompts), "--kv-cache-dtype", kv)
    assert len(together) == len(prompts)
    for p, tokens in zip(prompts, together):
        assert len(tokens) == 12
        assert tokens == generate(p, "--kv-cache-dtype", kv), p
    # Different prompts, different continuations: the rows were not mixed up.
    assert together[0] != together[1]


def test_bad_batches_are_refused_with_a_clear_error():
    for ids, message in [("1,2;3,x", "'x' is not a token id"), ("1,2;", "'' is not a token id"),
                         (";".join(["1,2"] * 65), "at most 64 prompts")]:
        p = subprocess.run([carpool_bin(), "generate", "--device", "cpu", "--prompt-ids", ids,
                            "-n", "2"], capture_output=True, text=True, timeout=300)
        assert p.returncode != 0
        assert message in p.stderr, (ids, p.stderr)
    p = subprocess.run([carpool_bin(), "generate", "--device", "cpu", "--prompt-ids", "1,2;3,4",
                        "-n", "2", "--dump-logits", "/dev/null"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode != 0 and "take one prompt" in p.stderr
