"""Forward algorithm: ``C = (L Lᵀ)⁻¹`` from a lower Cholesky factor.

All functions here take a lower-triangular ``L`` of shape ``[..., n, n]``
whose strictly upper triangle is already zero, and a floating dtype the
algorithm runs in (float32 or float64).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

_HI = lax.Precision.HIGHEST


def matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """Batched ``a @ b`` at full precision (float32 stays float32 on accelerators)."""
    return jnp.matmul(a, b, precision=_HI)


def mT(x: jax.Array) -> jax.Array:
    """Transpose of the last two axes."""
    return jnp.swapaxes(x, -1, -2)


def mH(x: jax.Array) -> jax.Array:
    """Conjugate transpose of the last two axes (``mT`` for real dtypes).

    The algorithms are written with ``mH`` wherever the math has ``ᴴ`` so
    that they carry over to complex Hermitian factors.
    """
    return jnp.conj(mT(x)) if jnp.iscomplexobj(x) else mT(x)


def identity_like(x: jax.Array) -> jax.Array:
    """A batch of identities shaped and sharded like ``x``.

    ``zeros_like(x) + eye`` keeps the batch sharding of ``x``; a
    ``broadcast_to(eye, x.shape)`` would be a replicated constant instead.
    """
    n = x.shape[-1]
    return jnp.zeros_like(x) + jnp.eye(n, dtype=x.dtype)


def lower_mask(x: jax.Array) -> jax.Array:
    """Boolean ``[n, n]`` mask of the lower triangle, diagonal included."""
    n = x.shape[-1]
    rows = lax.broadcasted_iota(jnp.int32, (n, n), 0)
    cols = lax.broadcasted_iota(jnp.int32, (n, n), 1)
    return rows >= cols


def tril(x: jax.Array) -> jax.Array:
    """Zero the strictly upper triangle (a select, so nan/inf there vanish too)."""
    return jnp.where(lower_mask(x), x, jnp.zeros((), x.dtype))


def mirror_lower(x: jax.Array) -> jax.Array:
    """Copy the lower triangle onto the upper one: the result is bitwise symmetric.

    For complex ``x`` the upper triangle gets the conjugates and the diagonal
    its real part, so the result is exactly Hermitian.
    """
    out = jnp.where(lower_mask(x), x, mH(x))
    if jnp.iscomplexobj(x):
        n = x.shape[-1]
        diag = lax.broadcasted_iota(jnp.int32, (n, n), 0) == lax.broadcasted_iota(
            jnp.int32, (n, n), 1
        )
        out = jnp.where(diag, jnp.real(out).astype(x.dtype), out)
    return out


def tri_inv_lower(L: jax.Array) -> jax.Array:
    """``L⁻¹`` for lower-triangular ``L``, by a triangular solve against ``I``."""
    return lax.linalg.triangular_solve(L, identity_like(L), left_side=True, lower=True)


def cholinv_reference(L: jax.Array) -> jax.Array:
    """Reference forward pass: ``C = L⁻ᵀ L⁻¹``, then mirror the lower triangle.

    Costs ``n³/3`` (triangular inverse, as a full solve: ``n³``) plus ``n³``
    for the product; clear rather than fast.
    """
    Linv = tri_inv_lower(L)
    return mirror_lower(matmul(mH(Linv), Linv))


# The forward pass the op uses.
cholinv = cholinv_reference
