"""Leave-one-out cross-validation of a GP from ``diag(K⁻¹)``, with gradients.

For a GP with fixed hyperparameters the leave-one-out (LOO) predictive
distribution of every training point comes from one inverse (Rasmussen &
Williams 2006, eq. 5.12)::

    μᵢ − yᵢ = −[K⁻¹y]ᵢ / [K⁻¹]ᵢᵢ,    σᵢ² = 1 / [K⁻¹]ᵢᵢ,

so ``K⁻¹ = cholesky_inv(L)`` replaces ``n`` refits. The example

1. checks these against brute-force refits (scikit-learn's
   ``GaussianProcessRegressor`` fitted without point ``i``, same
   hyperparameters) on a subset of points;
2. chooses the hyperparameters of an RBF + white-noise kernel by
   maximizing the LOO log predictive probability (R&W eq. 5.10)
   ``Σᵢ log p(yᵢ | y₋ᵢ, θ)`` with ``optax.lbfgs`` and ``jax.grad`` through
   ``cholesky_inv``, and compares it with the maximum-marginal-likelihood
   choice of scikit-learn;
3. saves a figure: LOO predictions against the observations, and the LOO
   objective over the optimizer steps.

Data: scikit-learn's diabetes set (442 patients, 10 features, ships with
scikit-learn). Run ``python examples/loo_cv.py`` (``--quick`` for a tiny
subset, as the tests do).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from tqdm import tqdm  # noqa: E402

from diffcholinv import cholesky_inv  # noqa: E402

JITTER = 1e-10  # scikit-learn's default ``alpha``
FIGURES = Path(__file__).resolve().parents[1] / "docs" / "images"
_LOG_2PI = math.log(2.0 * math.pi)


def load_diabetes(quick: bool) -> tuple[np.ndarray, np.ndarray]:
    """Standardized features and target of scikit-learn's diabetes data."""
    from sklearn.datasets import load_diabetes as load

    X, y = load(return_X_y=True)
    if quick:
        X, y = X[:60], y[:60]
    X = (X - X.mean(0)) / X.std(0)
    y = (y - y.mean()) / y.std()
    return X, y


# log [signal variance, length scale, noise variance]: scikit-learn's theta order.
THETA0 = np.log([1.0, 3.0, 0.5])


def k_train(theta: jax.Array, X: jax.Array) -> jax.Array:
    """``σ_f² exp(−½ |x − x'|²/ℓ²) + (σ_n² + jitter) I``."""
    p = jnp.exp(theta)
    Z = X / p[1]
    sq = jnp.sum(Z * Z, axis=1)
    d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * Z @ Z.T, 0.0)
    return p[0] * jnp.exp(-0.5 * d2) + (p[-1] + JITTER) * jnp.eye(X.shape[0])


def loo_predictions(theta: jax.Array, X: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """LOO predictive means and variances of all points from one ``cholesky_inv`` (R&W 5.12)."""
    K_inv = cholesky_inv(jnp.linalg.cholesky(k_train(theta, X)))
    d = jnp.diag(K_inv)
    return y - (K_inv @ y) / d, 1.0 / d


def loo_log_predictive(theta: jax.Array, X: jax.Array, y: jax.Array) -> jax.Array:
    """``Σᵢ log p(yᵢ | X, y₋ᵢ, θ)`` (R&W eq. 5.10–5.11)."""
    mu, var = loo_predictions(theta, X, y)
    return jnp.sum(-0.5 * jnp.log(var) - 0.5 * (y - mu) ** 2 / var - 0.5 * _LOG_2PI)


def sklearn_gp(theta: np.ndarray, optimize: bool) -> Any:
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    p = np.exp(theta)
    kernel = ConstantKernel(p[0]) * RBF(p[1]) + WhiteKernel(p[2])
    assert np.allclose(kernel.theta, theta), "hyperparameter order differs from scikit-learn's"
    return GaussianProcessRegressor(
        kernel=kernel, alpha=JITTER, optimizer="fmin_l_bfgs_b" if optimize else None
    )


def brute_force_loo(
    theta: np.ndarray, X: np.ndarray, y: np.ndarray, idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """LOO means and variances at ``idx`` by refitting scikit-learn without each point."""
    mu, var = np.empty(idx.size), np.empty(idx.size)
    for k, i in enumerate(idx):
        keep = np.arange(y.size) != i
        gp = sklearn_gp(theta, optimize=False).fit(X[keep], y[keep])
        m, s = gp.predict(X[i : i + 1], return_std=True)
        mu[k], var[k] = m[0], s[0] ** 2
    return mu, var


def maximize_loo(
    X: jax.Array, y: jax.Array, theta0: np.ndarray, max_steps: int, progress: bool
) -> tuple[jax.Array, list[float], float]:
    """``optax.lbfgs`` on ``−LOO log predictive``.

    Returns θ, the objective per step and the seconds of the first (compiling) step.
    """

    def loss(theta: jax.Array) -> jax.Array:
        return -loo_log_predictive(theta, X, y)

    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    @jax.jit
    def step(theta: jax.Array, state: Any) -> tuple[jax.Array, Any, jax.Array, jax.Array]:
        value, grad = value_and_grad(theta, state=state)
        updates, state = opt.update(grad, state, theta, value=value, grad=grad, value_fn=loss)
        return optax.apply_updates(theta, updates), state, value, jnp.max(jnp.abs(grad))

    theta = jnp.asarray(theta0)
    state = opt.init(theta)
    history: list[float] = []
    bar = tqdm(range(max_steps), desc="optax.lbfgs", unit="step", disable=not progress)
    t0 = time.perf_counter()
    first = 0.0
    for _ in bar:
        new_theta, state, value, gmax = step(theta, state)
        history.append(-float(value))
        first = first or time.perf_counter() - t0
        bar.set_postfix(loo_lpp=f"{history[-1]:.4f}", grad=f"{float(gmax):.1e}")
        if float(gmax) < 1e-5:
            break
        theta = new_theta
    bar.close()
    return theta, history, first


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny subset and few steps (tests)")
    p.add_argument("--steps", type=int, default=None, help="most optimizer steps (default 100)")
    p.add_argument(
        "--checks", type=int, default=None, help="points checked by brute force (default 30)"
    )
    p.add_argument(
        "--out", type=Path, default=FIGURES, help="folder for the PNG (default docs/images)"
    )
    p.add_argument("--no-plot", action="store_true", help="skip the figure")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the example; returns the numbers it printed (the tests check them)."""
    args = _parse(argv)
    steps = args.steps if args.steps is not None else (10 if args.quick else 100)
    checks = args.checks if args.checks is not None else (6 if args.quick else 30)
    X, y = load_diabetes(args.quick)
    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    n, d = X.shape
    print(f"diabetes: {n} patients, {d} features (standardized)")
    theta0 = THETA0
    idx = np.random.default_rng(0).choice(n, size=min(checks, n), replace=False)

    # 1. diag(K⁻¹) against brute-force refits, at the starting hyperparameters.
    loo_fn = jax.jit(loo_predictions)
    mu, var = jax.block_until_ready(loo_fn(jnp.asarray(theta0), Xj, yj))
    t0 = time.perf_counter()
    mu, var = jax.block_until_ready(loo_fn(jnp.asarray(theta0), Xj, yj))
    time_all = time.perf_counter() - t0
    t0 = time.perf_counter()
    mu_bf, var_bf = brute_force_loo(theta0, X, y, idx)
    time_bf = time.perf_counter() - t0
    loo_rel = max(
        float(np.max(np.abs(np.asarray(mu)[idx] - mu_bf)) / np.max(np.abs(mu_bf))),
        float(np.max(np.abs(np.asarray(var)[idx] - var_bf) / var_bf)),
    )
    print(
        f"LOO from diag(K⁻¹) vs {idx.size} brute-force scikit-learn refits: max rel. diff "
        f"{loo_rel:.1e}\n  all {n} LOO predictions from one cholesky_inv: "
        f"{time_all * 1e3:.1f} ms; brute force: {time_bf / idx.size * 1e3:.1f} ms a point "
        f"(≈ {time_bf / idx.size * n:.1f} s for all {n})"
    )

    # 2. Hyperparameters by maximizing the LOO log predictive probability.
    t0 = time.perf_counter()
    theta, history, time_compile = maximize_loo(
        Xj, yj, theta0, steps, progress=not args.no_progress
    )
    theta = jax.block_until_ready(theta)
    time_loo = time.perf_counter() - t0
    theta_loo = np.asarray(theta)

    # ... and by maximizing the marginal likelihood (scikit-learn), same start.
    t0 = time.perf_counter()
    gp_ml = sklearn_gp(theta0, optimize=True).fit(X, y)
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
    print(f"{'wall time [s]':<28}{time_loo:>16.2f}{time_ml:>19.2f}")
    print(
        f"ours: {len(history)} L-BFGS steps, the first (compilation) {time_compile:.2f} s; "
        f"scikit-learn: L-BFGS-B on the marginal likelihood"
    )

    # The LOO predictions at the chosen θ, checked by brute force once more.
    mu, var = loo_fn(theta, Xj, yj)
    mu_bf2, var_bf2 = brute_force_loo(theta_loo, X, y, idx)
    loo_rel_final = max(
        float(np.max(np.abs(np.asarray(mu)[idx] - mu_bf2)) / np.max(np.abs(mu_bf2))),
        float(np.max(np.abs(np.asarray(var)[idx] - var_bf2) / var_bf2)),
    )
    print(f"at the chosen θ, LOO vs brute force: max rel. diff {loo_rel_final:.1e}")
    if not args.no_plot:
        png = plot(y, np.asarray(mu), np.asarray(var), idx, mu_bf2, history, args.out)
        print(f"saved {png}")
    return {
        "n": n,
        "loo_rel": loo_rel,
        "loo_rel_final": loo_rel_final,
        "history": history,
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
    ax.errorbar(
        y, mu, yerr=2 * np.sqrt(var), fmt=".", ms=3, color="C0", ecolor="C0", alpha=0.25, lw=0.5
    )
    ax.plot(y[idx], mu_bf, "x", color="C3", ms=5, label="brute-force refit")
    lim = [min(y.min(), mu.min()), max(y.max(), mu.max())]
    ax.plot(lim, lim, color="0.4", lw=0.8, ls="--")
    ax.set_xlabel("observed (standardized)")
    ax.set_ylabel("LOO prediction ±2σ")
    ax.set_title("LOO from diag(K⁻¹)")
    ax.legend(loc="upper left", frameon=False)
    ax2.plot(np.arange(1, len(history) + 1), history, color="C0")
    ax2.set_xlabel("optax.lbfgs step")
    ax2.set_ylabel("LOO log predictive")
    ax2.set_title("training on the LOO objective")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    png = out / "loo_cv.png"
    fig.savefig(png)
    plt.close(fig)
    return png


if __name__ == "__main__":
    main()
