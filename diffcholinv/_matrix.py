"""Matrix utilities every algorithm uses.

All functions act on the last two axes of ``[..., n, n]`` arrays and
broadcast over the leading (batch) axes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

_HIGHEST = lax.Precision.HIGHEST


def matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """Batched ``a @ b`` at full precision (float32 stays float32 on accelerators)."""
    return jnp.matmul(a, b, precision=_HIGHEST)


def mT(x: jax.Array) -> jax.Array:
    """Transpose of the last two axes."""
    return jnp.swapaxes(x, -1, -2)


def mH(x: jax.Array) -> jax.Array:
    """Conjugate transpose of the last two axes (``mT`` for real dtypes).

    The algorithms are written with ``mH`` wherever the math has ``ᴴ`` so that
    they carry over to complex Hermitian factors.
    """
    return jnp.conj(mT(x)) if jnp.iscomplexobj(x) else mT(x)


def lower_mask(n: int, *, strict: bool = False) -> jax.Array:
    """Boolean ``[n, n]`` mask of the lower triangle (``row >= col``; ``>`` if ``strict``)."""
    rows = lax.broadcasted_iota(jnp.int32, (n, n), 0)
    cols = lax.broadcasted_iota(jnp.int32, (n, n), 1)
    return rows > cols if strict else rows >= cols


def tril(x: jax.Array) -> jax.Array:
    """Zero the strictly upper triangle (a select, so nan/inf there vanish too)."""
    return jnp.where(lower_mask(x.shape[-1]), x, jnp.zeros((), x.dtype))


def identity_like(x: jax.Array) -> jax.Array:
    """A batch of identities shaped and sharded like ``x``.

    ``zeros_like(x) + eye`` keeps the batch sharding of ``x``; a
    ``broadcast_to(eye, x.shape)`` would be a replicated constant instead.
    """
    return jnp.zeros_like(x) + jnp.eye(x.shape[-1], dtype=x.dtype)


def mirror_lower(x: jax.Array) -> jax.Array:
    """Copy the lower triangle onto the upper one: the result is bitwise Hermitian.

    ``lower + (strictly lower)ᴴ``: every entry is one value plus an exact zero,
    so both copies are bitwise equal (nan and inf included). For complex ``x``
    the real and imaginary parts are mirrored apart and the diagonal gets its
    real part: XLA may fuse the computation of ``x`` into this function and
    evaluate the two triangles apart, and it rewrites ``conj(conj(a) b)`` into
    ``a conj(b)``, which rounds differently.
    """
    if jnp.iscomplexobj(x):
        return lax.complex(_mirror_real(jnp.real(x), 1), _mirror_real(jnp.imag(x), -1))
    return _mirror_real(x, 1)


def _mirror_real(y: jax.Array, sign: int) -> jax.Array:
    """Real ``y``: lower triangle kept, upper ``sign ×`` its transpose (``-1``: zero diagonal)."""
    n, zero = y.shape[-1], jnp.zeros((), y.dtype)
    strict = jnp.where(lower_mask(n, strict=True), y, zero)
    if sign > 0:
        return jnp.where(lower_mask(n), y, zero) + mT(strict)
    return strict - mT(strict)


def pad_identity(L: jax.Array, size: int) -> jax.Array:
    """``[[L, 0], [0, I]]`` of shape ``[..., size, size]``.

    Its inverse Gram matrix is ``[[C, 0], [0, I]]`` and its inverse
    ``[[L⁻¹, 0], [0, I]]``: padding changes nothing in the top-left block.
    """
    n = L.shape[-1]
    if size == n:
        return L
    widths = [(0, 0)] * (L.ndim - 2) + [(0, size - n), (0, size - n)]
    return jnp.pad(L, widths) + jnp.diag((jnp.arange(size) >= n).astype(L.dtype))


def diagonal_blocks(L: jax.Array, b: int) -> jax.Array:
    """``[..., N b, N b]`` → ``[..., N, b, b]``: the ``b × b`` diagonal blocks."""
    N = L.shape[-1] // b
    blocks = L.reshape(*L.shape[:-2], N, b, N, b)
    return jnp.moveaxis(jnp.diagonal(blocks, axis1=-4, axis2=-2), -1, -3)


def scale(x: jax.Array, s: jax.Array) -> jax.Array:
    """``x * s`` for a real ``s``; complex ``x`` scaled part by part (no ``inf * 0``)."""
    if jnp.iscomplexobj(x):
        return lax.complex(jnp.real(x) * s, jnp.imag(x) * s)
    return x * s


def inverse_scale(L: jax.Array) -> jax.Array:
    """``s = 2⁻ᵉ`` per matrix, ``[..., 1, 1]``, so that ``max |diag(s L)|`` is in ``[1/2, 1)``.

    The algorithms invert ``s L`` and scale back (``A⁻¹ = s² (s L (s L)ᴴ)⁻¹``),
    exactly, since only exponents change: factors near the overflow or
    underflow limits then give the right answer, or ±inf / 0 exactly where
    ``A⁻¹`` itself overflows or underflows, instead of ``inf - inf = nan``
    inside the products. ``e = 0`` where the diagonal is zero or not finite.
    Scale back by ``s`` twice, not by ``s²``, which can be out of range.
    """
    real = jnp.finfo(L.dtype).dtype
    info = jnp.finfo(real)
    lim = info.maxexp - 2  # 2**±lim are normal numbers
    diag = jnp.abs(jnp.diagonal(lax.stop_gradient(L), axis1=-2, axis2=-1))
    d = jnp.max(diag, axis=-1, keepdims=True)[..., None]
    e = jnp.clip(jnp.where(jnp.isfinite(d), jnp.frexp(d)[1], 0), -lim, lim)
    # 2**-e from the exponent bits: exact on every backend.
    itype = jnp.int64 if info.bits == 64 else jnp.int32
    bits = ((info.maxexp - 1) - e.astype(itype)) << info.nmant
    return lax.bitcast_convert_type(bits, real)


__all__ = [
    "diagonal_blocks",
    "identity_like",
    "inverse_scale",
    "lower_mask",
    "mH",
    "mT",
    "matmul",
    "mirror_lower",
    "pad_identity",
    "scale",
    "tril",
]
