"""Public API: :func:`cholesky_inv`."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from . import _forward as F
from ._validate import as_factor, check_device, check_upper, compute_dtype
from ._vjp import cholinv_lower


def cholesky_inv(
    L: ArrayLike,
    upper: bool = False,
    *,
    device: jax.Device | jax.sharding.Sharding | None = None,
) -> jax.Array:
    r"""Inverse of a symmetric positive definite matrix from its Cholesky factor.

    Given ``L`` with ``A = L Lᵀ`` (``upper=False``) or ``U`` with ``A = Uᵀ U``
    (``upper=True``), returns

    .. math::

        A^{-1} = L^{-T} L^{-1}.

    Leading dimensions are a batch: ``L`` of shape ``[..., n, n]`` gives
    ``A⁻¹`` of shape ``[..., n, n]``. Only the named triangle of ``L`` is read;
    the other may hold anything (nan included) and gets a zero gradient. The
    result is exactly (bitwise) symmetric and has the dtype of ``L``.

    The op is a ``jax.custom_vjp`` function with an analytic backward pass
    (``L̄ = -tril(C S L⁻ᵀ)`` with ``C = A⁻¹``, ``S = Ḡ + Ḡᵀ``). It composes
    with ``jit``, ``vmap``, ``grad``, grad-of-grad and ``jax.hessian``.
    Forward-mode differentiation applied directly to the op (``jax.jvp``,
    ``jax.jacfwd``) is not supported by ``custom_vjp``: use ``jax.jacrev``
    for Jacobians; ``jax.hessian`` (``jacfwd`` over ``jacrev``) works.

    Args:
      L: Cholesky factor, array-like of shape ``[..., n, n]``; float32 or
        float64 (float16 and bfloat16 are computed in float32 and cast back).
      upper: ``False`` (default): ``L`` is lower triangular with ``A = L Lᵀ``.
        ``True``: ``L`` is upper triangular ``U`` with ``A = Uᵀ U``. Either
        way the result is the full symmetric ``A⁻¹``.
      device: where to compute and place the result: ``None`` (default
        placement, or that of a committed input), a ``jax.Device``, or a
        ``jax.sharding.Sharding``. Mirrors MLX's ``stream`` argument.

    Returns:
      ``A⁻¹``, a ``jax.Array`` of shape ``[..., n, n]`` and the dtype of ``L``.
      A singular factor (a zero on the diagonal) gives inf/nan entries, never
      an exception.

    Raises:
      TypeError: ``L`` is not array-like or has a dtype other than float16,
        bfloat16, float32 or float64 (integer, bool and complex included);
        ``upper`` is not a bool; ``device`` is not ``None``, a ``jax.Device``
        or a ``jax.sharding.Sharding``.
      ValueError: ``L`` has fewer than 2 dimensions or its last two are not
        equal.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> from diffcholinv import cholesky_inv
      >>> L = jnp.array([[2.0, 0.0], [1.0, 3.0]])
      >>> C = cholesky_inv(L)
      >>> bool(jnp.allclose(C @ (L @ L.T), jnp.eye(2), atol=1e-6))
      True
      >>> bool((C == C.T).all())
      True
      >>> g = jax.grad(lambda L: jnp.trace(cholesky_inv(L)))(L)
      >>> float(g[0, 1])  # the unread triangle gets no gradient
      0.0

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
    if device is not None:
        arr = jax.device_put(arr, device)
    out: jax.Array = _cholesky_inv(arr, upper=upper)
    return out


@partial(jax.jit, static_argnames=("upper",))
def _cholesky_inv(L: jax.Array, *, upper: bool) -> jax.Array:
    dtype = L.dtype
    if L.size == 0:
        return jnp.zeros_like(L)
    if upper:  # A = Uᵀ U = L Lᵀ with L = Uᵀ: reduce to the lower case.
        L = F.mT(L)
    Lw = F.tril(L.astype(compute_dtype(dtype)))
    return cholinv_lower(Lw).astype(dtype)
