"""The ``contention`` case: LAPACK's threads against XLA's on CPU.

Each figure in a fresh process (the BLAS reads ``OPENBLAS_NUM_THREADS`` when it
is loaded, so the switch must precede ``import jax``), once with the thread
settings users get by default and once with ``OPENBLAS_NUM_THREADS=1``:

- ``forward 64``: a jitted 64 × 64 ``cholesky_inv``, whose program calls LAPACK
  (``trsm``);
- ``GP step 256``: value and gradient of a GP's negative log marginal
  likelihood in which the user's own ``jnp.linalg.cholesky`` is the LAPACK
  call (``K`` from 256 points, ``K⁻¹`` from ``cholesky_inv``).

Every sample is one call, back to back as a training loop makes them, so the
median and max show what the worker threads cost. ``python -m
benchmarks.contention`` prints the table alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from benchmarks._common import ROOT, summary

SCRIPT = """
import json, time
import jax
import jax.numpy as jnp
import numpy as np
jax.config.update("jax_enable_x64", True)
from benchmarks.programs import factor
from diffcholinv import cholesky_inv
if {program!r} == "forward 64":
    f, args = jax.jit(cholesky_inv), (jnp.asarray(factor(64, (), "float64")),)
else:
    def nlml(log_ell, x, y):
        d = (x[:, None] - x[None, :]) / jnp.exp(log_ell)
        K = jnp.exp(-0.5 * d**2) + 1e-2 * jnp.eye(x.shape[0], dtype=x.dtype)
        L = jnp.linalg.cholesky(K)
        return 0.5 * y @ cholesky_inv(L) @ y + jnp.sum(jnp.log(jnp.diagonal(L)))
    rng = np.random.default_rng(0)
    x = jnp.asarray(np.sort(rng.uniform(0.0, 10.0, 256)))
    f, args = jax.jit(jax.value_and_grad(nlml)), (jnp.asarray(0.0), x, jnp.sin(x))
jax.block_until_ready(f(*args))
samples = []
for _ in range({calls}):
    t0 = time.perf_counter()
    jax.block_until_ready(f(*args))
    samples.append(time.perf_counter() - t0)
print(json.dumps(samples))
"""
PROGRAMS = ("forward 64", "GP step 256")


def measure(program: str, threads: str, calls: int) -> list[float]:
    """Seconds of ``calls`` single calls of ``program`` in a fresh process."""
    env = dict(os.environ)
    env.pop("OPENBLAS_NUM_THREADS", None)
    if threads != "default":
        env["OPENBLAS_NUM_THREADS"] = threads
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(program=program, calls=calls)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    samples: list[float] = json.loads(out.stdout.split("\n")[-2])
    return samples


def rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    calls = 20 if args.quick else 200
    out = []
    for program in PROGRAMS:
        for threads in ("default", "1"):
            s = summary(measure(program, threads, calls))
            out.append(
                {
                    "case": "contention",
                    "n": int(program.split()[-1]),
                    "dtype": "float64",
                    "program": program,
                    "threads": threads,
                    "seconds": {"diffcholinv": s},
                }
            )
    return out


def main() -> None:
    args = argparse.Namespace(quick="--quick" in sys.argv)
    print("| program | BLAS threads | min | median | max |")
    print("|---|---|---|---|---|")
    for r in rows(args):
        s = r["seconds"]["diffcholinv"]
        ms = " | ".join(f"{s[k] * 1e3:.3g} ms" for k in ("min", "median", "max"))
        print(f"| {r['program']} | {r['threads']} | {ms} |")


if __name__ == "__main__":
    main()
