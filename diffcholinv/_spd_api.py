"""Public API: `spd_inv` and `spd_inv_logdet`, the inverse straight from the matrix."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify
from jax.typing import ArrayLike

from . import _placement, _spd
from ._validate import (
    as_factor,
    check_bool,
    check_device,
    check_method,
    check_platform,
    compute_dtype,
    target_platform,
)


def spd_inv(
    A: ArrayLike,
    *,
    check: bool = False,
    device: jax.Device | jax.sharding.Sharding | None = None,
    method: str = "auto",
    forward_mode: bool = False,
) -> jax.Array:
    r"""Inverse of a Hermitian positive definite matrix, differentiated in the matrix itself.

    Factorises \(A\) inside (``jnp.linalg.cholesky``, which reads
    \(H = (A + A^H)/2\)) and inverts the factor with the forward pass of
    :func:`cholesky_inv`:

    $$
    C = H^{-1}, \qquad H = \tfrac12 (A + A^H) = L L^H.
    $$

    The value and the gradient are those of
    ``cho_solve((jnp.linalg.cholesky(A), True), I)`` (and of
    ``cholesky_inv(jnp.linalg.cholesky(A))``), on symmetric and on
    non-symmetric input alike, but the gradient skips the Cholesky
    factorisation's own backward pass: with the incoming cotangent
    \(\bar G\) and \(\operatorname{sym}(X) = (X + X^H)/2\),

    $$
    \bar A = -\,C^T \operatorname{sym}(\bar G)\, C^T, \qquad
    C^T = \operatorname{conj}(C),
    $$

    two matrix products (JAX's convention for complex inputs; derivation in
    docs/math.md, "From the matrix itself"). The backward pass is plain jax:
    ``jit``, ``vmap``, ``grad``, grad-of-grad and ``jax.hessian`` compose
    with it. ``forward_mode=True`` gives the same function as a
    ``jax.custom_jvp`` instead, with the tangent
    \(\dot C = -C \operatorname{sym}(\dot A) C\), so that ``jax.jvp``,
    ``jax.jacfwd`` and ``jax.linearize`` work too (reverse mode then
    transposes that tangent). The result is exactly (bitwise) Hermitian and
    has the dtype of ``A``. A batch-sharded ``A`` is computed shard-locally;
    a single matrix sharded along its matrix axes is not supported yet (the
    factorisation needs whole matrices, so XLA gathers it): use
    :func:`cholesky_inv` on a row-sharded factor for that.

    Args:
      A: the Hermitian positive definite matrix, array-like of shape
        ``[..., n, n]``; float32, float64, complex64 or complex128 (float16
        and bfloat16 are computed in float32 and cast back). Both triangles
        are read, as ``(A + Aᴴ)/2``.
      check: ``True`` adds a ``jax.experimental.checkify`` check that every
        matrix is positive definite (the error names the first one that is
        not, by its batch index). Eagerly a failed check raises at once;
        under ``jit`` wrap the function in ``checkify.checkify``. ``False``
        (default) adds nothing to the program.
      device: where to compute and place the result: ``None`` (default
        placement, or that of a committed input), a ``jax.Device`` or a
        ``jax.sharding.Sharding``.
      method: the inverter of the factor's diagonal blocks, as in
        :func:`cholesky_inv`: ``"auto"`` (default), ``"solve"`` or
        ``"products"``.
      forward_mode: ``False`` (default): a ``jax.custom_vjp`` (reverse mode,
        and ``jax.hessian``). ``True``: a ``jax.custom_jvp`` (forward and
        reverse mode).

    Returns:
      \(C = H^{-1}\), of shape ``[..., n, n]`` and the dtype of ``A``. A
        matrix that is not positive definite gives nan in that matrix's
        result (as ``jnp.linalg.cholesky``), never an exception (unless
        ``check=True``).

    Raises:
      TypeError: ``A`` is not array-like or has a dtype other than float16,
        bfloat16, float32, float64, complex64 or complex128; ``A`` is complex
        and the computation would run on Metal; ``check`` or
        ``forward_mode`` is not a bool; ``device`` is not ``None``, a
        ``jax.Device`` or a ``jax.sharding.Sharding``; ``method`` is not a
        string.
      ValueError: ``A`` has fewer than 2 dimensions or its last two are not
        equal; ``method`` is not one of the names above.
      checkify.JaxRuntimeError: ``check=True``, called eagerly, and a matrix
        is not positive definite.

    Examples:
      The inverse of a kernel matrix and the gradient of a loss in it:

      >>> import jax
      >>> import jax.numpy as jnp
      >>> from diffcholinv import spd_inv
      >>> K = jnp.array([[4.0, 2.0], [2.0, 10.0]])
      >>> C = spd_inv(K)
      >>> bool(jnp.allclose(C @ K, jnp.eye(2), atol=1e-6))
      True
      >>> bool((C == C.T).all())
      True
      >>> g = jax.grad(lambda K: jnp.trace(spd_inv(K)))(K)
      >>> bool(jnp.allclose(g, -C @ C, atol=1e-6))
      True

      Forward mode, and a matrix that is not positive definite:

      >>> _, dC = jax.jvp(lambda K: spd_inv(K, forward_mode=True), (K,), (jnp.eye(2),))
      >>> bool(jnp.allclose(dC, -C @ C, atol=1e-6))
      True
      >>> bool(jnp.isnan(spd_inv(-K)).all())
      True
      >>> from jax.experimental import checkify
      >>> err, _ = checkify.checkify(lambda K: spd_inv(K, check=True))(jnp.stack([K, -K]))
      >>> print(err.get().splitlines()[0])  # doctest: +ELLIPSIS
      spd_inv(check=True): A[1] of shape (2, 2, 2) is not positive definite; ...

    References:
      - M. B. Giles, "An extended collection of matrix derivative results for
        forward and reverse mode algorithmic differentiation", 2008
        (\(dC = -C\, dA\, C\)).
      - LAPACK ``?potri``: inverse from a Cholesky factor.
      - C. E. Rasmussen and C. K. I. Williams, "Gaussian Processes for Machine
        Learning", MIT Press, 2006, ch. 2 and 5.
    """
    C, _ = _spd_public(A, "spd_inv", check, device, method, forward_mode)
    return C


def spd_inv_logdet(
    A: ArrayLike,
    *,
    check: bool = False,
    device: jax.Device | jax.sharding.Sharding | None = None,
    method: str = "auto",
    forward_mode: bool = False,
) -> tuple[jax.Array, jax.Array]:
    r"""Inverse and log-determinant of a Hermitian positive definite matrix, from one factor.

    As :func:`spd_inv`, and also, from the same Cholesky factor
    \(H = (A + A^H)/2 = L L^H\),

    $$
    \log\det H = 2 \sum_i \log \operatorname{Re} L_{ii},
    $$

    whose gradient is \(C^T = \operatorname{conj}(C)\) (\(C\) for real
    dtypes), with the same symmetric convention as the inverse: both equal
    what autodiff through ``jnp.linalg.cholesky`` gives. The backward pass is
    \(\bar A = -C^T \operatorname{sym}(\bar G) C^T + \bar\ell\, C^T\), products
    only (docs/math.md, "From the matrix itself"). A Gaussian process's
    negative log marginal likelihood needs both \(K^{-1}\) (or \(K^{-1}y\))
    and \(\log\det K\).

    Args:
      A: the Hermitian positive definite matrix, ``[..., n, n]``, as in
        :func:`spd_inv`.
      check: as in :func:`spd_inv`.
      device: as in :func:`spd_inv`.
      method: as in :func:`spd_inv`.
      forward_mode: as in :func:`spd_inv`.

    Returns:
      ``(C, logdet)``: \(C = H^{-1}\) of shape ``[..., n, n]`` and the dtype
        of ``A``, and \(\log\det H\) of shape ``[...]`` and the real dtype of
        ``A``. A matrix that is not positive definite gives nan in both.

    Raises:
      TypeError: as :func:`spd_inv`.
      ValueError: as :func:`spd_inv`.
      checkify.JaxRuntimeError: as :func:`spd_inv`.

    Examples:
      The two terms of a Gaussian process's likelihood:

      >>> import jax.numpy as jnp
      >>> from diffcholinv import spd_inv_logdet
      >>> K = jnp.array([[4.0, 2.0], [2.0, 10.0]])
      >>> C, logdet = spd_inv_logdet(K)
      >>> bool(jnp.allclose(logdet, jnp.log(36.0)))
      True
      >>> import jax
      >>> g = jax.grad(lambda K: spd_inv_logdet(K)[1])(K)
      >>> bool(jnp.allclose(g, C))
      True

    References:
      - C. E. Rasmussen and C. K. I. Williams, "Gaussian Processes for Machine
        Learning", MIT Press, 2006, eq. 2.30 and 5.9.
      - M. B. Giles, "An extended collection of matrix derivative results for
        forward and reverse mode algorithmic differentiation", 2008.
    """
    return _spd_public(A, "spd_inv_logdet", check, device, method, forward_mode)


def _spd_public(
    A: ArrayLike,
    fn: str,
    check: bool,
    device: jax.Device | jax.sharding.Sharding | None,
    method: str,
    forward_mode: bool,
) -> tuple[jax.Array, jax.Array]:
    arr = as_factor(A, name="A", fn=fn)
    check = check_bool(
        "check",
        check,
        "True: fail through jax.experimental.checkify if A is not positive definite",
        fn=fn,
    )
    forward_mode = check_bool(
        "forward_mode", forward_mode, "True: a custom_jvp, for jax.jvp and jax.jacfwd", fn=fn
    )
    check_device(device, fn=fn)
    method = check_method(method, fn=fn)
    platform = target_platform(arr, device)
    check_platform(arr.dtype, platform, name="A", fn=fn)
    if device is not None:
        arr = jax.device_put(arr, device)
    C, logdet = _spd_inv(arr, method=method, forward_mode=forward_mode)
    if check and arr.size:
        _check_positive_definite(logdet, arr.shape, fn)
    return C, logdet


def _check_positive_definite(logdet: jax.Array, shape: tuple[int, ...], fn: str) -> None:
    """``checkify.check`` that no ``log det`` is nan: each matrix is positive definite.

    ``jnp.linalg.cholesky`` gives nan for a matrix that is not (or that holds
    nan), so ``2 Σ log Re Lᵢᵢ`` is nan exactly then. Names the first such
    matrix by its batch index.
    """
    bad = jnp.isnan(logdet)
    batch = shape[:-2]
    which = f"A of shape {shape}"
    if batch:
        which = "A[" + ", ".join("{}" for _ in batch) + "] of shape " + str(shape)
    checkify.check(
        ~jnp.any(bad),
        f"{fn}(check=True): {which} is not positive definite; its Cholesky "
        "factorisation (of (A + Aᴴ)/2) failed, or it holds nan or inf. Check the "
        "matrix (e.g. add jitter to the diagonal of a kernel matrix). Under jax.vmap the "
        "index is into one mapped slice; jax.vmap(checkify.checkify(f)) names the "
        "mapped index too.",
        *(jnp.unravel_index(jnp.argmax(bad.reshape(-1)), batch) if batch else ()),
    )


@partial(jax.jit, static_argnames=("method", "forward_mode"))
def _spd_inv(A: jax.Array, *, method: str, forward_mode: bool) -> tuple[jax.Array, jax.Array]:
    dtype = A.dtype
    real = np.dtype(jnp.real(jnp.zeros((), dtype)).dtype)
    if A.size == 0:
        return jnp.zeros_like(A), jnp.zeros(A.shape[:-2], real)
    f = _spd.spd_inv_jvp if forward_mode else _spd.spd_inv_vjp
    logdet: list[jax.Array] = []

    def op(A: jax.Array) -> jax.Array:
        C, ld = f(A.astype(compute_dtype(dtype)), method)
        logdet.append(ld)
        return C.astype(dtype)

    # The result (and its gradient) placed like the input, as cholesky_inv's.
    C = _placement.placed_like_input(op, A, forward_mode=forward_mode)
    return C, logdet[0].astype(real)


__all__ = ["spd_inv", "spd_inv_logdet"]
