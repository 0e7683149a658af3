"""The differentiable core: a ``jax.custom_vjp`` on the lower case, and its backward rule.

The rule (Murray 2016; the canonical derivation is docs/math.md, "Gradient").
With ``C = (L Lᴴ)⁻¹``, incoming cotangent ``Ḡ`` and ``S = Ḡ + Ḡᴴ``::

    L̄ = -tril(C S L⁻ᴴ)                      (real dtypes)
    L̄ = -conj(tril(C S L⁻ᴴ)),  S = conj(Ḡ + Ḡᴴ)   (complex, JAX's convention)

Only the lower triangle of ``L`` is an input, so the gradient is zero above
the diagonal. The forward pass made ``X = M⁻¹`` (``M = D⁻¹ L``, the
row-scaled factor) with ``trtri``'s accuracy on its way to ``C``, and keeps
it: ``L⁻ᴴ = D⁻¹ Xᴴ``, so ``Y = C S L⁻ᴴ = (C (S D⁻¹)) Xᴴ``, of which
:func:`tril_product` makes only the parts that reach ``tril(Y)``, ``5n³/2``
flops in large products. Residuals: the row factors, ``C`` and ``X``. The
backward pass needs an accurate ``L⁻¹`` as much as the forward pass does:
with ``X`` refined, the gradient is as accurate as autodiff through
``cho_solve`` (docs/math.md, "Accuracy").

The backward pass is plain differentiable jax, so grad-of-grad and
``jax.hessian`` (``jacfwd`` over ``jacrev``) work.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from . import _blocked, _matrix


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def cholinv_lower(L: jax.Array, method: str) -> jax.Array:
    """``(L Lᴴ)⁻¹`` for lower-triangular ``L`` (its strictly upper triangle is never read)."""
    return _blocked.inverse(L, method, keep_inverse=False)[0]


Residuals = tuple[jax.Array, jax.Array, jax.Array]


def _fwd(L: jax.Array, method: str) -> tuple[jax.Array, Residuals]:
    C, X, F = _blocked.inverse(L, method)  # F: D = diag(2ᵉ), piecewise constant, no gradient
    return C, (F, C, X)


def _bwd(method: str, res: Residuals, g: jax.Array) -> tuple[jax.Array]:
    F, C, X = res
    Z = tril_product(F, C, jnp.conj(g), X)  # -tril(C S L⁻ᴴ), S = conj(Ḡ + Ḡᴴ)
    return (jnp.conj(Z),)


cholinv_lower.defvjp(_fwd, _bwd)


def tril_product(F: jax.Array, C: jax.Array, g: jax.Array, X: jax.Array) -> jax.Array:
    """``-tril(C S L⁻ᴴ)`` with ``S = g + gᴴ``, from ``C``, ``X = M⁻¹`` and the row factors ``F``.

    ``L = D M`` (``D = diag(2ᵉ)``, real, constant in ``L``), so
    ``L⁻ᴴ = D⁻¹ Xᴴ`` and ``C S L⁻ᴴ = (C (S D⁻¹)) Xᴴ``: ``D`` enters once, on
    the columns of ``S``. Every product is then the unscaled one times a
    power of two per term, so where nothing leaves the range the gradient is
    bitwise the unscaled one.
    """
    return _whole(C, _matrix.column_scale(g + _matrix.mH(g), F), X)


def _whole(C: jax.Array, S: jax.Array, X: jax.Array) -> jax.Array:
    """``-tril(C S Xᴴ)`` for lower-triangular ``X`` (``[..., m, m]`` each).

    ``Xᴴ`` is upper triangular, so with ``R = C S`` and every matrix cut at
    ``h = m/2``, the lower triangle of ``Y = R Xᴴ`` is::

        Y₁₁ = R₁₁ X₁₁ᴴ,   Y₂₁ = R₂₁ X₁₁ᴴ,   Y₂₂ = R₂₁ X₂₁ᴴ + R₂₂ X₂₂ᴴ

    ``R₁₂`` is never read: ``R``'s left half and ``R₂₂`` are three quarters
    of the product ``C S``, and ``Y`` half of the product ``R Xᴴ``,
    ``5m³/2`` flops in five products of ``m/2``-wide operands, against
    ``4m³`` in full (``h = ⌊m/2⌋`` for an odd ``m``). A one-block factor
    (``m ≤ ONE_BLOCK``) takes the two full products: too small for the
    split to pay.
    """
    m = X.shape[-1]
    zero = jnp.zeros((), C.dtype)
    lower = _matrix.like_rank(_matrix.lower_mask(m), X.ndim)
    if m <= _blocked.ONE_BLOCK:
        return jnp.where(lower, -_matrix.matmul(_matrix.matmul(C, S), _matrix.mH(X)), zero)
    h = m // 2
    X11, X21, X22 = X[..., :h, :h], X[..., h:, :h], X[..., h:, h:]
    R1 = _matrix.matmul(C, S[..., :, :h])  # [R₁₁; R₂₁] = C S[:, :h]
    R22 = _matrix.matmul(C[..., h:, :], S[..., :, h:])  # R₂₂ = C[h:, :] S[:, h:]
    Y1 = _matrix.matmul(R1, _matrix.mH(X11))  # [Y₁₁; Y₂₁] = [R₁₁; R₂₁] X₁₁ᴴ
    Y22 = _matrix.matmul(R1[..., h:, :], _matrix.mH(X21)) + _matrix.matmul(
        R22, _matrix.mH(X22)
    )  # Y₂₂ = R₂₁ X₂₁ᴴ + R₂₂ X₂₂ᴴ
    above = jnp.zeros_like(Y22[..., :h, :])  # Y₁₂ = 0 (h ≤ m - h); zeros_like keeps the sharding
    Y = jnp.concatenate([Y1, jnp.concatenate([above, Y22], axis=-2)], axis=-1)
    return jnp.where(lower, -Y, zero)


__all__ = ["cholinv_lower", "tril_product"]
