"""Forward algorithm: ``C = (L Lᵀ)⁻¹`` from a lower Cholesky factor.

All functions here take a lower-triangular ``L`` of shape ``[..., n, n]``
whose strictly upper triangle is already zero, and a floating dtype the
algorithm runs in (float32 or float64).

:func:`cholinv` is the forward pass the op uses. It picks, by static shape
only, between

- :func:`cholinv_unrolled` for tiny matrices (``n <= UNROLL_MAX``): forward
  substitution unrolled over rows, elementwise over the batch, so a batch of
  100000 4x4 factors costs a few fused loops instead of 100000 LAPACK calls;
- :func:`cholinv_blocked` otherwise: a recursive 2x2 block algorithm whose
  bulk is matrix products (``13n³/12`` flops products-only, the default;
  ``5n³/6`` with triangular solves; LAPACK ``potri`` needs ``2n³/3`` and
  ``cho_solve`` against ``I`` ``2n³``).

:func:`cholinv_reference` is the plain two-step algorithm, kept as the
reference the tests compare the fast paths against.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

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


def lower_mask(x: jax.Array, *, strict: bool = False) -> jax.Array:
    """Boolean ``[n, n]`` mask of the lower triangle, diagonal included unless ``strict``."""
    n = x.shape[-1]
    rows = lax.broadcasted_iota(jnp.int32, (n, n), 0)
    cols = lax.broadcasted_iota(jnp.int32, (n, n), 1)
    return rows > cols if strict else rows >= cols


def blocks2x2(a: jax.Array, b: jax.Array, c: jax.Array, d: jax.Array) -> jax.Array:
    """``[[a, b], [c, d]]`` from four ``[..., p, q]`` blocks."""
    return jnp.concatenate(
        [jnp.concatenate([a, b], axis=-1), jnp.concatenate([c, d], axis=-1)], axis=-2
    )


def tril(x: jax.Array) -> jax.Array:
    """Zero the strictly upper triangle (a select, so nan/inf there vanish too)."""
    return jnp.where(lower_mask(x), x, jnp.zeros((), x.dtype))


# Elementwise ops that read a matrix in both orders (``x + xᵀ``, a mirror) run
# at a fraction of memory speed on XLA:CPU when the matrix is large: 8.4 ms
# for a 1024 x 1024 float64 ``g + gᵀ``, 2.6 ms in 2 x 2 tiles, 1.8 ms in
# 4 x 4. Matrices with ``n >= 2 * TILE`` are split into up to ``MAX_TILES``
# x ``MAX_TILES`` tiles. More tiles gained under 3% end to end and every
# tile is a few more operations to compile (n = 4096: 1.6 s with 2 x 2
# tiles, 2.5 s with up to 8 x 8 of 128).
TILE = 512
MAX_TILES = 2


def _tiles(n: int) -> list[int]:
    """Tile boundaries ``[0, …, n]`` for the tiled elementwise ops (one tile if small)."""
    p = min(MAX_TILES, n // TILE)
    return [n * i // p for i in range(p + 1)] if p > 1 else [0, n]


def _tiled(x: jax.Array, tile: Callable[[int, int, slice, slice], jax.Array]) -> jax.Array:
    """``[..., n, n]`` assembled from ``tile(i, j, rows, cols)`` over the tiles of ``x``."""
    b = _tiles(x.shape[-1])
    cuts = [slice(lo, hi) for lo, hi in itertools.pairwise(b)]
    if len(cuts) == 1:
        return tile(0, 0, cuts[0], cuts[0])
    rows = [
        jnp.concatenate([tile(i, j, r, c) for j, c in enumerate(cuts)], axis=-1)
        for i, r in enumerate(cuts)
    ]
    return jnp.concatenate(rows, axis=-2)


def _mirror_real(y: jax.Array, sign: int) -> jax.Array:
    """Real ``y``: lower triangle kept, upper = ``sign ×`` its transpose.

    ``sign = -1`` (antisymmetric, for imaginary parts) also zeroes the
    diagonal. Tiles below the diagonal are copied, tiles above are
    transposes of their mirror images, diagonal tiles are mirrored whole:
    ``lower + sign × (strictly lower)ᵀ``, one value plus an exact zero per
    entry, so both copies are bitwise equal (nan and inf included).
    """

    def diagonal_tile(t: jax.Array) -> jax.Array:
        zero = jnp.zeros((), t.dtype)
        strict = jnp.where(lower_mask(t, strict=True), t, zero)
        keep = jnp.where(lower_mask(t), t, zero) if sign > 0 else strict
        return keep + mT(strict) if sign > 0 else keep - mT(strict)

    def tile(i: int, j: int, r: slice, c: slice) -> jax.Array:
        if i == j:
            return diagonal_tile(y[..., r, c])
        if i > j:
            return y[..., r, c]
        t = mT(y[..., c, r])
        return t if sign > 0 else -t

    return _tiled(y, tile)


def mirror_lower(x: jax.Array) -> jax.Array:
    """Copy the lower triangle onto the upper one: the result is bitwise symmetric.

    For complex ``x`` the upper triangle gets the conjugates and the diagonal
    its real part, so the result is exactly Hermitian. The real and imaginary
    parts are mirrored separately: XLA may fuse the computation of ``x`` into
    this function and evaluate the two triangles apart, and it rewrites
    ``conj(conj(a) b)`` into ``a conj(b)``, which rounds differently.

    Done tile by tile (see ``TILE``). The select ``where(lower, x, xᵀ)``
    would be shorter, but XLA:CPU (jax 0.10) crashes on it at ``n = 1024``
    and takes minutes to compile it at ``n ≥ 2048``.
    """
    if not jnp.iscomplexobj(x):
        return _mirror_real(x, 1)
    return lax.complex(_mirror_real(jnp.real(x), 1), _mirror_real(jnp.imag(x), -1))


def tri_inv_lower(L: jax.Array) -> jax.Array:
    """``L⁻¹`` for lower-triangular ``L``, by a triangular solve against ``I``."""
    return lax.linalg.triangular_solve(L, identity_like(L), left_side=True, lower=True)


def cholinv_reference(L: jax.Array) -> jax.Array:
    """Reference forward pass: ``C = L⁻ᴴ L⁻¹``, then mirror the lower triangle.

    Costs ``n³`` (triangular inverse, as a full solve against ``I``) plus
    ``2n³`` for the product; clear rather than fast.
    """
    Linv = tri_inv_lower(L)
    return mirror_lower(matmul(mH(Linv), Linv))


# Blocks with every side at most this are multiplied by a fused broadcast-sum
# (see ``block_matmul``); larger ones by XLA's dot. 8 x 8 blocks go to the dot:
# fused, their products were fused with the leaf kernel that makes their
# operands, which XLA then recomputes in every consumer (float32, 2000 x 64 x 64:
# 43 ms fused, 37 ms as dots; 15625 x 16 x 16: 25 and 16.5 ms). Smaller ones
# (leaves of 5 to 7 for padded n) stay fused: as dots, 20000 x 12 x 12 took
# 31 ms instead of 14. 4 with leaves of 4 was faster on batches of 16 x 16,
# but its float64 error at kappa(A) = 1e12 reached 3x LAPACK potri's with jax
# 0.4.34 (tests/test_numerics.py); leaves of 8 stay within 2x on every jax tested.
SMALL_MATMUL = 7
# Factors up to this size take the unrolled path; leaves of the blocked
# algorithm up to this size use the unrolled kernel, larger leaves LAPACK trsm.
UNROLL_MAX = 8


def _elementwise_ok(x: jax.Array) -> bool:
    """Whether the fused elementwise kernels may be used for ``x``'s dtype.

    Real dtypes only: for complex ones XLA fuses the elementwise product into
    the final mirror and evaluates the two triangles with differently rounded
    complex products, so the result would not be exactly Hermitian.
    """
    return not jnp.iscomplexobj(x)


def _fused_products(block: jax.Array) -> bool:
    """Whether :func:`block_matmul` multiplies square blocks like ``block`` elementwise."""
    return _elementwise_ok(block) and block.shape[-1] <= SMALL_MATMUL


def block_matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b`` for blocks of the blocked algorithm, ``[..., p, q] @ [..., q, r]``.

    Up to ``SMALL_MATMUL`` on every side the product is a broadcast multiply
    and a sum, which XLA fuses into one loop over the batch; XLA's CPU dot
    pays a per-matrix cost that dominates for blocks this small. Larger
    blocks go to :func:`matmul`.
    """
    if not _elementwise_ok(a) or max(a.shape[-2], a.shape[-1], b.shape[-1]) > SMALL_MATMUL:
        return matmul(a, b)
    return jnp.sum(a[..., :, :, None] * b[..., None, :, :], axis=-2)


def _unrolled_kernel(L: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(L⁻¹, L⁻ᴴ L⁻¹)`` for small ``n`` by forward substitution over rows.

    Row ``i`` of ``X = L⁻¹`` is ``(eᵢ - Σ_{k<i} L_ik X_k) / L_ii``; then
    ``C = Xᴴ X = Σ_k X_kᴴ X_k``, a sum of outer products of rows. Every step is
    elementwise over the batch and the row, so XLA fuses it into a few loops.
    ``C`` is symmetric up to rounding; :func:`cholinv` mirrors it at the end.
    """
    n = L.shape[-1]
    eye = jnp.eye(n, dtype=L.dtype)
    rows: list[jax.Array] = []
    for i in range(n):
        s = jnp.zeros_like(L[..., i, :]) + eye[i]
        for k in range(i):
            s = s - L[..., i, k, None] * rows[k]
        rows.append(s / L[..., i, i, None])
    C = sum(
        (jnp.conj(r)[..., :, None] * r[..., None, :] for r in rows[1:]),
        start=jnp.conj(rows[0])[..., :, None] * rows[0][..., None, :],
    )
    return jnp.stack(rows, axis=-2), C


def _trsm_kernel(L: jax.Array, *, need_inverse: bool) -> tuple[jax.Array, jax.Array]:
    """``(L⁻¹, L⁻ᴴ L⁻¹)`` by a triangular solve against ``I`` and one product.

    ``need_inverse=False`` returns ``L`` in place of ``L⁻¹`` (unused then).
    """
    Linv = tri_inv_lower(L)
    return (Linv if need_inverse else L), block_matmul(mH(Linv), Linv)


def _unrolled(L: jax.Array) -> bool:
    """Whether :func:`cholinv` takes the unrolled path for ``L`` (static)."""
    return _elementwise_ok(L) and L.shape[-1] <= UNROLL_MAX


def cholinv_unrolled(L: jax.Array) -> jax.Array:
    """Forward pass for tiny ``n`` (``≤ UNROLL_MAX``): unrolled substitution.

    No LAPACK call and no dot: a handful of fused elementwise loops over the
    batch, the fast path for large batches of tiny factors.
    """
    return mirror_lower(_unrolled_kernel(L)[1])


def _pad_identity(L: jax.Array, n_pad: int) -> jax.Array:
    """``[[L, 0], [0, I]]`` of size ``n_pad``: its inverse Gram matrix is
    ``[[C, 0], [0, I]]``, so padding changes nothing in the top-left block."""
    n = L.shape[-1]
    widths = [(0, 0)] * (L.ndim - 2) + [(0, n_pad - n), (0, n_pad - n)]
    pad_diag = jnp.diag((jnp.arange(n_pad) >= n).astype(L.dtype))
    return jnp.pad(L, widths) + pad_diag


def blocked_levels(n: int, leaf: int) -> tuple[int, int]:
    """``(k, b)``: ``k`` halvings take ``n`` (padded to ``b 2ᵏ``) to leaves ``b ≤ leaf``."""
    k = 0
    while -(-n // 2**k) > leaf:
        k += 1
    return k, -(-n // 2**k)


@functools.cache
def _barrier_supported() -> bool:
    """Whether ``lax.optimization_barrier`` has batching and JVP rules (not in jax 0.4.34)."""
    spec = jax.ShapeDtypeStruct((1, 1), jnp.float32)
    try:
        jax.eval_shape(jax.vmap(lax.optimization_barrier), spec)
        jax.eval_shape(lambda x: jax.jvp(lax.optimization_barrier, (x,), (x,)), spec)
    except NotImplementedError:
        return False
    return True


def materialize(x: jax.Array) -> jax.Array:
    """``x``, computed into its own buffer before any consumer reads it.

    XLA folds a transpose into the dot that consumes it, and XLA:CPU runs a
    dot whose left operand is transposed at about half speed in float64. A
    block that the algorithm needs transposed anyway (to assemble the
    symmetric result) is materialized once, so the products that read it
    keep the plain ``[p, q] @ [q, r]`` layout. An identity on jax versions
    whose ``optimization_barrier`` cannot be batched or differentiated.
    """
    return lax.optimization_barrier(x) if _barrier_supported() else x


def cholinv_blocked(L: jax.Array, *, leaf: int, solve: bool = False) -> jax.Array:
    """Forward pass by recursive 2x2 blocks (:func:`_blocked`), ``C`` only."""
    return _blocked(L, leaf=leaf, solve=solve, inverse=False)[0]


InverseParts = tuple[jax.Array, jax.Array, jax.Array]
"""``(A⁻¹, W, D⁻¹)``: ``L⁻¹`` by its top 2x2 split, as the backward pass uses it.

For ``L`` padded to ``[[L, 0], [0, I]]`` of size ``N`` and split at ``h``
into ``[[A, 0], [B, D]]``, ``W = B A⁻¹`` and
``L⁻¹ = [[A⁻¹, 0], [-D⁻¹ W, D⁻¹]]`` (padded alike). The blocked algorithm
has all three at its top level, so it needs neither the product
``-D⁻¹ W`` nor the assembly of ``L⁻¹``; :func:`tril_sandwich_h` reads them.
"""


def top_split(L: jax.Array) -> tuple[int, int]:
    """``(N, h)``: the size :func:`cholinv` pads ``L`` to and where it splits it last.

    Static (shape and dtype only), so every path can hand the backward pass
    the same :data:`InverseParts` shapes.
    """
    n: int = L.shape[-1]
    if not _unrolled(L):
        k, b = blocked_levels(n, _leaf(L))
        if k > 0:
            return b << k, b << (k - 1)
    return n, n // 2


def parts_from_inverse(L: jax.Array, Linv: jax.Array, N: int, h: int) -> InverseParts:
    """:data:`InverseParts` of ``L`` from its whole inverse ``Linv``, split at ``h`` of ``N``."""
    if L.shape[-1] < N:
        L, Linv = _pad_identity(L, N), _pad_identity(Linv, N)
    Ainv, Dinv = Linv[..., :h, :h], Linv[..., h:, h:]
    return Ainv, block_matmul(L[..., h:, :h], Ainv), Dinv


def cholinv_blocked_with_inverse(L: jax.Array, *, leaf: int) -> tuple[jax.Array, InverseParts]:
    """``(C, parts of L⁻¹)`` by the products-only blocked algorithm (:func:`_blocked`)."""
    C, parts = _blocked(L, leaf=leaf, solve=False, inverse=True)
    assert parts is not None
    return C, parts


def _blocked(
    L: jax.Array, *, leaf: int, solve: bool, inverse: bool
) -> tuple[jax.Array, InverseParts | None]:
    """Forward pass by recursive 2x2 blocks, the bulk in matrix products.

    Split ``L = [[A, 0], [B, D]]`` (halves of size ``m``). Then
    ``L⁻¹ = [[A⁻¹, 0], [V, D⁻¹]]`` with ``W = B A⁻¹``, ``V = -D⁻¹ W``, and::

        C22 = D⁻ᴴ D⁻¹                         (recursion on D)
        C21 = D⁻ᴴ V = -C22 W
        C12 = C21ᴴ
        C11 = A⁻ᴴ A⁻¹ + Vᴴ V = C_A - C12 W    (recursion on A)

    ``solve=True``: ``W`` by a right triangular solve with ``A`` (``m³``
    flops), then two products (``2m³`` each): ``5m³`` per block, ``≈ 5n³/6``
    in all, against LAPACK ``potri``'s ``2n³/3``. ``solve=False``: products
    only, carrying ``L⁻¹`` up the recursion (``W = B A⁻¹`` and ``V`` are
    products too): ``8m³`` per block (``6m³`` at the top, where ``L⁻¹`` is not
    needed), ``≈ 13n³/12``; it has no triangular solve above the leaves and,
    with the elementwise leaf kernel, none at all, which suits large
    batches of small factors.

    Exact symmetry is kept level by level instead of by one mirror at the
    end, from the first level whose products are XLA dots: its incoming
    ``C`` and every later ``C11`` are mirrored from their lower triangles,
    and ``C12`` is the exact transpose of ``C21``, so each level's ``C`` is
    bitwise symmetric (Hermitian). That mirrors about half of the matrix, in
    blocks, where a final mirror would touch all of it, and the transposed
    ``C12`` that the assembly needs anyway is the left operand of ``C12 W``,
    a plain product (:func:`materialize`). Levels of tiny blocks, whose
    products are fused elementwise loops, skip both and the result is
    mirrored once at the end (a barrier would break their fusion).

    The recursion is unrolled by level, not by block: all blocks of a level
    are one batch (``[..., 2, 2, …, m, m]``), so the program has ``O(log n)``
    operations (quick to compile) and batched, GPU-friendly products. ``n``
    is padded with an identity block to ``b 2ᵏ`` with leaves ``b ≤ leaf``
    (:func:`blocked_levels`); padding ``L`` to ``[[L, 0], [0, I]]`` pads
    ``C`` to ``[[C, 0], [0, I]]`` and ``L⁻¹`` to ``[[L⁻¹, 0], [0, I]]``.
    Leaves use the elementwise kernel when ``b ≤ UNROLL_MAX`` and the dtype
    is real, else a triangular solve against ``I``.

    Args:
      L: lower-triangular factors ``[..., n, n]``, upper triangle zero.
      leaf: largest leaf size; a static Python int ``≥ 1``.
      solve: ``W`` by triangular solves (``True``) or by products (``False``).
        ``True`` is the flop-lean variant kept for comparison; the op never
        uses it. With blocks of 128 (n = 256, 257) XLA:CPU (jax 0.10.2)
        deadlocks on it intermittently: every worker idle, the caller waiting.
      inverse: also return ``L⁻¹`` as :data:`InverseParts` (products only:
        needs ``solve=False``); it costs nothing extra.

    Returns:
      ``(C, parts)``: ``C = (L Lᴴ)⁻¹`` of shape ``[..., n, n]``, bitwise
      symmetric, and the :data:`InverseParts` of ``L⁻¹`` if ``inverse``
      else ``None``.
    """
    if inverse and solve:
        raise ValueError("inverse=True needs solve=False")
    n = L.shape[-1]
    k, b = blocked_levels(n, leaf)
    X = L if b * 2**k == n else _pad_identity(L, b * 2**k)
    # Down: keep each level's diagonal blocks A and off-diagonal blocks B,
    # then stack the two diagonal blocks of every block as the next level.
    diag_blocks: list[jax.Array] = []
    lower_blocks: list[jax.Array] = []
    for _ in range(k):
        m = X.shape[-1] // 2
        diag_blocks.append(X[..., :m, :m])
        lower_blocks.append(X[..., m:, :m])
        X = jnp.stack([X[..., :m, :m], X[..., m:, m:]], axis=-3)
    if b <= UNROLL_MAX and _elementwise_ok(X):
        Linv, C = _unrolled_kernel(X)
    else:
        Linv, C = _trsm_kernel(X, need_inverse=not solve)
    symmetric = False  # Is C bitwise symmetric yet?
    # Up: combine the two halves of every block (derivation in the docstring).
    for level in reversed(range(k)):
        B = lower_blocks[level]
        if not symmetric and not _fused_products(B):
            C, symmetric = mirror_lower(C), True
        CA, CD = C[..., 0, :, :], C[..., 1, :, :]
        m = B.shape[-1]
        split = symmetric and not solve and m >= SPLIT_MIN
        if solve:  # W A = B
            W = lax.linalg.triangular_solve(diag_blocks[level], B, left_side=False, lower=True)
        elif split:  # A⁻¹ is lower triangular: skip its zero upper-right block.
            Ainv, q = Linv[..., 0, :, :], m // 2
            W = jnp.concatenate(
                [matmul(B, Ainv[..., :, :q]), matmul(B[..., :, q:], Ainv[..., q:, q:])], axis=-1
            )
        else:
            W = block_matmul(B, Linv[..., 0, :, :])
        C21 = -block_matmul(CD, W)
        if split:  # C11 from its lower blocks; the upper one is a transpose.
            C12, q = materialize(mH(C21)), m // 2
            left = CA[..., :, :q] - matmul(C12, W[..., :, :q])
            c22 = mirror_lower(CA[..., q:, q:] - matmul(C12[..., q:, :], W[..., :, q:]))
            c21 = left[..., q:, :]
            C11 = blocks2x2(mirror_lower(left[..., :q, :]), materialize(mH(c21)), c21, c22)
        elif symmetric:
            C12 = materialize(mH(C21))
            C11 = mirror_lower(CA - block_matmul(C12, W))
        else:  # Tiny blocks: fused elementwise products, one mirror at the end.
            C12 = mH(C21)
            C11 = CA - block_matmul(mH(W), C21)
        C = blocks2x2(C11, C12, C21, CD)
        if inverse and level == 0:
            return _finish(C, symmetric, n), (Linv[..., 0, :, :], W, Linv[..., 1, :, :])
        if not solve and level > 0:  # The top level's L⁻¹ is not needed.
            Ainv, Dinv = Linv[..., 0, :, :], Linv[..., 1, :, :]
            V = -block_matmul(Dinv, W)
            Linv = blocks2x2(Ainv, jnp.zeros_like(B), V, Dinv)
    if inverse:  # No level (n <= leaf): split the leaf's inverse.
        return _finish(C, symmetric, n), parts_from_inverse(L, Linv, n, n // 2)
    return _finish(C, symmetric, n), None


def _finish(C: jax.Array, symmetric: bool, n: int) -> jax.Array:
    """The blocked algorithm's ``C``, mirrored unless it is already, unpadded to ``n``."""
    return (C if symmetric else mirror_lower(C))[..., :n, :n]


# Leaf size of the blocked algorithm for large n, and the largest n that takes
# the products-only path with elementwise leaves; both chosen by measurement
# (docs/benchmarks.md; at n = 2048 leaves of 16 beat 8, 32 and 128 on XLA:CPU,
# whose batched triangular solve is slow even on small blocks).
LEAF = 16
PRODUCTS_MAX = 64
# Leaf size for ``UNROLL_MAX < n <= PRODUCTS_MAX`` (unrolled leaf kernel);
# see ``SMALL_MATMUL`` for why not 4.
SMALL_LEAF = 8
MAX_LEVELS = 7
SPLIT_MIN = 1024
# The backward product (tril_sandwich_h) cuts each half of the top split into
# this many column blocks once the half has SANDWICH_MIN columns: at n = 2048
# float64 the gradient took 300 ms with one, 270 with two, 265 with four,
# and compiled temp memory 22, 19 and 24.5 MiB at n = 1024.
SANDWICH_PIECES = 2
SANDWICH_MIN = 256


def cholinv(L: jax.Array) -> jax.Array:
    """The forward pass the op uses: ``(L Lᴴ)⁻¹``, bitwise symmetric.

    Static dispatch on ``n`` and the dtype: real ``n ≤ UNROLL_MAX``:
    :func:`cholinv_unrolled`; real ``n ≤ PRODUCTS_MAX``:
    :func:`cholinv_blocked` with products only and elementwise leaves (no
    per-matrix LAPACK call, for large batches of small factors); otherwise
    :func:`cholinv_blocked` with products only and small leaves (``LEAF``,
    more above ``n = 16 · 2^MAX_LEVELS``): measured faster on CPU than
    ``solve=True`` or large leaves despite its extra flops, because XLA's
    triangular solve runs at about a quarter of its GEMM's flop rate.
    """
    if _unrolled(L):
        return cholinv_unrolled(L)
    return cholinv_blocked(L, leaf=_leaf(L))


def _leaf(L: jax.Array) -> int:
    """The blocked algorithm's leaf size for ``L`` (static: shape and dtype)."""
    n: int = L.shape[-1]
    if _elementwise_ok(L) and n <= PRODUCTS_MAX:
        return SMALL_LEAF
    # At most MAX_LEVELS levels: each level is a few more operations to
    # compile, and above n = 2048 leaves of 16 and 32 ran equally fast.
    return max(LEAF, -(-n // (1 << MAX_LEVELS)))


def cholinv_with_inverse(L: jax.Array) -> tuple[jax.Array, InverseParts]:
    """``(C, parts of L⁻¹)`` by the same static dispatch as :func:`cholinv`.

    The forward pass of the gradient: the backward pass needs ``L⁻¹``
    (:func:`tril_sandwich_h`), which the products-only algorithm carries up its
    recursion anyway, split as :func:`top_split` says.
    """
    if _unrolled(L):
        Linv, C = _unrolled_kernel(L)
        return mirror_lower(C), parts_from_inverse(L, Linv, *top_split(L))
    return cholinv_blocked_with_inverse(L, leaf=_leaf(L))


def tril_sandwich_h(C: jax.Array, g: jax.Array, parts: InverseParts) -> jax.Array:
    """``tril(C S L⁻ᴴ)`` with ``S = g + gᴴ``, from the :data:`InverseParts` of ``L⁻¹``.

    The backward pass's product, computed block by block so that no block
    that is zero or lands above the diagonal is multiplied. Cut ``[0, n)``
    into column blocks ``b₀ < b₁ < …``: the halves ``[0, h)`` and ``[h, n)``
    of the top split, each in ``SANDWICH_PIECES`` pieces once ``h ≥
    SANDWICH_MIN``. ``X = L⁻¹`` is block lower triangular with ``X_jk`` a
    block of ``A⁻¹`` (``j, k`` in the first half), of ``D⁻¹`` (both in the
    second) or of ``V = -D⁻¹ W`` (``j`` second, ``k`` first). With
    ``P = C S``::

        Y[:, j] = Σ_{k ≤ j} P[:, k] X_jkᴴ                  (only rows ≥ b_j kept)

    and for ``j`` in the second half the ``V`` terms fold into
    ``M[:, k] = P[:, k] - Σ_{m in first half} P[:, m] W_kmᴴ`` (``W_km`` the
    block of ``W`` in rows ``k``, columns ``m``), so that
    ``Y[:, j] = Σ_{k ≤ j, k in second half} M[:, k] D⁻¹_jkᴴ`` and ``V`` is
    never formed. ``P``'s column panels are computed from row ``0`` (first
    half) or ``h`` (second): rows above are never read, and a row slice of
    ``C`` at any other offset would be a copy of it. Flops: ``P`` ``3n³/2``
    (``2n³`` whole), the rest ``≈ 11n³/16`` with two pieces (``n³`` with
    one, ``2n³`` for a full ``P L⁻ᴴ``). All products are plain GEMMs with a
    transposed right operand, which XLA runs at full speed. ``S`` is built
    panel by panel from tiles ``g[r, c] + g[c, r]ᴴ`` (a matrix read in both
    orders is slow whole, see ``TILE``).

    If ``L`` was padded to ``[[L, 0], [0, I]]`` of the parts' size ``N``, the
    padded ``P`` is ``[[C S, 0], [0, 0]]``: only the leading ``n - h`` rows and
    columns of ``W`` and ``D⁻¹`` meet a nonzero, so they are sliced, not
    ``C`` and ``g`` padded.
    """
    Ainv, W, Dinv = parts
    h, n = Ainv.shape[-1], C.shape[-1]
    W, Dinv = W[..., : n - h, :], Dinv[..., : n - h, : n - h]
    p = SANDWICH_PIECES if h >= SANDWICH_MIN else 1
    b = sorted({h * i // p for i in range(p)} | {h + (n - h) * i // p for i in range(p)} | {n})
    blocks = range(len(b) - 1)
    cut = [slice(lo, hi) for lo, hi in itertools.pairwise(b)]
    first = [k for k in blocks if b[k] < h]
    top = [0 if b[k] < h else h for k in blocks]  # first row of panel k

    def X(j: int, k: int) -> jax.Array:  # X_jk, j and k in the same half
        if b[j] < h:
            return Ainv[..., cut[j], cut[k]]
        return Dinv[..., b[j] - h : b[j + 1] - h, b[k] - h : b[k + 1] - h]

    def S(k: int) -> jax.Array:  # S[:, k]
        return jnp.concatenate([g[..., r, cut[k]] + mH(g[..., cut[k], r]) for r in cut], axis=-2)

    panel = [block_matmul(C[..., top[k] :, :], S(k)) for k in blocks]  # P[top_k:, k]
    for k in blocks:
        if k not in first:  # P[h:, k] → M[h:, k]
            Wk = W[..., b[k] - h : b[k + 1] - h, :]
            for m in first:
                panel[k] = panel[k] - block_matmul(panel[m][..., h:, :], mH(Wk[..., :, cut[m]]))
    columns = []
    for j in blocks:
        terms = [
            block_matmul(panel[k][..., b[j] - top[k] :, :], mH(X(j, k)))
            for k in range(j + 1)
            if top[k] == top[j]
        ]
        zeros = jnp.zeros_like(C[..., : b[j], cut[j]])  # keeps C's batch sharding
        columns.append(jnp.concatenate([zeros, sum(terms[1:], start=terms[0])], axis=-2))
    return tril(jnp.concatenate(columns, axis=-1))
