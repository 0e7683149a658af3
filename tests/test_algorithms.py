"""The fast forward paths agree with the reference algorithm and with numpy.linalg.inv."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import RTOL, assert_close_rel, reference_inv, spd_factor

from diffcholinv import _forward as F

# Around the leaf sizes and their multiples, odd n, and n that need padding.
# solve=True stops at blocks of 64: with blocks of 128 (n = 256 or 257, float32
# or float64) XLA:CPU's runtime (jax 0.10.2) deadlocks in about one execution
# in four, every worker idle and the caller waiting; the op never runs
# solve=True (see _forward._blocked).
CASES = [
    (1, 4, True, "float64"),
    (7, 4, False, "float64"),
    (9, 8, False, "float32"),
    (16, 8, True, "float64"),
    (17, 8, False, "float64"),
    (33, 8, True, "float32"),
    (64, 16, False, "float64"),
    (65, 16, True, "float64"),
    (127, 64, True, "float64"),
    (129, 64, False, "float32"),
    (257, 128, False, "float32"),
]


@pytest.mark.parametrize(("n", "leaf", "solve", "dtype"), CASES)
def test_blocked_matches_reference_and_numpy(rng, n, leaf, solve, dtype):
    L = spd_factor(rng, (2,), n).astype(dtype)
    Lj = jnp.asarray(L)
    C = jax.jit(lambda x: F.cholinv_blocked(x, leaf=leaf, solve=solve))(Lj)
    assert C.shape == L.shape
    assert C.dtype == jnp.dtype(dtype)
    assert bool(jnp.all(F.mT(C) == C)), "not bitwise symmetric"
    assert_close_rel(C, reference_inv(L), dtype)
    ref = np.asarray(F.cholinv_reference(Lj), np.float64)
    scale = float(np.max(np.abs(ref)))
    assert float(np.max(np.abs(np.asarray(C, np.float64) - ref))) <= RTOL[dtype] * scale


@pytest.mark.parametrize("n", [1, 2, 4, 8])
@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
def test_unrolled_matches_reference(rng, n, batch):
    L = jnp.asarray(spd_factor(rng, batch, n))
    C = F.cholinv_unrolled(L)
    assert bool(jnp.all(F.mT(C) == C))
    np.testing.assert_allclose(C, F.cholinv_reference(L), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("n", [3, 20, 130])
def test_dispatch_is_static_and_batched(rng, n):
    L = spd_factor(rng, (3,), n)
    C = jax.jit(F.cholinv)(jnp.asarray(L))
    assert_close_rel(C, reference_inv(L), "float64")
    np.testing.assert_allclose(jax.vmap(F.cholinv)(jnp.asarray(L)), C, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("n", [1023, 1024])
def test_mirror_lower_large(rng, n):
    # A plain select between x and xᵀ crashes XLA:CPU at n = 1024.
    x = rng.standard_normal((n, n))
    y = np.asarray(jax.jit(F.mirror_lower)(jnp.asarray(x)))
    np.testing.assert_array_equal(y, np.tril(x) + np.tril(x, -1).T)


@pytest.mark.parametrize("solve", [True, False])
def test_singular_leaf_gives_nonfinite(rng, solve):
    L = spd_factor(rng, (), 40)
    L[30, 30] = 0.0
    C = F.cholinv_blocked(jnp.asarray(L), leaf=8, solve=solve)
    assert not bool(jnp.all(jnp.isfinite(C)))


@pytest.mark.parametrize(("n", "leaf"), [(2, 4), (9, 4), (17, 8), (31, 16)])
def test_complex_blocked_matches_numpy(rng, n, leaf):
    L = spd_factor(rng, (2,), n) + 0.1j * np.tril(rng.standard_normal((2, n, n)), -1)
    A = L @ np.conj(np.swapaxes(L, -1, -2))
    for solve in (True, False):
        C = jax.jit(lambda x, s=solve: F.cholinv_blocked(x, leaf=leaf, solve=s))(jnp.asarray(L))
        assert bool(jnp.all(jnp.conj(F.mT(C)) == C)), "not bitwise Hermitian"
        np.testing.assert_allclose(C, np.linalg.inv(A), rtol=0, atol=1e-11 * np.abs(C).max())
    Lj = jnp.asarray(L)
    np.testing.assert_allclose(F.cholinv(Lj), F.cholinv_reference(Lj), atol=1e-12)


def _inverse(parts, n):
    """``L⁻¹`` (``[:n, :n]``) assembled from its InverseParts ``(A⁻¹, W, D⁻¹)``."""
    Ainv, W, Dinv = (np.asarray(p, np.complex128) for p in parts)
    h = Ainv.shape[-1]
    top = np.concatenate([Ainv, np.zeros((*Ainv.shape[:-1], Dinv.shape[-1]))], axis=-1)
    bottom = np.concatenate([-Dinv @ W, Dinv], axis=-1)
    X = np.concatenate([top, bottom], axis=-2)
    assert X.shape[-1] == h + Dinv.shape[-1]
    return X[..., :n, :n]


@pytest.mark.parametrize(
    ("n", "dtype"),
    [
        (1, "float64"),
        (3, "float64"),
        (8, "float32"),
        (15, "float64"),
        (40, "float64"),
        (65, "float32"),
        (131, "float64"),
        (100, "complex128"),
    ],
)
def test_cholinv_with_inverse_matches_numpy(rng, n, dtype):
    # The backward pass relies on the parts of L⁻¹ the forward pass returns,
    # split where top_split says (padded sizes included).
    L = spd_factor(rng, (2,), n).astype(dtype)
    if dtype == "complex128":
        L = L + 0.1j * np.tril(rng.standard_normal((2, n, n)), -1)
    C, parts = jax.jit(F.cholinv_with_inverse)(jnp.asarray(L))
    assert bool(jnp.all(jnp.conj(F.mT(C)) == C))
    Lc = L.astype(np.complex128)
    rtol = RTOL["float32" if dtype == "float32" else "float64"]
    ref = np.linalg.inv(Lc @ np.conj(np.swapaxes(Lc, -1, -2)))
    assert np.max(np.abs(C - ref)) <= rtol * np.max(np.abs(ref))
    N, h = F.top_split(jnp.asarray(L))
    assert (parts[0].shape[-1], parts[2].shape[-1]) == (h, N - h)
    X, Xref = _inverse(parts, n), np.linalg.inv(Lc)
    assert np.max(np.abs(X - Xref)) <= rtol * np.max(np.abs(Xref))
    assert not np.any(np.triu(X, 1)), "L⁻¹ is not lower triangular"


@pytest.mark.parametrize(
    ("n", "N"), [(1, 1), (5, 5), (16, 16), (17, 17), (40, 40), (97, 97), (90, 96)]
)
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("pieces", [1, 2, 3])
def test_tril_sandwich_h_matches_full_product(rng, monkeypatch, n, N, dtype, pieces):
    # Each half of the split in 1, 2 or 3 column blocks (forced at every size).
    monkeypatch.setattr(F, "SANDWICH_PIECES", pieces)
    monkeypatch.setattr(F, "SANDWICH_MIN", 1)
    h = N // 2

    def draw(shape, lower=False):
        x = rng.standard_normal((2, *shape))
        if dtype == "complex128":
            x = x + 1j * rng.standard_normal((2, *shape))
        return np.tril(x) if lower else x

    parts = (draw((h, h), True), draw((N - h, h)), draw((N - h, N - h), True))
    C, g = draw((n, n)), draw((n, n))
    args = (jnp.asarray(C), jnp.asarray(g), tuple(jnp.asarray(p) for p in parts))
    Y = jax.jit(F.tril_sandwich_h)(*args)
    X = _inverse(parts, N)[..., :n, :n]
    S = g + np.conj(np.swapaxes(g, -1, -2))
    ref = np.tril(C @ S @ np.conj(np.swapaxes(X, -1, -2)))
    np.testing.assert_allclose(Y, ref, rtol=1e-12, atol=1e-11 * N)
    assert not np.any(np.triu(np.asarray(Y), 1))


@pytest.mark.parametrize("n", [300, 1023, 1024, 1031])
def test_tiled_mirror_matches_numpy(rng, n):
    # Sizes below, at and above the tiling threshold, tiles of unequal size.
    x = rng.standard_normal((2, n, n)) + 1j * rng.standard_normal((2, n, n))
    y = np.asarray(jax.jit(F.mirror_lower)(jnp.asarray(x)))
    low = np.tril(x, -1)
    expected = np.tril(x.real) + np.swapaxes(low.real, -1, -2)
    expected = expected + 1j * (low.imag - np.swapaxes(low.imag, -1, -2))
    np.testing.assert_array_equal(y, expected)
    r = np.asarray(jax.jit(F.mirror_lower)(jnp.asarray(x.real)))
    np.testing.assert_array_equal(r, np.tril(x.real) + np.swapaxes(low.real, -1, -2))


@pytest.mark.parametrize(("n", "dtype"), [(40, "float64"), (65, "float32"), (100, "complex128")])
def test_split_levels_match_numpy(rng, monkeypatch, n, dtype):
    # Levels with blocks of at least SPLIT_MIN skip the zero block of A⁻¹ and
    # build C11 from its lower blocks; lowered here so small n reach them.
    monkeypatch.setattr(F, "SPLIT_MIN", 4)
    L = spd_factor(rng, (2,), n).astype(dtype)
    if dtype == "complex128":
        L = L + 0.1j * np.tril(rng.standard_normal((2, n, n)), -1)
    Lc = L.astype(np.complex128)
    ref = np.linalg.inv(Lc @ np.conj(np.swapaxes(Lc, -1, -2)))
    rtol = RTOL["float32" if dtype == "float32" else "float64"]
    for f in (F.cholinv, lambda x: F.cholinv_with_inverse(x)[0]):
        C = jax.jit(f)(jnp.asarray(L))
        assert bool(jnp.all(jnp.conj(F.mT(C)) == C)), "not bitwise Hermitian"
        assert np.max(np.abs(C - ref)) <= rtol * np.max(np.abs(ref))
    _, parts = jax.jit(F.cholinv_with_inverse)(jnp.asarray(L))
    Xref = np.linalg.inv(Lc)
    assert np.max(np.abs(_inverse(parts, n) - Xref)) <= rtol * np.max(np.abs(Xref))


def test_split_level_of_a_padded_factor(rng, monkeypatch):
    # n = 1030 pads to 1152: its top level (blocks of 576, split at 288) is
    # split with the threshold at 512; the default threshold splits n ≥ 2048.
    monkeypatch.setattr(F, "SPLIT_MIN", 512)
    L = spd_factor(rng, (), 1030)
    C = jax.jit(F.cholinv)(jnp.asarray(L))
    assert bool(jnp.all(F.mT(C) == C))
    assert_close_rel(C, reference_inv(L), "float64")
