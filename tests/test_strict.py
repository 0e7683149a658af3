"""Strict JAX settings are part of the contract.

Under ``jax.numpy_rank_promotion("raise")`` with
``jax.numpy_dtype_promotion("strict")`` (context managers, so no other test
is affected): forward, gradient, ``check=True``, ``forward_mode=True``,
``spd_inv`` / ``spd_inv_logdet``, and at n = 5 grad-of-grad,
``jax.hessian`` and ``vmap``; then one test each under ``debug_nans``,
``debug_infs``, ``transfer_guard("disallow")`` and ``enable_checks``.
Values are compared with ``numpy.linalg.inv`` and gradients with autodiff
through ``cho_solve`` computed outside the strict context. Few cases: each
compiles.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import pytest
from helpers import assert_close_rel, nan_factor, reference_inv

from diffcholinv import cholesky_inv, spd_inv, spd_inv_logdet


@contextlib.contextmanager
def strict() -> Iterator[None]:
    with jax.numpy_rank_promotion("raise"), jax.numpy_dtype_promotion("strict"):
        yield


def _factor(n: int, dtype: str, batch: tuple[int, ...], upper: bool, seed: int = 0) -> np.ndarray:
    """A factor in float64/complex128 (the unread triangle holds nan)."""
    L = nan_factor(np.random.default_rng(seed), batch, n, dtype)
    return np.conj(np.swapaxes(L, -1, -2)) if upper else L


def _reference(L: np.ndarray, upper: bool) -> np.ndarray:
    L = np.nan_to_num(np.triu(L) if upper else np.tril(L))
    if not np.iscomplexobj(L):
        return reference_inv(L, upper)
    Lh = np.conj(np.swapaxes(L, -1, -2))
    return np.linalg.inv(Lh @ L if upper else L @ Lh)


def _loss(f):  # type: ignore[no-untyped-def]
    return lambda x: jnp.sum(jnp.real(jnp.sin(f(x))))


def _cho_solve_inv(L: jax.Array, upper: bool) -> jax.Array:
    tri = jnp.triu(L) if upper else jnp.tril(L)
    eye = jnp.broadcast_to(jnp.eye(L.shape[-1], dtype=L.dtype), L.shape)
    return jsl.cho_solve((tri, not upper), eye)


# (n, upper, dtype, method, batch): one block (n = 5) and the doubling / loop
# (n = 100), each flag and dtype at least once.
CASES = [
    (5, False, "float64", "auto", ()),
    (5, True, "complex128", "products", (3,)),
    (100, True, "float64", "auto", (3,)),
    (100, False, "float32", "solve", ()),
]


@pytest.mark.parametrize("n,upper,dtype,method,batch", CASES)
def test_cholesky_inv_strict(n, upper, dtype, method, batch):
    L64 = _factor(n, dtype, batch, upper)
    L = jnp.asarray(L64, dtype)
    C_ref = _reference(L64, upper)
    op = jax.jit(lambda L: cholesky_inv(L, upper, method=method))
    fwd = jax.jit(lambda L: cholesky_inv(L, upper, method=method, forward_mode=True))
    # Reference gradient outside the strict context (jax's own code is not ours to hold).
    Lc = jnp.where(jnp.isnan(L), jnp.zeros((), L.dtype), L)
    g_ref = np.asarray(jax.grad(_loss(lambda L: _cho_solve_inv(L, upper)))(Lc))
    with strict():
        assert_close_rel(op(L), C_ref, dtype)
        assert_close_rel(cholesky_inv(L, upper, method=method, check=True), C_ref, dtype)
        assert_close_rel(fwd(L), C_ref, dtype)
        g = jax.jit(jax.grad(_loss(op)))(L)
        g_fwd = jax.jit(jax.grad(_loss(fwd)))(L)
        dL = jnp.ones_like(L)
        _, t = jax.jit(lambda L, dL: jax.jvp(fwd, (L,), (dL,)))(L, dL)
    for grad in (g, g_fwd):
        assert_close_rel(grad, g_ref, dtype)
    assert np.all(np.isfinite(np.asarray(t)))


@pytest.mark.parametrize("forward_mode", [False, True])
def test_spd_inv_strict(forward_mode):
    L = _factor(5, "float64", (3,), False)
    L = np.nan_to_num(np.tril(L))
    A = jnp.asarray(L @ np.swapaxes(L, -1, -2))
    C_ref = np.linalg.inv(np.asarray(A))
    g_ref = jax.grad(_loss(lambda A: _cho_solve_inv(jnp.linalg.cholesky(A), False)))(A)
    with strict():
        C = spd_inv(A, forward_mode=forward_mode, check=True)
        C2, ld = spd_inv_logdet(A, forward_mode=forward_mode, check=True)
        g = jax.grad(_loss(lambda A: spd_inv(A, forward_mode=forward_mode)))(A)
        g_ld = jax.grad(lambda A: jnp.sum(spd_inv_logdet(A, forward_mode=forward_mode)[1]))(A)
    assert_close_rel(C, C_ref, "float64")
    assert_close_rel(C2, C_ref, "float64")
    assert_close_rel(ld, np.linalg.slogdet(np.asarray(A))[1], "float64")
    assert_close_rel(g, np.asarray(g_ref), "float64")
    # d log det A / dA = A⁻ᵀ
    assert_close_rel(g_ld, np.swapaxes(C_ref, -1, -2), "float64")


def test_second_order_hessian_vmap_strict():
    upper = True
    L64 = _factor(5, "float64", (), upper)
    L = jnp.asarray(np.nan_to_num(np.triu(L64) if upper else np.tril(L64)))
    f = _loss(lambda L: cholesky_inv(L, upper))
    r = _loss(lambda L: _cho_solve_inv(L, upper))
    gg_ref = jax.grad(lambda L: jnp.sum(jax.grad(r)(L) ** 2))(L)
    H_ref = jax.hessian(r)(L)
    Lb = jnp.stack([L, 2 * L])
    with strict():
        gg = jax.grad(lambda L: jnp.sum(jax.grad(f)(L) ** 2))(L)
        H = jax.hessian(f)(L)
        Cb = jax.vmap(lambda L: cholesky_inv(L, upper))(Lb)
    assert_close_rel(gg, np.asarray(gg_ref), "float64")
    assert_close_rel(H, np.asarray(H_ref), "float64")
    assert_close_rel(Cb, _reference(np.asarray(Lb), upper), "float64")


def _debug_nans() -> contextlib.AbstractContextManager[None]:
    return jax.debug_nans(True)


def _debug_infs() -> contextlib.AbstractContextManager[None]:
    return jax.debug_infs(True)


def _enable_checks() -> contextlib.AbstractContextManager[None]:
    if not hasattr(jax, "enable_checks"):
        pytest.skip("jax.enable_checks is not public in this jax")
    return jax.enable_checks(True)  # type: ignore[no-any-return]


def _transfer_guard() -> contextlib.AbstractContextManager[None]:
    return jax.transfer_guard("disallow")


@pytest.mark.parametrize(
    "setting", [_debug_nans, _debug_infs, _transfer_guard, _enable_checks], ids=lambda s: s.__name__
)
def test_debug_settings(setting):
    # The unread triangle holds zero here: debug_nans checks the inputs too.
    L64 = np.nan_to_num(np.tril(_factor(5, "float64", (3,), False)))
    L = jax.device_put(jnp.asarray(L64))
    jax.block_until_ready(L)
    op = jax.jit(lambda L: cholesky_inv(L))
    grad = jax.jit(jax.grad(_loss(cholesky_inv)))
    with setting():
        C = op(L)
        g = grad(L)
        jax.block_until_ready((C, g))
    assert_close_rel(C, reference_inv(L64), "float64")
    assert np.all(np.isfinite(np.asarray(g)))
