"""``python -m benchmarks --gpu-check``: the core tests and the main cases on a CUDA GPU.

On a machine with a CUDA GPU (jax with its CUDA plugin, torch and pytest
installed, the project installed with ``pip install --no-deps -e .``) it runs

1. the core tests (values, gradients, transformations, complex, numerics:
   ``tests/test_forward.py``, ``test_grad.py``, ``test_transforms.py``,
   ``test_complex.py``, ``test_numerics.py``) with ``JAX_PLATFORMS=cuda``, in
   one process (no pytest-xdist needed);
2. the ``forward``, ``grad``, ``batched`` and ``compile`` cases against
   ``cho_solve`` and torch on CUDA (torch timed with
   ``torch.cuda.synchronize()``, jax with ``block_until_ready``),

in under 6 minutes, and prints one table; ``gpu_check.json`` in ``--out``. On
a machine without a GPU it says so and runs reduced (a few tests, tiny sizes),
so that the command is exercised by ``tests/test_benchmarks.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import jax

from benchmarks import batched, compile, forward, grad
from benchmarks._common import ROOT, Settings, format_table, torch

CORE_TESTS = [
    "tests/test_forward.py",
    "tests/test_grad.py",
    "tests/test_transforms.py",
    "tests/test_complex.py",
    "tests/test_numerics.py",
]
# Without a GPU: one test of each kind, so the command cannot rot.
REDUCED_TESTS = (
    "test_upper_and_lower_agree_bitwise or test_grad_through_cholesky_equals_grad_of_inv"
    " or test_check_must_be_bool"
)


def has_gpu() -> bool:
    try:
        return any(d.platform == "gpu" for d in jax.devices())
    except RuntimeError:
        return False


def core_tests(gpu: bool) -> dict[str, Any]:
    """The core tests in one pytest process; its exit code and summary line."""
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts="]
    if gpu:
        env["JAX_PLATFORMS"] = "cuda"
        cmd += CORE_TESTS
    else:
        cmd += [*CORE_TESTS, "-k", REDUCED_TESTS]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0:
        print(out.stdout[-6000:], out.stderr[-3000:], file=sys.stderr)
    return {
        "returncode": out.returncode,
        "summary": lines[-1] if lines else out.stderr.strip()[-500:],
        "seconds": time.perf_counter() - t0,
        "command": " ".join(cmd[1:]),
    }


def sizes(args: argparse.Namespace, gpu: bool) -> argparse.Namespace:
    """The case options of the check: full sizes on a GPU, tiny ones without."""
    a = argparse.Namespace(**vars(args))
    if gpu:
        a.sizes, a.grad_sizes = [128, 256, 512, 1024, 2048], [64, 128, 256, 512, 1024, 2048]
        a.batched = [(100000, 4), (20000, 16), (2000, 64)]
        a.compile_sizes, a.compile_dtypes = [64, 1000, 2048], ["float32", "float64"]
        a.repeats, a.compile_repeats = 5, 2
    else:
        a.sizes, a.grad_sizes, a.batched = [16], [16], [(64, 4)]
        a.compile_sizes, a.compile_dtypes = [8], ["float64"]
        a.repeats, a.compile_repeats = 2, 1
    a.dtypes = ["float32", "float64"] if gpu else ["float64"]
    return a


def main(args: argparse.Namespace) -> dict[str, Any]:
    gpu = has_gpu()
    cuda_torch = torch is not None and Settings.use_torch and torch.cuda.is_available()
    Settings.cuda = gpu and cuda_torch
    if gpu:
        Settings.pause = 0.0  # no CPU worker threads between the peers' kernels
        if not cuda_torch:
            Settings.use_torch = False  # torch on the CPU is no GPU peer
    else:
        print(
            "gpu-check: no CUDA GPU here (jax devices: "
            + ", ".join(str(d) for d in jax.devices())
            + "); running reduced on the CPU",
            flush=True,
        )
    t0 = time.perf_counter()
    tests = core_tests(gpu)
    a = sizes(args, gpu)
    rows: list[dict[str, Any]] = []
    for case in (forward, grad, batched, compile):
        rows += case.rows(a)
    device = str(jax.devices()[0]) if gpu else "cpu (reduced)"
    if gpu and hasattr(jax.devices()[0], "device_kind"):
        device = jax.devices()[0].device_kind
    result = {
        "device": device,
        "gpu": gpu,
        "torch_cuda": Settings.cuda,
        "tests": tests,
        "seconds": time.perf_counter() - t0,
        "rows": rows,
    }
    print(f"gpu-check on {device}: core tests {tests['summary']} ({tests['seconds']:.0f} s)")
    print(format_table(rows))
    print(f"gpu-check: {result['seconds']:.0f} s in all")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "gpu_check.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {path}")
    if tests["returncode"] != 0:
        raise SystemExit(f"gpu-check: the core tests failed ({tests['summary']})")
    return result
