"""Inverses of small lower-triangular blocks: the leaves of the blocked algorithm.

Each function takes lower-triangular ``L`` of shape ``[..., b, b]`` (upper
triangle zero; in practice the batch of diagonal blocks of a factor) and
returns ``L⁻¹``. Three ways, chosen per ``method`` by :func:`for_method`:

- :func:`solve`: a triangular solve against ``I`` (LAPACK/cuBLAS ``trsm``);
- :func:`substitution`: forward substitution, one row per ``lax.fori_loop``
  step, made of matrix products only, for platforms that cannot lower
  triangular solves (jax-metal: jax-ml/jax#17490);
- :func:`unrolled`: forward substitution unrolled over the rows, elementwise
  over the batch, for tiny real blocks (``b ≤ UNROLL_MAX``): a few fused loops
  instead of one LAPACK call per block, and products only as well.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from . import _matrix

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
    ``L[i] X`` sums exactly the rows ``j < i``.
    """
    axis = L.ndim - 2
    eye = _matrix.identity_like(L)

    def body(i: jax.Array, X: jax.Array) -> jax.Array:
        li = lax.dynamic_index_in_dim(L, i, axis=axis, keepdims=True)  # [..., 1, b]
        ei = lax.dynamic_index_in_dim(eye, i, axis=axis, keepdims=True)
        lii = lax.dynamic_index_in_dim(li, i, axis=axis + 1, keepdims=True)  # [..., 1, 1]
        row = (ei - _matrix.matmul(li, X)) / lii
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


def _auto(L: jax.Array) -> jax.Array:
    X: jax.Array = lax.platform_dependent(L, default=solve, metal=substitution)
    return X


_BY_METHOD: dict[str, Inverter] = {"auto": _auto, "solve": solve, "products": substitution}


def for_method(method: str, b: int, dtype: jnp.dtype, *, looped: bool) -> Inverter:
    """The inverter of ``b × b`` blocks of ``dtype`` for ``cholesky_inv(method=...)``.

    ``"solve"`` and ``"products"`` force :func:`solve` and :func:`substitution`.
    ``"auto"``: the diagonal blocks of a factor that the blocked loop walks
    through (``looped``) are inverted by :func:`substitution` on every
    platform: on CPU a LAPACK call there leaves the BLAS's threads spinning
    while XLA's products run next to them on the same cores (docs/benchmarks.md),
    and the substitution costs less than one step of the loop. A factor that
    is one block (small ``n``, often in large batches) is inverted by
    :func:`solve`, chosen per lowering platform with ``lax.platform_dependent``
    (Metal, which cannot lower it, gets :func:`substitution`). Tiny real blocks
    take :func:`unrolled` in every method: it is products only and the fastest.
    """
    if b <= UNROLL_MAX and not jnp.issubdtype(dtype, jnp.complexfloating):
        return unrolled
    if method == "auto" and looped:
        return substitution
    return _BY_METHOD[method]


__all__ = ["UNROLL_MAX", "Inverter", "for_method", "solve", "substitution", "unrolled"]
