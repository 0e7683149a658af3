"""The differentiable core: a ``jax.custom_vjp`` on the lower case only.

Gradient (Murray 2016; see docs/math.md). With ``C = (L Lᴴ)⁻¹`` and
``dA = dL Lᴴ + L dLᴴ``::

    dC = -C dA C
    <Ḡ, dC> = -tr(Ḡᵀ C dL Lᴴ C) - tr(Ḡᵀ C L dLᴴ C)
            = <-(C Ḡ C L) - (C Ḡᵀ C L), dL>
            = <-C S C L, dL>,           S = Ḡ + Ḡᵀ

and ``C L = L⁻ᴴ L⁻¹ L = L⁻ᴴ``, so ``L̄ = -tril(C S L⁻ᴴ)``: one product and one
right triangular solve ``Y Lᴴ = C S``. Only the lower triangle of ``L`` is an
input, so the gradient is zero above the diagonal. Residuals: ``(L, C)``.

Complex ``L`` (``A = L Lᴴ`` Hermitian). JAX pairs a cotangent with a tangent
as ``<Ḡ, dC> = Re tr(Ḡᵀ dC)`` (no conjugation; for a real loss ``f``,
``grad f = ∂f/∂x - i ∂f/∂y``). Moving ``dLᴴ`` to ``dL`` under ``Re tr``
conjugates its coefficient, and ``Cᵀ = C̄``, so::

    L̄ = -conj(tril(C S L⁻ᴴ)),      S = conj(Ḡ) + Ḡᵀ = conj(Ḡ + Ḡᴴ)

which is the real formula for real inputs. The imaginary part of ``diag(L)``
is an input like any other entry (``A = L Lᴴ`` for the ``L`` given) and gets
its exact gradient.

The backward pass is plain differentiable jax, so grad-of-grad and
``jax.hessian`` (``jacfwd`` over ``jacrev``) work.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from . import _forward as F
from . import _products as P

# Algorithms, chosen by ``cholesky_inv(..., method=...)``:
#   "auto"     per lowering platform (``lax.platform_dependent``): Metal, which
#              cannot lower ``triangular_solve`` (jax-ml/jax#17490), gets the
#              product-only path; CPU and GPU keep the triangular solves.
#   "solve"    triangular solves everywhere.
#   "products" the product-only path everywhere (tests force it on CPU).


def _right_solve(L: jax.Array, B: jax.Array) -> jax.Array:
    # Y Lᴴ = B  <=>  Y = B L⁻ᴴ.
    return lax.linalg.triangular_solve(
        L, B, left_side=False, lower=True, transpose_a=True, conjugate_a=True
    )


def _forward(L: jax.Array, method: str) -> jax.Array:
    if method == "solve":
        return F.cholinv(L)
    if method == "products":
        return P.cholinv(L)
    C: jax.Array = lax.platform_dependent(L, default=F.cholinv, metal=P.cholinv)
    return C


def _solve(L: jax.Array, B: jax.Array, method: str) -> jax.Array:
    if method == "solve":
        return _right_solve(L, B)
    if method == "products":
        return P.right_solve_lower_h(L, B)
    Y: jax.Array = lax.platform_dependent(L, B, default=_right_solve, metal=P.right_solve_lower_h)
    return Y


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def cholinv_lower(L: jax.Array, method: str = "auto") -> jax.Array:
    """``(L Lᴴ)⁻¹`` for lower-triangular ``L`` (upper triangle zero)."""
    return _forward(L, method)


def _fwd(L: jax.Array, method: str) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    C = _forward(L, method)
    return C, (L, C)


def _bwd(method: str, res: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array]:
    L, C = res
    gc = jnp.conj(g)  # no-op for real dtypes
    CS = F.matmul(C, gc + F.mH(gc))
    Y = _solve(L, CS, method)  # Y = C S L⁻ᴴ
    return (-jnp.conj(F.tril(Y)),)


cholinv_lower.defvjp(_fwd, _bwd)
