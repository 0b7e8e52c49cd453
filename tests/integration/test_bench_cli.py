"""`carpool bench` as a user runs it: the JSON line, and the op-by-op table of a decode step
(--op-times) whose ops account for the step and carry the matmuls' bytes and FLOPs."""
import json
import subprocess

from conftest import carpool_bin


def bench(*args):
    p = subprocess.run([carpool_bin(), "bench", "--device", "cpu", "--prefill-len", "0", "-n", "4",
                        "--json"] + list(args), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_op_times_account_for_the_decode_step():
    r = bench("-b", "4", "--op-times")
    assert r["graphs"] is False
    ops = {o["op"]: o for o in r["op_times"]}
    # SmolLM2-135M: 30 layers of fused q|k|v (576 -> 960), o (576 -> 576), gate|up
    # (576 -> 3072), down (1536 -> 576), and the output matrix (576 -> 49152).
    for key, calls in [("matmul m4 576->960", 30), ("matmul m4 576->576", 30),
                       ("matmul m4 576->3072", 30), ("matmul m4 1536->576", 30),
                       ("matmul m4 576->49152", 1), ("attention", 30)]:
        match = [o for name, o in ops.items() if name.startswith(key)]
        assert len(match) == 1, (key, sorted(ops))
        assert match[0]["calls_per_step"] == calls, (key, match[0])
        assert match[0]["ms_per_step"] > 0
    down = next(o for name, o in ops.items() if name.startswith("matmul m4 1536->576"))
    assert down["flops_per_s"] > 0 and down["bytes_per_s"] > 0
    # The ops' time is the step's time (CPU ops run on the calling thread), within the
    # bookkeeping between ops.
    step_ms = r["decode_step_s_median"] * 1e3
    assert 0.5 * step_ms < r["op_ms_per_step"] < 1.5 * step_ms, (r["op_ms_per_step"], step_ms)


def test_without_op_times_there_is_no_table():
    r = bench("-b", "2")
    assert "op_times" not in r
    assert r["decode_tokens_per_s"] > 0


def test_device_draws_are_refused_clearly_where_the_backend_has_none():
    # --temperature times a device-side draw per step; the CPU backend draws on the host, so the
    # bench says so instead of timing something else. Out-of-range draw parameters are named.
    for extra, message in [(["--temperature", "1", "--top-p", "0.9"], "does not draw tokens"),
                           (["--temperature", "1", "--top-p", "1.5"], "top-p in (0, 1]"),
                           (["--temperature", "-1"], "temperature in [0, 100]")]:
        p = subprocess.run([carpool_bin(), "bench", "--device", "cpu", "--prefill-len", "0",
                            "-n", "2", "-b", "2"] + extra, capture_output=True, text=True,
                           timeout=300)
        assert p.returncode != 0
        assert message in p.stderr, (extra, p.stderr)


def test_op_times_of_the_prefill():
    # With --prefill-len, --op-times also lists the prefill's ops (a separate, untimed run):
    # its matmuls at the prompt's width, and their sum near the timed prefill's wall time (CPU
    # ops run on the calling thread).
    p = subprocess.run([carpool_bin(), "bench", "--device", "cpu", "--prefill-len", "64", "-n", "2",
                        "-b", "1", "--op-times", "--json"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    ops = {o["op"]: o for o in r["prefill_op_times"]}
    wide = [o for name, o in ops.items() if name.startswith("matmul m64 576->3072")]
    assert len(wide) == 1 and wide[0]["calls_per_step"] == 30, sorted(ops)
    assert 0.3 * r["prefill_s"] * 1e3 < r["prefill_op_ms"] < 3 * r["prefill_s"] * 1e3
    # Without a prefill there is no prefill table.
    assert "prefill_op_times" not in bench("-b", "1", "--op-times")
