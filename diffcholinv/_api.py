"""Public API: `cholesky_inv`."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax.experimental import checkify
from jax.typing import ArrayLike

from . import _jvp, _matrix, _placement, _rowsharded, _vjp
from ._validate import (
    as_factor,
    check_device,
    check_flag,
    check_forward_mode,
    check_method,
    check_platform,
    check_upper,
    compute_dtype,
    target_platform,
)


def cholesky_inv(
    L: ArrayLike,
    upper: bool = False,
    *,
    device: jax.Device | jax.sharding.Sharding | None = None,
    check: bool = False,
    method: str = "auto",
    forward_mode: bool = False,
) -> jax.Array:
    r"""Inverse of a Hermitian positive definite matrix from its Cholesky factor.

    Given ``L`` with \(A = L L^H\) (``upper=False``) or ``U`` with
    \(A = U^H U\) (``upper=True``), returns

    $$
    A^{-1} = L^{-H} L^{-1}.
    $$

    For real dtypes \(L^H\) is the transpose \(L^T\). Leading dimensions are a
    batch: ``L`` of shape ``[..., n, n]`` gives \(A^{-1}\) of shape
    ``[..., n, n]``. Only the named triangle of ``L`` is read; the other may
    hold anything (nan included) and gets a zero gradient. The result is
    exactly (bitwise) symmetric, Hermitian with a real diagonal for complex
    dtypes, and has the dtype of ``L``. On the factor it is given it is as
    accurate as LAPACK ``potri``, and its gradient as autodiff through
    ``cho_solve``, at every condition number a jitter gives
    (docs/accuracy.md). Each row of ``L`` is rescaled by a power of two
    internally (exactly, subnormals included), so factors near the overflow
    or underflow limits, or whose diagonal spans most of the exponent range,
    give the right answer, or ±inf / 0 exactly where \(A^{-1}\) itself
    overflows or underflows.

    The op is a ``jax.custom_vjp`` function with an analytic backward pass:
    with \(C = A^{-1}\) and the incoming cotangent \(\bar G\),

    $$
    \bar L = -\operatorname{tril}\big(C S L^{-H}\big), \qquad S = \bar G + \bar G^H,
    $$

    conjugated per JAX's convention for complex inputs (derivation in
    docs/math.md). It composes with ``jit``, ``vmap``, ``grad``, grad-of-grad
    and ``jax.hessian`` (``jacfwd`` over ``jacrev``).

    JAX cannot forward-differentiate a ``custom_vjp`` function: ``jax.jvp``,
    ``jax.jacfwd``, calling what ``jax.linearize`` returns, and
    ``jax.test_util.check_grads`` with its default modes raise ``TypeError:
    can't apply forward-mode autodiff (jvp) to a custom_vjp function``, as do
    optimistix's Levenberg–Marquardt and Gauss–Newton (forward-mode Jacobian
    by default) and NumPyro's ``NUTS(..., forward_mode_differentiation=True)``.
    Either switch the caller to reverse mode (``jax.jacrev``;
    ``check_grads(..., modes=["rev"])``; optimistix ``options={"jac":
    "bwd"}``; NumPyro's default reverse mode) or pass ``forward_mode=True``:
    a ``jax.custom_jvp`` form of the same forward pass with the tangent map

    $$
    \dot C = -\big(P + P^H\big), \qquad P = C\,\operatorname{tril}(\dot L)\,L^{-1},
    $$

    linear in \(\dot L\), whose transpose JAX derives for reverse mode
    (docs/math.md, "Tangent map"). Its values are bitwise the default's, its
    derivatives equal to rounding, and the contract is the same (unread
    triangle, exact symmetry of value and tangent, ``upper``, complex,
    batches, ``vmap``, ``check``), except the row-sharded path of one matrix
    across devices, which it does not support. Its reverse mode costs more
    than the default's analytic rule: value and gradient, float64, XLA:CPU
    on 2 cores, 1.0×–1.2× the time at ``n = 64`` and ``256`` and 1.7× at
    ``n = 1024``, and up to 1.2× the compiled temporaries
    (docs/benchmarks.md, "Accuracy first"):
    keep the default unless something differentiates forward.

    Args:
      L: Cholesky factor, array-like of shape ``[..., n, n]``; float32,
        float64, complex64 or complex128 (float16 and bfloat16 are computed in
        float32 and cast back). Complex: the whole diagonal is used as given,
        imaginary part included (\(A = L L^H\) is still Hermitian positive
        definite), and gets its exact gradient.
      upper: ``False`` (default): ``L`` is lower triangular with
        \(A = L L^H\). ``True``: ``L`` is upper triangular ``U`` with
        \(A = U^H U\). Either way the result is the full Hermitian \(A^{-1}\).
      device: where to compute and place the result: ``None`` (default
        placement, or that of a committed input), a ``jax.Device``, or a
        ``jax.sharding.Sharding``. Mirrors MLX's ``stream`` argument. A
        ``NamedSharding`` that splits the matrix axes (e.g. ``P("x", None)``),
        or such a sharding on the input itself (eagerly, or under ``jit`` on
        a mesh with explicit axes), selects the row-sharded algorithm for one
        matrix across devices: no device holds a whole \(n \times n\) matrix
        and ``n`` must be a multiple of the number of row shards. See
        docs/scaling.md.
      check: ``True`` adds ``jax.experimental.checkify`` checks that the
        diagonal of ``L`` is non-zero and its named triangle finite (the
        error names the first offending entry), and that ``L`` is not a
        symmetric (Hermitian) matrix passed in place of its factor. Eagerly a
        failed check raises at once; under ``jit`` wrap the function in
        ``checkify.checkify``. ``False`` (default) adds nothing to the
        program.
      method: the inverter of the diagonal blocks (the leaves); the algorithm
        above them, the doubling with each node refined and the Gram matrix,
        is the same in every method (docs/math.md), and so is the accuracy.
        ``"auto"`` (default): products only, on every platform: ``trtri``'s
        column substitution for the leaves (a factor of \(n \le 64\) is one
        leaf), or, in a batch of at least 64 real factors of
        \(n \le 64\), unrolled leaves of at most 8 (no LAPACK call on
        CPU). ``"solve"``: triangular solves for the leaves.
        ``"products"``: the substitution for every leaf, so that the program
        holds matrix products, elementwise ops and ``lax.fori_loop`` only (no
        ``triangular_solve``, no custom calls), forward and backward. See
        docs/scaling.md.
      forward_mode: ``False`` (default): a ``jax.custom_vjp`` function,
        reverse mode only (its analytic rule). ``True``: the
        ``jax.custom_jvp`` form above, for ``jax.jvp``, ``jax.jacfwd``,
        ``jax.linearize`` and the libraries that differentiate forward;
        reverse mode by transposition, at the cost stated above.

    Returns:
      The inverse \(A^{-1}\), of shape ``[..., n, n]`` and the dtype of ``L``.
        A singular factor (a zero on the diagonal) or nan in the read
        triangle gives inf/nan entries in that matrix's result, never an
        exception (unless ``check=True``); see docs/robustness.md.

    Raises:
      TypeError: ``L`` is not array-like or has a dtype other than float16,
        bfloat16, float32, float64, complex64 or complex128 (integer and bool
        included); ``L`` is complex and the computation would run on Metal
        (no complex dtypes there); ``upper``, ``check`` or ``forward_mode`` is not a bool;
        ``device`` is not ``None``, a ``jax.Device`` or a
        ``jax.sharding.Sharding``; ``method`` is not a string.
      ValueError: ``L`` has fewer than 2 dimensions or its last two are not
        equal; ``L`` is sharded along its matrix axes over a number of
        devices that does not divide ``n``, or so sharded with
        ``forward_mode=True``; ``method`` is not one of the names above.
      checkify.JaxRuntimeError: ``check=True``, called eagerly, and the
        factor is singular or not finite, or is a symmetric matrix.

    Examples:
      The inverse of \(A = L L^T\), exactly symmetric:

      >>> import jax
      >>> import jax.numpy as jnp
      >>> from diffcholinv import cholesky_inv
      >>> L = jnp.array([[2.0, 0.0], [1.0, 3.0]])
      >>> C = cholesky_inv(L)
      >>> bool(jnp.allclose(C @ (L @ L.T), jnp.eye(2), atol=1e-6))
      True
      >>> bool((C == C.T).all())
      True

      The unread triangle gets no gradient, and the gradient passes
      ``check_grads`` in reverse mode, to second order:

      >>> g = jax.grad(lambda L: jnp.trace(cholesky_inv(L)))(L)
      >>> float(g[0, 1])
      0.0
      >>> from jax.test_util import check_grads
      >>> check_grads(cholesky_inv, (L,), order=2, modes=["rev"])

      Forward mode, through the opt-in; the tangent matches finite
      differences and the Jacobian the default op's reverse mode:

      >>> C, dC = jax.jvp(lambda L: cholesky_inv(L, forward_mode=True), (L,), (L,))
      >>> bool(jnp.allclose(dC, -2.0 * C, atol=1e-6))  # A(sL) = s² A: dC/ds = -2C
      True
      >>> J = jax.jacfwd(lambda L: cholesky_inv(L, forward_mode=True))(L)
      >>> bool(jnp.allclose(J, jax.jacrev(cholesky_inv)(L), atol=1e-6))
      True
      >>> check_grads(lambda L: cholesky_inv(L, forward_mode=True), (L,), order=2)

      A complex factor, \(A = L L^H\), gives an exactly Hermitian inverse:

      >>> Lc = jnp.array([[2.0, 0.0], [1.0 - 1.0j, 3.0]])
      >>> Cc = cholesky_inv(Lc)
      >>> bool((Cc == Cc.conj().T).all())
      True

      Checked mode names the entry that makes the factor singular:

      >>> from jax.experimental import checkify
      >>> checked = checkify.checkify(lambda x: cholesky_inv(x, check=True))
      >>> err, _ = checked(L.at[1, 1].set(0.0))
      >>> print(err.get().splitlines()[0])  # doctest: +ELLIPSIS
      cholesky_inv(check=True): the factor L of shape (2, 2) has L[1, 1] = 0.0; ...

    References:
      - LAPACK ``?potri``: inverse from a Cholesky factor.
      - I. Murray, "Differentiation of the Cholesky decomposition", 2016,
        arXiv:1602.07527.
      - C. E. Rasmussen and C. K. I. Williams, "Gaussian Processes for Machine
        Learning", MIT Press, 2006, ch. 2 and 5.
    """
    arr = as_factor(L)
    upper = check_upper(upper)
    check_device(device)
    check = check_flag(check)
    method = check_method(method)
    forward_mode = check_forward_mode(forward_mode)
    platform = target_platform(arr, device)
    check_platform(arr.dtype, platform)
    plan = _rowsharded.matrix_plan(arr, device)  # one matrix across devices, or None
    if forward_mode and plan is not None:
        raise ValueError(
            f"cholesky_inv: forward_mode=True is not supported for one matrix sharded along "
            f"its matrix axes (L of shape {tuple(arr.shape)} would take the row-sharded "
            "algorithm, which has a reverse-mode rule only). Pass forward_mode=False and "
            "differentiate in reverse mode (jax.grad, jax.jacrev), or shard a batch axis "
            "(P('x', None, None)) instead of the matrix axes."
        )
    if device is not None:
        arr = jax.device_put(arr, device)
    if check and arr.size:
        _check_factor(arr, upper=upper)
        _check_not_the_matrix(arr, upper=upper)
    out: jax.Array = _cholesky_inv(
        arr, upper=upper, method=method, plan=plan, forward_mode=forward_mode
    )
    return out


def _check_factor(L: jax.Array, *, upper: bool) -> None:
    """``checkify.check`` that the read triangle is finite and the diagonal non-zero.

    Names the first offending entry. Runs outside the op's ``jit`` so that an
    eager call fails at once; under ``jit`` the caller must ``checkify``.
    """
    lower = _matrix.like_rank(_matrix.lower_mask(L.shape[-1]), L.ndim)
    read = _matrix.mT(lower) if upper else lower
    diag = lower & _matrix.mT(lower)
    bad = (read & ~jnp.isfinite(L)) | (diag & (L == 0))
    flat = jnp.argmax(bad.reshape(-1))
    where = ", ".join("{}" for _ in L.shape)
    checkify.check(
        ~jnp.any(bad),
        "cholesky_inv(check=True): the factor L of shape "
        + str(tuple(L.shape))
        + f" has L[{where}] = {{}}; its diagonal must be non-zero and its "
        + ("upper" if upper else "lower")
        + " triangle finite (A = L Lᴴ is singular or not finite). The index is into"
        # Inside jax.vmap the op sees one mapped slice and checkify (outside the
        # vmap) keeps no batch position: only a checkify inside the vmap does.
        + " L as cholesky_inv receives it; under jax.vmap that is one mapped slice,"
        + " and jax.vmap(checkify.checkify(f)) names the mapped index too.",
        *jnp.unravel_index(flat, L.shape),
        L.reshape(-1)[flat],
    )


def _check_not_the_matrix(L: jax.Array, *, upper: bool) -> None:
    """``checkify.check`` that ``L`` is not a Hermitian matrix passed in place of its factor.

    ``A`` passed by mistake holds in its unread triangle the exact (conjugate)
    mirror of the read one; a factor holds zeros there, or anything else. A
    factor with no non-zero entry off the diagonal (a diagonal or ``1 × 1``
    factor) is its own mirror, and passes. Names the first such matrix of a batch.
    """
    strict = _matrix.like_rank(_matrix.lower_mask(L.shape[-1], strict=True), L.ndim)
    read = _matrix.mT(strict) if upper else strict  # strictly inside the read triangle
    # Each off-diagonal pair once: L[i, j] (read) against L[j, i] (not read).
    mirrored = jnp.all(~read | (_matrix.mH(L) == L), axis=(-2, -1))
    full = mirrored & jnp.any(read & (L != 0), axis=(-2, -1))
    batch = L.shape[:-2]
    which = f"L of shape {tuple(L.shape)}"
    if batch:
        which = "L[" + ", ".join("{}" for _ in batch) + "] of " + which
    complex_ = jnp.issubdtype(L.dtype, jnp.complexfloating)
    kind, mirror = ("Hermitian", "conjugate mirror") if complex_ else ("symmetric", "mirror")
    read_name, unread_name = ("upper", "lower") if upper else ("lower", "upper")
    checkify.check(
        ~jnp.any(full),
        f"cholesky_inv(check=True): {which} is a {kind} matrix, not a Cholesky factor: "
        f"its {unread_name} triangle, which is not read, is the exact {mirror} of its "
        f"{read_name} triangle. cholesky_inv takes the factor of A, not A: pass "
        "cholesky_inv(jnp.linalg.cholesky(A)).",
        *(jnp.unravel_index(jnp.argmax(full.reshape(-1)), batch) if batch else ()),
    )


@partial(jax.jit, static_argnames=("upper", "method", "plan", "forward_mode"))
def _cholesky_inv(
    L: jax.Array,
    *,
    upper: bool,
    method: str,
    plan: _rowsharded.Plan | None,
    forward_mode: bool = False,
) -> jax.Array:
    compute = partial(_compute, upper=upper, method=method, plan=plan, forward_mode=forward_mode)
    if plan is not None or L.size == 0:  # the row-sharded path places its result itself
        return compute(L)
    # The per-matrix path, its result placed like the input: under jit on auto
    # axes the input's sharding is not visible here (_placement).
    return _placement.placed_like_input(compute, L, forward_mode=forward_mode)


def _compute(
    L: jax.Array,
    *,
    upper: bool,
    method: str,
    plan: _rowsharded.Plan | None,
    forward_mode: bool = False,
) -> jax.Array:
    dtype = L.dtype
    if L.size == 0:
        return jnp.zeros_like(L)
    if upper:  # A = Uᴴ U = L Lᴴ with L = Uᴴ: reduce to the lower case.
        L = _matrix.mH(L)
    L = L.astype(compute_dtype(dtype))
    # One matrix sharded along its matrix axes takes the row-sharded algorithm.
    if plan is not None:
        C = _rowsharded.cholesky_inv(L, plan, method)
    elif forward_mode:  # the custom_jvp form: forward mode, and reverse by transposition
        C = _jvp.cholinv_lower(L, method)
    else:
        C = _vjp.cholinv_lower(L, method)
    return C.astype(dtype)
