"""Level-batched doubling: ``C = (M Mᴴ)⁻¹`` from its diagonal blocks upwards, products only.

Cut ``M`` (lower triangular, ``N b × N b``, ``N`` a power of two) into a
binary tree of diagonal blocks: the ``N`` leaves are the ``b × b`` blocks
``Mₖₖ``, whose inverses ``Xₖₖ`` are given, and each node of size ``2s`` is
``[[M₁, 0], [B, M₂]]`` with its two children on the diagonal. With the
children's ``Xᵢ = Mᵢ⁻¹`` and ``Cᵢ = (Mᵢ Mᵢᴴ)⁻¹`` known (docs/math.md,
"Level-batched doubling")::

    V   = -B X₁                (= -W)
    C₂₁ =  C₂ V
    C₁₁ =  C₁ + Vᴴ C₂₁
    X₂₁ =  X₂ V                (the node's inverse is [[X₁, 0], [X₂₁, X₂]])

and the node's ``C`` is ``[[C₁₁, C₂₁ᴴ], [C₂₁, C₂]]``. Every node of one level
has the same size, so a level is four batched products, ``log₂ N`` levels
in all: about ``13n³/12`` flops for ``n = N b`` (``4n³/3`` with the root's
``X``, which the backward pass uses), against ``2n³`` for a loop over block
columns whose static shapes make it fill the whole ``C`` at every step. No
loop carries ``C``, so no step copies it, and the large products (the
root's are ``n/2 × n/2``) run at the machine's product rate.

Each ``C₁₁`` is mirrored from its lower triangle, and ``C₁₂`` is the exact
``C₂₁ᴴ``: every node's ``C``, the root's included, is bitwise Hermitian.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from . import _matrix


def _pairs(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``[..., m, s, s]`` → the even and odd nodes, ``[..., m/2, s, s]`` each."""
    return x[..., 0::2, :, :], x[..., 1::2, :, :]


def _join(a: jax.Array, b: jax.Array, c: jax.Array, d: jax.Array) -> jax.Array:
    """``[[a, b], [c, d]]`` of ``[..., P, s, s]`` blocks → ``[..., P, 2s, 2s]``.

    One stack and one transpose, which XLA makes one fusion (nested
    concatenates were two more ``n × n/2`` buffers at the root).
    """
    s = a.shape[-1]
    x = jnp.stack([a, b, c, d], axis=-3)  # [..., P, 4, s, s]
    x = x.reshape(*a.shape[:-2], 2, 2, s, s)
    return jnp.swapaxes(x, -3, -2).reshape(*a.shape[:-2], 2 * s, 2 * s)


def _below(M: jax.Array, F: jax.Array | None, s: int) -> jax.Array:
    """``-B`` of every node of size ``2s``: ``[..., P, s, s]``, rows scaled by ``F``.

    ``B`` is the block of node ``p`` below its first child: rows
    ``(2p+1)s …``, columns ``2ps …`` of ``M``, inside the strictly lower
    triangle, so nothing of the unread triangle enters. Static slices,
    which XLA fuses with their stacking into one pass.
    """
    P = M.shape[-1] // (2 * s)
    parts = []
    for p in range(P):
        r, c = (2 * p + 1) * s, 2 * p * s
        B = M[..., r : r + s, c : c + s]
        if F is not None:
            B = _matrix.row_scale(B, F[..., r : r + s, :])
        parts.append(-B)
    return jnp.stack(parts, axis=-3)


def gram_inverse(M: jax.Array, F: jax.Array | None, X: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``((M Mᴴ)⁻¹, M⁻¹)`` (the first bitwise Hermitian) from ``M`` and its diagonal inverses.

    Args:
      M: ``[..., N b, N b]``, lower triangular, ``N`` a power of two; the
        strictly upper triangle may hold anything (never read). With ``F``
        (``[..., N b, 4]``, :func:`._matrix.row_factors`) its rows are read
        scaled, as ``D⁻¹ M``.
      F: the row factors, or ``None`` for no scaling.
      X: ``[..., N, b, b]``, the inverses of the (scaled) diagonal blocks.

    Returns:
      Both ``[..., N b, N b]``. The inverse costs one product more than
      ``(M Mᴴ)⁻¹`` alone (``X₂₁`` of the root, ``n³/4`` flops) and is what
      the backward pass multiplies by (:func:`._vjp.tril_product`); a caller
      that drops it under ``jit`` drops that product too (dead code).
    """
    C = _gram(X)
    while X.shape[-3] > 1:
        s = X.shape[-1]
        X1, X2 = _pairs(X)
        V = _matrix.matmul(_below(M, F, s), X1)  # -B X₁
        C1, C2 = _pairs(C)
        C21 = _matrix.matmul(C2, V)
        C11 = _matrix.mirror_lower(C1 + _matrix.matmul(_matrix.mH(V), C21))
        C = _join(C11, _matrix.mH(C21), C21, C2)
        X = _join(X1, jnp.zeros_like(X1), _matrix.matmul(X2, V), X2)  # X₂₁ = X₂ V
    return C[..., 0, :, :], X[..., 0, :, :]


def tri_inverse(L: jax.Array, leaf_inv: Callable[[jax.Array], jax.Array], leaf: int) -> jax.Array:
    """``L⁻¹`` of lower-triangular ``[..., b, b]`` by the same doubling, products only.

    The ``N = 2ˡ`` diagonal leaves (``L`` padded by the identity to ``N c``,
    ``c ≤ leaf``) are inverted by ``leaf_inv`` as one batch; each level then
    joins pairs of nodes as ``[[X₁, 0], [-X₂ B X₁, X₂]]``, two batched
    products: about ``n³/3`` flops. Only the lower triangle of ``L`` is read.
    """
    b = L.shape[-1]
    N = 1
    while -(-b // N) > leaf:
        N *= 2
    c = -(-b // N)
    M = _matrix.pad_identity(L, N * c)
    X = leaf_inv(_matrix.tril(_matrix.diagonal_blocks(M, c)))
    while X.shape[-3] > 1:
        s = X.shape[-1]
        X1, X2 = _pairs(X)
        V = _matrix.matmul(_below(M, None, s), X1)  # -B X₁
        X = _join(X1, jnp.zeros_like(X1), _matrix.matmul(X2, V), X2)
    return X[..., 0, :b, :b]


def _gram(X: jax.Array) -> jax.Array:
    """``Xᴴ X`` of every block, mirrored from its lower triangle."""
    return _matrix.mirror_lower(_matrix.matmul(_matrix.mH(X), X))


__all__ = ["gram_inverse", "tri_inverse"]
