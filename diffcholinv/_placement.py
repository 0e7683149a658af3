"""Placement: the result, and its gradient, placed like the input.

Every call goes through :func:`placed_like_input`, single device or not; the
row-sharded algorithm (``_rowsharded.py``) is a separate concern, entered only
when ``_rowsharded.matrix_plan`` finds a matrix sharded along its rows.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.experimental.shard_alike import shard_alike


def _tie() -> bool:
    """Whether :func:`placed_like_input` ties shardings: Shardy on, more than one device.

    With GSPMD (the default of older jax, e.g. 0.4.34) ``shard_alike`` lowers to a
    side-effecting custom call, which the product-only programs must not hold.
    """
    shardy = getattr(jax.config, "jax_use_shardy_partitioner", False)
    return bool(shardy) and jax.device_count() > 1


@jax.custom_vjp
def _gradient_like(L: jax.Array) -> jax.Array:
    """The identity, whose cotangent is sharded like ``L`` (``shard_alike``)."""
    return L


def _gradient_like_fwd(L: jax.Array) -> tuple[jax.Array, jax.Array]:
    return L, L


def _gradient_like_bwd(L: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    return (shard_alike(g, L)[0],)


_gradient_like.defvjp(_gradient_like_fwd, _gradient_like_bwd)


def placed_like_input(op: Any, L: jax.Array, *, forward_mode: bool = False) -> jax.Array:
    """``op(L)``, its result and its gradient sharded like ``L``.

    Under ``jit`` on a mesh with auto axes the sharding of ``L`` is not part of
    its traced type, so ``_rowsharded.matrix_plan`` cannot see it and the per-matrix
    path runs; the partitioner would then place the result as it likes (a
    matrix sharded ``P("r", None)`` came back ``P()`` or ``P(None, "r")``).
    ``shard_alike`` puts the result in one sharding group with ``L``, so it
    comes back placed like the input, as on explicit axes. A batch-sharded
    input keeps its sharding either way; no collective is added.
    """
    if not _tie():
        out: jax.Array = op(L)
        return out
    if forward_mode:
        # _gradient_like is a custom_vjp function, which forward mode cannot
        # go through: the result alone is tied (the gradient, JAX's transpose,
        # is placed by the partitioner; the batch-sharded case keeps its
        # sharding either way).
        tied_fm: jax.Array = shard_alike(op(L), L)[0]
        return tied_fm
    tied: jax.Array = shard_alike(op(_gradient_like(L)), L)[0]
    return tied


__all__ = ["placed_like_input"]
