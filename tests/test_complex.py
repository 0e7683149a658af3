"""Complex Hermitian factors: ``A = L Lᴴ`` (``upper=True``: ``A = Uᴴ U``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from diffcholinv import cholesky_inv

CTOL = {"complex64": 2e-4, "complex128": 1e-11}


def hpd_factor(rng: np.random.Generator, batch: tuple[int, ...], n: int) -> np.ndarray:
    """Lower Cholesky factor (complex128) of a random well-conditioned Hermitian PD matrix."""
    X = rng.standard_normal((*batch, n, n)) + 1j * rng.standard_normal((*batch, n, n))
    A = X @ np.conj(np.swapaxes(X, -1, -2)) / max(n, 1) + np.eye(n)
    return np.linalg.cholesky(A)


def with_imag_diagonal(rng: np.random.Generator, L: np.ndarray) -> np.ndarray:
    """``L`` plus a non-zero imaginary part on its diagonal (still a valid ``A = L Lᴴ``)."""
    n = L.shape[-1]
    return L + 1j * 0.5 * rng.standard_normal(L.shape[:-1])[..., None] * np.eye(n)


def mH(x: np.ndarray) -> np.ndarray:
    return np.conj(np.swapaxes(x, -1, -2))


def inv_ref(L: np.ndarray) -> np.ndarray:
    L = np.tril(np.asarray(L, np.complex128))
    return np.linalg.inv(L @ mH(L))


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("imag_diag", [False, True])
def test_value_hermitian_and_upper(rng, dtype, upper, imag_diag):
    L = hpd_factor(rng, (3,), 9)
    if imag_diag:
        L = with_imag_diagonal(rng, L)
    L = L.astype(dtype)
    F = mH(L) if upper else L  # A = Uᴴ U with U = Lᴴ
    n = L.shape[-1]
    unread = np.tril(np.ones((n, n), bool), -1) if upper else np.triu(np.ones((n, n), bool), 1)
    F = np.where(unread, np.complex64(np.nan + 1j), F).astype(dtype)
    C = cholesky_inv(F, upper=upper)
    assert C.dtype == jnp.dtype(dtype)
    expected = inv_ref(L)
    err = np.max(np.abs(np.asarray(C, np.complex128) - expected)) / np.max(np.abs(expected))
    assert err <= CTOL[dtype]
    np.testing.assert_array_equal(np.asarray(C), mH(np.asarray(C)))  # exactly Hermitian
    assert not np.any(np.imag(np.diagonal(np.asarray(C), axis1=-2, axis2=-1)))
    np.testing.assert_array_equal(jax.vmap(lambda x: cholesky_inv(x, upper=upper))(F), C)


@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("imag_diag", [False, True])
def test_check_grads_real_loss_and_op(rng, upper, imag_diag):
    L = hpd_factor(rng, (2,), 4)
    if imag_diag:
        L = with_imag_diagonal(rng, L)
    F = jnp.asarray(mH(L) if upper else L)
    W = jnp.asarray(rng.standard_normal(F.shape) + 1j * rng.standard_normal(F.shape))
    check_grads(
        lambda x: jnp.real(jnp.sum(W * cholesky_inv(x, upper=upper))),
        (F,),
        order=2,
        modes=["rev"],
    )
    check_grads(lambda x: cholesky_inv(x, upper=upper), (F,), order=1, modes=["rev"])


@pytest.mark.parametrize("upper", [False, True])
def test_gradient_matches_finite_differences(rng, upper):
    # JAX's convention for a real loss f of complex z: grad f = ∂f/∂x - i ∂f/∂y.
    L = with_imag_diagonal(rng, hpd_factor(rng, (), 4))
    F = mH(L) if upper else L
    W = rng.standard_normal(F.shape) + 1j * rng.standard_normal(F.shape)

    def f(x):
        return jnp.real(jnp.sum(W * cholesky_inv(x, upper=upper)))

    g = np.asarray(jax.grad(f)(jnp.asarray(F)))
    n, h = F.shape[-1], 1e-6
    fd = np.zeros((n, n), complex)
    for i in range(n):
        for j in range(n):
            E = np.zeros((n, n))
            E[i, j] = h
            dx = (f(F + E) - f(F - E)) / (2 * h)
            dy = (f(F + 1j * E) - f(F - 1j * E)) / (2 * h)
            fd[i, j] = dx - 1j * dy
    # Entries outside the read triangle are not inputs: finite differences see
    # nothing there, and the gradient is exactly zero.
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)
    unread = np.tril(np.ones((n, n), bool), -1) if upper else np.triu(np.ones((n, n), bool), 1)
    assert not np.any(g[unread])
    assert np.all(np.imag(np.diagonal(g)) != 0)  # the imaginary diagonal is an input too


def test_gradient_matches_autodiff_of_inverse(rng):
    L = jnp.asarray(with_imag_diagonal(rng, hpd_factor(rng, (3,), 5)))
    W = jnp.asarray(rng.standard_normal(L.shape) + 1j * rng.standard_normal(L.shape))

    def ours(x):
        return jnp.real(jnp.sum(W * cholesky_inv(x)))

    def ref(x):
        t = jnp.tril(x)
        return jnp.real(jnp.sum(W * jnp.linalg.inv(t @ jnp.conj(jnp.swapaxes(t, -1, -2)))))

    np.testing.assert_allclose(jax.grad(ours)(L), jax.grad(ref)(L), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        jax.jit(jax.vmap(jax.grad(lambda x, w: jnp.real(jnp.sum(w * cholesky_inv(x))))))(L, W),
        jax.grad(ref)(L),
        rtol=1e-9,
        atol=1e-12,
    )


def test_real_input_as_complex_gives_the_real_answer(rng):
    L = np.linalg.cholesky(np.eye(4) * 2 + 0.3)
    C = cholesky_inv(L.astype(np.complex128))
    np.testing.assert_array_equal(np.imag(np.asarray(C)), 0)
    np.testing.assert_allclose(np.real(np.asarray(C)), cholesky_inv(L), rtol=1e-14)
