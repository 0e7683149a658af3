"""Leave-one-out cross-validation of a GP from ``diag(K⁻¹)``, with gradients.

For a GP with fixed hyperparameters the leave-one-out (LOO) predictive
distribution of every training point comes from one inverse (Rasmussen &
Williams 2006, eq. 5.12)::

    μᵢ − yᵢ = −[K⁻¹y]ᵢ / [K⁻¹]ᵢᵢ,    σᵢ² = 1 / [K⁻¹]ᵢᵢ,

so ``K⁻¹ = spd_inv(K)`` replaces ``n`` refits. This is where ``K⁻¹``
is the right tool: its diagonal is the quantity, and no solve gives it
without forming the inverse. ``spd_inv`` factorises ``K`` inside and its
gradient in ``K`` is two matrix products (``−K⁻¹ K̄ K⁻¹``, symmetrised), not
the Cholesky's backward pass; ``K⁻¹ y`` is then one product with the same
inverse.
The example

1. checks these against brute-force refits (scikit-learn's
   ``GaussianProcessRegressor`` fitted without point ``i``, same
   hyperparameters) on a subset of points;
2. chooses the hyperparameters of an RBF + white-noise kernel (tinygp's
   ``ExpSquared`` with the Euclidean distance) by maximizing the LOO log
   predictive probability (R&W eq. 5.10) ``Σᵢ log p(yᵢ | y₋ᵢ, θ)`` with
   ``optax.lbfgs`` and ``jax.grad`` through ``spd_inv``, and compares
   it with the maximum-marginal-likelihood choice of scikit-learn;
3. prints one line comparing the LOO predictive means and standard
   deviations at the chosen hyperparameters with the brute-force refits,
   and saves a figure into ``--out``: LOO predictions against the
   observations, and the LOO objective over the optimizer steps.

Data: scikit-learn's diabetes set (442 patients, 10 features, ships with
scikit-learn). Run ``python examples/loo_cv.py`` (``--quick`` for a tiny
subset, as the tests do).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

import _common  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import tinygp  # noqa: E402

from diffcholinv import spd_inv  # noqa: E402

# log [signal variance, length scale, noise variance]: scikit-learn's theta order.
THETA0 = np.log([1.0, 3.0, 0.5])


def load_diabetes(quick: bool) -> tuple[np.ndarray, np.ndarray]:
    """Standardized features and target of scikit-learn's diabetes data."""
    from sklearn.datasets import load_diabetes as load

    X, y = load(return_X_y=True)
    if quick:
        X, y = X[:60], y[:60]
    X = (X - X.mean(0)) / X.std(0)
    y = (y - y.mean()) / y.std()
    return X, y


def k_train(theta: jax.Array, X: jax.Array) -> jax.Array:
    """``σ_f² exp(−½ |x − x'|²/ℓ²) + (σ_n² + jitter) I``."""
    p = jnp.exp(theta)
    k = p[0] * tinygp.kernels.ExpSquared(scale=p[1], distance=tinygp.kernels.distance.L2Distance())
    return k(X, X) + (p[2] + _common.JITTER) * jnp.eye(X.shape[0])


def loo_predictions(theta: jax.Array, X: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """LOO predictive means and variances of all points from one factor (R&W eq. 5.12)."""
    K_inv = spd_inv(k_train(theta, X))  # diag(K⁻¹): the inverse of K is the quantity
    d = jnp.diag(K_inv)
    alpha = K_inv @ y  # K⁻¹ y from the same inverse: no second factorisation
    return y - alpha / d, 1.0 / d


def loo_log_predictive(theta: jax.Array, X: jax.Array, y: jax.Array) -> jax.Array:
    """``Σᵢ log p(yᵢ | X, y₋ᵢ, θ)`` (R&W eq. 5.10–5.11)."""
    mu, var = loo_predictions(theta, X, y)
    return jnp.sum(-0.5 * jnp.log(var) - 0.5 * (y - mu) ** 2 / var - 0.5 * _common.LOG_2PI)


def sklearn_gp(theta: np.ndarray, optimize: bool) -> Any:
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    p = np.exp(theta)
    kernel = ConstantKernel(p[0]) * RBF(p[1]) + WhiteKernel(p[2])
    assert np.allclose(kernel.theta, theta), "hyperparameter order differs from scikit-learn's"
    return GaussianProcessRegressor(
        kernel=kernel, alpha=_common.JITTER, optimizer="fmin_l_bfgs_b" if optimize else None
    )


def brute_force_loo(
    theta: np.ndarray, X: np.ndarray, y: np.ndarray, idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """LOO means and standard deviations at ``idx`` by refitting scikit-learn without each."""
    mu, std = np.empty(idx.size), np.empty(idx.size)
    for k, i in enumerate(idx):
        keep = np.arange(y.size) != i
        gp = sklearn_gp(theta, optimize=False).fit(X[keep], y[keep])
        m, s = gp.predict(X[i : i + 1], return_std=True)
        mu[k], std[k] = m[0], s[0]
    return mu, std


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the example; returns the numbers it printed (the tests check them)."""
    p = _common.parser(__doc__, "default 100; 10 with --quick")
    p.add_argument(
        "--checks", type=int, default=None, help="points checked by brute force (default 30)"
    )
    args = p.parse_args(argv)
    steps = args.steps if args.steps is not None else (10 if args.quick else 100)
    checks = args.checks if args.checks is not None else (6 if args.quick else 30)
    X, y = load_diabetes(args.quick)
    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    n, d = X.shape
    print(f"diabetes: {n} patients, {d} features (standardized)")
    idx = np.random.default_rng(0).choice(n, size=min(checks, n), replace=False)

    # 1. diag(K⁻¹) against brute-force refits, at the starting hyperparameters.
    loo_fn = jax.jit(loo_predictions)
    mu, var = jax.block_until_ready(loo_fn(jnp.asarray(THETA0), Xj, yj))
    t0 = time.perf_counter()
    mu, var = jax.block_until_ready(loo_fn(jnp.asarray(THETA0), Xj, yj))
    time_all = time.perf_counter() - t0
    t0 = time.perf_counter()
    mu_bf, std_bf = brute_force_loo(THETA0, X, y, idx)
    time_bf = time.perf_counter() - t0
    loo_rel = _common.agreement(
        np.asarray(mu)[idx], np.sqrt(np.asarray(var))[idx], mu_bf, std_bf, show=False
    )
    print(
        f"at the start, LOO from diag(K⁻¹) vs {idx.size} brute-force scikit-learn refits: "
        f"max rel. diff {loo_rel:.1e}\n  all {n} LOO predictions from one spd_inv: "
        f"{time_all * 1e3:.1f} ms; brute force: {time_bf / idx.size * 1e3:.1f} ms a point "
        f"(≈ {time_bf / idx.size * n:.1f} s for all {n})"
    )

    # 2. Hyperparameters by maximizing the LOO log predictive probability.
    fit = _common.minimize_lbfgs(
        lambda th: -loo_log_predictive(th, Xj, yj),
        THETA0,
        max_steps=steps,
        progress=not args.no_progress,
    )
    theta = jax.block_until_ready(fit["theta"])
    theta_loo = np.asarray(theta)
    history = [-v for v in fit["history"]]  # the LOO log predictive at each iterate

    # ... and by maximizing the marginal likelihood (scikit-learn), same start.
    t0 = time.perf_counter()
    gp_ml = sklearn_gp(THETA0, optimize=True).fit(X, y)
    time_ml = time.perf_counter() - t0
    theta_ml = gp_ml.kernel_.theta

    def summary(th: np.ndarray) -> tuple[float, float, float]:
        m, _ = loo_fn(jnp.asarray(th), Xj, yj)
        rmse = float(np.sqrt(np.mean((np.asarray(m) - y) ** 2)))
        lpp = float(loo_log_predictive(jnp.asarray(th), Xj, yj))
        return lpp, rmse, float(gp_ml.log_marginal_likelihood(th))

    s_loo, s_ml = summary(theta_loo), summary(theta_ml)
    print(f"\n{'':<28}{'max LOO (ours)':>16}{'max LML (sklearn)':>19}")
    for row, a, b in zip(
        ("LOO log predictive", "LOO RMSE (standardized)", "log marginal likelihood"),
        s_loo,
        s_ml,
        strict=True,
    ):
        print(f"{row:<28}{a:>16.4f}{b:>19.4f}")
    p_loo, p_ml = np.exp(theta_loo), np.exp(theta_ml)
    for name, a, b in zip(
        ("signal variance", "length scale", "noise variance"), p_loo, p_ml, strict=True
    ):
        print(f"{name:<28}{a:>16.4g}{b:>19.4g}")
    print(f"{'wall time [s]':<28}{fit['seconds']:>16.2f}{time_ml:>19.2f}")
    print(
        f"ours: {len(history)} L-BFGS steps, the step compiled {fit['compiles']}x (first step "
        f"{fit['first_step_s']:.2f} s); scikit-learn: L-BFGS-B on the marginal likelihood"
    )

    # 3. The LOO predictions at the chosen θ against brute-force refits there.
    mu, var = loo_fn(theta, Xj, yj)
    mu_bf2, std_bf2 = brute_force_loo(theta_loo, X, y, idx)
    pred_rel = _common.agreement(
        np.asarray(mu)[idx], np.sqrt(np.asarray(var))[idx], mu_bf2, std_bf2
    )
    if not args.no_plot:
        png = plot(y, np.asarray(mu), np.asarray(var), idx, mu_bf2, history, args.out)
        print(f"saved {png}")
    return {
        "n": n,
        "loo_rel": loo_rel,
        "pred_rel": pred_rel,
        "history": history,
        "compiles": fit["compiles"],
        "loo_lpp_ours": s_loo[0],
        "loo_lpp_ml": s_ml[0],
        "lml_ours": s_loo[2],
        "lml_ml": s_ml[2],
        "time_all": time_all,
        "time_bf_per_point": time_bf / idx.size,
    }


def plot(
    y: np.ndarray,
    mu: np.ndarray,
    var: np.ndarray,
    idx: np.ndarray,
    mu_bf: np.ndarray,
    history: list[float],
    out: Path,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(
        1, 2, figsize=(8, 3.6), dpi=100, gridspec_kw={"width_ratios": [3, 2]}
    )
    main = ax.errorbar(
        y,
        mu,
        yerr=2 * np.sqrt(var),
        fmt=".",
        ms=3,
        color="C0",
        ecolor=(0.12, 0.47, 0.71, 0.25),
        lw=0.5,
        label=f"LOO mean ±2σ, all {y.size} (diag K⁻¹)",
    )
    (refit,) = ax.plot(y[idx], mu_bf, "x", color="C3", ms=5, label="brute-force refit")
    lim = [min(y.min(), mu.min()), max(y.max(), mu.max())]
    (diag,) = ax.plot(lim, lim, color="0.4", lw=0.8, ls="--", label="prediction = observation")
    ax.set_xlabel("observed (standardized)")
    ax.set_ylabel("LOO prediction ±2σ")
    ax.set_title("LOO from diag(K⁻¹) at the chosen θ")
    ax.legend(handles=[main, refit, diag], loc="upper left", frameon=False, fontsize=8)
    ax2.plot(np.arange(1, len(history) + 1), history, color="C0")
    ax2.set_xlabel("optax.lbfgs step")
    ax2.set_ylabel("LOO log predictive")
    ax2.set_title("training on the LOO objective")
    fig.tight_layout()
    return _common.save(fig, out, "loo_cv.png")


if __name__ == "__main__":
    main()
