"""One large matrix across devices: ``L`` sharded along its rows.

Selected when the placement of ``L`` partitions its matrix axes (see
:func:`matrix_plan`); batches sharded over their leading axes take the
ordinary per-matrix path instead. JAX's partitioner (GSPMD/Shardy) does all
the communication: the code below only states, with sharding constraints,
that every ``n × n`` intermediate stays sharded along its rows, and is
blocked so that nothing larger than an ``n × s`` panel (``s = n / p`` for
``p`` row shards) is ever gathered.

With ``X = L⁻¹`` (lower) and blocks of ``s`` rows, one per row shard:

1. The diagonal blocks ``L_kk`` live on their own shard; all of them are
   inverted at once as a batch (shard-local, the single-device triangular
   inverse of ``_blocked.tri_inverse``), then gathered: ``p`` blocks of
   ``s × s``, i.e. one ``n × s`` panel.
2. ``X`` by columns, right to left (block ``k`` from ``p - 1`` down to 0), from
   ``L X = I``: ``X[k+1:, k] = -X[k+1:, k+1:] L[k+1:, k] X_kk`` and
   ``X[k, k] = X_kk``. ``X[:, k+1:]`` is complete and zero elsewhere, so the
   product ``X · (L[:, k] masked below block k)`` is exactly the trailing
   one; its right operand is an ``n × s`` panel (gathered), the rest is local.
3. One step of refinement from the left, ``X ← X + (I − X L) X``: step 2
   multiplies by computed inverses (of the trailing part and of ``L_kk``),
   whose errors grow with their condition; after the step ``X`` has LAPACK
   ``trtri``'s accuracy (docs/math.md, "Accuracy"). Two row-sharded
   products (:func:`_rows_matmul`).
4. ``C = Xᴴ X = Σ_k (Xᴴ)[:, k] X[k, :]``: ``Xᴴ`` resharded to rows (an
   all-to-all), then one block row ``X[k, :]`` (``s × n``) at a time is
   broadcast from its shard (a masked sum over the shards, an all-reduce)
   and multiplied locally. :func:`_rows_matmul` does this for any two
   row-sharded operands.
5. The lower triangle of ``C`` is mirrored (another all-to-all), so the
   result is bitwise Hermitian.

Per device this holds ``L``, ``X``, ``C`` and their transposes as row shards
(``n²/p`` each) plus a few ``n × s`` panels: ``O(n²/p + n s)`` memory, against
``O(n²)`` for a single device. Flops per device ``≈ 8n³/p``: the masked
products do the full ``n × n × s`` work on every shard, which keeps all
shards equally busy at the cost of the triangular savings.

Backward (same formula as the single-device op, ``_vjp.py``): with
``S = Ḡ + Ḡᴴ``, ``L̄ = -tril(C S L⁻ᴴ) = -tril((C S) Xᴴ)``: two more row-sharded
products, residuals ``(X, C)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec

from . import _blocked, _matrix


@dataclass(frozen=True)
class Plan:
    """How one row-sharded computation is laid out (a static, hashable value).

    Attributes:
      placed: the sharding of the input, which the result and the gradient get.
      mesh: the mesh the computation runs on: that of ``placed``, with its
        explicit axes (if any) made auto for the duration (``auto_axes``).
      spec: the partition spec of ``placed``, padded to the input's rank.
      row_axes: every mesh axis that ``placed`` puts on either matrix axis;
        inside, every ``[..., n, m]`` intermediate is sharded along its rows
        over them.
      parts: the number of row shards (product of those axes' sizes).
      explicit: the mesh axes with explicit axis types (made auto inside).
    """

    placed: NamedSharding
    mesh: Any
    spec: tuple[Any, ...]
    row_axes: Any
    parts: int
    explicit: tuple[str, ...]

    @property
    def rows(self) -> NamedSharding:
        """Sharding of ``[..., n, m]`` intermediates: batch as given, rows split."""
        return NamedSharding(self.mesh, PartitionSpec(*self.spec[:-2], self.row_axes, None))

    @property
    def out(self) -> NamedSharding:
        """The input's sharding, on the (auto-typed) computation mesh."""
        return NamedSharding(self.mesh, PartitionSpec(*self.spec))


def _names(entry: Any) -> tuple[str, ...]:
    if entry is None:
        return ()
    if isinstance(entry, str):
        return (entry,)
    return tuple(entry)


def _placement(arr: Any, device: Any) -> Any:
    """``device`` if a ``NamedSharding``, else the sharding the input carries.

    Concrete arrays carry it outside ``jit``; under ``jit`` only meshes with
    explicit axis types make it part of the traced type (``jax.typeof``).
    """
    if isinstance(device, NamedSharding):
        return device
    if device is not None:
        return None
    if not isinstance(arr, jax.core.Tracer):
        return getattr(arr, "sharding", None)
    typeof = getattr(jax, "typeof", None)  # jax >= 0.6
    return getattr(typeof(arr), "sharding", None) if typeof is not None else None


def _explicit_axes(mesh: Any) -> tuple[str, ...]:
    AxisType = getattr(jax.sharding, "AxisType", None)  # jax >= 0.5
    types = getattr(mesh, "axis_types", None)
    if AxisType is None or types is None:
        return ()
    return tuple(
        name for name, t in zip(mesh.axis_names, types, strict=True) if t == AxisType.Explicit
    )


def matrix_plan(arr: Any, device: Any) -> Plan | None:
    """The row-sharded plan for ``cholesky_inv(arr, device=device)``, or ``None``.

    The placement is ``device`` when it is a ``NamedSharding``, else the
    sharding the input carries (a concrete array; under ``jit``, a mesh with
    explicit axis types). If it partitions either of the last two axes over
    more than one device, ``L`` is one matrix (or a batch of them) spread
    across devices and the blocked algorithm of this module runs; otherwise
    ``None``: the ordinary per-matrix path, shard-local for sharded batches.

    Raises:
      ValueError: ``n`` is not a multiple of the number of row shards.
    """
    placed = _placement(arr, device)
    if not isinstance(placed, NamedSharding) or arr.ndim < 2:
        return None
    spec = tuple(placed.spec) + (None,) * (arr.ndim - len(placed.spec))
    axes = _names(spec[-2]) + _names(spec[-1])
    parts = int(np.prod([placed.mesh.shape[a] for a in axes], dtype=np.int64))
    if parts <= 1:
        return None
    n = arr.shape[-1]
    if n % parts:
        raise ValueError(
            f"cholesky_inv: L of shape {tuple(arr.shape)} is placed with sharding "
            f"{placed.spec} over {parts} devices along its matrix axes; n = {n} must "
            f"be a multiple of {parts} (pad L with an identity block: "
            f"[[L, 0], [0, I]] has inverse [[A⁻¹, 0], [0, I]])."
        )
    mesh = placed.mesh
    explicit = _explicit_axes(mesh)
    if explicit:  # computed with those axes auto (jax.sharding.auto_axes)
        AxisType = jax.sharding.AxisType
        mesh = mesh.abstract_mesh.update_axis_types(dict.fromkeys(explicit, AxisType.Auto))
    return Plan(
        placed=placed,
        mesh=mesh,
        spec=spec,
        row_axes=axes if len(axes) > 1 else axes[0],
        parts=parts,
        explicit=explicit,
    )


def _put(x: jax.Array, plan: Plan, *trailing: Any) -> jax.Array:
    """``x`` constrained to the plan's batch sharding plus ``trailing`` specs."""
    spec = PartitionSpec(*plan.spec[:-2], *trailing)
    out: jax.Array = lax.with_sharding_constraint(x, NamedSharding(plan.mesh, spec))
    return out


def _rows(x: jax.Array, plan: Plan) -> jax.Array:
    """``x`` (``[..., m, k]``) sharded along its rows like ``L``."""
    return _put(x, plan, plan.row_axes, None)


def _out(x: jax.Array, plan: Plan) -> jax.Array:
    """``x`` placed like the input of the op."""
    out: jax.Array = lax.with_sharding_constraint(x, plan.out)
    return out


def _replicated(x: jax.Array, plan: Plan, ndim: int) -> jax.Array:
    """``x`` with its last ``ndim`` axes replicated."""
    return _put(x, plan, *([None] * ndim))


def _mH(x: jax.Array, plan: Plan) -> jax.Array:
    """Conjugate transpose, resharded to rows (an all-to-all)."""
    return _rows(_matrix.mH(x), plan)


def _block_row(B: jax.Array, k: jax.Array, plan: Plan) -> jax.Array:
    """Block row ``k`` of ``B`` (``[..., n, m]`` → ``[..., s, m]``), replicated.

    A masked sum over the row blocks: each shard contributes its own block
    (zero but on the owner), so the partitioner reduces ``s × m`` values
    instead of gathering ``B``.
    """
    n, m = B.shape[-2], B.shape[-1]
    s = n // plan.parts
    block = lax.broadcasted_iota(jnp.int32, (n, m), 0) // s
    masked = jnp.where(_matrix.like_rank(block == k, B.ndim), B, jnp.zeros((), B.dtype))
    split = masked.reshape(*B.shape[:-2], plan.parts, s, m)
    return _replicated(jnp.sum(split, axis=-3), plan, 2)


def _rows_matmul(
    A: jax.Array, B: jax.Array, plan: Plan, init: jax.Array | None = None, sign: int = 1
) -> jax.Array:
    """``init + sign · A @ B`` for row-sharded ``A`` (``[..., n, n]``) and ``B`` (``[..., n, m]``).

    ``Σ_k A[:, k] B[k, :]``, one broadcast block row of ``B`` at a time, so no
    shard ever holds more of ``B`` than ``s × m``; accumulated onto ``init``
    (``None``: zero), so that a residual or a correction needs no buffer of
    its own for the product.
    """
    s = A.shape[-1] // plan.parts

    def body(k: jax.Array, acc: jax.Array) -> jax.Array:
        a = lax.dynamic_slice_in_dim(A, k * s, s, axis=-1)
        ab = _matrix.matmul(a, _block_row(B, k, plan))
        return _rows(acc + ab if sign > 0 else acc - ab, plan)

    if init is None:
        init = jnp.zeros((*A.shape[:-1], B.shape[-1]), A.dtype)
    out: jax.Array = lax.fori_loop(0, plan.parts, body, _rows(init, plan))
    return out


def tri_inv_rows(L: jax.Array, plan: Plan, method: str) -> jax.Array:
    """``X = L⁻¹`` for row-sharded lower-triangular ``L`` (zero above); ``X`` row-sharded.

    The ``s × s`` diagonal blocks are inverted as a batch, shard-local, by
    ``_blocked.tri_inverse`` with ``method``; then steps 2 and 3 of the module
    docstring.
    """
    n = L.shape[-1]
    p = plan.parts
    s = n // p
    D = _put(_matrix.diagonal_blocks(L, s), plan, plan.row_axes, None, None)
    Dinv = _blocked.tri_inverse(D, method).whole[..., :s, :s]
    Xd = _replicated(Dinv, plan, 3)  # [..., p, s, s]: one n × s panel
    row = lax.broadcasted_iota(jnp.int32, (n, 1), 0)

    def body(j: jax.Array, X: jax.Array) -> jax.Array:
        k = p - 1 - j
        Xkk = lax.dynamic_index_in_dim(Xd, k, axis=-3, keepdims=False)  # [..., s, s]
        Lk = lax.dynamic_slice_in_dim(L, k * s, s, axis=-1)  # block column k
        mask = _matrix.like_rank(row >= (k + 1) * s, Lk.ndim)
        below = _rows(jnp.where(mask, Lk, jnp.zeros((), L.dtype)), plan)
        # X[:, k] = -X L[k+1:, k] X_kk below block k (X is zero left of column
        # block k + 1), and X_kk on block k.
        col = -_matrix.matmul(X, _matrix.matmul(below, Xkk))
        tiled = jnp.tile(Xkk, (*([1] * (Xkk.ndim - 2)), p, 1))  # [..., n, s]
        col = _rows(jnp.where(_matrix.like_rank(row // s == k, col.ndim), tiled, col), plan)
        return _rows(lax.dynamic_update_slice_in_dim(X, col, k * s, axis=-1), plan)

    X = lax.fori_loop(0, p, body, _rows(jnp.zeros_like(L), plan))
    # One step of refinement from the left: X ← X + (I − X L) X.
    R = _rows_matmul(X, L, plan, init=_matrix.identity_like(X), sign=-1)
    return _rows_matmul(R, X, plan, init=X)


def _forward(L: jax.Array, plan: Plan, method: str) -> tuple[jax.Array, jax.Array]:
    L = _rows(L, plan)
    X = tri_inv_rows(L, plan, method)
    C = _rows_matmul(_mH(X, plan), X, plan)
    lower = _matrix.like_rank(_matrix.lower_mask(C.shape[-1]), C.ndim)
    C = _rows(jnp.where(lower, C, _mH(C, plan)), plan)
    if jnp.iscomplexobj(C):  # exactly Hermitian: a real diagonal
        C = _matrix.mirror_lower(C)
    return _rows(C, plan), X


@partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def cholinv_lower_rows(L: jax.Array, plan: Plan, method: str) -> jax.Array:
    """``(L Lᴴ)⁻¹`` for row-sharded lower-triangular ``L`` (upper triangle zero).

    The result, and the gradient, are placed like the input (``plan.out``).
    """
    return _out(_forward(L, plan, method)[0], plan)


def _fwd(L: jax.Array, plan: Plan, method: str) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    C, X = _forward(L, plan, method)
    return _out(C, plan), (X, C)


def _bwd(
    plan: Plan,
    method: str,
    res: tuple[jax.Array, jax.Array],
    g: jax.Array,
) -> tuple[jax.Array]:
    # L̄ = -tril(C S L⁻ᴴ) with S = Ḡ + Ḡᴴ (conjugated for complex; _vjp.py).
    X, C = res
    gc = _rows(jnp.conj(g), plan)
    CS = _rows_matmul(C, _rows(gc + _mH(gc, plan), plan), plan)
    Y = _rows_matmul(CS, _mH(X, plan), plan)  # C S Xᴴ = C S L⁻ᴴ
    return (_out(-jnp.conj(_matrix.tril(Y)), plan),)


cholinv_lower_rows.defvjp(_fwd, _bwd)


def cholesky_inv(L: jax.Array, plan: Plan, method: str) -> jax.Array:
    """``(L Lᴴ)⁻¹`` for lower ``L`` placed as ``plan`` says (its upper triangle is not read).

    Rows rescaled by powers of two like the single-device op
    (:func:`._matrix.row_exponents`): ``M = D⁻¹ L`` is inverted and
    ``D⁻¹ (M Mᴴ)⁻¹ D⁻¹`` returned, differentiated through as plain jax.
    On a mesh with explicit axes the computation runs with them auto
    (``jax.sharding.auto_axes``), so that the partitioner places the
    intermediates as the sharding constraints of this module say; the result
    gets the input's sharding.
    """

    def run(L: jax.Array) -> jax.Array:
        L = _matrix.tril(L)
        F = _matrix.row_factors(_matrix.row_exponents(L), L.dtype)
        C = cholinv_lower_rows(_matrix.row_scale(L, F), plan, method)
        return _matrix.unscale(C, F)

    if not plan.explicit:
        return run(L)
    auto = jax.sharding.auto_axes(run, axes=plan.explicit, out_sharding=plan.placed)
    out: jax.Array = auto(L)
    return out


__all__ = [
    "Plan",
    "cholesky_inv",
    "cholinv_lower_rows",
    "matrix_plan",
    "tri_inv_rows",
]
