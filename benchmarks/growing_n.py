"""The ``growing_n`` case: a GP fitted while its ``n`` grows by one per step.

``n = 50 … 69`` (``--growing-n``), each step ``jax.jit`` of value and gradient
(in the log lengthscale) of a negative log marginal likelihood that uses
``K⁻¹``, compiled anew and called once, as Bayesian optimisation or active
learning does: the whole loop's seconds in a fresh process,
``--growing-repeats`` processes each, diffcholinv and ``cho_solve``.
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks._common import cold_row, fresh_process_samples
from benchmarks.programs import INVERSES

SCRIPT = """
import json, time
import jax
import jax.numpy as jnp
import numpy as np
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_enable_compilation_cache", False)
from benchmarks.programs import gp_nlml
rng = np.random.default_rng(0)
t0 = time.perf_counter()
for n in range({lo}, {hi} + 1):
    x = jnp.asarray(np.sort(rng.uniform(0.0, 10.0, n)))
    y = jnp.sin(x) + 0.1 * jnp.asarray(rng.standard_normal(n))
    jax.block_until_ready(jax.jit(gp_nlml({impl!r}))(jnp.asarray(0.0), x, y))
print(json.dumps(time.perf_counter() - t0))
"""


def rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    lo, hi = args.growing_n
    samples = fresh_process_samples(
        lambda impl: SCRIPT.format(lo=lo, hi=hi, impl=impl),
        list(INVERSES),
        args.growing_repeats,
        args.blas_threads,
    )
    return [cold_row("growing_n", hi, "float64", "value_and_grad", samples) | {"n_from": lo}]
