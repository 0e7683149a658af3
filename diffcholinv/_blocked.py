"""The forward pass: ``C = (L Lᴴ)⁻¹ = Xᴴ X`` from the triangular inverse ``X``.

As LAPACK ``potri`` (``trtri`` then ``lauum``), in products (docs/math.md,
"The op"):

1. ``M = D⁻¹ L``: each row of ``L`` scaled by a power of two
   (``D = diag(2ᵉ)``, :func:`._matrix.row_exponents`), padded by an identity
   block to ``N b`` (:func:`blocks`);
2. ``X = M⁻¹`` by level-batched doubling over ``N`` diagonal leaves of width
   ``b``, each node refined from the left as it is joined
   (:func:`._triangular.inverse`), which gives it ``trtri``'s accuracy;
3. ``C_M = Xᴴ X`` (:func:`._triangular.gram`), bitwise Hermitian, and
   ``C = D⁻¹ C_M D⁻¹`` (docs/math.md, "Scaling").

About ``2n³`` flops in ``2 log₂ N`` levels of batched products, the largest
``n/2`` wide, and no loop carrying an ``n × n`` matrix. ``X`` is kept for the
backward pass (``_vjp.py``) and the tangent (``_jvp.py``). Every step on
``M`` is the same arithmetic as on ``L`` with each entry scaled by a power of
two, so where nothing leaves the range the result is bitwise the one without
scaling; ``M`` keeps every intermediate in range whenever ``C_M`` is, however
wide the diagonal of ``L`` spans.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from . import _leaves, _matrix, _triangular

# A factor of up to ONE_BLOCK is one leaf (no doubling; refined once from
# the left when wider than UNROLL_MAX, _triangular._refine_leaves), except
# real factors in a batch of at least BATCH_UNROLL with method "auto":
# leaves of at most UNROLL_MAX, unrolled elementwise over the batch
# (_leaves.unrolled), where a dot per small matrix costs more than the
# doubling's levels. Larger factors: diagonal leaves of about BLOCK
# (MEDIUM_BLOCK up to MEDIUM_MAX). docs/benchmarks.md has the measurements;
# wider leaves below MEDIUM_MAX, which compile faster, were measured 1.5–2.4×
# less accurate in float32 (the leaf's substitution, refined once, against
# narrower leaves refined again at every level).
ONE_BLOCK = 64
BATCH_UNROLL = 64
MEDIUM_MAX = 512
MEDIUM_BLOCK = 32
BLOCK = 64


def blocks(n: int, *, batched: bool = False) -> tuple[int, int]:
    """``(N, b)``: ``N`` diagonal leaves of width ``b``, ``N`` a power of two, ``N b ≥ n``.

    ``N`` is the smallest that makes ``b = ⌈n/N⌉`` at most a quarter above the
    target width (``N b - n < N``). ``batched``: a one-block factor in a
    large batch (:func:`batched`), cut into leaves of at most
    ``_leaves.UNROLL_MAX``. Static: shapes only.
    """
    if n <= ONE_BLOCK:
        return _triangular.leaves(n, _leaves.UNROLL_MAX) if batched else (1, max(n, 1))
    target = BLOCK if n > MEDIUM_MAX else MEDIUM_BLOCK
    return _triangular.leaves(n, target * 5 // 4)


def batched(L: jax.Array, method: str) -> bool:
    """Whether ``L`` (``[..., n, n]``) is a batch of small real factors that ``"auto"`` unrolls.

    At least ``BATCH_UNROLL`` factors of at most ``ONE_BLOCK``, counting only
    the batch dimensions known when tracing: a symbolic one (``jax.export``)
    counts as 1, so that the program is the same for every batch size.
    """
    if method != "auto" or L.shape[-1] > ONE_BLOCK or jnp.iscomplexobj(L):
        return False
    return math.prod(d for d in L.shape[:-2] if isinstance(d, int)) >= BATCH_UNROLL


def factors(L: jax.Array) -> jax.Array:
    """``[..., n, 4]``: :func:`._matrix.row_factors` of ``L``'s row exponents."""
    return _matrix.row_factors(_matrix.row_exponents(L), L.dtype)


def tri_inverse(M: jax.Array, method: str, *, batched: bool = False) -> _triangular.Tree:
    """The :class:`._triangular.Tree` of ``[[M⁻¹, 0], [0, I]]``, padded to ``N b`` (:func:`blocks`).

    ``M``: ``[..., m, m]``, lower triangular and exactly zero above the
    diagonal. The leaves are inverted by ``_leaves.for_method(method, b)``.
    """
    N, b = blocks(M.shape[-1], batched=batched)
    Mp = _triangular.tree(_matrix.pad_identity(M, N * b), b)
    return _triangular.inverse(Mp, _leaves.for_method(method, b, M.dtype))


def inverse(
    L: jax.Array, method: str, *, keep_inverse: bool = True
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(C, X, F)``: ``C = (L Lᴴ)⁻¹`` (bitwise Hermitian), ``X = M⁻¹`` and the row factors.

    Args:
      L: ``[..., n, n]``, lower triangular; the strictly upper triangle may
        hold anything (it is never read).
      method: ``cholesky_inv``'s ``method``: the leaves' inverter.
      keep_inverse: whether the caller uses ``X`` (the residuals of the
        backward pass); ``False`` where only ``C`` is wanted, which makes a
        smaller program (:func:`._triangular.gram`'s ``root_from_whole``).

    Returns:
      ``C`` and ``X`` of shape ``[..., n, n]``, and ``F`` (``[..., n, 4]``,
      :func:`factors`) with ``M = D⁻¹ L`` and ``X = M⁻¹``, the residuals of
      the backward pass: ``L⁻¹ = X D⁻¹``.
    """
    n = L.shape[-1]
    F = factors(L)
    M = _matrix.row_scale(_matrix.tril(L), F)
    X = tri_inverse(M, method, batched=batched(L, method))
    CM = _triangular.gram(X, root_from_whole=keep_inverse)[..., :n, :n]  # (M Mᴴ)⁻¹ = M⁻ᴴ M⁻¹
    return _matrix.unscale(CM, F), X.whole[..., :n, :n], F  # A⁻¹ = D⁻¹ (M Mᴴ)⁻¹ D⁻¹


def reference(L: jax.Array) -> jax.Array:
    """Reference forward pass: ``C = L⁻ᴴ L⁻¹`` from ``L⁻¹ = trsm(L, I)``, lower triangle mirrored.

    ``n³`` flops for the triangular inverse (a full solve against ``I``) and
    ``2n³`` for the product; clear rather than fast. The tests compare the
    blocked pass against it.
    """
    Linv = _leaves.solve(_matrix.tril(L))
    return _matrix.mirror_lower(_matrix.matmul(_matrix.mH(Linv), Linv))


__all__ = [
    "BLOCK",
    "batched",
    "blocks",
    "factors",
    "inverse",
    "reference",
    "tri_inverse",
]
