"""Inverses of small lower-triangular blocks: the leaves of the triangular inverse.

Each function takes lower-triangular ``L`` of shape ``[..., b, b]`` (upper
triangle zero; in practice the batch of diagonal blocks of a factor) and
returns ``L⁻¹``. All three solve ``X L = I`` for ``X``, the equation LAPACK's
``trtri`` solves, not ``L X = I``: row ``i`` of ``X`` is then the solution of
``xᵢ L = eᵢ``, and each row's backward error gives the left residual bound

    |X L − I| ≤ c(b) u |X| |L|

(Du Croz & Higham 1992, "method 1" of their triangular inverses; Higham,
*Accuracy and Stability*, §14.2). Solving ``L X = I`` instead bounds the right
residual ``|L X − I|``; on kernel matrices of inputs in order the Gram matrix
``Xᴴ X`` of that ``X`` is several times less accurate than LAPACK ``potri``'s
(docs/math.md, "Accuracy"). Three ways, chosen per ``method`` by
:func:`for_method`:

- :func:`solve`: a triangular solve from the right against ``I``
  (LAPACK/cuBLAS ``trsm``);
- :func:`substitution`: ``trtri``'s column order, one column per
  ``lax.fori_loop`` step, made of matrix products only, for platforms that
  cannot lower triangular solves (jax-metal: jax-ml/jax#17490);
- :func:`unrolled`: the same columns unrolled, elementwise over the batch,
  for tiny real blocks (``b ≤ UNROLL_MAX``): a few fused loops instead of one
  LAPACK call or dot per block, and products only as well.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from . import _matrix

Inverter = Callable[[jax.Array], jax.Array]

UNROLL_MAX = 8
"""Real blocks up to this size are inverted by :func:`unrolled`.

No larger: XLA:CPU contracts the unrolled recurrence into fused
multiply-adds, which at 8 gave bitwise the uncontracted result on GP
kernels, at 16 twice its error and at 64 a thousand times (measured, jitter
1e-10).
"""


def solve(L: jax.Array) -> jax.Array:
    """``L⁻¹`` by the triangular solve ``X L = I`` (from the right, as ``trtri``)."""
    return lax.linalg.triangular_solve(L, _matrix.identity_like(L), left_side=False, lower=True)


def substitution(L: jax.Array) -> jax.Array:
    """``L⁻¹`` column by column from the last, in a ``fori_loop``: products and elementwise ops.

    Column ``j`` of ``X L = I`` reads ``Σ_{k ≥ j} X[:, k] L[k, j] = eⱼ``, so

        X[:, j] = (eⱼ − Σ_{k > j} X[:, k] L[k, j]) / L[j, j]

    (``trtri``'s unblocked ``trti2``: the already inverted columns times the
    original column of ``L``). Columns ``≤ j`` of ``X`` are still zero when
    column ``j`` is made, so the full product of ``X`` with column ``j`` of
    ``L``, masked to ``k > j``, sums exactly those columns.
    """
    b = L.shape[-1]
    axis = L.ndim - 1

    def body(t: jax.Array, X: jax.Array) -> jax.Array:
        j = b - 1 - t
        # Made in the body, not carried: a carried constant is one more kernel to compile.
        rows = _matrix.like_rank(lax.broadcasted_iota(jnp.int32, (b, 1), 0), L.ndim)
        zero = jnp.zeros((), L.dtype)
        lj = lax.dynamic_index_in_dim(L, j, axis=axis, keepdims=True)  # [..., b, 1]
        ej = jnp.where(rows == j, jnp.ones((), L.dtype), zero)
        ljj = lax.dynamic_index_in_dim(lj, j, axis=axis - 1, keepdims=True)  # [..., 1, 1]
        # Only k > j: an infinite L[k, j] (k ≤ j) times a zero column would give nan.
        col = (ej - _matrix.matmul(X, jnp.where(rows > j, lj, zero))) / ljj
        out: jax.Array = lax.dynamic_update_index_in_dim(X, col, j, axis=axis)
        return out

    X: jax.Array = lax.fori_loop(0, b, body, jnp.zeros_like(L))
    return X


def unrolled(L: jax.Array) -> jax.Array:
    """``L⁻¹`` for tiny real blocks: :func:`substitution`'s columns, unrolled.

    Column ``j`` of ``X`` is ``(eⱼ − Σ_{k>j} X[:, k] L_kj) / L_jj``; every step
    is elementwise over the batch and the column, so XLA fuses it into a few
    loops over the batch, where a dot or a LAPACK call per block would pay a
    per-matrix cost that dominates for blocks this small.
    """
    b = L.shape[-1]
    eye = jnp.eye(b, dtype=L.dtype)
    cols: list[jax.Array] = [jnp.zeros(())] * b
    for j in reversed(range(b)):
        s = jnp.zeros_like(L[..., :, j]) + _matrix.like_rank(eye[:, j], L.ndim - 1)
        for k in range(j + 1, b):
            s = s - cols[k] * L[..., k, j, None]
        cols[j] = s / L[..., j, j, None]
    return jnp.stack(cols, axis=-1)


def for_method(method: str, b: int, dtype: jnp.dtype) -> Inverter:
    """The inverter of ``b × b`` blocks of ``dtype`` for ``cholesky_inv(method=...)``.

    ``"solve"`` and ``"products"`` force :func:`solve` and :func:`substitution`.
    ``"auto"`` is :func:`substitution`, products only on every platform, so
    that no program of the default method calls LAPACK on CPU (a LAPACK call
    leaves the BLAS's threads spinning while XLA's own run next to them on the
    same cores: docs/benchmarks.md) and Metal, which cannot lower triangular
    solves, runs the same program. Tiny real blocks take :func:`unrolled` in
    every method: it is products only and the fastest.
    """
    if b <= UNROLL_MAX and not jnp.issubdtype(dtype, jnp.complexfloating):
        return unrolled
    return {"auto": substitution, "solve": solve, "products": substitution}[method]


__all__ = [
    "UNROLL_MAX",
    "Inverter",
    "for_method",
    "solve",
    "substitution",
    "unrolled",
]
