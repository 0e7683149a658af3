"""Lower-triangular inverse, products and Gram matrix, level-batched over diagonal blocks.

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
"Forward algorithm"):

- :func:`inverse`: ``X = M⁻¹`` by doubling, ``X₂₁ = −(X₂ A₂₁) X₁``, then one
  step of refinement from the left, ``X ← X + (I − X M) X``;
- :func:`tril_matmul`: ``A B`` of two lower-triangular matrices, blocks in
  the lower triangle only, ``(A B)₂₁ = A₂₁ B₁ + A₂ B₂₁``;
- :func:`gram`: ``Xᴴ X``, ``(Xᴴ X)₁₁ = X₁ᴴ X₁ + X₂₁ᴴ X₂₁`` and
  ``(Xᴴ X)₂₁ = X₂ᴴ X₂₁``, bitwise Hermitian.

Each costs ``2m³/3`` flops (products of ``s × s`` blocks, ``2 m s²`` per
level) plus its leaves; the largest products, at the root, are ``m/2``
wide and run at the machine's product rate. Every product is a dot: XLA:CPU
contracts unrolled elementwise products into fused multiply-adds and may
compute a fused value again in each consumer, and a residual, whose value
is what is left of a cancellation, then differs between its uses by its
own size (measured: the refined inverse 10³× less accurate).
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


def _join(a: jax.Array, c: jax.Array, d: jax.Array, b: jax.Array | None = None) -> jax.Array:
    """``[[a, b], [c, d]]`` of ``[..., P, s, s]`` blocks → ``[..., P, 2s, 2s]`` (``b = None``: 0).

    One stack and one transpose, which XLA makes one fusion.
    """
    s = a.shape[-1]
    b = jnp.zeros_like(a) if b is None else b
    x = jnp.stack([a, b, c, d], axis=-3)  # [..., P, 4, s, s]
    x = x.reshape(*a.shape[:-2], 2, 2, s, s)
    return jnp.swapaxes(x, -3, -2).reshape(*a.shape[:-2], 2 * s, 2 * s)


def inverse(M: Levels, leaf_inv: _leaves.Inverter) -> Levels:
    """The :data:`Levels` of ``M⁻¹`` for lower-triangular ``M`` (exactly zero above the diagonal).

    The leaves are inverted by ``leaf_inv`` as one batch; each level joins
    pairs of nodes as ``[[X₁, 0], [−(X₂ A₂₁) X₁, X₂]]``. That doubling
    multiplies by computed inverses of whole blocks, whose errors grow with
    the blocks' condition, and even a stable leaf inverter is a few times
    less accurate than LAPACK ``trtri`` on badly conditioned blocks, so one
    step of refinement from the left follows::

        X ← X₀ + (I − X₀ M) X₀

    The error after it is the square of ``X₀``'s plus the rounding of the
    step, and the step leaves the left residual bound of ``trtri``,
    ``|X M − I| ≤ c u |X| |M|`` (docs/math.md, "Accuracy"). Only one leaf
    smaller than ``REFINE_MIN`` is returned as it is.
    """
    X = [leaf_inv(M[0])]
    for Ml in M[1:]:
        X1, X2 = _pairs(X[-1])
        X21 = -_matrix.matmul(_matrix.matmul(X2, _below(Ml)), X1)  # −(X₂ A₂₁) X₁
        X.append(_join(X1, X21, X2))
    if len(X) == 1 and X[0].shape[-1] < REFINE_MIN:
        return X
    # An entry of M⁻¹ beyond the range (a subnormal Mᵢᵢ) is inf in X₀, and so
    # are the entries of X₀ M and R built from it; the products below multiply
    # whole blocks, and inf times an exact zero above the diagonal of a block
    # would put nan where M⁻¹ is finite. The step reads what is not finite as
    # 0 and leaves those entries of X₀ as they were.
    X0 = [_finite(x) for x in X]
    R = [_finite(_matrix.identity_like(T) - T) for T in tril_matmul(X0, M)]  # R = I − X₀ M
    return [  # X₀ + R X₀
        jnp.where(jnp.isfinite(x), x + c, x) for x, c in zip(X, tril_matmul(R, X0), strict=True)
    ]


def _finite(x: jax.Array) -> jax.Array:
    """``x`` with its entries that are not finite set to 0."""
    return jnp.where(jnp.isfinite(x), x, jnp.zeros((), x.dtype))


def tril_matmul(A: Levels, B: Levels) -> Levels:
    """The :data:`Levels` of ``A B`` for lower-triangular ``A``, ``B`` (exactly zero above).

    Leaves: the products of the leaves, masked to their lower triangle. Each
    level joins pairs of nodes as ``[[T₁, 0], [A₂₁ B₁ + A₂ B₂₁, T₂]]``,
    ``T₁ = A₁ B₁`` and ``T₂ = A₂ B₂`` being the children's products: blocks
    above the diagonal are never read.
    """
    T = [_matrix.tril(_matrix.matmul(A[0], B[0]))]
    for l in range(1, len(A)):
        T1, T2 = _pairs(T[-1])
        _, A2 = _pairs(A[l - 1])
        B1, _ = _pairs(B[l - 1])
        T21 = _matrix.matmul(_below(A[l]), B1) + _matrix.matmul(A2, _below(B[l]))
        T.append(_join(T1, T21, T2))  # (A B)₂₁ = A₂₁ B₁ + A₂ B₂₁
    return T


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
    "tril_matmul",
]
