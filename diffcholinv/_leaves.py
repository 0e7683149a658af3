"""Inverses of small lower-triangular blocks: the leaves of the blocked algorithm.

Each function takes lower-triangular ``L`` of shape ``[..., b, b]`` (upper
triangle zero; in practice the batch of diagonal blocks of a factor) and
returns ``L⁻¹``. Four ways, chosen per ``method`` by :func:`for_method`:

- :func:`solve`: a triangular solve against ``I`` (LAPACK/cuBLAS ``trsm``);
- :func:`substitution`: forward substitution, one row per ``lax.fori_loop``
  step, made of matrix products only, for platforms that cannot lower
  triangular solves (jax-metal: jax-ml/jax#17490);
- :func:`unrolled`: forward substitution unrolled over the rows, elementwise
  over the batch, for tiny real blocks (``b ≤ UNROLL_MAX``): a few fused loops
  instead of one LAPACK call per block, and products only as well;
- :func:`doubling`: the level-batched doubling of :mod:`._doubling` over
  leaves of the two above, products only: ``"auto"``'s inverter of a factor
  that is one block.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from . import _doubling, _matrix

Inverter = Callable[[jax.Array], jax.Array]

UNROLL_MAX = 8
"""Real blocks up to this size are inverted by :func:`unrolled`."""


def solve(L: jax.Array) -> jax.Array:
    """``L⁻¹`` by a triangular solve against ``I``."""
    return lax.linalg.triangular_solve(L, _matrix.identity_like(L), left_side=True, lower=True)


def substitution(L: jax.Array) -> jax.Array:
    """``L⁻¹`` by forward substitution in a ``fori_loop``: products and elementwise ops only.

    Row ``i`` of ``X = L⁻¹`` solves ``Σⱼ L[i, j] X[j] = eᵢ``; rows ``≥ i`` of
    ``X`` are still zero when row ``i`` is computed, so the full product
    of ``L[i]``, masked to ``j < i``, with ``X`` sums exactly those rows.
    """
    axis = L.ndim - 2
    eye = _matrix.identity_like(L)
    cols = lax.broadcasted_iota(jnp.int32, (1, L.shape[-1]), 1)
    zero = jnp.zeros((), L.dtype)

    def body(i: jax.Array, X: jax.Array) -> jax.Array:
        li = lax.dynamic_index_in_dim(L, i, axis=axis, keepdims=True)  # [..., 1, b]
        ei = lax.dynamic_index_in_dim(eye, i, axis=axis, keepdims=True)
        lii = lax.dynamic_index_in_dim(li, i, axis=axis + 1, keepdims=True)  # [..., 1, 1]
        # Only j < i: an infinite Lᵢᵢ times the zero row Xᵢ would give nan.
        row = (ei - _matrix.matmul(jnp.where(cols < i, li, zero), X)) / lii
        out: jax.Array = lax.dynamic_update_index_in_dim(X, row, i, axis=axis)
        return out

    X: jax.Array = lax.fori_loop(0, L.shape[-1], body, jnp.zeros_like(L))
    return X


def unrolled(L: jax.Array) -> jax.Array:
    """``L⁻¹`` for tiny real blocks by forward substitution unrolled over the rows.

    Row ``i`` of ``X`` is ``(eᵢ - Σ_{k<i} L_ik X_k) / L_ii``; every step is
    elementwise over the batch and the row, so XLA fuses it into a few loops
    over the batch, where a dot or a LAPACK call per block would pay a
    per-matrix cost that dominates for blocks this small.
    """
    b = L.shape[-1]
    eye = jnp.eye(b, dtype=L.dtype)
    rows: list[jax.Array] = []
    for i in range(b):
        s = jnp.zeros_like(L[..., i, :]) + _matrix.like_rank(eye[i], L.ndim - 1)
        for k in range(i):
            s = s - L[..., i, k, None] * rows[k]
        rows.append(s / L[..., i, i, None])
    return jnp.stack(rows, axis=-2)


BATCH_UNROLL = 64
"""One-block factors in batches of at least this many: leaves of :func:`unrolled`."""

GRAM_UNROLL_MAX = 16
"""Real blocks up to this size have ``Xᴴ X`` made as an unrolled sum (``_blocked._gram``)."""

LEAF = 64
"""The widest leaf of :func:`doubling` (single factors: :func:`substitution`)."""


def doubling(L: jax.Array) -> jax.Array:
    """``L⁻¹`` by level-batched doubling over diagonal leaves (:func:`._doubling.tri_inverse`).

    Products and elementwise ops only, no loop over the levels. In a batch
    of at least ``BATCH_UNROLL`` blocks (real) the leaves are :func:`unrolled`
    ones of at most ``UNROLL_MAX``, elementwise over the batch; otherwise
    :func:`substitution` leaves of at most ``LEAF``, where the fewer kernels
    matter more than the per-block cost of a small dot.
    """
    batch = math.prod(L.shape[:-2])
    if batch >= BATCH_UNROLL and not jnp.issubdtype(L.dtype, jnp.complexfloating):
        return _doubling.tri_inverse(L, unrolled, UNROLL_MAX)
    return _doubling.tri_inverse(L, substitution, LEAF)


_BY_METHOD: dict[str, Inverter] = {"auto": doubling, "solve": solve, "products": substitution}


def for_method(method: str, b: int, dtype: jnp.dtype, *, looped: bool) -> Inverter:
    """The inverter of ``b × b`` blocks of ``dtype`` for ``cholesky_inv(method=...)``.

    ``"solve"`` and ``"products"`` force :func:`solve` and :func:`substitution`.
    ``"auto"`` is products only on every platform, so that no program of the
    default method calls LAPACK on CPU (a LAPACK call leaves the BLAS's
    threads spinning while XLA's own run next to them on the same cores:
    docs/benchmarks.md) and Metal, which cannot lower triangular solves, runs
    the same program: the diagonal blocks of a larger factor (``looped``) by
    :func:`substitution`, a factor that is one block (small ``n``, often in
    large batches) by :func:`doubling`. Tiny real blocks take :func:`unrolled`
    in every method: it is products only and the fastest.
    """
    if b <= UNROLL_MAX and not jnp.issubdtype(dtype, jnp.complexfloating):
        return unrolled
    if method == "auto" and looped:
        return substitution
    return _BY_METHOD[method]


__all__ = [
    "BATCH_UNROLL",
    "GRAM_UNROLL_MAX",
    "LEAF",
    "UNROLL_MAX",
    "Inverter",
    "doubling",
    "for_method",
    "solve",
    "substitution",
    "unrolled",
]
