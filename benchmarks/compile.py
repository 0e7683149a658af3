"""The ``compile`` case: lowering plus XLA compilation of a fresh ``jit``.

A new lambda each time, so no cache is hit; ``--compile-sizes`` and
``--dtypes`` (``--quick``: the first dtype only); the forward pass and
``value_and_grad`` of ``sum(sin(C))``, diffcholinv and ``cho_solve``,
``--compile-repeats`` compilations each, interleaved, after one untimed
compilation of each program.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks._common import cold_row, interleaved
from benchmarks.programs import INVERSES, PROGRAMS, program


def compile_samples(n: int, dtype: str, kind: str, repeats: int) -> dict[str, list[float]]:
    """Seconds to lower and compile a fresh ``jit`` of each implementation's program."""
    spec = jax.ShapeDtypeStruct((n, n), jnp.dtype(dtype))
    samples: dict[str, list[float]] = {k: [] for k in INVERSES}
    for impl in interleaved(list(INVERSES), repeats):
        t0 = time.perf_counter()
        jax.jit(program(impl, kind)).lower(spec).compile()
        samples[impl].append(time.perf_counter() - t0)
    return samples


def warm_up_compiler(dtypes: list[str]) -> None:
    """One untimed compilation of every program, so that one-off set-up is not timed."""
    for dt in dtypes:
        spec = jax.ShapeDtypeStruct((8, 8), jnp.dtype(dt))
        for impl in INVERSES:
            for kind in PROGRAMS:
                jax.jit(program(impl, kind)).lower(spec).compile()


def rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    warm_up_compiler(args.compile_dtypes)
    return [
        cold_row("compile", n, dt, kind, compile_samples(n, dt, kind, args.compile_repeats))
        for kind in PROGRAMS
        for dt in args.compile_dtypes
        for n in args.compile_sizes
    ]
