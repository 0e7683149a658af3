"""``python -m diffcholinv``: the self-check a new user runs first."""

from __future__ import annotations

import subprocess
import sys

import pytest

from diffcholinv.__main__ import main


def test_module_runs_and_passes():
    proc = subprocess.run(
        [sys.executable, "-m", "diffcholinv", "--n", "12", "--batch", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "jax " in out and "device " in out
    assert "max relative error vs numpy.linalg.inv" in out
    assert "diffcholinv self-check: PASSED" in out


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "python -m diffcholinv" in capsys.readouterr().out


def test_bad_arguments_exit_nonzero(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--n", "0"])
    assert e.value.code == 2


def test_in_process_float32(capsys):
    assert main(["--n", "8", "--batch", "2", "--dtype", "float32"]) == 0
    assert "PASSED" in capsys.readouterr().out
