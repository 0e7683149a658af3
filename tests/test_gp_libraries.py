"""``cholesky_inv`` on the Cholesky factors of tinygp, GPJax and scikit-learn.

Each test takes the factor a GP library computed, forms ``K⁻¹`` with
``cholesky_inv`` and compares what it gives with the library's own result:
tinygp's conditioned GPs refitted without each point (LOO), GPJax's
``conjugate_loocv`` (value and gradient), scikit-learn's
``log_marginal_likelihood`` gradient. Each library is optional (the ``gp``
extra); its test is skipped where it is not installed. Also a smoke test of
scripts/gp_errors.py, the table of docs/guides/gaussian-processes.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_close_rel, script

from diffcholinv import cholesky_inv


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0.0, 10.0, n))
    return x, np.sin(x) + 0.1 * rng.standard_normal(n)


def test_tinygp_loo_equals_refits():
    tinygp = pytest.importorskip("tinygp")
    n, noise = 30, 0.05
    x, y = map(jnp.asarray, _data(n))
    kernel = 1.5 * tinygp.kernels.ExpSquared(scale=1.2)
    gp = tinygp.GaussianProcess(kernel, x, diag=noise)
    K_inv = cholesky_inv(gp.solver.scale_tril)
    d = jnp.diagonal(K_inv)
    loo_residual, loo_var = (K_inv @ y) / d, 1.0 / d

    # The definition: refit without point i, predict y_i (noise included).
    def refit(i, keep):
        gp_minus = tinygp.GaussianProcess(kernel, x[keep], diag=noise)
        _, cond = gp_minus.condition(y[keep], x[i][None], diag=noise)
        return cond.loc[0], cond.variance[0]

    keep = np.array([np.delete(np.arange(n), i) for i in range(n)])  # [n, n - 1]
    mean, var = jax.jit(jax.vmap(refit))(jnp.arange(n), keep)
    assert_close_rel(loo_residual, y - mean, "float64")
    assert_close_rel(loo_var, var, "float64")


def test_gpjax_conjugate_loocv_value_and_gradient():
    gpx = pytest.importorskip("gpjax")
    eqx = pytest.importorskip("equinox")
    x, y = _data(50)
    data = gpx.Dataset(X=jnp.asarray(x)[:, None], y=jnp.asarray(y)[:, None])
    prior = gpx.gps.Prior(mean_function=gpx.mean_functions.Constant(), kernel=gpx.kernels.RBF())
    model = prior * gpx.likelihoods.Gaussian(obs_stddev=0.3)

    def loocv(model, data):
        posterior = model.condition(data)
        K_inv = cholesky_inv(posterior.cholesky_factor)  # of K + σ²I (+ jitter)
        r = posterior.residual[:, 0]  # y − m(x)
        d = jnp.diagonal(K_inv)
        loo_mean, loo_var = r - (K_inv @ r) / d, 1.0 / d
        return jnp.sum(jax.scipy.stats.norm.logpdf(r, loo_mean, jnp.sqrt(loo_var)))

    theirs = eqx.filter_jit(eqx.filter_value_and_grad(gpx.objectives.conjugate_loocv))
    ours = eqx.filter_jit(eqx.filter_value_and_grad(loocv))
    (v_theirs, g_theirs), (v_ours, g_ours) = theirs(model, data), ours(model, data)
    assert_close_rel(v_ours, np.asarray(v_theirs), "float64")
    leaves_theirs = jax.tree_util.tree_leaves(g_theirs)
    leaves_ours = jax.tree_util.tree_leaves(g_ours)
    assert len(leaves_ours) == len(leaves_theirs) == 4  # mean, length scale, variance, σ
    for a, b in zip(leaves_ours, leaves_theirs, strict=True):
        assert_close_rel(a, np.asarray(b), "float64")
    assert any(float(jnp.abs(b)) > 1e-3 for b in leaves_theirs)  # a gradient to compare


def test_sklearn_log_marginal_likelihood_gradient():
    gp_module = pytest.importorskip("sklearn.gaussian_process")
    kernels = pytest.importorskip("sklearn.gaussian_process.kernels")
    x, y = _data(40)
    X = x[:, None]
    kernel = kernels.ConstantKernel(1.5) * kernels.RBF(1.2) + kernels.WhiteKernel(0.05)
    # No optimizer: at the optimum the gradient is ~0 and compares nothing.
    gpr = gp_module.GaussianProcessRegressor(kernel, optimizer=None).fit(X, y)
    _, expected = gpr.log_marginal_likelihood(gpr.kernel_.theta, eval_gradient=True)

    _, dK = gpr.kernel_(X, eval_gradient=True)  # [n, n, p], ∂K/∂log θ
    K_inv = cholesky_inv(gpr.L_)
    alpha = K_inv @ y
    # ∂ log p(y) / ∂θ = ½ tr((α αᵀ − K⁻¹) ∂K/∂θ)
    grad = 0.5 * jnp.einsum("ij,jik->k", jnp.outer(alpha, alpha) - K_inv, dK)
    assert expected.shape == (3,) and np.abs(expected).max() > 1e-2
    assert_close_rel(grad, expected, "float64")


def test_gp_errors_script_runs(capsys):
    pytest.importorskip("mpmath")
    mod = script("gp_errors")
    assert mod.main(["--quick"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) == 2 * len(mod.ROWS), out  # through K⁻¹, through L
    # The ordering the guide states at σ² = 1e-6: the predictive variance
    # through L is more accurate than through K⁻¹; each error is a real number.
    errors = {q: mod.measure(30, 10, 1e-6)[q] for q in mod.ROWS}
    assert errors["var"][1] < errors["var"][0]
    assert all(np.isfinite(e).all() for e in errors.values())
