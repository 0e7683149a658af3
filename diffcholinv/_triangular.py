"""Lower-triangular inverse and Gram matrix, level-batched over diagonal blocks.

Cut an ``m × m`` lower-triangular matrix (``m = N b``, ``N`` a power of two)
into a binary tree of diagonal blocks: ``N`` leaves of ``b × b``, and each
node of size ``2s`` made of its two children on the diagonal and the block
below the first::

    [[A₁, 0], [A₂₁, A₂]]

A matrix is handled as its :data:`Levels`: level ``l`` holds the dense
diagonal nodes of size ``b 2ˡ``, ``[..., N/2ˡ, b 2ˡ, b 2ˡ]``, from the leaves
to the root (the whole matrix). Every node of one level has the same size,
so one level of an algorithm is a few batched products over all its nodes,
and the children and off-diagonal blocks a level reads are static slices of
the level arrays, never a strided read of the whole matrix. An algorithm is
``log₂ N`` levels with no loop carrying an ``m × m`` matrix (docs/math.md,
"The op"):

- :func:`inverse`: ``X = M⁻¹`` by doubling, ``X₂₁ = −(X₂ A₂₁) X₁``, each node
  refined from the left as it is joined: ``4m³/3`` flops, four products of
  ``s × s`` blocks per node;
- :func:`gram`: ``Xᴴ X``, ``(Xᴴ X)₁₁ = X₁ᴴ X₁ + X₂₁ᴴ X₂₁`` and
  ``(Xᴴ X)₂₁ = X₂ᴴ X₂₁``, bitwise Hermitian: ``2m³/3`` flops.

Plus the leaves; the largest products, at the root, are ``m/2`` wide and run
at the machine's product rate. Every product is a dot: XLA:CPU contracts
unrolled elementwise products into fused multiply-adds and may compute a
fused value again in each consumer, and a residual, whose value is what is
left of a cancellation, then differs between its uses by its own size
(measured: the refined inverse 10³× less accurate).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _leaves, _matrix

Levels = list[jax.Array]
"""The dense diagonal nodes of a lower-triangular matrix, level by level, leaves first."""

GRAM_UNROLL_MAX = 16
"""One real leaf up to this size has its Gram matrix made as an unrolled sum."""

REFINE_MIN = _leaves.UNROLL_MAX + 1
"""One leaf smaller than this is not refined: at that size the error is the rounding of ``C``."""


def leaves(m: int, leaf: int) -> tuple[int, int]:
    """``(N, b)``: the fewest ``N = 2ˡ`` leaves of width ``b = ⌈m/N⌉ ≤ leaf``."""
    N = 1
    while -(-m // N) > leaf:
        N *= 2
    return N, -(-m // N)


def levels(M: jax.Array, b: int) -> Levels:
    """The :data:`Levels` of ``M`` (``[..., N b, N b]``), each level the halves of the one above."""
    out = [M[..., None, :, :]]
    while out[0].shape[-1] > b:
        x = out[0]
        s = x.shape[-1] // 2
        children = jnp.stack([x[..., :s, :s], x[..., s:, s:]], axis=-3)  # [..., P, 2, s, s]
        out.insert(0, children.reshape(*x.shape[:-3], 2 * x.shape[-3], s, s))
    return out


def _pairs(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``[..., P, s, s]`` → the first and the second children, ``[..., P/2, s, s]`` each."""
    return x[..., 0::2, :, :], x[..., 1::2, :, :]


def _below(x: jax.Array) -> jax.Array:
    """``A₂₁``, the block below the first child, of every node of ``x`` (``[..., P, 2s, 2s]``)."""
    s = x.shape[-1] // 2
    return x[..., s:, :s]


def _join(a: jax.Array, c: jax.Array, d: jax.Array) -> jax.Array:
    """``[[a, 0], [c, d]]`` of ``[..., P, s, s]`` blocks → ``[..., P, 2s, 2s]``.

    One stack and one transpose, which XLA makes one fusion.
    """
    s = a.shape[-1]
    x = jnp.stack([a, jnp.zeros_like(a), c, d], axis=-3)  # [..., P, 4, s, s]
    x = x.reshape(*a.shape[:-2], 2, 2, s, s)
    return jnp.swapaxes(x, -3, -2).reshape(*a.shape[:-2], 2 * s, 2 * s)


def inverse(M: Levels, leaf_inv: _leaves.Inverter) -> Levels:
    """The :data:`Levels` of ``M⁻¹`` for lower-triangular ``M`` (exactly zero above the diagonal).

    The leaves are inverted by ``leaf_inv`` as one batch, then refined
    (:func:`_refine_leaves`); each level joins pairs of nodes as
    ``[[X₁, 0], [X₂₁, X₂]]`` with, from the children's inverses (docs/math.md,
    "The op")::

        W   = X₂ A₂₁
        X₂₁ = −W X₁                    (the doubling)
        X₂₁ ← X₂₁ − (X₂₁ M₁ + W) X₁     (one refinement step of the node)

    The doubling multiplies by computed inverses of whole blocks, whose
    errors grow with their condition. The step is the refinement from the
    left ``X ← X + (I − X M) X`` of the node, whose residual ``I − X M`` is,
    with the children refined already, its ``(2, 1)`` block
    ``−(X₂₁ M₁ + X₂ A₂₁)``: it squares the block's error, down to the rounding
    of the step, and every node keeps LAPACK ``trtri``'s left residual bound
    ``|X M − I| ≤ c u |X| |M|``. An entry the step cannot make finite (built
    from an entry of ``M⁻¹`` beyond the range, a subnormal ``Mᵢᵢ``: inf times
    an exact zero above a block's diagonal is nan) keeps its doubling value.
    """
    X = [_refine_leaves(leaf_inv(M[0]), M[0])]
    for l in range(1, len(M)):
        X1, X2 = _pairs(X[-1])
        M1, _ = _pairs(M[l - 1])
        W = _matrix.matmul(X2, _below(M[l]))  # X₂ A₂₁
        X21 = -_matrix.matmul(W, X1)  # the doubling: X₂₁ = −X₂ A₂₁ X₁
        R21 = _matrix.matmul(X21, M1) + W  # −(I − X M)₂₁ = X₂₁ M₁ + X₂ A₂₁
        refined = X21 - _matrix.matmul(R21, X1)  # X₂₁ + ((I − X M) X)₂₁
        X.append(_join(X1, jnp.where(jnp.isfinite(refined), refined, X21), X2))
    return X


def _refine_leaves(X: jax.Array, M: jax.Array) -> jax.Array:
    """``X ← X + (I − X M) X`` for the leaves, except leaves smaller than ``REFINE_MIN``.

    A stable leaf inverter leaves the left residual bound, but with a larger
    constant than LAPACK ``trtri``'s (1.6× its error at the median on GP
    kernels at ``n = 64``, 1.0× after the step). Smaller leaves are at the
    rounding of the result already. As in :func:`inverse`, an entry the step
    cannot make finite keeps its value.
    """
    if X.shape[-1] < REFINE_MIN:
        return X
    R = _matrix.identity_like(X) - _matrix.tril(_matrix.matmul(X, M))
    refined = X + _matrix.tril(_matrix.matmul(R, X))
    return jnp.where(jnp.isfinite(refined), refined, X)


def gram(X: Levels) -> jax.Array:
    """``Xᴴ X`` (``[..., m, m]``, bitwise Hermitian) of lower-triangular ``X`` given by its levels.

    Leaves: ``Xₖₖᴴ Xₖₖ``. Each level joins pairs of nodes as
    ``[[G₁ + X₂₁ᴴ X₂₁, ·], [X₂ᴴ X₂₁, G₂]]`` (``Gᵢ = Xᵢᴴ Xᵢ``, the children's).
    The lower triangle of every node depends only on the lower triangles of
    its children, so the upper is left unset (zero) and the result mirrored
    from the lower triangle once, at the end. One small real leaf (at most
    ``GRAM_UNROLL_MAX``: a factor of a large batch) is an unrolled sum
    (:func:`._matrix.unrolled_matmul`), one fused loop over the batch where
    a dot per small matrix costs more, and bitwise symmetric as it is.
    """
    b = X[0].shape[-1]
    if len(X) == 1 and b <= GRAM_UNROLL_MAX and not jnp.iscomplexobj(X[0]):
        return _matrix.unrolled_matmul(_matrix.mT(X[0]), X[0])[..., 0, :, :]
    G = _matrix.matmul(_matrix.mH(X[0]), X[0])
    for l in range(1, len(X)):
        G1, G2 = _pairs(G)
        _, X2 = _pairs(X[l - 1])
        X21 = _below(X[l])
        G11 = G1 + _matrix.matmul(_matrix.mH(X21), X21)  # X₁ᴴ X₁ + X₂₁ᴴ X₂₁
        G21 = _matrix.matmul(_matrix.mH(X2), X21)  # X₂ᴴ X₂₁
        G = _join(G11, G21, G2)
    return _matrix.mirror_lower(G[..., 0, :, :])


__all__ = [
    "GRAM_UNROLL_MAX",
    "REFINE_MIN",
    "Levels",
    "gram",
    "inverse",
    "leaves",
    "levels",
]
