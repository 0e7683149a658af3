"""The ``memory`` case: compiled temp memory of ``jax.jit(jax.value_and_grad(loss))``.

``memory_analysis().temp_size_in_bytes``, float64, ``--memory-sizes``, for
three losses of ``C``: ``sum(G * C)`` and the GP-style ``y C y + tr(C)`` (``G``
and ``y`` arguments, not constants) and ``sum(sin(C))``; in MiB and in ``n²``
elements (bytes / ``n² × itemsize``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks.programs import INVERSES

# The losses: loss(C, *data), and the shapes of data for n.
LOSSES: dict[str, tuple[Callable[..., jax.Array], Callable[[int], list[tuple[int, ...]]]]] = {
    "sum(G*C)": (lambda C, G: jnp.sum(G * C), lambda n: [(n, n)]),
    "y@C@y+trace(C)": (lambda C, y: y @ C @ y + jnp.trace(C), lambda n: [(n,)]),
    "sum(sin(C))": (lambda C: jnp.sum(jnp.sin(C)), lambda n: []),
}


def grad_temp_bytes(n: int, dtype: str, loss_name: str) -> dict[str, int]:
    """Compiled temp memory of ``value_and_grad`` of a loss of ``C``, per implementation."""
    loss, data_shapes = LOSSES[loss_name]
    specs = [jax.ShapeDtypeStruct(s, jnp.dtype(dtype)) for s in [(n, n), *data_shapes(n)]]

    def temp(f: Callable[[jax.Array], jax.Array]) -> int:
        g = jax.jit(jax.value_and_grad(lambda L, *data: loss(f(L), *data)))
        return int(g.lower(*specs).compile().memory_analysis().temp_size_in_bytes)

    return {k: temp(f) for k, f in INVERSES.items()}


def memory_row(n: int, dtype: str, loss_name: str) -> dict[str, Any]:
    temp = grad_temp_bytes(n, dtype, loss_name)
    n2 = {k: b / (n * n * jnp.dtype(dtype).itemsize) for k, b in temp.items()}
    ratio = temp["diffcholinv"] / temp["cho_solve"]
    return {
        "case": "memory",
        "n": n,
        "dtype": dtype,
        "loss": loss_name,
        "temp_bytes": temp,
        "temp_n2": n2,
        "ratio": ratio,
    }


def rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [memory_row(n, "float64", loss) for n in args.memory_sizes for loss in LOSSES]
