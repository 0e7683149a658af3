"""The forward pass: ``C = (L Lᴴ)⁻¹`` by level-batched doubling over diagonal blocks.

Cut ``L`` into ``N`` diagonal blocks of width ``b`` (``N`` a power of two,
:func:`blocks`), invert them all at once as one batch (:mod:`._leaves`), and
join them pairwise, level by level, into the inverse Gram matrix of every
diagonal block twice their size (:func:`._doubling.gram_inverse`; derived in
docs/math.md, "Level-batched doubling")::

    V   = -B X₁,   C₂₁ = C₂ V,   C₁₁ = C₁ + Vᴴ C₂₁

``13n³/12`` flops in ``log₂ N`` levels of batched products, the largest
``n/2 × n/2``, and no loop carrying ``C``. A factor of at most ``ONE_BLOCK``
is one block: its inverse is one (batched) leaf and one product. From
``LOOP_MIN`` on, the same blocks are joined by a loop over block columns
instead (:func:`_columns`; docs/math.md): ``2n³`` flops (``5n³/4`` split),
one loop body whatever ``n`` is, so it compiles faster where the
doubling's steady-state gain has gone.

The doubling runs on ``M = D⁻¹ L``, each row of ``L`` scaled by a power of
two (``D = diag(2ᵉ)``, see :func:`._matrix.row_exponents`), and fills
``C_M = (M Mᴴ)⁻¹ = D C D``; one pass at the end makes ``C = D⁻¹ C_M D⁻¹``
(docs/math.md, "Scaling"). Every step is the same arithmetic as on ``L``
with each entry scaled by a power of two, so where nothing leaves the range
the result is bitwise the one without scaling; ``M`` keeps every
intermediate in range whenever ``C_M`` is, however wide the diagonal of
``L`` spans. The scaling is folded into the blocks read from ``L``, so no
scaled copy of ``L`` is made.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from . import _doubling, _leaves, _matrix, _placement

# Factors up to ONE_BLOCK are one block: its inverse is one (batched) leaf
# and one batched product. Above, diagonal blocks of about BLOCK (MEDIUM_BLOCK
# up to MEDIUM_MAX), which the backward pass's loop walks through block column
# by block column; SPLIT_MIN: from there that loop is split in two (see
# _vjp.tril_product) and so is the forward's. From LOOP_MIN the forward is
# that block-column loop too (_columns), not the doubling: at that size the
# doubling gains little in steady state and compiles slower, with more
# temporaries in value+grad. docs/benchmarks.md has the measurements.
ONE_BLOCK = 64
SPLIT_MIN = 1024
LOOP_MIN = 1024
MEDIUM_MAX = 512
MEDIUM_BLOCK = 32
BLOCK = 64


def blocks(n: int) -> tuple[int, int]:
    """``(N, b)``: ``N`` diagonal blocks of width ``b``, ``N b ≥ n`` (static: shape only).

    Below ``LOOP_MIN`` ``N`` is a power of two (the doubling joins the
    blocks pairwise, level by level), the smallest that makes
    ``b = ⌈n/N⌉`` at most a quarter above the target width. From
    ``LOOP_MIN`` (the block-column loops, any ``N``) ``b`` divides ``n`` when
    a width within a quarter of the target does, so that no padded copy of
    the factor is made (n = 1000: 20 blocks of 50, not 16 of 63 padded to
    1008). Either way ``N b - n < N``.
    """
    if n <= ONE_BLOCK:
        return 1, max(n, 1)
    target = BLOCK if n > MEDIUM_MAX else MEDIUM_BLOCK
    if n >= LOOP_MIN:
        widths = range(target * 3 // 4, target * 5 // 4 + 1)
        for b in sorted(widths, key=lambda b: abs(b - target)):
            if n % b == 0:
                return n // b, b
        N = -(-n // target)
        return N, -(-n // N)
    N = 2
    while -(-n // N) > target * 5 // 4:
        N *= 2
    return N, -(-n // N)


def factors(L: jax.Array) -> jax.Array:
    """``[..., N b, 4]``: :func:`._matrix.row_factors` of ``L``, padded as :func:`blocks` says.

    The padding rows (of the identity) are not scaled.
    """
    n = L.shape[-1]
    N, b = blocks(n)
    e = _matrix.row_exponents(L)
    e = jnp.pad(e, [(0, 0)] * (e.ndim - 1) + [(0, N * b - n)])
    return _matrix.row_factors(e, L.dtype)


def inverse(L: jax.Array, F: jax.Array, tri_inv: _leaves.Inverter) -> tuple[jax.Array, jax.Array]:
    """``(C, X)``: ``C = (L Lᴴ)⁻¹`` (bitwise Hermitian) and the inverted diagonal blocks.

    Args:
      L: ``[..., n, n]``, lower triangular; the strictly upper triangle may
        hold anything (it is never read).
      F: ``[..., N b, 4]`` row factors from :func:`factors`: the loop
        inverts ``M = D⁻¹ L``, ``D = diag(2ᵉ)``.
      tri_inv: the inverter of the ``b × b`` diagonal blocks of ``M``.

    Returns:
      ``C`` of shape ``[..., n, n]`` and what the backward pass reuses
      (:func:`._vjp.tril_product`), padded as :func:`blocks` says: with the
      block-column loop (``n ≥ LOOP_MIN``) the diagonal blocks
      ``X = Mₖₖ⁻¹``, ``[..., N, b, b]``; otherwise the whole ``M⁻¹`` as one
      block, ``[..., 1, N b, N b]`` (the doubling makes it for one more
      product; ``N = 1``: it is the leaf).
    """
    n = L.shape[-1]
    N, b = blocks(n)
    Lp = _matrix.pad_identity(L, N * b)
    Fkk = F.reshape(*F.shape[:-2], N, b, F.shape[-1])
    X = tri_inv(_matrix.tril(_matrix.row_scale(_matrix.diagonal_blocks(Lp, b), Fkk)))
    if N == 1:
        CM, symmetric = _gram(X[..., 0, :, :])  # (M Mᴴ)⁻¹ = M⁻ᴴ M⁻¹
        CM = CM if symmetric else _matrix.mirror_lower(CM)
        return _matrix.unscale(CM, F), X  # A⁻¹ = D⁻¹ (M Mᴴ)⁻¹ D⁻¹
    if n >= LOOP_MIN:
        CM = _columns(Lp, X, F, N)
    else:
        CM, Minv = _doubling.gram_inverse(Lp, F, X)
        X = Minv[..., None, :, :]
    return _matrix.unscale(CM[..., :n, :n], F[..., :n, :]), X


def _columns(
    L: jax.Array,
    X: jax.Array,
    F: jax.Array,
    K: int,
    C: jax.Array | None = None,
    *,
    split: bool = True,
) -> jax.Array:
    """Fill block columns ``K-1, …, 0`` of ``C_M = (M Mᴴ)⁻¹`` (``[..., N b, N b]``), one step each.

    ``M = D⁻¹ L`` is read panel by panel (``F``: :func:`factors`). ``C``
    holds the trailing ``(N-K) b`` square already (zero elsewhere); ``None``:
    nothing yet, and if the factor is large (and ``split``) the trailing half
    is first made by the same loop on its own (``SPLIT_MIN``).
    """
    N, b = X.shape[-3], X.shape[-1]
    size = N * b
    if C is None:
        if split and size >= SPLIT_MIN and K == N:
            # The loop runs its products over the whole C; made alone, the
            # trailing half costs a quarter of that per step: 5n³/4 flops, not
            # 2n³. Once only: every loop is more program to compile.
            h = N // 2
            CD = _columns(
                L[..., h * b :, h * b :], X[..., h:, :, :], F[..., h * b :, :], N - h, split=False
            )
            widths = [(0, 0)] * (L.ndim - 2) + [(h * b, 0), (h * b, 0)]
            return _columns(L, X, F, h, jnp.pad(CD, widths))
        C = jnp.zeros_like(L)
    below = lax.broadcasted_iota(jnp.int32, (size, 1), 0)
    zero = jnp.zeros((), L.dtype)

    def step(j: jax.Array, C: jax.Array) -> jax.Array:
        k = K - 1 - j
        Xkk = lax.dynamic_index_in_dim(X, k, axis=-3, keepdims=False)
        Bk = lax.dynamic_slice_in_dim(L, k * b, b, axis=-1)  # block column k of L
        # -Bₖ of M (its rows scaled by D⁻¹), the rows below Mₖₖ: the sign rides
        # on this panel, so that no product below needs a negation pass of its own.
        Bk = jnp.where(below >= (k + 1) * b, -_matrix.row_scale(Bk, F), zero)
        W = _matrix.matmul(Bk, Xkk)  # -Wₖ
        C21 = _matrix.matmul(C, W)  # -C_D Wₖ: C holds C_D, zero elsewhere
        C11 = _matrix.mirror_lower(
            _matrix.matmul(_matrix.mH(Xkk), Xkk) + _matrix.matmul(_matrix.mH(W), C21)
        )
        panel = lax.dynamic_update_slice_in_dim(C21, C11, k * b, axis=-2)
        C = lax.dynamic_update_slice_in_dim(C, panel, k * b, axis=-1)
        # The block row is the exact mirror of the block column.
        C = _placement.set_block_row(C, _matrix.mH(panel), k)
        return _placement.tie(C, L)

    out: jax.Array = lax.fori_loop(0, K, step, _placement.tie(C, L))
    return out


def _gram(X: jax.Array) -> tuple[jax.Array, bool]:
    """``(Xᴴ X, whether it is bitwise Hermitian as computed)``.

    Small real blocks (``b ≤ _leaves.GRAM_UNROLL_MAX``): a sum of ``b`` outer
    products of rows, unrolled, which XLA fuses into one elementwise loop
    over the batch, where XLA:CPU's dot pays a per-matrix cost that
    dominates in large batches (and a reduction over a major axis is slower
    still): docs/benchmarks.md. Entry ``(i, j)`` sums ``X_ki X_kj`` over
    ``k`` in the same order as entry ``(j, i)`` sums the same products, so it
    is exactly symmetric as it is.
    """
    b = X.shape[-1]
    if b > _leaves.GRAM_UNROLL_MAX or jnp.iscomplexobj(X):
        return _matrix.matmul(_matrix.mH(X), X), False
    G = X[..., 0, :, None] * X[..., 0, None, :]
    for k in range(1, b):
        G = G + X[..., k, :, None] * X[..., k, None, :]
    return G, True


def reference(L: jax.Array) -> jax.Array:
    """Reference forward pass: ``C = L⁻ᴴ L⁻¹`` from ``L⁻¹ = trsm(L, I)``, lower triangle mirrored.

    ``n³`` flops for the triangular inverse (a full solve against ``I``) and
    ``2n³`` for the product; clear rather than fast. The tests compare the
    loop against it.
    """
    Linv = _leaves.solve(_matrix.tril(L))
    return _matrix.mirror_lower(_matrix.matmul(_matrix.mH(Linv), Linv))


__all__ = ["BLOCK", "blocks", "factors", "inverse", "reference"]
