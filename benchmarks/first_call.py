"""The ``first_call`` case: what a new user waits for.

``jax.jit(f)(L)`` called once, to its result, in a fresh Python process
(after its imports and building ``L``), float64, forward and
``value_and_grad`` at ``--first-call-sizes``; ``--first-call-repeats``
processes each, interleaved.
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks._common import cold_row, fresh_process_samples
from benchmarks.programs import INVERSES, PROGRAMS

SCRIPT = """
import json, time
import jax
import jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_enable_compilation_cache", False)
from benchmarks.programs import factor, program
L = jax.block_until_ready(jnp.asarray(factor({n}, (), "float64")))
f = jax.jit(program({impl!r}, {kind!r}))
t0 = time.perf_counter()
jax.block_until_ready(f(L))
print(json.dumps(time.perf_counter() - t0))
"""


def rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    for kind in PROGRAMS:
        for n in args.first_call_sizes:
            samples = fresh_process_samples(
                lambda impl, n=n, kind=kind: SCRIPT.format(n=n, impl=impl, kind=kind),
                list(INVERSES),
                args.first_call_repeats,
                args.blas_threads,
            )
            out.append(cold_row("first_call", n, "float64", kind, samples))
    return out
