"""Forward values against numpy.linalg.inv, the unread triangle, symmetry, edge cases."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_close_rel, reference_inv, spd_factor

from diffcholinv import cholesky_inv

SIZES = (1, 2, 5, 33, 128)
# No batch, and two batch axes (one batch axis is the case of most other tests).
BATCHES = ((), (2, 3))
# Every algorithm (cholesky_inv's method), at one tiny size, one that is one
# block, and two that the blocked loop walks through (one of them padded).
METHODS = ("auto", "solve", "products")
METHOD_SIZES = (5, 40, 130, 257)


@pytest.mark.parametrize(
    ("n", "batch", "upper", "dtype"),
    list(itertools.product(SIZES, BATCHES, (False, True), ("float32", "float64"))),
)
def test_matches_numpy_inv(rng, n, batch, upper, dtype):
    L = spd_factor(rng, batch, n)
    F = np.swapaxes(L, -1, -2) if upper else L
    F = F.astype(dtype)
    C = cholesky_inv(F, upper=upper)
    assert C.shape == (*batch, n, n)
    assert C.dtype == jnp.dtype(dtype)
    assert_close_rel(C, reference_inv(F, upper), dtype)
    assert bool(jnp.all(jnp.swapaxes(C, -1, -2) == C)), "not bitwise symmetric"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", METHOD_SIZES)
@pytest.mark.parametrize("dtype", ["float32", "float64", "complex128"])
def test_every_method_matches_numpy_inv(rng, method, n, dtype):
    L = spd_factor(rng, (2,), n).astype(dtype)
    if dtype == "complex128":
        L = L + 0.1j * np.tril(rng.standard_normal(L.shape), -1)
    for upper in (False, True):
        F = np.conj(np.swapaxes(L, -1, -2)) if upper else L
        C = np.asarray(cholesky_inv(F, upper=upper, method=method))
        assert C.dtype == np.dtype(dtype)
        assert (np.conj(np.swapaxes(C, -1, -2)) == C).all(), "not bitwise Hermitian"
        Lc = L.astype(np.complex128)
        ref = np.linalg.inv(Lc @ np.conj(np.swapaxes(Lc, -1, -2)))
        assert_close_rel(C, ref, dtype)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", [5, 130])
@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_unread_triangle_is_ignored(rng, method, n, upper, dtype):
    # The shapes of test_every_method_matches_numpy_inv: their programs are compiled once.
    L = spd_factor(rng, (2,), n)
    F = (np.swapaxes(L, -1, -2) if upper else L).astype(dtype)
    clean = cholesky_inv(F, upper=upper, method=method)
    unread = np.tril(np.ones((n, n)), -1) if upper else np.triu(np.ones((n, n)), 1)
    unread = unread.astype(bool)
    big = np.where(unread, rng.standard_normal((2, n, n)) * 1e30, F).astype(dtype)
    nans = np.where(unread, np.nan, F).astype(dtype)
    for junk in (big, nans):
        np.testing.assert_array_equal(cholesky_inv(junk, upper=upper, method=method), clean)
        # Under vmap too (MLX falls back to a general inverse there).
        f = jax.vmap(lambda x: cholesky_inv(x, upper=upper, method=method))
        np.testing.assert_array_equal(f(junk), clean)


@pytest.mark.parametrize("shape", [(0, 4, 4), (3, 0, 0), (0, 0), (2, 0, 5, 5)])
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_zero_size(shape, dtype):
    L = jnp.zeros(shape, dtype)
    C = cholesky_inv(L)
    assert C.shape == shape
    assert C.dtype == jnp.dtype(dtype)
    g = jax.grad(lambda L: jnp.sum(cholesky_inv(L).astype(jnp.float32)))(L)
    assert g.shape == shape


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_singular_factor_gives_nonfinite_not_error(rng, dtype):
    L = spd_factor(rng, (2,), 5).astype(dtype)
    L[1, 2, 2] = 0.0  # second matrix singular
    C = jax.jit(cholesky_inv)(L)
    assert not bool(jnp.all(jnp.isfinite(C[1])))
    assert_close_rel(C[0], reference_inv(L[0]), dtype)
    g = jax.jit(jax.grad(lambda L: jnp.sum(cholesky_inv(L))))(L)
    assert g.shape == L.shape
    assert not bool(jnp.all(jnp.isfinite(g[1])))
    assert bool(jnp.all(jnp.isfinite(g[0])))
    # An all-zero factor: nothing finite, still no exception.
    assert not bool(jnp.any(jnp.isfinite(cholesky_inv(jnp.zeros((3, 3), dtype)))))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("upper", [False, True])
def test_half_precision_in_and_out(rng, dtype, upper):
    L = spd_factor(rng, (3,), 6)
    F = jnp.asarray(np.swapaxes(L, -1, -2) if upper else L).astype(dtype)
    C = cholesky_inv(F, upper=upper)
    assert C.dtype == jnp.dtype(dtype)
    assert_close_rel(C.astype(jnp.float64), reference_inv(np.asarray(F, np.float64), upper), dtype)
    assert bool(jnp.all(jnp.swapaxes(C, -1, -2) == C))
    g = jax.grad(lambda x: jnp.sum(cholesky_inv(x, upper=upper).astype(jnp.float32)))(F)
    assert g.dtype == jnp.dtype(dtype)
    g32 = jax.grad(lambda x: jnp.sum(cholesky_inv(x, upper=upper)))(F.astype(jnp.float32))
    np.testing.assert_allclose(
        np.asarray(g, np.float32), np.asarray(g32), rtol=0, atol=0.05 * float(jnp.abs(g32).max())
    )


def test_accepts_numpy_and_lists():
    L = [[2.0, 0.0], [1.0, 3.0]]
    expected = np.linalg.inv(np.array(L) @ np.array(L).T)
    np.testing.assert_allclose(cholesky_inv(L), expected, rtol=1e-12)
    np.testing.assert_allclose(cholesky_inv(np.array(L)), expected, rtol=1e-12)


def test_upper_and_lower_agree_bitwise(rng):
    L = spd_factor(rng, (2,), 9)
    np.testing.assert_array_equal(cholesky_inv(L), cholesky_inv(np.swapaxes(L, -1, -2), upper=True))
