"""Numerical guarantees: extreme scales, singular and non-finite input, checked
mode (``check=True`` with ``jax.experimental.checkify``), and the platform check
for complex dtypes. Accuracy against LAPACK on GP kernels: tests/test_accuracy.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from helpers import assert_edges, exact_inverse, spd_factor, tolerance
from jax.experimental import checkify

from diffcholinv import _validate, cholesky_inv

# ---- extreme scales ---------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "scales"),
    [
        ("float64", (1e150, 1e-150, 1e160, 1e-160, 1e-200, 1e200, 1e300, 1e-300)),
        ("complex128", (1e150, 1e-150, 1e-170, 1e170)),
        ("float32", (1e15, 1e-15, 1e-20, 1e20, 1e30, 1e-30)),
    ],
)
def test_extreme_scales_right_answer_or_exact_inf_or_zero(rng, dtype, scales):
    L = spd_factor(rng, (2,), 8)
    if dtype.startswith("complex"):
        L = L + 1j * np.tril(rng.standard_normal(L.shape), -1) * 0.3
    ref = np.linalg.inv(L @ np.conj(np.swapaxes(L, -1, -2)))
    ref = (ref + np.conj(np.swapaxes(ref, -1, -2))) / 2  # the true A⁻¹ has a real diagonal
    info = np.finfo(np.dtype(dtype))
    for s in scales:
        C = np.asarray(jax.jit(cholesky_inv)((L * s).astype(dtype)))
        with np.errstate(over="ignore", under="ignore"):
            exact = ref / s / s  # float64 has the range of the float32 cases
        assert not np.any(np.isnan(C)), s
        # Real and imaginary parts are checked as separate real numbers.
        C, exact = np.stack([np.real(C), np.imag(C)]), np.stack([np.real(exact), np.imag(exact)])
        big = np.abs(exact) > info.max
        tiny = np.abs(exact) < info.tiny
        normal = ~big & ~tiny
        # Overflow: ±inf with the sign of the true value; underflow: (signed) zero
        # or a subnormal; in range: the right answer.
        np.testing.assert_array_equal(C[big], np.where(exact[big] > 0, np.inf, -np.inf))
        assert np.all(np.abs(C[tiny]) <= info.tiny), s
        rel = np.abs(C[normal] - exact[normal]) / np.max(np.abs(exact[normal]), initial=1e-300)
        assert np.all(rel <= 100 * info.eps), (s, np.max(rel, initial=0))


@pytest.mark.parametrize("s", [1e150, 1e-150])
def test_extreme_scale_matches_unscaled_bitwise(rng, s):
    # The rescaling changes only exponents: the scaled result is the unscaled
    # one times 1/s² wherever that is in range.
    L = spd_factor(rng, (), 6)
    k = int(np.round(np.log2(s)))
    p = 2.0**k
    C = np.asarray(cholesky_inv(L * p))
    np.testing.assert_array_equal(C, np.asarray(cholesky_inv(L)) / p / p)


# ---- the edges of the range: subnormal diagonals, wide diagonal spans -------
# References: mpmath (unbounded exponent range) for the exact A⁻¹ of the factor
# as given, and scipy's cho_solve where it is in range.


@pytest.mark.parametrize(
    ("diag", "dtype", "expected"),
    [
        # What main gave: [[nan, nan], [nan, inf]] (XLA:CPU reads 1e-310 as 0).
        ((2.0, 1e-310), "float64", [[0.25, 0.0], [0.0, np.inf]]),
        ((2.0, 1e-40), "float32", [[0.25, 0.0], [0.0, np.inf]]),
        # What main gave: all nan.
        ((1e-310,) * 3, "float64", np.diag([np.inf] * 3)),
        # One scale per matrix pushed the small end out of range: main gave
        # [[1e-200, 0], [0, inf]], float32 inf for 1e16, and inf for 1.
        ((1e100, 1e-60), "float64", [[1e-200, 0.0], [0.0, 1e120]]),
        ((1e12, 1e-8), "float32", [[1e-24, 0.0], [0.0, 1e16]]),
        ((1e154, 1.0), "float64", [[1e-308, 0.0], [0.0, 1.0]]),
    ],
)
def test_edge_diagonals_reproducers(diag, dtype, expected):
    L = np.diag(np.array(diag, dtype))
    C = np.asarray(cholesky_inv(L))
    ref, k = exact_inverse(L, dtype)
    assert_edges(C, ref, k, dtype)
    assert_edges(C, np.asarray(expected, dtype), k, dtype)  # the values the issue names
    if np.all(np.isfinite(ref)) and dtype == "float64":  # in range: what cho_solve gives
        cs = scipy.linalg.cho_solve((L, True), np.eye(len(diag)))
        np.testing.assert_allclose(np.diag(C), np.diag(cs), rtol=1e-15, atol=np.finfo(dtype).tiny)


@pytest.mark.skipif(
    tuple(int(p) for p in jax.__version__.split(".")[:2]) < (0, 5),
    reason="jaxlib 0.4's triangular solve turns the inf of row i of L⁻¹ into nan everywhere "
    "(as with an inf on the diagonal, deselected in .ci/run's minimum-jax run)",
)
def test_one_subnormal_on_the_diagonal_of_a_dense_factor():
    # L with L[i, i] = δ = 1e-310, i = 5, n = 12. Exactly (split L at i):
    # A⁻¹ = K + (1/δ) R + (1/δ²) S, with K the inverse Gram matrix of the
    # trailing factor (rows and columns > i) and S non-zero on rows and
    # columns ≤ i only. So the top-left (i + 1)² block overflows (|A⁻¹| ~
    # 1e620), the trailing block (rows and columns > i) is finite and does
    # not depend on δ, and the rest is ~1e310 times O(1) coefficients: some
    # finite, some beyond the range (mpmath says which). Row and column i
    # are made from column i of L⁻¹, in range once row i is scaled; the
    # entries with one index < i and the other > i need entries of L⁻¹
    # (~1/δ) that no float holds, however the rows are scaled, and are not
    # asserted (docs/robustness.md). What main gave: nan in all 144.
    i, n = 5, 12
    L = spd_factor(np.random.default_rng(0), (), n)
    L[i, i] = 1e-310
    C = np.asarray(cholesky_inv(L))
    ref, k = exact_inverse(L, "float64")
    assert np.all(np.isinf(ref[: i + 1, : i + 1]))
    assert np.all(np.isfinite(ref[i + 1 :, i + 1 :]))
    assert_edges(C[i:, i:], ref[i:, i:], k[i:], "float64")


@pytest.mark.parametrize(
    ("dtype", "span"), [("float64", 150), ("float32", 18), ("complex128", 150)]
)
@pytest.mark.parametrize("n", [12, 70])
def test_wide_diagonal_span_matches_mpmath(dtype, span, n):
    # A = D B D with B well-conditioned and D from 1e-span to 1e+span: main's
    # one scale per matrix gave inf or 0 at one end. n = 70 takes the loop.
    rng = np.random.default_rng(n)
    Lb = spd_factor(rng, (), n)
    if dtype.startswith("complex"):
        Lb = Lb + 0.3j * np.tril(rng.standard_normal((n, n)), -1)
    d = 10.0 ** rng.permutation(np.linspace(-span, span, n))
    L = (d[:, None] * Lb).astype(dtype)
    C = np.asarray(cholesky_inv(L))
    assert_edges(C, *exact_inverse(L, dtype), dtype)
    np.testing.assert_array_equal(C, np.conj(C.T))


@pytest.mark.parametrize(("dtype", "k"), [("float64", 400), ("float32", 40), ("complex128", 400)])
@pytest.mark.parametrize("n", [6, 70])
def test_gradient_under_row_scaling(rng, dtype, k, n):
    # L → D L with D = diag(2^kᵢ), |kᵢ| ≤ k: A⁻¹ → D⁻¹ A⁻¹ D⁻¹ and, for the
    # cotangent D Ḡ D, L̄ → D⁻¹ L̄ (L̄ = -tril(C S L⁻ᴴ)). Only exponents change:
    # the same values, at a span where forming L⁻¹ or A would overflow.
    L = spd_factor(rng, (), n)
    G = rng.standard_normal((n, n))
    if dtype.startswith("complex"):
        L = L + 0.3j * np.tril(rng.standard_normal((n, n)), -1)
        G = G + 1j * rng.standard_normal((n, n))
    L, G = L.astype(dtype), G.astype(dtype)
    p = 2.0 ** rng.integers(-k, k + 1, n)
    Ls, Gs = (p[:, None] * L).astype(dtype), (p[:, None] * G * p[None, :]).astype(dtype)

    def vjp(L, G):
        return jax.vjp(cholesky_inv, L)[1](G)[0]

    g, gs = np.asarray(jax.jit(vjp)(L, G)), np.asarray(jax.jit(vjp)(Ls, Gs))
    assert np.all(np.isfinite(gs))
    scaled_back = gs * p[:, None]
    np.testing.assert_allclose(scaled_back, g, rtol=tolerance(dtype), atol=0)
    Cs = np.asarray(cholesky_inv(Ls))
    np.testing.assert_array_equal(Cs * p[:, None] * p[None, :], np.asarray(cholesky_inv(L)))


# ---- singular and non-finite input ----------------------------------------

CASES = {
    # name: (entry, value, what the matrix's result holds)
    "zero diagonal": ((2, 2), 0.0, "nonfinite"),
    "nan diagonal": ((2, 2), np.nan, "nan"),
    "nan off-diagonal": ((3, 1), np.nan, "nan"),
    "inf off-diagonal": ((3, 1), np.inf, "nan"),
    "inf diagonal": ((2, 2), np.inf, "limit"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", ["float32", "float64", "complex128"])
@pytest.mark.parametrize("transform", ["jit", "vmap"])
def test_singular_and_nonfinite(rng, case, dtype, transform):
    (i, j), value, kind = CASES[case]
    L = spd_factor(rng, (3,), 5).astype(dtype)
    L[1, i, j] = value  # only the second matrix is bad
    W = rng.standard_normal(L.shape).astype(dtype)

    def loss(x):
        return jnp.real(jnp.sum(W * cholesky_inv(x)))

    if transform == "jit":
        C = jax.jit(cholesky_inv)(L)
        g = jax.jit(jax.grad(loss))(L)
    else:
        C = jax.vmap(cholesky_inv)(L)
        g = jax.vmap(jax.grad(lambda x, w: jnp.real(jnp.sum(w * cholesky_inv(x)))))(L, W)
    C, g = np.asarray(C), np.asarray(g)
    good = [0, 2]
    assert np.all(np.isfinite(C[good])) and np.all(np.isfinite(g[good]))
    np.testing.assert_allclose(C[good], cholesky_inv(L[good]), rtol=1e-6)
    if kind == "nonfinite":
        assert not np.all(np.isfinite(C[1]))
        assert not np.all(np.isfinite(g[1]))
    elif kind == "nan":
        assert np.any(np.isnan(C[1]))
        assert np.any(np.isnan(g[1]))
    else:  # inf on the diagonal: the limit, row and column i of A⁻¹ are zero
        M = np.delete(np.delete(L[1], i, 0), i, 1)
        expected = np.linalg.inv(M.astype(np.complex128) @ np.conj(M.T).astype(np.complex128))
        expected = np.insert(np.insert(expected, i, 0, axis=0), i, 0, axis=1)
        np.testing.assert_allclose(C[1], expected, rtol=1e-5, atol=1e-7)


# ---- checked mode ----------------------------------------------------------


def _bad_batch(rng: np.random.Generator) -> np.ndarray:
    L = spd_factor(rng, (3,), 4)
    L[2, 1, 1] = 0.0
    return L


def test_check_with_checkify_names_the_entry(rng):
    L = _bad_batch(rng)
    f = checkify.checkify(jax.jit(lambda x: cholesky_inv(x, check=True)))
    err, C = f(L)
    msg = err.get()
    assert msg is not None
    assert "L[2, 1, 1] = 0.0" in msg and "(3, 4, 4)" in msg
    assert C.shape == L.shape
    ok, _ = f(spd_factor(rng, (3,), 4))
    assert ok.get() is None


@pytest.mark.parametrize("upper", [False, True])
def test_check_reads_only_the_named_triangle(rng, upper):
    L = spd_factor(rng, (), 4)
    F = L.T.copy() if upper else L.copy()
    unread = np.tril(np.ones((4, 4), bool), -1) if upper else np.triu(np.ones((4, 4), bool), 1)
    F[unread] = np.nan
    f = checkify.checkify(lambda x: cholesky_inv(x, upper=upper, check=True))
    assert f(F)[0].get() is None
    F[~unread & ~np.eye(4, dtype=bool)] = np.inf
    assert "= inf" in f(F)[0].get()


def test_check_under_vmap_and_grad(rng):
    L = _bad_batch(rng)

    def loss(x):
        return jnp.sum(cholesky_inv(x, check=True))

    err, _ = checkify.checkify(jax.grad(loss))(L)
    assert err.get() is not None
    # checkify outside the vmap keeps no batch position: the message says so
    # and names the form that does; checkify inside the vmap names it.
    err, _ = checkify.checkify(jax.vmap(lambda x: cholesky_inv(x, check=True)))(L)
    msg = err.get()
    assert "of shape (4, 4) has L[1, 1] = 0.0" in msg
    assert "under jax.vmap that is one mapped slice" in msg
    assert "jax.vmap(checkify.checkify(f)) names the mapped index" in msg
    err, _ = jax.vmap(checkify.checkify(lambda x: cholesky_inv(x, check=True)))(L)
    assert err.get().startswith("at mapped index 2: cholesky_inv(check=True)")
    assert "L[1, 1] = 0.0" in err.get() and "mapped index 0" not in err.get()
    err, _ = checkify.checkify(jax.grad(loss))(spd_factor(rng, (3,), 4))
    assert err.get() is None


@pytest.mark.parametrize("upper", [False, True])
def test_check_names_the_full_index_in_a_batch(rng, upper):
    # Two batch axes; the bad entry is not in the first matrix, and a second
    # bad one later in the batch is not the one named (the first in C order).
    L = spd_factor(rng, (2, 3), 4)
    if upper:
        L = np.swapaxes(L, -1, -2).copy()
    L[1, 2, 3, 3] = 0.0
    L[1, 0, 2, 1 if not upper else 3] = np.nan
    msg = checkify.checkify(lambda x: cholesky_inv(x, upper=upper, check=True))(L)[0].get()
    assert "the factor L of shape (2, 3, 4, 4) has L[1, 0, " in msg
    idx = "L[1, 0, 2, 1] = nan" if not upper else "L[1, 0, 2, 3] = nan"
    assert idx in msg
    L[1, 0] = spd_factor(rng, (), 4).T if upper else spd_factor(rng, (), 4)
    with pytest.raises(checkify.JaxRuntimeError, match=r"L\[1, 2, 3, 3\] = 0.0"):
        cholesky_inv(L, upper=upper, check=True)


def test_check_eager_raises_and_unchecked_jit_refuses(rng):
    L = _bad_batch(rng)
    with pytest.raises(checkify.JaxRuntimeError, match=r"L\[2, 1, 1\] = 0.0"):
        cholesky_inv(L, check=True)
    np.testing.assert_array_equal(cholesky_inv(L[:2], check=True), cholesky_inv(L[:2]))
    # Under jit, check=True needs checkify: an error at trace time, not silence.
    with pytest.raises(ValueError, match="checkify"):
        jax.jit(lambda x: cholesky_inv(x, check=True))(L)


def test_check_off_costs_nothing(rng):
    L = spd_factor(rng, (2,), 4)
    off = str(jax.make_jaxpr(cholesky_inv)(L))
    on = str(jax.make_jaxpr(lambda x: cholesky_inv(x, check=True))(L))
    assert "check" not in off
    assert "check" in on


@pytest.mark.parametrize("check", [1, "yes", None])
def test_check_must_be_bool(check):
    with pytest.raises(TypeError, match="check must be a bool"):
        cholesky_inv(jnp.eye(2), check=check)


# ---- platforms without complex (Metal) -------------------------------------


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_complex_on_metal_is_a_clear_error(monkeypatch, dtype):
    with pytest.raises(TypeError, match=f"L has dtype {dtype}, but the METAL platform"):
        _validate.check_platform(np.dtype(dtype), "METAL")
    _validate.check_platform(np.dtype("float32"), "METAL")  # real dtypes are fine
    _validate.check_platform(np.dtype(dtype), "cpu")
    # The public function asks where it will run: here, a default backend of Metal.
    monkeypatch.setattr(jax, "default_backend", lambda: "METAL")
    with pytest.raises(TypeError, match="no complex dtypes"):
        cholesky_inv(jnp.eye(2, dtype=dtype))
    with pytest.raises(TypeError, match="no complex dtypes"):
        jax.jit(cholesky_inv)(jnp.eye(2, dtype=dtype))
    np.testing.assert_array_equal(cholesky_inv(np.eye(2)), np.eye(2))


def test_target_platform(rng):
    cpu = jax.devices("cpu")[0]
    assert _validate.target_platform(np.eye(2), cpu) == "cpu"
    sharding = jax.sharding.SingleDeviceSharding(cpu)
    assert _validate.target_platform(np.eye(2), sharding) == "cpu"
    assert _validate.target_platform(jax.device_put(jnp.eye(2), cpu), None) == "cpu"
