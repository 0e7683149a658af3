"""The differentiable core: a ``jax.custom_vjp`` on the lower case only.

Gradient (Murray 2016; see docs/math.md). With ``C = (L Lᴴ)⁻¹`` and
``dA = dL Lᴴ + L dLᴴ``::

    dC = -C dA C
    <Ḡ, dC> = -tr(Ḡᵀ C dL Lᴴ C) - tr(Ḡᵀ C L dLᴴ C)
            = <-(C Ḡ C L) - (C Ḡᵀ C L), dL>
            = <-C S C L, dL>,           S = Ḡ + Ḡᵀ

and ``C L = L⁻ᴴ L⁻¹ L = L⁻ᴴ``, so ``L̄ = -tril(C S L⁻ᴴ)``. Only the lower
triangle of ``L`` is an input, so the gradient is zero above the diagonal.
The forward pass keeps ``X = L⁻¹``, which its products-only recursion
carries anyway, so the backward pass is products and no solve: the
lower triangle of ``(C S) Xᴴ``, block by block, from the blocks of ``C S``
that it reads, skipping the blocks of ``Xᴴ`` that are zero and everything
above the diagonal (``≈ 2.2n³`` flops where ``C S`` alone costs ``2n³``;
:func:`~diffcholinv._forward.tril_sandwich_h`). A right triangular solve
``Y Lᴴ = C S`` has fewer flops but runs at about a quarter of the
product's rate on XLA:CPU. Residuals: ``C`` and ``X`` as the three blocks
of its top split (:data:`~diffcholinv._forward.InverseParts`); ``L`` is not
kept.

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
#              product-only path; CPU and GPU keep the blocked algorithm,
#              whose leaves are triangular solves.
#   "solve"    the blocked algorithm (triangular solves at its leaves) everywhere.
#   "products" the product-only path everywhere (tests force it on CPU).


def _forward(L: jax.Array, method: str) -> jax.Array:
    if method == "solve":
        return F.cholinv(L)
    if method == "products":
        return P.cholinv(L)
    C: jax.Array = lax.platform_dependent(L, default=F.cholinv, metal=P.cholinv)
    return C


def _forward_with_inverse(L: jax.Array, method: str) -> tuple[jax.Array, F.InverseParts]:
    if method == "solve":
        return F.cholinv_with_inverse(L)
    if method == "products":
        return P.cholinv_with_inverse(L)
    CX: tuple[jax.Array, F.InverseParts] = lax.platform_dependent(
        L, default=F.cholinv_with_inverse, metal=P.cholinv_with_inverse
    )
    return CX


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def cholinv_lower(L: jax.Array, method: str = "auto") -> jax.Array:
    """``(L Lᴴ)⁻¹`` for lower-triangular ``L`` (upper triangle zero)."""
    return _forward(L, method)


Residuals = tuple[F.InverseParts, jax.Array]


def _fwd(L: jax.Array, method: str) -> tuple[jax.Array, Residuals]:
    C, parts = _forward_with_inverse(L, method)
    return C, (parts, C)


def _bwd(method: str, res: Residuals, g: jax.Array) -> tuple[jax.Array]:
    parts, C = res
    gc = jnp.conj(g)  # no-op for real dtypes
    Y = F.tril_sandwich_h(C, gc, parts)  # tril(C S L⁻ᴴ), S = gc + gcᴴ
    return (-jnp.conj(Y),)


cholinv_lower.defvjp(_fwd, _bwd)
