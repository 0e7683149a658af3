"""Property-based tests (hypothesis): random shapes, dtypes, ``upper``, conditioning,
junk in the unread triangle and ``vmap`` axes; diagonals at the edges of the range
(subnormal, near overflow, spanning most of the exponent range).

Profiles (tests/conftest.py): "ci" by default (fixed seed, bounded example
count); ``--hypothesis-profile=long`` for many more random examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from helpers import assert_edges, exact_inverse
from hypothesis import given, note, settings
from hypothesis import strategies as st
from jax.experimental import checkify

from diffcholinv import cholesky_inv

DTYPES = ("float32", "float64", "complex64", "complex128", "float16", "bfloat16")
# Largest log10 κ(A) drawn per dtype: the half precisions are computed in float32
# but rounded to 3 (float16) or 2 (bfloat16) significant digits on the way in.
MAX_LOG_KAPPA = {
    "float32": 3.0,
    "float64": 8.0,
    "complex64": 3.0,
    "complex128": 8.0,
    "float16": 1.0,
    "bfloat16": 0.5,
}
JUNK = ("zeros", "huge", "nan", "inf", "noise")


@dataclass
class Case:
    F: np.ndarray  # the input, junk in the unread triangle
    L: np.ndarray  # the clean lower factor (float64 / complex128), as rounded to the dtype
    dtype: str
    upper: bool
    kappa: float


def _eps(dtype: str) -> float:
    return float(jnp.finfo(jnp.dtype(dtype)).eps)


@st.composite
def cases(draw: st.DrawFn, max_n: int = 64) -> Case:
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(0, max_n))
    # Rank 2-4 (0-2 batch dims, sizes 0-3), at most ~4 matrices of the larger sizes.
    batch = tuple(draw(st.lists(st.integers(0, 3), max_size=2)))
    if n > 16 and int(np.prod(batch)) > 4:
        batch = batch[:1]
    upper = draw(st.booleans())
    log_kappa = draw(st.floats(0.0, MAX_LOG_KAPPA[dtype]))
    junk = draw(st.sampled_from(JUNK))
    seed = draw(st.integers(0, 2**32 - 1))

    rng = np.random.default_rng(seed)
    complex_ = dtype.startswith("complex")
    X = rng.standard_normal((*batch, n, n))
    if complex_:
        X = X + 1j * rng.standard_normal((*batch, n, n))
    Q, R = np.linalg.qr(X)
    d = np.diagonal(R, axis1=-2, axis2=-1)
    Q = Q * (d / np.where(np.abs(d) == 0, 1, np.abs(d)))[..., None, :]
    sigma = np.logspace(0.0, -log_kappa, n)
    A = (Q * sigma[..., None, :]) @ np.conj(np.swapaxes(Q, -1, -2))
    A = (A + np.conj(np.swapaxes(A, -1, -2))) / 2
    L = np.linalg.cholesky(A)
    # The factor the op sees, rounded to the dtype, and back in double (numpy
    # casts through ml_dtypes for bfloat16; no jax compilation here).
    Ld = L.astype(jnp.dtype(dtype))
    L = Ld.astype(np.complex128 if complex_ else np.float64)

    F = np.swapaxes(Ld, -1, -2) if upper else Ld
    if complex_ and upper:
        F = np.conj(F)
    unread = np.tril(np.ones((n, n), bool), -1) if upper else np.triu(np.ones((n, n), bool), 1)
    fill = {
        "zeros": 0.0,
        "huge": 1e30,
        "nan": np.nan,
        "inf": -np.inf,
        "noise": rng.standard_normal((*batch, n, n)),
    }[junk]
    with np.errstate(over="ignore"):  # 1e30 is inf in float16
        F = np.where(unread, np.asarray(fill).astype(F.dtype), F)
    note(f"dtype={dtype} shape={F.shape} upper={upper} kappa=1e{log_kappa:.2f} junk={junk}")
    return Case(F=F, L=L, dtype=dtype, upper=upper, kappa=10.0**log_kappa)


def _reference(L: np.ndarray) -> np.ndarray:
    """``numpy.linalg.inv(L Lᴴ)`` in double precision."""
    A = L @ np.conj(np.swapaxes(L, -1, -2))
    return np.linalg.inv(A) if A.size else np.zeros_like(A)


@given(cases())
def test_value_hermitian_jit_and_vmap(case: Case):
    C = cholesky_inv(case.F, upper=case.upper)
    assert C.shape == case.F.shape
    assert C.dtype == jnp.dtype(case.dtype)

    # Value: normwise relative error within c·κ·ε of numpy.linalg.inv (the
    # reference itself is good to ~κ·1e-16).
    expected = _reference(case.L)
    Cd = np.asarray(C.astype(expected.dtype))
    if expected.size:
        err = np.max(np.abs(Cd - expected)) / np.max(np.abs(expected))
        tol = 16 * case.kappa * (_eps(case.dtype) + 1e-15)
        assert err <= tol, f"error {err:.3e} > {tol:.3e}"

    # Exactly symmetric / Hermitian, diagonal exactly real.
    Ch = np.conj(np.swapaxes(np.asarray(C), -1, -2))
    np.testing.assert_array_equal(np.asarray(C), Ch)

    # jit and non-jit agree bitwise (CPU).
    Cj = jax.jit(cholesky_inv, static_argnames="upper")(case.F, upper=case.upper)
    np.testing.assert_array_equal(np.asarray(Cj), np.asarray(C))


@given(cases(max_n=24), st.data())
def test_vmap_over_a_random_axis(case: Case, data: st.DataObject):
    F = case.F
    if F.ndim < 3:
        F = F[None]
    # The batch axis 0 moved to a random position, matrix axes included.
    dest = data.draw(st.integers(0, F.ndim - 1), label="vmap axis")
    moved = np.moveaxis(F, 0, dest)
    out = jax.vmap(lambda x: cholesky_inv(x, upper=case.upper), in_axes=dest, out_axes=0)(moved)
    direct = cholesky_inv(F, upper=case.upper)
    assert out.shape == direct.shape
    a = np.asarray(out.astype(jnp.complex128))
    b = np.asarray(direct.astype(jnp.complex128))
    scale = max(float(np.max(np.abs(b))), 1.0) if b.size else 1.0
    np.testing.assert_allclose(a, b, rtol=0, atol=4 * _eps(case.dtype) * case.kappa * scale)


@given(cases(max_n=8))
def test_gradient_zero_on_unread_triangle(case: Case):
    F = jnp.asarray(case.F)
    rng = np.random.default_rng(0)
    W = rng.standard_normal(F.shape)
    if case.dtype.startswith("complex"):
        W = W + 1j * rng.standard_normal(F.shape)
    W = jnp.asarray(W).astype(case.dtype)

    def loss(x):
        return jnp.real(jnp.sum(W * cholesky_inv(x, upper=case.upper))).astype(jnp.float32)

    g = jax.grad(loss)(F)
    assert g.shape == F.shape
    assert g.dtype == F.dtype
    n = F.shape[-1]
    unread = np.tril(np.ones((n, n), bool), -1) if case.upper else np.triu(np.ones((n, n), bool), 1)
    assert not np.any(np.asarray(jnp.where(unread, g, 0)) != 0)
    # Junk (nan, inf) in the unread triangle does not reach the gradient.
    if F.size and case.kappa < 1e3:
        gg = np.asarray(g.astype(jnp.complex128))
        assert np.all(np.isfinite(gg))


# ---- the edges of the range ---------------------------------------------------
# log10 of the row scales drawn per dtype: subnormal, near overflow (leaving room
# for |L_ij| ≤ 4 |d_i|), and the normal range between.
EDGE_DTYPES = ("float64", "float32", "complex128")
EDGE_LOG10 = {
    "float64": {"subnormal": (-323.0, -308.5), "huge": (300.0, 307.5), "normal": (-300.0, 300.0)},
    "float32": {"subnormal": (-44.5, -38.5), "huge": (34.0, 37.5), "normal": (-36.0, 36.0)},
}


@st.composite
def edge_cases(draw: st.DrawFn, max_n: int = 10) -> tuple[np.ndarray, str, bool]:
    """``L = D Lb``: a well-conditioned factor ``Lb`` with its rows scaled by ``D``.

    Each diagonal entry of ``D`` is drawn from the subnormal range, from near
    overflow or from anywhere in the normal range, so one factor can hold all
    three, and its diagonal can span the whole exponent range. ``A⁻¹ =
    D⁻¹ (Lb Lbᴴ)⁻¹ D⁻¹`` then has entries that overflow, underflow and are in
    range side by side.
    """
    dtype = draw(st.sampled_from(EDGE_DTYPES))
    n = draw(st.integers(1, max_n))
    upper = draw(st.booleans())
    ranges = EDGE_LOG10["float32" if dtype == "float32" else "float64"]
    kinds = draw(st.lists(st.sampled_from(list(ranges)), min_size=n, max_size=n))
    logs = [draw(st.floats(*ranges[k]), label=f"log10 d[{i}] ({k})") for i, k in enumerate(kinds)]
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n))
    Lb = np.linalg.cholesky(X @ X.T / n + np.eye(n))
    if dtype.startswith("complex"):
        Lb = Lb + 0.3j * np.tril(rng.standard_normal((n, n)), -1)
    with np.errstate(under="ignore"):
        d = 10.0 ** np.array(logs)
        L = (d[:, None] * Lb).astype(dtype)
    note(f"dtype={dtype} n={n} upper={upper} kinds={kinds}")
    return L, dtype, upper


@given(edge_cases())
def test_edges_of_the_range(case: tuple[np.ndarray, str, bool]):
    # No nan, ±inf exactly where the exact A⁻¹ (mpmath) overflows, 0 where it
    # underflows, the right value elsewhere; bitwise Hermitian.
    L, dtype, upper = case
    F = np.conj(L.T) if upper else L
    C = np.asarray(cholesky_inv(F, upper=upper))
    assert_edges(C, *exact_inverse(L, dtype), dtype)
    np.testing.assert_array_equal(C, np.conj(C.T))


@settings(max_examples=5)
@given(
    batch=st.lists(st.integers(1, 3), min_size=1, max_size=2).map(tuple),
    n=st.integers(1, 5),
    upper=st.booleans(),
    dtype=st.sampled_from(("float32", "float64", "complex128")),
    bad=st.sampled_from((0.0, np.nan, np.inf)),
    data=st.data(),
)
def test_checked_mode_names_the_planted_entry(batch, n, upper, dtype, bad, data):
    # One bad entry planted at a random batch index and diagonal position i:
    # the error names exactly that full index; checkify inside a vmap over the
    # leading batch axis names its position there as "at mapped index".
    where = tuple(data.draw(st.integers(0, b - 1), label="batch index") for b in batch)
    i = data.draw(st.integers(0, n - 1), label="i")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    X = rng.standard_normal((*batch, n, n))
    L = np.linalg.cholesky(X @ np.swapaxes(X, -1, -2) / n + np.eye(n))
    L = (np.swapaxes(L, -1, -2) if upper else L).astype(dtype)
    L[(*where, i, i)] = bad
    note(f"L[{where}, {i}, {i}] = {bad}")

    def f(x):
        return cholesky_inv(x, upper=upper, check=True)

    msg = checkify.checkify(f)(L)[0].get()
    assert msg is not None
    index = ", ".join(map(str, (*where, i, i)))
    assert f"of shape {L.shape} has L[{index}] = " in msg, msg
    mapped = jax.vmap(checkify.checkify(f))(L)[0].get()
    inner = ", ".join(map(str, (*where[1:], i, i)))
    assert mapped.startswith(f"at mapped index {where[0]}: "), mapped
    assert mapped.count("at mapped index") == 1 and f"has L[{inner}] = " in mapped, mapped
