"""The GPU check's scripts parse: device time is short, so a syntax error must be caught here,
not on the GPU machine. (They run only there; this machine has no GPU, torch or transformers.)"""
import glob
import os
import py_compile
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY_SCRIPTS = sorted(glob.glob(os.path.join(REPO, "scripts", "gpu", "*.py")))
SHELL_SCRIPTS = [os.path.join(REPO, "scripts", name) for name in ("gpu-check", "build-gpu")]


def test_there_are_gpu_scripts():
    assert PY_SCRIPTS, "no scripts under scripts/gpu"


@pytest.mark.parametrize("path", PY_SCRIPTS, ids=os.path.basename)
def test_python_script_compiles(path, tmp_path):
    py_compile.compile(path, cfile=str(tmp_path / "out.pyc"), doraise=True)


@pytest.mark.parametrize("path", SHELL_SCRIPTS, ids=os.path.basename)
def test_shell_script_parses(path):
    assert os.access(path, os.X_OK), f"{path} is not executable"
    p = subprocess.run(["bash", "-n", path], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
