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

import jax
import jax.numpy as jnp
from jax import lax

from . import _forward as F


@jax.custom_vjp
def cholinv_lower(L: jax.Array) -> jax.Array:
    """``(L Lᴴ)⁻¹`` for lower-triangular ``L`` (upper triangle zero)."""
    return F.cholinv(L)


def _fwd(L: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    C = F.cholinv(L)
    return C, (L, C)


def _bwd(res: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array]:
    L, C = res
    gc = jnp.conj(g)  # no-op for real dtypes
    CS = F.matmul(C, gc + F.mH(gc))
    # Y Lᴴ = C S  <=>  Y = C S L⁻ᴴ.
    Y = lax.linalg.triangular_solve(
        L, CS, left_side=False, lower=True, transpose_a=True, conjugate_a=True
    )
    return (-jnp.conj(F.tril(Y)),)


cholinv_lower.defvjp(_fwd, _bwd)
