"""The algorithms inside the op, each against a reference nobody here wrote.

The forward pass (the level-batched triangular inverse, its refinement and
Gram matrix) and its backward product against the two-step reference
algorithm, ``numpy.linalg.inv`` and the dense formula; the level-batched
products against NumPy's; the leaf inverters against SciPy's triangular
solve. Sizes around the block widths, odd and padded sizes, one block, and
batches of small factors (the unrolled leaves).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from helpers import RTOL, assert_close_rel, spd_factor

from diffcholinv import _blocked, _leaves, _matrix, _triangular, _vjp


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


def _run_inverse(L, method="auto"):
    return np.asarray(jax.jit(lambda x: _blocked.inverse(x, method)[0])(jnp.asarray(L)))


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
@pytest.mark.parametrize("method", ["auto", "solve"])
def test_forward_matches_numpy_and_reference(rng, n, dtype, method):
    L = _factor(rng, n, dtype)
    junk = np.where(np.triu(np.ones((n, n), bool), 1), np.nan, L)  # never read
    C = _run_inverse(junk, method)
    assert C.dtype == L.dtype
    assert (np.conj(np.swapaxes(C, -1, -2)) == C).all(), "not bitwise Hermitian"
    ref = _inverse_gram(L)
    assert np.max(np.abs(C - ref)) <= _tol(dtype) * np.max(np.abs(ref))
    two_step = np.asarray(jax.jit(_blocked.reference)(jnp.asarray(L)))
    assert np.max(np.abs(C - two_step)) <= _tol(dtype) * np.max(np.abs(ref))


@pytest.mark.parametrize(("n", "b"), [(16, 8), (16, 16), (64, 8), (96, 24), (256, 64)])
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_level_gram_matches_numpy(rng, n, b, dtype):
    # The level-batched Gram matrix against NumPy's dense product (16, 16 real:
    # one leaf, the unrolled sum).
    A = np.tril(_factor(rng, n, dtype, batch=(3,)))
    G = np.asarray(jax.jit(lambda A: _triangular.gram(_triangular.tree(A, b)))(jnp.asarray(A)))
    assert (np.conj(np.swapaxes(G, -1, -2)) == G).all(), "not bitwise Hermitian"
    assert_close_rel(G, np.conj(np.swapaxes(A, -1, -2)) @ A, dtype)


@pytest.mark.parametrize(("n", "leaf"), [(8, 8), (16, 8), (40, 8), (64, 64), (100, 32), (257, 64)])
def test_triangular_inverse_matches_scipy(rng, n, leaf):
    # The doubling and its refinement of every node (one leaf of more than
    # UNROLL_MAX is refined too); the padding of N b > n by an identity block.
    L = spd_factor(rng, (2,), n)
    N, b = _triangular.leaves(n, leaf)

    def f(L):
        M = _matrix.pad_identity(jnp.tril(L), N * b)
        inverter = _leaves.unrolled if b <= _leaves.UNROLL_MAX else _leaves.substitution
        return _triangular.inverse(_triangular.tree(M, b), inverter).whole[..., :n, :n]

    X = np.asarray(jax.jit(f)(jnp.asarray(L)))
    for x, l in zip(X, L, strict=True):
        ref = scipy.linalg.solve_triangular(l, np.eye(n), lower=True)
        np.testing.assert_allclose(x, ref, rtol=1e-11, atol=1e-12 * np.abs(ref).max())
        assert (np.triu(x, 1) == 0).all()


@pytest.mark.parametrize("n", [20, 64])
def test_batched_unrolled_leaves_match_single(rng, n):
    # A batch of BATCH_UNROLL small real factors takes leaves of UNROLL_MAX
    # (the doubling and the refinement); a smaller batch, one leaf.
    L = spd_factor(rng, (_blocked.BATCH_UNROLL,), n)
    assert _blocked.batched(jnp.asarray(L), "auto") and not _blocked.batched(
        jnp.asarray(L[:3]), "auto"
    )
    C = _run_inverse(L)
    assert_close_rel(C[:3], _run_inverse(L[:3]), "float64")
    assert_close_rel(C, _inverse_gram(L).real, "float64")


@pytest.mark.parametrize(
    ("n", "dtype"),
    [(1, "float64"), (7, "float64"), (33, "complex128"), (65, "float64"), (130, "complex128")],
)
def test_backward_product_matches_dense_formula(rng, n, dtype):
    _check_backward(rng, _factor(rng, n, dtype), dtype)


def _check_backward(rng, L, dtype):
    """``tril_product`` against ``-tril(C S L⁻ᴴ)`` in float64/complex128 NumPy."""
    g = rng.standard_normal(L.shape)
    if dtype.startswith("complex"):
        g = g + 1j * rng.standard_normal(L.shape)
    g = g.astype(dtype)

    def f(L, g):
        C, X, F = _blocked.inverse(L, "auto")
        return _vjp.tril_product(F, C, g, X)

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
    # Each solves X L = I (LAPACK trtri's equation), so its left residual is small.
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
@pytest.mark.parametrize("batched", [False, True])
def test_blocks_cover_n_with_little_padding(n, batched):
    N, b = _blocked.blocks(n, batched=batched)
    assert N * b >= n
    assert N * b - n < N
    assert N & (N - 1) == 0, "a power of two"
    if n > _blocked.ONE_BLOCK:
        assert N > 1 and b <= 2 * _blocked.BLOCK
    elif batched:
        assert b <= _leaves.UNROLL_MAX


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
