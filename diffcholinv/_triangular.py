"""Lower-triangular inverse and Gram matrix, level-batched over diagonal blocks.

Cut an ``m × m`` lower-triangular matrix (``m = N b``, ``N`` a power of two)
into a binary tree of diagonal blocks: ``N`` leaves of ``b × b``, and each
node of size ``2s`` made of its two children on the diagonal and the block
below the first::

    [[A₁, 0], [A₂₁, A₂]]

A matrix is handled as its :class:`Tree`: the leaves, and for each level
``l`` of nodes of size ``2s = b 2ˡ`` the first children ``A₁``, the second
children ``A₂`` and the blocks below the first ``A₂₁`` of all its nodes,
``[..., N/2ˡ, s, s]`` each. Every node of one level has the same size, so one
level of an algorithm is a few batched products over all its nodes. An
algorithm is ``log₂ N`` levels with no loop carrying an ``m × m`` matrix
(docs/math.md, "The op"):

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

The pieces are what the products read, so that no level cuts them out of a
joined node again: every copy between products is a kernel XLA:CPU compiles
apart, about 10 ms each, and the compile time of the op is mostly theirs
(docs/benchmarks.md, "Compile time: where it goes"). A level joins its
nodes straight into the first and the second children of the level above,
and reads ``M``'s pieces from its tree, cut once (:func:`tree`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from . import _leaves, _matrix


class Tree(NamedTuple):
    """A lower-triangular ``[..., m, m]`` matrix as the nodes of its tree of diagonal blocks.

    ``first[l]``, ``second[l]`` and ``below[l]`` are ``A₁``, ``A₂`` and
    ``A₂₁`` of the nodes of size ``b 2ˡ⁺¹``, ``[..., N/2ˡ⁺¹, b 2ˡ, b 2ˡ]``,
    from the leaves' parents (``l = 0``) to the root; empty for one leaf.
    """

    leaves: jax.Array
    """``[..., N, b, b]``: the diagonal leaves."""
    first: list[jax.Array]
    second: list[jax.Array]
    below: list[jax.Array]
    whole: jax.Array
    """``[..., m, m]``: the matrix."""


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


def tree(M: jax.Array, b: int) -> Tree:
    """The :class:`Tree` of ``M`` (``[..., N b, N b]``, ``N`` a power of two), from the root down.

    Each level's nodes are the halves of the nodes above, stacked: static
    slices that keep a sharding of ``M``'s rows on the nodes (a strided read
    of the flattened matrix would gather it whole on every device).
    """
    N = M.shape[-1] // b
    if N * b != M.shape[-1] or N & (N - 1):
        raise ValueError(f"tree: {M.shape[-1]} is not a power of two times b = {b}")
    nodes = M[..., None, :, :]
    first: list[jax.Array] = []
    second: list[jax.Array] = []
    below: list[jax.Array] = []
    while nodes.shape[-1] > b:
        s = nodes.shape[-1] // 2
        first.insert(0, nodes[..., :s, :s])
        second.insert(0, nodes[..., s:, s:])
        below.insert(0, nodes[..., s:, :s])
        children = jnp.stack([first[0], second[0]], axis=-3)  # [..., P, 2, s, s]
        nodes = children.reshape(*nodes.shape[:-3], 2 * nodes.shape[-3], s, s)
    return Tree(nodes, first, second, below, M)


def _join(a: jax.Array, c: jax.Array, d: jax.Array) -> jax.Array:
    """``[[a, 0], [c, d]]`` of ``[..., P, s, s]`` blocks → ``[..., P, 2s, 2s]``.

    One stack and one transpose. Measured against nested concatenations and
    against padded blocks selected by position, which XLA splits into more
    kernels: this compiles fastest.
    """
    s = a.shape[-1]
    x = jnp.stack([a, jnp.zeros_like(a), c, d], axis=-3)  # [..., P, 4, s, s]
    x = x.reshape(*a.shape[:-2], 2, 2, s, s)
    return jnp.swapaxes(x, -3, -2).reshape(*a.shape[:-2], 2 * s, 2 * s)


def _parents(a: jax.Array, c: jax.Array, d: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The joined nodes ``[[a, 0], [c, d]]`` as the first and second children one level up.

    ``[..., P, s, s]`` each → ``[..., P/2, 2s, 2s]`` each: the even and the
    odd nodes, each joined in one kernel, with no kernel to cut the joined
    level apart again.
    """
    (a1, a2), (c1, c2), (d1, d2) = _split(a), _split(c), _split(d)
    return _join(a1, c1, d1), _join(a2, c2, d2)


def _split(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``[..., P, s, s]`` → the even and the odd nodes, ``[..., P/2, s, s]`` each."""
    return x[..., 0::2, :, :], x[..., 1::2, :, :]


def inverse(M: Tree, leaf_inv: _leaves.Inverter) -> Tree:
    """The :class:`Tree` of ``M⁻¹`` for lower-triangular ``M`` (exactly zero above the diagonal).

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
    X = _refine_leaves(leaf_inv(M.leaves), M.leaves)
    if not M.below:
        return Tree(X, [], [], [], X[..., 0, :, :])
    first: list[jax.Array] = []
    second: list[jax.Array] = []
    below: list[jax.Array] = []
    X1, X2 = _split(X)
    for M1, A21 in zip(M.first, M.below, strict=True):
        # −W = X₂ (−A₂₁): the negation is exact and joins the kernel that reads A₂₁.
        minus_W = _matrix.matmul(X2, -A21)
        X21 = _matrix.matmul(minus_W, X1)  # the doubling: X₂₁ = −X₂ A₂₁ X₁
        R21 = _matrix.matmul(X21, M1) - minus_W  # −(I − X M)₂₁ = X₂₁ M₁ + X₂ A₂₁
        refined = X21 - _matrix.matmul(R21, X1)  # X₂₁ + ((I − X M) X)₂₁
        X21 = jnp.where(jnp.isfinite(refined), refined, X21)
        first.append(X1)
        second.append(X2)
        below.append(X21)
        if X1.shape[-3] > 1:
            X1, X2 = _parents(X1, X21, X2)
    return Tree(X, first, second, below, _join(X1, X21, X2)[..., 0, :, :])


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


def gram(X: Tree, *, root_from_whole: bool = False) -> jax.Array:
    """``Xᴴ X`` (``[..., m, m]``, bitwise Hermitian) of lower-triangular ``X`` given by its tree.

    Leaves: ``Xₖₖᴴ Xₖₖ``. Each level joins pairs of nodes as
    ``[[G₁ + X₂₁ᴴ X₂₁, ·], [X₂ᴴ X₂₁, G₂]]`` (``Gᵢ = Xᵢᴴ Xᵢ``, the children's).
    The lower triangle of every node depends only on the lower triangles of
    its children, so the upper is left unset (zero) and the result mirrored
    from the lower triangle once, at the end. One small real leaf (at most
    ``GRAM_UNROLL_MAX``: a factor of a large batch) is an unrolled sum
    (:func:`._matrix.unrolled_matmul`), one fused loop over the batch where
    a dot per small matrix costs more, and bitwise symmetric as it is.

    ``root_from_whole``: the root's ``X₂`` and ``X₂₁`` are read from
    ``X.whole``, for a caller that keeps ``X.whole`` (the backward pass):
    the root's ``X₂₁`` then need not live beside it (``m²/4`` less of
    temporaries at the peak of value and gradient), at the cost of two
    kernels to compile where ``X.whole`` is not needed.
    """
    if not X.below:
        b = X.leaves.shape[-1]
        if b <= GRAM_UNROLL_MAX and not jnp.iscomplexobj(X.leaves):
            return _matrix.unrolled_matmul(_matrix.mT(X.leaves), X.leaves)[..., 0, :, :]
        G = _matrix.matmul(_matrix.mH(X.leaves), X.leaves)
        return _matrix.mirror_lower(G[..., 0, :, :])
    second, below = X.second, X.below
    if root_from_whole:
        s = X.whole.shape[-1] // 2
        second = [*second[:-1], X.whole[..., None, s:, s:]]
        below = [*below[:-1], X.whole[..., None, s:, :s]]
    G1 = _matrix.matmul(_matrix.mH(X.first[0]), X.first[0])
    G2 = _matrix.matmul(_matrix.mH(X.second[0]), X.second[0])
    for X2, X21 in zip(second, below, strict=True):
        G11 = G1 + _matrix.matmul(_matrix.mH(X21), X21)  # X₁ᴴ X₁ + X₂₁ᴴ X₂₁
        G21 = _matrix.matmul(_matrix.mH(X2), X21)  # X₂ᴴ X₂₁
        if G1.shape[-3] > 1:
            G1, G2 = _parents(G11, G21, G2)
    return _matrix.mirror_lower(_join(G11, G21, G2)[..., 0, :, :])


__all__ = [
    "GRAM_UNROLL_MAX",
    "REFINE_MIN",
    "Tree",
    "gram",
    "inverse",
    "leaves",
    "tree",
]
