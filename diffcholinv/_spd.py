"""``A⁻¹`` and ``log det A`` straight from the Hermitian positive definite ``A``.

The function is ``A ↦ (C, ℓ)`` with ``H = (A + Aᴴ)/2`` (what
``jnp.linalg.cholesky`` factorises, its ``symmetrize_input=True``),
``H = L Lᴴ``, ``C = H⁻¹`` and ``ℓ = log det H = 2 Σ log Re Lᵢᵢ``. Its
derivative skips the Cholesky factorisation altogether (docs/math.md, "From
the matrix itself"): with ``Ȧ`` a tangent and ``sym(X) = (X + Xᴴ)/2``::

    Ċ = -C sym(Ȧ) C,        ℓ̇ = Re tr(C sym(Ȧ))

and, transposed under JAX's convention (``Cᵀ = conj(C)``, ``C`` Hermitian)::

    Ā = -conj(C) sym(Ḡ) conj(C) + ℓ̄ conj(C)

so the backward pass is two matrix products, whatever the forward pass did.
Both forms are here: a ``jax.custom_vjp`` (the default; its backward is plain
jax, so grad-of-grad and ``jax.hessian`` work) and a ``jax.custom_jvp``
(``forward_mode=True``; its tangent is linear in ``Ȧ``, so JAX transposes it
for reverse mode). The residual is ``C`` alone.

The forward pass is ``jnp.linalg.cholesky`` then the op's own blocked
inverse (:mod:`._blocked`), called as plain jax (not through the op's
``custom_vjp``) so that ``jacfwd`` over ``jacrev`` can differentiate it.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from . import _blocked, _matrix

Pair = tuple[jax.Array, jax.Array]


def _forward(A: jax.Array, method: str) -> Pair:
    """``(C, ℓ)`` of ``H = (A + Aᴴ)/2``; nan for a matrix that is not positive definite."""
    L = jnp.linalg.cholesky(A)  # symmetrize_input=True: factorises (A + Aᴴ)/2
    C, _, _ = _blocked.inverse(L, method, keep_inverse=False)
    # ℓ = log det (L Lᴴ) = 2 Σ log |Lᵢᵢ|, the diagonal of a Cholesky factor being real > 0.
    d = jnp.real(jnp.diagonal(L, axis1=-2, axis2=-1))
    return C, 2 * jnp.sum(jnp.log(d), axis=-1)


def _sym(X: jax.Array) -> jax.Array:
    """``(X + Xᴴ)/2``: the tangent (or cotangent) that reaches ``H`` from ``A``."""
    half = jnp.asarray(0.5, jnp.real(X).dtype).astype(X.dtype)
    return (X + _matrix.mH(X)) * half


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def spd_inv_vjp(A: jax.Array, method: str) -> Pair:
    """``(C, ℓ)`` with the products-only backward pass (reverse mode)."""
    return _forward(A, method)


def _fwd(A: jax.Array, method: str) -> tuple[Pair, jax.Array]:
    C, ld = _forward(A, method)
    return (C, ld), C


def _bwd(method: str, C: jax.Array, cot: Pair) -> tuple[jax.Array]:
    g, gld = cot
    # C Hermitian, so Cᵀ = conj(C): the transpose of Ȧ ↦ -C sym(Ȧ) C is
    # Ḡ ↦ -Cᵀ sym(Ḡ) Cᵀ (sym is its own transpose: transpose ∘ conj).
    Ct = jnp.conj(C)
    grad = -_matrix.matmul(_matrix.matmul(Ct, _sym(g)), Ct)
    # The transpose of Ȧ ↦ Re tr(C sym(Ȧ)) is ℓ̄ ↦ ℓ̄ Cᵀ (Re transposes to the
    # embedding of a real number, sym(Cᵀ) = Cᵀ).
    grad = grad + gld.astype(C.dtype)[..., None, None] * Ct
    return (grad,)


spd_inv_vjp.defvjp(_fwd, _bwd)


@partial(jax.custom_jvp, nondiff_argnums=(1,))
def spd_inv_jvp(A: jax.Array, method: str) -> Pair:
    """``(C, ℓ)`` with a products-only tangent (forward mode; reverse by transposition)."""
    return _forward(A, method)


@spd_inv_jvp.defjvp
def _jvp(method: str, primals: tuple[jax.Array], tangents: tuple[jax.Array]) -> tuple[Pair, Pair]:
    (A,), (dA,) = primals, tangents
    C, ld = _forward(A, method)
    S = _sym(dA)  # the tangent of H = (A + Aᴴ)/2
    P = _matrix.matmul(_matrix.matmul(C, S), C)
    dC = -_sym(P)  # -C S C, made exactly Hermitian as C is (a linear map of dA still)
    # ℓ̇ = Re tr(C S) = Re Σᵢⱼ Cᵢⱼ Sⱼᵢ = Re Σᵢⱼ Cᵢⱼ conj(Sᵢⱼ), S being Hermitian.
    dld = jnp.real(jnp.sum(C * jnp.conj(S), axis=(-2, -1)))
    return (C, ld), (dC, dld)


__all__ = ["spd_inv_jvp", "spd_inv_vjp"]
