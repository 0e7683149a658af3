"""Product-only path: matrix products, elementwise ops and ``lax.fori_loop``.

No ``triangular_solve``, no ``cholesky``, no LAPACK custom calls, so it lowers
on platforms that lack those (jax-metal: jax-ml/jax#17490, #16321).

The triangular inverse is recursive, on a 2 × 2 block split::

    L = [[A, 0],      L⁻¹ = [[A⁻¹,          0  ],
         [B, D]]             [-D⁻¹ B A⁻¹,   D⁻¹]]

so its bulk is two matrix products per level; the ``leaf × leaf`` diagonal
blocks at the bottom are inverted by forward substitution, one row per
``fori_loop`` step (``X[i] = (eᵢ - L[i] X) / L[i, i]``). Flops ≈ n³/3 + O(n·leaf²).
Forward substitution and the recursive block formula are backward stable in
the same sense as ``trtri`` (Higham, "Accuracy and Stability of Numerical
Algorithms", 2nd ed., §14.2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ._forward import (
    InverseParts,
    blocks2x2,
    identity_like,
    matmul,
    mH,
    mirror_lower,
    parts_from_inverse,
    top_split,
)

LEAF = 32
"""Diagonal blocks this size or smaller are inverted by substitution."""


def _tri_inv_leaf(L: jax.Array) -> jax.Array:
    """``L⁻¹`` for a small lower-triangular ``[..., b, b]`` by forward substitution.

    Row ``i`` of ``X = L⁻¹`` solves ``Σⱼ L[i, j] X[j] = eᵢ``; rows ``≥ i`` of
    ``X`` are still zero when row ``i`` is computed, so the full product
    ``L[i] X`` sums exactly the rows ``j < i``.
    """
    b = L.shape[-1]
    ax = L.ndim - 2
    eye = identity_like(L)

    def body(i: jax.Array, X: jax.Array) -> jax.Array:
        li = lax.dynamic_index_in_dim(L, i, axis=ax, keepdims=True)  # [..., 1, b]
        ei = lax.dynamic_index_in_dim(eye, i, axis=ax, keepdims=True)
        lii = lax.dynamic_index_in_dim(li, i, axis=ax + 1, keepdims=True)  # [..., 1, 1]
        row = (ei - matmul(li, X)) / lii
        out: jax.Array = lax.dynamic_update_index_in_dim(X, row, i, axis=ax)
        return out

    X: jax.Array = lax.fori_loop(0, b, body, jnp.zeros_like(L))
    return X


def tri_inv_lower(L: jax.Array, *, leaf: int = LEAF) -> jax.Array:
    """``L⁻¹`` for lower-triangular ``L`` of shape ``[..., n, n]`` (upper triangle zero)."""
    n = L.shape[-1]
    if n <= leaf:
        return _tri_inv_leaf(L)
    # Split on a multiple of the leaf size, so every leaf but the last is full.
    k = max(leaf, (n // 2) // leaf * leaf)
    Ai = tri_inv_lower(L[..., :k, :k], leaf=leaf)
    Di = tri_inv_lower(L[..., k:, k:], leaf=leaf)
    X21 = -matmul(Di, matmul(L[..., k:, :k], Ai))
    return blocks2x2(Ai, jnp.zeros_like(L[..., :k, k:]), X21, Di)


def cholinv_with_inverse(L: jax.Array) -> tuple[jax.Array, InverseParts]:
    """``(C, parts of L⁻¹)`` from products only: ``C = L⁻ᴴ L⁻¹``, lower triangle mirrored.

    ``L⁻¹`` is split as the default path splits it (:func:`top_split`), so
    that both branches of ``lax.platform_dependent`` have the same shapes.
    """
    Linv = tri_inv_lower(L)
    return _gram(Linv), parts_from_inverse(L, Linv, *top_split(L))


def cholinv(L: jax.Array) -> jax.Array:
    """``C = L⁻ᴴ L⁻¹`` from products only, bitwise Hermitian."""
    return _gram(tri_inv_lower(L))


def _gram(Linv: jax.Array) -> jax.Array:
    """``L⁻ᴴ L⁻¹``, lower triangle mirrored."""
    return mirror_lower(matmul(mH(Linv), Linv))
