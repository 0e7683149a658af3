"""The algorithms inside the op, each against a reference nobody here wrote.

The forward pass (the doubling below ``LOOP_MIN``, the block-column loop
from there) and its backward product against the two-step reference
algorithm, ``numpy.linalg.inv`` and the dense formula; the leaf inverters
against SciPy's triangular solve. Sizes around the block widths, odd and
padded sizes, one block, the loop (at small sizes by lowering ``LOOP_MIN``,
and once at its own threshold) and the split of large factors (forced at
small sizes by lowering ``SPLIT_MIN``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from helpers import RTOL, assert_close_rel, spd_factor

from diffcholinv import _blocked, _leaves, _matrix, _vjp


def _factor(rng, n, dtype, batch=(2,)):
    L = spd_factor(rng, batch, n)
    if dtype.startswith("complex"):
        L = L + 0.1j * np.tril(rng.standard_normal(L.shape), -1)
    return L.astype(dtype)


def _inverse_gram(L):
    Lc = np.asarray(L, np.complex128)
    return np.linalg.inv(Lc @ np.conj(np.swapaxes(Lc, -1, -2)))


def _tol(dtype):
    return RTOL["float32" if dtype in ("float32", "complex64") else "float64"]


def _run_inverse(L, tri_inv=_leaves.solve):
    def f(x):
        C, _ = _blocked.inverse(x, _blocked.factors(x), tri_inv)
        return C

    return np.asarray(jax.jit(f)(jnp.asarray(L)))


@pytest.mark.parametrize(
    ("n", "dtype"),
    [
        (1, "float64"),
        (5, "float32"),
        (8, "complex128"),
        (40, "float64"),
        (64, "float32"),
        (65, "float64"),
        (100, "complex128"),
        (257, "float64"),
        (300, "float32"),
    ],
)
@pytest.mark.parametrize("loop", [False, True], ids=["doubling", "loop"])
def test_forward_matches_numpy_and_reference(rng, monkeypatch, n, dtype, loop):
    if loop:
        monkeypatch.setattr(_blocked, "LOOP_MIN", 1)
    L = _factor(rng, n, dtype)
    junk = np.where(np.triu(np.ones((n, n), bool), 1), np.nan, L)  # never read
    C = _run_inverse(junk)
    assert C.dtype == L.dtype
    assert (np.conj(np.swapaxes(C, -1, -2)) == C).all(), "not bitwise Hermitian"
    ref = _inverse_gram(L)
    assert np.max(np.abs(C - ref)) <= _tol(dtype) * np.max(np.abs(ref))
    two_step = np.asarray(jax.jit(_blocked.reference)(jnp.asarray(L)))
    assert np.max(np.abs(C - two_step)) <= _tol(dtype) * np.max(np.abs(ref))


@pytest.mark.parametrize(("n", "dtype"), [(96, "float64"), (131, "complex128"), (200, "float32")])
def test_split_matches_numpy(rng, monkeypatch, n, dtype):
    # Large factors make their trailing half in a loop of its own first, and
    # the backward pass makes the right block columns in a second loop.
    monkeypatch.setattr(_blocked, "SPLIT_MIN", 64)
    monkeypatch.setattr(_blocked, "LOOP_MIN", 64)
    L = _factor(rng, n, dtype)
    C = _run_inverse(L)
    assert (np.conj(np.swapaxes(C, -1, -2)) == C).all()
    ref = _inverse_gram(L)
    assert np.max(np.abs(C - ref)) <= _tol(dtype) * np.max(np.abs(ref))
    _check_backward(rng, L, dtype)


def test_loop_at_its_threshold_matches_numpy(rng):
    # The default threshold itself, unpatched: the loop with its trailing-half split.
    n = _blocked.LOOP_MIN
    L = _factor(rng, n, "float32", batch=())
    C = _run_inverse(L)
    assert (C.T == C).all()
    ref = _inverse_gram(L).real
    assert np.max(np.abs(C - ref)) <= 10 * _tol("float32") * np.max(np.abs(ref))


@pytest.mark.parametrize("n", [96, 257])
def test_loop_and_doubling_agree(rng, monkeypatch, n):
    L = jnp.asarray(_factor(rng, n, "float64"))
    doubling = _run_inverse(L)
    monkeypatch.setattr(_blocked, "LOOP_MIN", 1)
    loop = _run_inverse(L)
    assert_close_rel(loop, doubling, "float64")


@pytest.mark.parametrize(
    ("n", "dtype"),
    [(1, "float64"), (7, "float64"), (33, "complex128"), (65, "float64"), (130, "complex128")],
)
def test_backward_product_matches_dense_formula(rng, n, dtype):
    _check_backward(rng, _factor(rng, n, dtype), dtype)


@pytest.mark.parametrize(
    ("n", "dtype", "split"), [(65, "float64", False), (130, "complex128", True)]
)
def test_loop_backward_matches_dense_formula(rng, monkeypatch, n, dtype, split):
    """The block-column backward loop (``n ≥ LOOP_MIN``), forced at small ``n``."""
    monkeypatch.setattr(_blocked, "LOOP_MIN", 1)
    if split:
        monkeypatch.setattr(_blocked, "SPLIT_MIN", 1)
    _check_backward(rng, _factor(rng, n, dtype), dtype)


def _check_backward(rng, L, dtype):
    """``tril_product`` against ``-tril(C S L⁻ᴴ)`` in float64/complex128 NumPy."""
    n = L.shape[-1]
    g = rng.standard_normal(L.shape)
    if dtype.startswith("complex"):
        g = g + 1j * rng.standard_normal(L.shape)
    g = g.astype(dtype)

    def f(L, g):
        F = _blocked.factors(L)
        N, b = _blocked.blocks(n)
        C, X = _blocked.inverse(L, F, _leaves.for_method("auto", b, L.dtype, looped=N > 1))
        return _vjp.tril_product(L, F, C, g, X)

    Z = np.asarray(jax.jit(f)(jnp.asarray(L), jnp.asarray(g)))
    Lc = np.asarray(L, np.complex128)
    S = g + np.conj(np.swapaxes(g, -1, -2))
    Linv_h = np.conj(np.swapaxes(np.linalg.inv(Lc), -1, -2))
    ref = -np.tril(_inverse_gram(L) @ S @ Linv_h)
    assert not np.any(np.triu(Z, 1)), "gradient above the diagonal"
    assert np.max(np.abs(Z - ref)) <= 10 * _tol(dtype) * np.max(np.abs(ref))


@pytest.mark.parametrize("inverter", [_leaves.solve, _leaves.substitution, _leaves.unrolled])
@pytest.mark.parametrize("b", [1, 3, 8])
def test_leaf_inverters_match_scipy(rng, inverter, b):
    L = spd_factor(rng, (4,), b)
    X = np.asarray(jax.jit(inverter)(jnp.asarray(L)))
    for x, l in zip(X, L, strict=True):
        ref = scipy.linalg.solve_triangular(l, np.eye(b), lower=True)
        np.testing.assert_allclose(x, ref, rtol=1e-12, atol=1e-13)
        assert (np.triu(x, 1) == 0).all()


def test_substitution_matches_scipy_on_wide_blocks(rng):
    L = spd_factor(rng, (3,), 64)
    X = np.asarray(jax.jit(_leaves.substitution)(jnp.asarray(L)))
    ref = np.stack([scipy.linalg.solve_triangular(l, np.eye(64), lower=True) for l in L])
    np.testing.assert_allclose(X, ref, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("n", [1, 8, 9, 64, 65, 257, 1000, 1030, 2048, 4099])
def test_blocks_cover_n_with_little_padding(n):
    N, b = _blocked.blocks(n)
    assert N * b >= n
    assert N * b - n < N
    if n > _blocked.ONE_BLOCK:
        assert N > 1 and b <= 2 * _blocked.BLOCK


@pytest.mark.parametrize("n", [5, 1023, 1024])
def test_mirror_lower_is_bitwise_hermitian(rng, n):
    x = rng.standard_normal((2, n, n)) + 1j * rng.standard_normal((2, n, n))
    y = np.asarray(jax.jit(_matrix.mirror_lower)(jnp.asarray(x)))
    assert (y == np.conj(np.swapaxes(y, -1, -2))).all()
    low = np.tril(x, -1)
    np.testing.assert_array_equal(y.real, np.tril(x.real) + np.swapaxes(low.real, -1, -2))
    r = np.asarray(jax.jit(_matrix.mirror_lower)(jnp.asarray(x.real)))
    np.testing.assert_array_equal(r, np.tril(x.real) + np.swapaxes(low.real, -1, -2))


def test_singular_block_gives_nonfinite(rng):
    L = spd_factor(rng, (), 200)
    L[150, 150] = 0.0
    C = _run_inverse(L)
    assert not np.all(np.isfinite(C))


@pytest.mark.parametrize("n", [3, 20, 130])
def test_batched_and_vmapped_agree(rng, n):
    L = spd_factor(rng, (3,), n)
    C = _run_inverse(L)
    assert_close_rel(C, np.linalg.inv(L @ np.swapaxes(L, -1, -2)), "float64")
    one = [_run_inverse(L[i]) for i in range(3)]
    np.testing.assert_allclose(np.stack(one), C, rtol=1e-13, atol=1e-13)
