"""The forward-mode form: a ``jax.custom_jvp`` on the lower case (``forward_mode=True``).

JAX cannot forward-differentiate a ``jax.custom_vjp`` function, so
``jax.jvp``, ``jax.jacfwd``, ``jax.linearize`` and the libraries built on
them (optimistix's Levenberg–Marquardt, NumPyro's
``forward_mode_differentiation=True``) need this form. Its primal is the
same forward pass as :mod:`._vjp`, which makes ``C = (L Lᴴ)⁻¹`` and on its
way ``X = M⁻¹`` (``M = D⁻¹ L``, ``D = diag(2ᵉ)`` the exact row scaling; so
``L⁻¹ = X D⁻¹``). Its tangent map (docs/math.md, "Tangent map") is, with
``L̇`` masked to its lower triangle (the triangle that is read)::

    Ċ = -(P + Pᴴ),   P = C L̇ L⁻¹ = (C L̇ X) D⁻¹
    Ẋ = -X Ṁ X,      Ṁ = D⁻¹ L̇

both products, linear in ``L̇`` with ``C``, ``X`` and the row factors
primal: reverse mode (``jax.grad``) comes from transposing this map, with no
rule of ours. ``Ẋ`` is what the second order (``jax.hessian``,
``check_grads(order=2)``) needs; a first-order program drops it as dead code.
"""

from __future__ import annotations

from functools import partial

import jax

from . import _blocked, _matrix

Pair = tuple[jax.Array, jax.Array]


def cholinv_lower(L: jax.Array, method: str) -> jax.Array:
    """``(L Lᴴ)⁻¹`` for lower-triangular ``L`` (its strictly upper triangle is never read)."""
    return _inverses(L, method)[0]


@partial(jax.custom_jvp, nondiff_argnums=(1,))
def _inverses(L: jax.Array, method: str) -> Pair:
    """``(C, X)``: ``C = (L Lᴴ)⁻¹`` and ``X = M⁻¹`` of the row-scaled ``M = D⁻¹ L``."""
    C, X, _ = _blocked.inverse(L, method)
    return C, X


@_inverses.defjvp
def _jvp(method: str, primals: tuple[jax.Array], tangents: tuple[jax.Array]) -> tuple[Pair, Pair]:
    (L,), (dL,) = primals, tangents
    # The primal through this function itself, so that its own derivatives
    # (second order: jax.hessian, check_grads order=2) take this rule again.
    C, X = _inverses(L, method)
    F = _blocked.factors(L)  # piecewise constant in L: no tangent
    # Only the lower triangle is read: the tangent of the other is dropped, so
    # its cotangent (the transpose of this select) is zero.
    dL = _matrix.tril(dL)
    # C = (L Lᴴ)⁻¹, Ċ = -C (L̇ Lᴴ + L L̇ᴴ) C = -(P + Pᴴ) with P = C L̇ Lᴴ C = C L̇ L⁻¹,
    # since Lᴴ C = L⁻¹ (docs/math.md, "Tangent map"), and L⁻¹ = X D⁻¹.
    P = _matrix.column_scale(_matrix.matmul(_matrix.matmul(C, dL), X), F)
    # P + Pᴴ entry by entry is bitwise Hermitian (addition commutes), with an
    # exactly real diagonal: as the primal, the tangent is exactly symmetric.
    dC = -(P + _matrix.mH(P))
    # X = M⁻¹: Ẋ = -X Ṁ X with Ṁ = D⁻¹ L̇ (lower triangular, as Ẋ is).
    dM = _matrix.scale(dL, F[..., 0:1])
    dX = -_matrix.matmul(_matrix.matmul(X, dM), X)
    return (C, X), (dC, dX)


__all__ = ["cholinv_lower"]
