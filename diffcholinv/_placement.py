"""Placement: the result, and its gradient, placed like the input.

Every call goes through :func:`placed_like_input`, single device or not; the
row-sharded algorithm (``_rowsharded.py``) is a separate concern, entered only
when ``_rowsharded.matrix_plan`` finds a matrix sharded along its rows.

The per-matrix loops use :func:`tie`, :func:`block_row` and
:func:`set_block_row`, so that under ``jit`` on auto axes, where the library
cannot see the placement, the partitioner keeps them sharded like ``L``
(docs/scaling.md has the per-device memory this gives).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental.shard_alike import shard_alike


def _tie() -> bool:
    """Whether :func:`placed_like_input` ties shardings: Shardy on, more than one device.

    With GSPMD (the default of older jax, e.g. 0.4.34) ``shard_alike`` lowers to a
    side-effecting custom call, which the product-only programs must not hold.
    """
    shardy = getattr(jax.config, "jax_use_shardy_partitioner", False)
    return bool(shardy) and jax.device_count() > 1


def tie(x: jax.Array, like: jax.Array) -> jax.Array:
    """``x``, in one sharding group with ``like`` (same shape) when :func:`_tie` holds.

    The loops of the per-matrix path tie what they carry to the factor (or to
    the slice of it whose shape they have). Under ``jit`` on a mesh with auto
    axes the library cannot see how ``L`` is placed (``matrix_plan`` gets
    ``None``), but the partitioner can: tied, the loop carries stay sharded
    as ``L`` is (along its rows, or along a batch axis) instead of being
    replicated on every device, which is what it chose untied. Identity on one
    device and under GSPMD.
    """
    if not _tie() or x.shape != like.shape:
        return x
    out: jax.Array = shard_alike(x, like)[0]
    return out


def block_row(x: jax.Array, k: jax.Array, b: int) -> jax.Array:
    """Rows ``k b … (k+1) b`` of ``x`` (``[..., N b, m]`` → ``[..., b, m]``).

    A dynamic slice; when :func:`tie` ties, a masked sum over the ``N`` row
    blocks instead, which a row-sharded ``x`` answers with a sum of ``b × m``
    values across devices where a slice at a traced row would gather all of
    ``x`` on every device.
    """
    if not _tie():
        out: jax.Array = lax.dynamic_slice_in_dim(x, k * b, b, axis=-2)
        return out
    rows = x.shape[-2]
    mine = lax.broadcasted_iota(jnp.int32, (rows, 1), 0) // b == k
    masked = jnp.where(mine, x, jnp.zeros((), x.dtype))
    summed: jax.Array = jnp.sum(masked.reshape(*x.shape[:-2], rows // b, b, x.shape[-1]), axis=-3)
    return summed


def set_block_row(x: jax.Array, row: jax.Array, k: jax.Array) -> jax.Array:
    """``x`` with rows ``k b … (k+1) b`` set to ``row`` (``[..., b, m]``), ``b`` from ``row``.

    A dynamic update; when :func:`tie` ties, a select against ``row`` tiled
    down the rows, for the reason :func:`block_row` gives.
    """
    b = row.shape[-2]
    if not _tie():
        out: jax.Array = lax.dynamic_update_slice_in_dim(x, row, k * b, axis=-2)
        return out
    rows = x.shape[-2]
    mine = lax.broadcasted_iota(jnp.int32, (rows, 1), 0) // b == k
    tiled = jnp.tile(row, (*([1] * (x.ndim - 2)), rows // b, 1))
    selected: jax.Array = jnp.where(mine, tiled, x)
    return selected


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


__all__ = ["block_row", "placed_like_input", "set_block_row", "tie"]
