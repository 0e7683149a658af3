"""Matrix utilities every algorithm uses.

All functions act on the last two axes of ``[..., n, n]`` arrays and
broadcast over the leading (batch) axes.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

_HIGHEST = lax.Precision.HIGHEST


def matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """Batched ``a @ b`` at full precision (float32 stays float32 on accelerators)."""
    return jnp.matmul(a, b, precision=_HIGHEST)


def unrolled_matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b`` as a sum of ``k`` outer products (``[..., m, k] @ [..., k, p]``), unrolled.

    XLA fuses the sum into one elementwise loop over the batch, where
    XLA:CPU's dot pays a per-matrix cost that dominates for batches of small
    matrices (docs/benchmarks.md). Entry ``(i, j)`` sums its ``k`` products in
    the same order as every other entry, so ``mT(x) @ x`` made this way is
    exactly symmetric.
    """
    out = a[..., :, 0, None] * b[..., None, 0, :]
    for k in range(1, a.shape[-1]):
        out = out + a[..., :, k, None] * b[..., None, k, :]
    return out


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


def like_rank(a: jax.Array, ndim: int) -> jax.Array:
    """``a`` with leading unit axes up to ``ndim``: broadcasts against a batch at equal rank.

    Explicit, so the op holds under ``jax_numpy_rank_promotion="raise"``.
    """
    return a.reshape((1,) * (ndim - a.ndim) + a.shape)


def tril(x: jax.Array) -> jax.Array:
    """Zero the strictly upper triangle (a select, so nan/inf there vanish too)."""
    return jnp.where(like_rank(lower_mask(x.shape[-1]), x.ndim), x, jnp.zeros((), x.dtype))


def identity_like(x: jax.Array) -> jax.Array:
    """A batch of identities shaped and sharded like ``x``.

    ``zeros_like(x) + eye`` keeps the batch sharding of ``x``; a
    ``broadcast_to(eye, x.shape)`` would be a replicated constant instead.
    """
    return jnp.zeros_like(x) + like_rank(jnp.eye(x.shape[-1], dtype=x.dtype), x.ndim)


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
    strict = jnp.where(like_rank(lower_mask(n, strict=True), y.ndim), y, zero)
    if sign > 0:
        return jnp.where(like_rank(lower_mask(n), y.ndim), y, zero) + mT(strict)
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
    ones = jnp.diag((jnp.arange(size) >= n).astype(L.dtype))
    return jnp.pad(L, widths) + like_rank(ones, L.ndim)


def diagonal_blocks(L: jax.Array, b: int) -> jax.Array:
    """``[..., N b, N b]`` → ``[..., N, b, b]``: the ``b × b`` diagonal blocks."""
    N = L.shape[-1] // b
    blocks = L.reshape(*L.shape[:-2], N, b, N, b)
    return jnp.moveaxis(jnp.diagonal(blocks, axis1=-4, axis2=-2), -1, -3)


def _parts(x: jax.Array, f: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """``f`` applied to ``x``, or to its real and imaginary parts apart if complex."""
    if jnp.iscomplexobj(x):
        return lax.complex(f(jnp.real(x)), f(jnp.imag(x)))
    return f(x)


def scale(x: jax.Array, s: jax.Array) -> jax.Array:
    """``x * s`` for a real ``s``; complex ``x`` scaled part by part (no ``inf * 0``)."""
    return _parts(x, lambda p: p * s)


def _layout(dtype: jnp.dtype) -> tuple[jnp.dtype, jnp.dtype, int, int, int]:
    """``(real dtype, integer dtype of its bits, mantissa bits, exponent bias, lim)``.

    ``2ᵏ`` is a normal number for every ``|k| ≤ lim``.
    """
    info = jnp.finfo(dtype)
    itype = jnp.int64 if info.bits == 64 else jnp.int32
    return info.dtype, jnp.dtype(itype), int(info.nmant), int(info.maxexp) - 1, int(info.maxexp) - 2


def _pow2(k: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """``2ᵏ`` from the exponent bits, for integer ``k`` in the normal range: exact everywhere."""
    real, itype, nmant, bias, _ = _layout(dtype)
    return lax.bitcast_convert_type((k.astype(itype) + bias) << nmant, real)


def row_exponents(L: jax.Array) -> jax.Array:
    """Row exponents ``e`` (``[..., n]``, int32): ``L = D M``, ``D = diag(2ᵉ)``, ``|Mᵢᵢ| ≈ 1``.

    The algorithms invert ``M = D⁻¹ L`` and scale back, ``A⁻¹ = D⁻¹ (M Mᴴ)⁻¹ D⁻¹``
    (docs/math.md, "Scaling"): exact, since only exponents change, and every
    intermediate of ``M`` is in range whenever ``(M Mᴴ)⁻¹`` is, however wide
    the diagonal of ``L`` spans. ``eᵢ`` is read from the bits of ``Lᵢᵢ``, not
    from ``frexp``: XLA:CPU treats subnormal inputs as zero, so no floating
    operation sees a subnormal. ``eᵢ`` is clamped to ``[lo, lim]`` so that
    ``2^±eᵢ`` and half of ``eᵢ + eⱼ`` are normal numbers: a subnormal
    ``Lᵢᵢ`` (or one below ``2^lo``) gets ``lo = nmant + 1 - lim``, which makes
    ``Mᵢᵢ`` normal however small ``Lᵢᵢ`` is and leaves the off-diagonal
    entries of the row ``2^(maxexp - lo)`` of room. ``eᵢ = 0`` where ``Lᵢᵢ``
    is zero, inf or nan: that row is not scaled. For complex ``L`` the larger
    of ``|Re Lᵢᵢ|``, ``|Im Lᵢᵢ|`` sets ``eᵢ``; any power of two near ``|Lᵢᵢ|``
    would do.
    """
    _, itype, nmant, bias, lim = _layout(L.dtype)
    n = L.shape[-1]
    # The diagonal as a strided slice of the flattened matrix: XLA:CPU makes
    # jnp.diagonal a gather, which costs more than the rest of this function.
    diag = lax.stop_gradient(L).reshape(*L.shape[:-2], n * n)[..., :: n + 1]
    sign = jnp.array(-1, itype) ^ (jnp.array(1, itype) << (8 * itype.itemsize - 1))

    def bits(p: jax.Array) -> jax.Array:
        return lax.bitcast_convert_type(p, itype) & sign  # |p|, as integer bits

    u = (
        jnp.maximum(bits(jnp.real(diag)), bits(jnp.imag(diag)))
        if jnp.iscomplexobj(L)
        else bits(diag)
    )
    biased = u >> nmant
    e = jnp.clip(biased - bias, nmant + 1 - lim, lim)  # a subnormal has biased = 0: e = lo
    e = jnp.where((u == 0) | (biased == 2 * bias + 1), 0, e)
    return e.astype(jnp.int32)


def row_factors(e: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """``[..., m, 4]``: per row ``2^-e``, ``2^(emin-e)`` (``0`` if ``e > 0``), ``2^-p``, ``2^-q``.

    What :func:`row_scale`, :func:`column_scale` and :func:`unscale` need,
    for the row exponents ``e`` of :func:`row_exponents` (``p = ⌊e/2⌋``,
    ``q = e - p``). Each is ``1 / 2ᵏ`` for a normal ``2ᵏ``, exact: a
    division, which XLA does not copy into the ``n²`` entries each factor
    scales, so the factors are made once, in one small fusion.
    """
    real, _, _, bias, _ = _layout(dtype)
    emin = 1 - bias
    p = e >> 1
    c = jnp.where(e <= 0, _pow2(jnp.minimum(e - emin, -emin), real), jnp.array(jnp.inf, real))
    powers = jnp.stack([_pow2(e, real), c, _pow2(p, real), _pow2(e - p, real)], axis=-1)
    return 1 / powers


@jax.custom_jvp
def row_scale(x: jax.Array, factors: jax.Array) -> jax.Array:
    """``D⁻¹ x``: row ``i`` of ``x`` (``[..., m, k]``) times ``2^-eᵢ``, exactly.

    ``factors``: ``[..., m, 4]`` from :func:`row_factors`. Subnormal entries
    are scaled exactly too, without a floating operation on them (XLA:CPU
    would read them as zero): with the exponent field of a subnormal ``x``
    set to 1, ``y = x ± 2^emin`` is normal, and ``x 2^-e = y 2^-e ∓
    2^(emin-e)``, both terms normal and their difference exact (it is
    representable). A result below the normal range is flushed to zero, as
    XLA:CPU does.
    """
    real, itype, nmant, bias, _ = _layout(x.dtype)
    r, c = factors[..., 0:1], lax.bitcast_convert_type(factors[..., 1:2], itype)
    exponent = jnp.array(2 * bias + 1, itype) << nmant
    implicit = jnp.array(1, itype) << nmant
    sign = jnp.array(1, itype) << (8 * itype.itemsize - 1)

    def part(p: jax.Array) -> jax.Array:
        u = lax.bitcast_convert_type(p, itype)
        tiny = (u & exponent) == 0  # zero or subnormal
        y = lax.bitcast_convert_type(u | implicit, real)
        signed_c = lax.bitcast_convert_type(c | (u & sign), real)  # copysign(c, y), in bits
        return jnp.where(tiny, y * r - signed_c, p * r)

    return _parts(x, part)


@row_scale.defjvp
def _row_scale_jvp(
    primals: tuple[jax.Array, jax.Array], tangents: tuple[jax.Array, jax.Array]
) -> tuple[jax.Array, jax.Array]:
    # Linear in x: the tangent is scaled like x (the bit operations above
    # have no derivative, and would give zeros and subnormals none); the
    # factors are constant in L.
    x, factors = primals
    return row_scale(x, factors), scale(tangents[0], factors[..., 0:1])


def column_scale(x: jax.Array, factors: jax.Array) -> jax.Array:
    """``x D⁻¹``: column ``j`` of ``x`` times ``2^-eⱼ`` (normal entries; see :func:`row_scale`)."""
    return scale(x, mT(factors[..., 0:1]))


def unscale(C: jax.Array, factors: jax.Array) -> jax.Array:
    """``D⁻¹ C D⁻¹``: entry ``(i, j)`` of ``C`` (``[..., n, n]``) times ``2^-(eᵢ+eⱼ)``.

    Applied as two normal halves, ``2^-(pᵢ+pⱼ)`` then ``2^-(qᵢ+qⱼ)`` with
    ``pᵢ = ⌊eᵢ/2⌋`` and ``qᵢ = eᵢ - pᵢ`` (``factors`` from :func:`row_factors`):
    the value half-way is in range whenever both ends are, so the result is
    exact where it is in range and ±inf or 0 exactly where it is not
    (``2^-(eᵢ+eⱼ)`` itself may not be a float). Entries ``(i, j)`` and
    ``(j, i)`` get the same factors in the same order: a Hermitian ``C``
    stays bitwise Hermitian.
    """
    hp, hq = factors[..., 2], factors[..., 3]
    first = hp[..., :, None] * hp[..., None, :]
    second = hq[..., :, None] * hq[..., None, :]
    return _parts(C, lambda x: x * first * second)


__all__ = [
    "column_scale",
    "diagonal_blocks",
    "identity_like",
    "like_rank",
    "lower_mask",
    "mH",
    "mT",
    "matmul",
    "mirror_lower",
    "pad_identity",
    "row_exponents",
    "row_factors",
    "row_scale",
    "scale",
    "tril",
    "unrolled_matmul",
    "unscale",
]
