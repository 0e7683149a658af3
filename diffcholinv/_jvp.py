"""The forward-mode form: a ``jax.custom_jvp`` on the lower case (``forward_mode=True``).

JAX cannot forward-differentiate a ``jax.custom_vjp`` function, so
``jax.jvp``, ``jax.jacfwd``, ``jax.linearize`` and the libraries built on
them (optimistix's Levenberg–Marquardt, NumPyro's
``forward_mode_differentiation=True``) need this form. Its primal is the
same blocked forward pass as :mod:`._vjp`; its tangent map (docs/math.md,
"Tangent map") is, with ``C = (L Lᴴ)⁻¹`` and ``L̇`` masked to its lower
triangle (the triangle that is read)::

    Ċ = -(P + Pᴴ),   P = C L̇ L⁻¹

``P`` is linear in ``L̇``; ``C``, ``L`` and the row factors are primal. So
the tangent is a product and a triangular solve with the tangent on the
right-hand side, both of which JAX transposes: reverse mode (``jax.grad``)
comes from transposing this map, with no rule of ours.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from . import _blocked, _leaves, _matrix


@partial(jax.custom_jvp, nondiff_argnums=(1,))
def cholinv_lower(L: jax.Array, method: str) -> jax.Array:
    """``(L Lᴴ)⁻¹`` for lower-triangular ``L`` (its strictly upper triangle is never read)."""
    F = _blocked.factors(L)  # L = D M, D = diag(2ᵉ): piecewise constant, no tangent
    N, b = _blocked.blocks(L.shape[-1])
    tri_inv = _leaves.for_method(method, b, L.dtype, looped=N > 1)
    C: jax.Array = _blocked.inverse(L, F, tri_inv)[0]
    return C


@cholinv_lower.defjvp
def _jvp(
    method: str, primals: tuple[jax.Array], tangents: tuple[jax.Array]
) -> tuple[jax.Array, jax.Array]:
    (L,), (dL,) = primals, tangents
    # The primal through this function itself, so that its own derivatives
    # (second order: jax.hessian, check_grads order=2) take this rule again.
    C = cholinv_lower(L, method)
    # Only the lower triangle is read: the tangent of the other is dropped, so
    # its cotangent (the transpose of this mask) is zero.
    dL = _lower(dL)
    # C = (L Lᴴ)⁻¹, Ċ = -C (L̇ Lᴴ + L L̇ᴴ) C = -(P + Pᴴ) with P = C L̇ Lᴴ C = C L̇ L⁻¹,
    # since Lᴴ C = L⁻¹ (docs/math.md, "Tangent map").
    G = _matrix.matmul(C, dL)  # C L̇: linear in L̇
    P = _right_inverse(G, L, method)  # C L̇ L⁻¹
    # P + Pᴴ entry by entry is bitwise Hermitian (addition commutes), with an
    # exactly real diagonal: as the primal, the tangent is exactly symmetric.
    return C, -(P + _matrix.mH(P))


def _right_inverse(G: jax.Array, L: jax.Array, method: str) -> jax.Array:
    """``G L⁻¹`` for lower-triangular ``L``; linear in ``G``, so JAX transposes it.

    ``L = D M`` with ``D = diag(2ᵉ)`` the exact row scaling of the forward
    pass: ``G L⁻¹ = (G M⁻¹) D⁻¹``, solved on ``M``, whose entries are in
    range whenever the inverse is. ``method="products"`` (no triangular
    solve in the program, for Metal) uses ``L⁻¹ = Lᴴ C`` instead: products
    only, at the price of the accuracy of a product with ``C``.
    """
    n = L.shape[-1]
    if method == "products":
        Linv = _matrix.matmul(_matrix.mH(_lower(L)), cholinv_lower(L, method))
        return _matrix.matmul(G, Linv)
    F = _blocked.factors(L)[..., :n, :]
    M = _lower(_matrix.row_scale(L, F))
    Y = lax.linalg.triangular_solve(M, G, left_side=False, lower=True)  # Y M = G
    return _matrix.column_scale(Y, F)  # G M⁻¹ D⁻¹


def _lower(x: jax.Array) -> jax.Array:
    """The lower triangle of ``x``, zero above (a select: nan there vanishes too).

    The mask has the rank of ``x`` (no implicit rank promotion).
    """
    n = x.shape[-1]
    mask = _matrix.lower_mask(n).reshape((1,) * (x.ndim - 2) + (n, n))
    return jnp.where(mask, x, jnp.zeros((), x.dtype))


__all__ = ["cholinv_lower"]
