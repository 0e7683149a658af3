"""The differentiable core: a ``jax.custom_vjp`` on the lower case, and its backward rule.

The rule (Murray 2016; the canonical derivation is docs/math.md, "Gradient").
With ``C = (L Lᴴ)⁻¹``, incoming cotangent ``Ḡ`` and ``S = Ḡ + Ḡᴴ``::

    L̄ = -tril(C S L⁻ᴴ)                      (real dtypes)
    L̄ = -conj(tril(C S L⁻ᴴ)),  S = conj(Ḡ + Ḡᴴ)   (complex, JAX's convention)

Only the lower triangle of ``L`` is an input, so the gradient is zero above
the diagonal. :func:`tril_product` computes ``Y = C S L⁻ᴴ`` in one of two
ways, by what the forward pass made (docs/math.md, "Gradient"):

- below ``LOOP_MIN`` (the doubling forward, and one-block factors) the
  whole ``L⁻¹`` (of the scaled factor) is a by-product of the forward pass
  and a residual: ``Y`` is ``(C S) L⁻ᴴ`` in large products, only the parts
  that reach ``tril(Y)`` made, ``5n³/2`` flops. Residuals ``L``, ``C`` and
  ``L⁻¹``: one ``n × n`` matrix more than the loop below keeps, for a
  value+grad 1.2–1.7× faster at ``n = 128``–``1000`` (docs/benchmarks.md);
- from ``LOOP_MIN`` (the block-column forward loop) ``Y Lᴴ = C S`` is solved
  block column by block column, left to right, in one loop, reading only
  ``L``, ``C`` and the inverted diagonal blocks ``Xₖₖ`` that the forward
  pass made (``n b`` numbers): no other ``n × n`` matrix lives from the
  forward pass to the backward pass, and the backward pass holds ``C``,
  ``Ḡ`` and the gradient it writes into.

The residual ``L`` is an input, which the caller holds anyway.

The backward pass is plain differentiable jax, so grad-of-grad and
``jax.hessian`` (``jacfwd`` over ``jacrev``) work.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from . import _blocked, _leaves, _matrix, _placement


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def cholinv_lower(L: jax.Array, method: str) -> jax.Array:
    """``(L Lᴴ)⁻¹`` for lower-triangular ``L`` (its strictly upper triangle is never read)."""
    return _fwd(L, method)[0]


Residuals = tuple[jax.Array, jax.Array, jax.Array, jax.Array]


def _fwd(L: jax.Array, method: str) -> tuple[jax.Array, Residuals]:
    F = _blocked.factors(L)  # L = D M, D = diag(2ᵉ): piecewise constant, no gradient
    N, b = _blocked.blocks(L.shape[-1])
    tri_inv = _leaves.for_method(method, b, L.dtype, looped=N > 1)
    C, X = _blocked.inverse(L, F, tri_inv)
    return C, (L, F, C, X)


def _bwd(method: str, res: Residuals, g: jax.Array) -> tuple[jax.Array]:
    L, F, C, X = res
    Z = tril_product(L, F, C, jnp.conj(g), X)  # -tril(C S L⁻ᴴ), S = conj(Ḡ + Ḡᴴ)
    return (jnp.conj(Z),)


cholinv_lower.defvjp(_fwd, _bwd)


def tril_product(L: jax.Array, F: jax.Array, C: jax.Array, g: jax.Array, X: jax.Array) -> jax.Array:
    """``-tril(C S L⁻ᴴ)`` with ``S = g + gᴴ``, from ``L``, ``C`` and the inverted diagonal blocks.

    ``Y = C S L⁻ᴴ`` solves ``Y Lᴴ = C S``. Block column ``k`` of that
    equation, ``Lᴴ`` being block upper triangular, reads::

        Σ_{j ≤ k} Y[:, j] Lₖⱼᴴ = C S[:, k]
        Y[:, k] = (C S[:, k] - Σ_{j < k} Y[:, j] Lₖⱼᴴ) Lₖₖ⁻ᴴ

    so one loop over ``k = 0, …, N-1`` fills ``Y`` from the left (with the
    diagonal blocks ``X``, ``[..., N, b, b]``, of the block-column forward
    loop). Where the forward pass made the whole inverse (``X`` of shape
    ``[..., 1, N b, N b]``: the doubling, and one-block factors) no loop is
    needed: ``Y = C S L⁻ᴴ`` is three quarters of one product and half of
    another (:func:`_whole`). Only
    ``tril(Y)`` is wanted, and ``Y[:, j]`` for ``j < k`` enters row ``i`` of
    block column ``k`` only through rows ``i ≥ k b``, which lie in the lower
    triangle: each block column is masked to its lower part as it is made,
    and the loop carries ``Z = -tril(Y)``, the gradient itself. ``S[:, k]``
    is built from a column and a row panel of ``g``, never as a whole
    matrix.

    The forward pass inverted ``M = D⁻¹ L`` (``D = diag(2ᵉ)``, real, constant
    in ``L``; ``F``: its row factors, :func:`._blocked.factors`):
    ``Xₖₖ = Mₖₖ⁻¹``. With ``L = D M``, ``Lₖⱼᴴ = Mₖⱼᴴ Dₖ`` and
    ``Lₖₖ⁻ᴴ = Dₖ⁻¹ Mₖₖ⁻ᴴ``, so the equation above, multiplied by ``Dₖ⁻¹`` on
    the right, is ``Σ_{j ≤ k} Y[:, j] Mₖⱼᴴ = C S[:, k] Dₖ⁻¹``: the same loop on
    ``M`` with ``S D⁻¹`` for ``S``, and ``Y`` itself is unchanged. ``D``
    enters once, on the columns of ``S[:, k]``, and the panels of ``L`` are
    read as ``M`` (the same exact row scaling as the forward pass). Every
    product is then the unscaled one times a power of two per term, so where
    nothing leaves the range the gradient is bitwise the unscaled one.
    """
    n = L.shape[-1]
    N, b = X.shape[-3], X.shape[-1]
    size = N * b
    if size > n:  # [[L, 0], [0, I]] has C S L⁻ᴴ = [[C S L⁻ᴴ, 0], [0, 0]] for C, g padded by 0
        widths = [(0, 0)] * (L.ndim - 2) + [(0, size - n), (0, size - n)]
        L, C, g = _matrix.pad_identity(L, size), jnp.pad(C, widths), jnp.pad(g, widths)
    if N == 1:
        # X is the whole M⁻¹: Y = C S L⁻ᴴ = (C (S D⁻¹)) M⁻ᴴ, as L⁻ᴴ = D⁻¹ M⁻ᴴ.
        Z = _whole(C, _matrix.column_scale(g + _matrix.mH(g), F), X[..., 0, :, :])
        return Z[..., :n, :n]
    if size < _blocked.SPLIT_MIN:
        return _solve_columns(L, X, F, C, g, 0, N)[..., :n, :n]
    # Block columns right of h only have rows ≥ h in the lower triangle: made
    # in a second loop over those rows alone, 5n³/2 flops instead of 4n³.
    K = N // 2
    h = K * b
    ZA = _solve_columns(L, X, F, C, g, 0, K)
    ZB = _solve_columns(L, X, F, C[..., h:, :], g, K, N, ZA[..., h:, :])
    above = jnp.zeros_like(ZB[..., :h, :])  # zeros_like keeps the batch sharding
    Z = jnp.concatenate([ZA, jnp.concatenate([above, ZB], axis=-2)], axis=-1)
    return Z[..., :n, :n]


def _whole(C: jax.Array, S: jax.Array, X: jax.Array) -> jax.Array:
    """``-tril(C S Xᴴ)`` for lower-triangular ``X`` (``[..., m, m]`` each).

    ``Xᴴ`` is upper triangular, so with ``R = C S`` and every matrix cut at
    ``h = m/2``, the lower triangle of ``Y = R Xᴴ`` is::

        Y₁₁ = R₁₁ X₁₁ᴴ,   Y₂₁ = R₂₁ X₁₁ᴴ,   Y₂₂ = R₂₁ X₂₁ᴴ + R₂₂ X₂₂ᴴ

    ``R₁₂`` is never read: ``R``'s left half and ``R₂₂`` are three quarters
    of the product ``C S``, and ``Y`` half of the product ``R Xᴴ``,
    ``5m³/2`` flops in five products of ``m/2``-wide operands, against
    ``4m³`` in full. A one-block factor (``m ≤ ONE_BLOCK``) or an odd ``m``
    takes the two full products: too small for the split to pay.
    """
    m = X.shape[-1]
    zero = jnp.zeros((), C.dtype)
    lower = _matrix.like_rank(_matrix.lower_mask(m), X.ndim)
    if m % 2 or m <= _blocked.ONE_BLOCK:
        return jnp.where(lower, -_matrix.matmul(_matrix.matmul(C, S), _matrix.mH(X)), zero)
    h = m // 2
    X11, X21, X22 = X[..., :h, :h], X[..., h:, :h], X[..., h:, h:]
    R1 = _matrix.matmul(C, S[..., :, :h])  # [R₁₁; R₂₁] = C S[:, :h]
    R22 = _matrix.matmul(C[..., h:, :], S[..., :, h:])  # R₂₂ = C[h:, :] S[:, h:]
    Y1 = _matrix.matmul(R1, _matrix.mH(X11))  # [Y₁₁; Y₂₁] = [R₁₁; R₂₁] X₁₁ᴴ
    Y22 = _matrix.matmul(R1[..., h:, :], _matrix.mH(X21)) + _matrix.matmul(
        R22, _matrix.mH(X22)
    )  # Y₂₂ = R₂₁ X₂₁ᴴ + R₂₂ X₂₂ᴴ
    Y = jnp.concatenate([Y1, jnp.concatenate([jnp.zeros_like(Y22), Y22], axis=-2)], axis=-1)
    return jnp.where(lower, -Y, zero)


def _solve_columns(
    L: jax.Array,
    X: jax.Array,
    F: jax.Array,
    C: jax.Array,
    g: jax.Array,
    k0: int,
    k1: int,
    Zleft: jax.Array | None = None,
) -> jax.Array:
    """Block columns ``k0, …, k1-1`` of ``Z = -tril(C S L⁻ᴴ)``, in the last ``m`` rows.

    ``C`` holds the last ``m`` rows of ``C``, ``Zleft`` the same rows of the
    block columns left of ``k0``, already made (``None`` if ``k0 = 0``); the
    rows above are zero in these block columns.
    """
    N, b = X.shape[-3], X.shape[-1]
    size, m = N * b, C.shape[-2]
    row0, width = size - m, (k1 - k0) * b
    zero = jnp.zeros((), C.dtype)
    rows = lax.broadcasted_iota(jnp.int32, (m, b), 0) + row0
    cols = lax.broadcasted_iota(jnp.int32, (m, b), 1)
    left = lax.broadcasted_iota(jnp.int32, (b, size), 1)

    def step(j: jax.Array, Z: jax.Array) -> jax.Array:
        k = k0 + j
        Xkk = lax.dynamic_index_in_dim(X, k, axis=-3, keepdims=False)
        gk = lax.dynamic_slice_in_dim(g, k * b, b, axis=-1)
        Fk = lax.dynamic_slice_in_dim(F, k * b, b, axis=-2)  # the row factors of block row k
        # S[:, k] Dₖ⁻¹: the columns of the panel of S scaled.
        Sk = _matrix.column_scale(gk + _matrix.mH(_placement.block_row(g, k, b)), Fk)
        Lk = _placement.block_row(L, k, b)
        Lk = _matrix.row_scale(Lk, Fk)  # Mₖ: block row k of M = D⁻¹ L
        Lk = _matrix.mH(
            jnp.where(_matrix.like_rank(left < k * b, Lk.ndim), Lk, zero)
        )  # Mₖⱼᴴ, j < k
        # Y[:, k] = (C S[:, k] Dₖ⁻¹ - Y[:, :k] Mₖⱼᴴ) Mₖₖ⁻ᴴ, with Z = -Y so far.
        R = _matrix.matmul(C, Sk) + _matrix.matmul(Z, Lk[..., k0 * b : k1 * b, :])
        if Zleft is not None:
            R = R + _matrix.matmul(Zleft, Lk[..., : k0 * b, :])
        Yk = _matrix.matmul(R, _matrix.mH(Xkk))
        lower = _matrix.like_rank(rows >= cols + k * b, Yk.ndim)
        Zk = jnp.where(lower, -Yk, zero)  # the lower part of block column k
        out = lax.dynamic_update_slice_in_dim(Z, Zk, j * b, axis=-1)
        return _placement.tie(out, like)

    # Z is placed like the same block of L (_placement.tie; auto axes).
    like = L[..., row0:, k0 * b : k1 * b]
    Z0 = _placement.tie(jnp.zeros((*C.shape[:-1], width), C.dtype), like)
    Z: jax.Array = lax.fori_loop(0, k1 - k0, step, Z0)
    return Z


__all__ = ["cholinv_lower", "tril_product"]
