"""``cholesky_inv(forward_mode=True)``: the ``jax.custom_jvp`` form.

Forward mode (``jax.jvp``, ``jacfwd``, ``linearize``), reverse mode by
transposition, second order, against the default op (reverse mode, its own
analytic rule) and finite differences (``check_grads``); the contract
(unread triangle, symmetry, upper, complex, batch, vmap, jit, check). Then
the libraries that differentiate forward, through the opt-in, against the
same code through ``cho_solve``, for ``cholesky_inv`` and ``spd_inv``:
optimistix's Levenberg–Marquardt (its default forward-mode Jacobian) and NumPyro's NUTS with
``forward_mode_differentiation=True`` (both in the ``gp`` extra; skipped
where not installed).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import pytest
from helpers import assert_close_rel, nan_factor
from jax.test_util import check_grads

from diffcholinv import cholesky_inv, spd_inv

fwd = partial(cholesky_inv, forward_mode=True)


def _factor(n: int, dtype: str, seed: int = 0, batch: tuple[int, ...] = ()) -> jax.Array:
    return jnp.asarray(nan_factor(np.random.default_rng(seed), batch, n, dtype), dtype)


def _direction(L: jax.Array, seed: int = 1) -> jax.Array:
    rng = np.random.default_rng(seed)
    d = rng.standard_normal(L.shape)
    if jnp.iscomplexobj(L):
        d = d + 1j * rng.standard_normal(L.shape)
    return jnp.asarray(d, L.dtype)


# n = 5: one block; 70: the blocked loop.
@pytest.mark.parametrize(
    ("n", "dtype"), [(5, "float64"), (70, "float64"), (5, "complex128"), (70, "complex64")]
)
def test_jvp_matches_default_and_finite_differences(n, dtype):
    L, dL = _factor(n, dtype), _direction(_factor(n, dtype))
    C, dC = jax.jit(partial(jax.jvp, fwd))((L,), (dL,))
    assert (cholesky_inv(L) == C).all()  # the same forward pass, bitwise
    assert (dC == jnp.conj(dC.mT)).all()  # the tangent is exactly Hermitian
    # Reverse mode, JAX's transpose of the tangent map, against the default
    # op's own rule (complex: JAX's conjugation convention on both).
    G = _direction(C, seed=2)
    (gL,) = jax.vjp(cholesky_inv, L)[1](G)
    (gF,) = jax.vjp(fwd, L)[1](G)
    assert_close_rel(gF, np.asarray(gL), dtype)
    assert (jnp.triu(gF, 1) == 0).all()
    Lt = jnp.where(jnp.tril(jnp.ones((n, n), bool)), L, 0)
    # Against central differences (float64: the reference is exact enough).
    if dtype != "complex64":
        eps = 1e-6
        dLt = jnp.tril(dL)
        fd = (cholesky_inv(Lt + eps * dLt) - cholesky_inv(Lt - eps * dLt)) / (2 * eps)
        assert_close_rel(dC, np.asarray(fd), "float32")  # O(eps²) truncation


@pytest.mark.parametrize(("dtype", "upper"), [("float64", False), ("complex128", True)])
def test_check_grads_default_modes_second_order(dtype, upper):
    # Default modes: forward and reverse, to second order, finite differences.
    L = jnp.tril(_factor(4, dtype))
    check_grads(partial(fwd, upper=upper), (L.mT if upper else L,), order=2)


@pytest.mark.parametrize("upper", [False, True])
def test_jacfwd_hessian_linearize_equal_default(upper):
    n = 20
    L = _factor(n, "float64", seed=3)
    L = L.mT if upper else L

    def loss(op, L):
        C = op(L, upper=upper)
        return jnp.sum(C * C) + jnp.trace(C)

    J = jax.jacfwd(partial(fwd, upper=upper))(L)
    J0 = jax.jacrev(partial(cholesky_inv, upper=upper))(L)
    assert_close_rel(J, np.asarray(J0), "float64")
    assert not jnp.isnan(J).any()
    unread = ~np.tril(np.ones((n, n), bool))
    unread = unread.T if upper else unread
    assert (J[..., unread] == 0).all()  # no tangent from the unread triangle
    g = jax.grad(partial(loss, fwd))(L)
    assert_close_rel(g, np.asarray(jax.grad(partial(loss, cholesky_inv))(L)), "float64")
    assert (g[unread] == 0).all()
    # linearize, and the linear function it returns, called.
    y, lin = jax.linearize(partial(fwd, upper=upper), L)
    assert (y == cholesky_inv(L, upper=upper)).all()
    dL = _direction(L)
    assert_close_rel(lin(dL), np.asarray(jnp.einsum("ijkl,kl->ij", J0, dL)), "float64")
    H = jax.jit(jax.hessian(partial(loss, fwd)))(L[:8, :8])
    H0 = jax.hessian(partial(loss, cholesky_inv))(L[:8, :8])
    assert_close_rel(H, np.asarray(H0), "float64")


def test_batch_vmap_jit_check():
    L = _factor(12, "float64", batch=(3,))
    dL = _direction(L)
    C, dC = jax.jvp(fwd, (L,), (dL,))
    Cv, dCv = jax.jit(jax.vmap(lambda L, d: jax.jvp(fwd, (L,), (d,))))(L, dL)
    assert_close_rel(dCv, np.asarray(dC), "float64")
    assert (Cv == C).all() and (cholesky_inv(L) == C).all()
    one = jax.jvp(fwd, (L[1],), (dL[1],))[1]
    assert_close_rel(dC[1], np.asarray(one), "float64")
    # check=True still checks, and differentiates forward.
    checked = jax.jvp(lambda L: cholesky_inv(L, check=True, forward_mode=True), (L,), (dL,))[1]
    assert_close_rel(checked, np.asarray(dC), "float64")


def test_products_method_and_row_scaling():
    # Rows of L scaled by powers of two spanning most of the exponent range:
    # C and its tangent scale as 2^-(eᵢ+eⱼ), exactly where in range (the row
    # scaling of the forward pass carries over to the tangent); the same for
    # method="products" (no triangular solve in the program).
    L, dL = _factor(70, "float64", seed=4), _direction(_factor(70, "float64"))
    s = jnp.asarray(2.0 ** np.round(np.linspace(-300, 300, 70)))[:, None]
    for method in ("auto", "products"):
        op = partial(fwd, method=method)
        dC = jax.jvp(op, (L,), (dL,))[1]
        dCs = jax.jvp(op, (L * s,), (dL * s,))[1]
        assert jnp.isfinite(dCs).all()
        assert_close_rel((dCs * s) * s.T, np.asarray(dC), "float64")
        ref = jax.jvp(fwd, (L,), (dL,))[1]
        assert_close_rel(dC, np.asarray(ref), "float64")


def test_forward_mode_must_be_a_bool():
    with pytest.raises(TypeError, match="forward_mode must be a bool"):
        cholesky_inv(jnp.eye(2), forward_mode=1)


# ---- the libraries that differentiate forward, through the opt-in ----


def _gp_data(n: int = 12) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(0.0, 5.0, n))
    return jnp.asarray(x), jnp.asarray(np.sin(x) + 0.1 * rng.standard_normal(n))


def _kernel(theta: jax.Array, x: jax.Array) -> jax.Array:
    amp, scale, noise = jnp.exp(theta[0]), jnp.exp(theta[1]), jnp.exp(theta[2])
    d = x[:, None] - x[None, :]
    return amp * jnp.exp(-0.5 * (d / scale) ** 2) + (noise + 1e-6) * jnp.eye(x.shape[0])


def _inverse(K: jax.Array, L: jax.Array, *, opt_in: bool | str) -> jax.Array:
    """``K⁻¹``: the opt-in of cholesky_inv (from L) or of spd_inv (from K), or cho_solve."""
    if opt_in == "spd_inv":
        return spd_inv(K, forward_mode=True)
    if opt_in:
        return cholesky_inv(L, forward_mode=True)
    return jsl.cho_solve((L, True), jnp.eye(L.shape[-1], dtype=L.dtype))


@pytest.mark.parametrize("op", [True, "spd_inv"], ids=["cholesky_inv", "spd_inv"])
def test_optimistix_levenberg_marquardt_leave_one_out(op):
    optx = pytest.importorskip("optimistix")
    x, y = _gp_data()

    def loo_residual(theta, opt_in):  # y_i minus its prediction from the other points
        K = _kernel(theta, x)
        K_inv = _inverse(K, jnp.linalg.cholesky(K), opt_in=opt_in)
        return (K_inv @ y) / jnp.diagonal(K_inv)

    theta0 = jnp.array([0.0, 0.0, -2.0])
    # The residual's Jacobian, forward mode (what LM computes) against cho_solve.
    J = jax.jacfwd(loo_residual)(theta0, op)
    assert_close_rel(J, np.asarray(jax.jacfwd(loo_residual)(theta0, False)), "float64")
    # The same steps through either inverse (the optimum sends the noise to
    # zero slowly: a fixed number of steps, not convergence, is compared).
    solver = optx.LevenbergMarquardt(rtol=1e-8, atol=1e-8)
    kw = {"max_steps": 8, "throw": False}
    opt = optx.least_squares(loo_residual, solver, theta0, args=op, **kw)
    ref = optx.least_squares(loo_residual, solver, theta0, args=False, **kw)
    assert int(opt.stats["num_steps"]) == int(ref.stats["num_steps"]) > 1
    assert not np.allclose(opt.value, theta0)
    np.testing.assert_allclose(opt.value, ref.value, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("op", [True, "spd_inv"], ids=["cholesky_inv", "spd_inv"])
def test_numpyro_forward_mode_nuts_small_gp(op):
    numpyro = pytest.importorskip("numpyro")
    dist = pytest.importorskip("numpyro.distributions")
    from numpyro.infer import MCMC, NUTS

    x, y = _gp_data(8)

    def model(opt_in):
        theta = numpyro.sample("theta", dist.Normal(jnp.zeros(3), jnp.ones(3)).to_event(1))
        K = _kernel(theta, x)
        L = jnp.linalg.cholesky(K)
        K_inv = _inverse(K, L, opt_in=opt_in)
        logdet = 2 * jnp.sum(jnp.log(jnp.diagonal(L)))
        numpyro.factor("y", -0.5 * (y @ K_inv @ y) - 0.5 * logdet)

    def run(opt_in):
        kernel = NUTS(model, forward_mode_differentiation=True)
        mcmc = MCMC(kernel, num_warmup=15, num_samples=15, progress_bar=False)
        mcmc.run(jax.random.key(0), opt_in)
        return mcmc.get_samples()["theta"]

    got, ref = run(op), run(False)
    assert got.shape == (15, 3) and jnp.isfinite(got).all()
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-8)
