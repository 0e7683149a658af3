"""The differentiable core: a ``jax.custom_vjp`` on the lower case only.

Gradient (Murray 2016; see docs/math.md). With ``C = (L Lᵀ)⁻¹`` and
``dA = dL Lᵀ + L dLᵀ``::

    dC = -C dA C
    <Ḡ, dC> = -tr(Ḡᵀ C dL Lᵀ C) - tr(Ḡᵀ C L dLᵀ C)
            = <-(C Ḡ C L) - (C Ḡᵀ C L), dL>
            = <-C S C L, dL>,           S = Ḡ + Ḡᵀ

and ``C L = L⁻ᵀ L⁻¹ L = L⁻ᵀ``, so ``L̄ = -tril(C S L⁻ᵀ)``: one product and one
right triangular solve ``Y Lᵀ = C S``. Only the lower triangle of ``L`` is an
input, so the gradient is zero above the diagonal. Residuals: ``(L, C)``.

The backward pass is plain differentiable jax, so grad-of-grad and
``jax.hessian`` (``jacfwd`` over ``jacrev``) work.
"""

from __future__ import annotations

import jax
from jax import lax

from . import _forward as F


@jax.custom_vjp
def cholinv_lower(L: jax.Array) -> jax.Array:
    """``(L Lᵀ)⁻¹`` for lower-triangular ``L`` (upper triangle zero)."""
    return F.cholinv(L)


def _fwd(L: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    C = F.cholinv(L)
    return C, (L, C)


def _bwd(res: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array]:
    L, C = res
    CS = F.matmul(C, g + F.mT(g))
    # Y Lᵀ = C S  <=>  Y = C S L⁻ᵀ.
    Y = lax.linalg.triangular_solve(L, CS, left_side=False, lower=True, transpose_a=True)
    return (-F.tril(Y),)


cholinv_lower.defvjp(_fwd, _bwd)
