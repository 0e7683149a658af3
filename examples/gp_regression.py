"""Exact Gaussian-process regression on the Mauna Loa CO2 record.

The kernel is the one of Rasmussen & Williams (2006, §5.4.3), built from
tinygp's kernels: a long-term RBF trend, a periodic seasonal term with an RBF
decay, a rational-quadratic term for medium-term irregularities, and a short
RBF plus white noise. Its 11 hyperparameters live in log space and are
trained with ``optax.lbfgs`` (zoom line search) on the negative log marginal
likelihood

    NLML(θ) = ½ yᵀ K⁻¹ y + Σᵢ log Lᵢᵢ + (n/2) log 2π,   K = L Lᵀ.

Each quantity with the tool that is right for it (``examples/_common.py``):

* The NLML and its gradient, ``∂NLML/∂θⱼ = ½ tr((K⁻¹ − ααᵀ) ∂K/∂θⱼ)``:
  the trace term needs ``K⁻¹`` itself, so ``K⁻¹, log det K =
  spd_inv_logdet(K)`` (one factorisation inside), ``α = K⁻¹ y``; its
  backward pass in ``K`` is products only and is the trace formula, and one
  vector-Jacobian product of the kernel builder gives all 11 components.
  Checked against ``jax.grad`` of the NLML through the factor and solves,
  and against scikit-learn's gradient.
* Predictions: the mean ``K*ᵀ α`` by ``cho_solve``; the variance
  ``k(x*, x*) − ‖V‖²`` with ``V = L⁻¹ K*`` by one triangular solve, not
  ``K*ᵀ K⁻¹ K*`` through ``K⁻¹``, which cancels the rounding of ``K⁻¹`` into
  the result (relative error of the variance 6.6e-6 at noise 1e-4 and 1.4
  at noise 1e-6 that way, 4.9e-12 and 5.9e-10 through the solve; measured
  by ``python scripts/gp_errors.py``).

Then it fits scikit-learn's ``GaussianProcessRegressor`` on the same kernel,
data and starting point, prints both final LML values (each evaluated by both
implementations), the learned hyperparameters side by side, the wall times,
and one line comparing the predictive mean and standard deviation with
scikit-learn's at the same hyperparameters, and saves a figure of the data,
the predictive mean and the ±2σ band of new observations, extrapolated
beyond the data, into ``--out``.

Run ``python examples/gp_regression.py`` (``--help`` for the options;
``--quick`` runs a tiny subset, as the tests do).
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

PERIOD = 1.0  # one year, fixed

# (name, starting value) in the order of scikit-learn's ``kernel.theta``.
HYPERPARAMETERS: tuple[tuple[str, float], ...] = (
    ("trend variance", 50.0**2),
    ("trend length", 50.0),
    ("seasonal variance", 2.0**2),
    ("seasonal decay length", 100.0),
    ("seasonal smoothness", 1.0),
    ("irregular variance", 0.5**2),
    ("irregular alpha", 1.0),
    ("irregular length", 1.0),
    ("noise-RBF variance", 0.1**2),
    ("noise-RBF length", 0.1),
    ("white noise variance", 0.1**2),
)
THETA0 = np.log([v for _, v in HYPERPARAMETERS])


# --------------------------------------------------------------------------- data
def load_co2(quick: bool) -> tuple[np.ndarray, np.ndarray]:
    """Monthly means of the weekly Mauna Loa record (1958-2001), in fractional years."""
    from statsmodels.datasets import co2

    s = co2.load_pandas().data["co2"].resample("MS").mean().dropna()
    t = (s.index.year + (s.index.month - 1) / 12.0).to_numpy(np.float64)
    y = s.to_numpy(np.float64)
    if quick:  # every 6th month: ~90 points, same span
        t, y = t[::6], y[::6]
    return t, y


# ------------------------------------------------------------------------ kernel
def kernel(theta: jax.Array) -> tinygp.kernels.Kernel:
    """The kernel without its white-noise term, as tinygp kernels (scikit-learn's formulas)."""
    p = jnp.exp(theta)
    k = tinygp.kernels
    return (
        p[0] * k.ExpSquared(scale=p[1])
        + p[2]
        * k.ExpSquared(scale=p[3])
        * k.ExpSineSquared(scale=PERIOD, gamma=2.0 / p[4] ** 2)  # sklearn: exp(−2 sin²/ℓ²)
        + p[5] * k.RationalQuadratic(scale=p[7], alpha=p[6])
        + p[8] * k.ExpSquared(scale=p[9])
    )


def k_train(theta: jax.Array, x: jax.Array) -> jax.Array:
    """``K = k(x, x) + (σ²_white + jitter) I``."""
    return kernel(theta)(x, x) + (jnp.exp(theta[10]) + _common.JITTER) * jnp.eye(x.size)


nlml = _common.nlml_trace(k_train)  # jax.grad of it: the trace formula, K⁻¹ by spd_inv_logdet
nlml_reference = _common.nlml_autodiff(k_train)  # jax.grad through the factor and solves


def predict(
    theta: jax.Array, x: jax.Array, y: jax.Array, x_new: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Predictive mean and standard deviation of new observations (noise included), by solves."""
    k = kernel(theta)
    L = jnp.linalg.cholesky(k_train(theta, x))
    return _common.predict(L, y, k(x, x_new), k(x_new) + jnp.exp(theta[10]))


def sklearn_gp(theta: np.ndarray, optimize: bool) -> Any:
    """scikit-learn's GP with the same kernel at ``theta``; L-BFGS-B from it if ``optimize``."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import (
        RBF,
        ConstantKernel,
        ExpSineSquared,
        RationalQuadratic,
        WhiteKernel,
    )

    p = np.exp(theta)
    k = (
        ConstantKernel(p[0]) * RBF(p[1])
        + ConstantKernel(p[2])
        * RBF(p[3])
        * ExpSineSquared(p[4], periodicity=PERIOD, periodicity_bounds="fixed")
        + ConstantKernel(p[5]) * RationalQuadratic(length_scale=p[7], alpha=p[6])
        + (ConstantKernel(p[8]) * RBF(p[9]) + WhiteKernel(p[10]))
    )
    assert np.allclose(k.theta, theta), "hyperparameter order differs from scikit-learn's"
    return GaussianProcessRegressor(
        kernel=k,
        alpha=_common.JITTER,
        optimizer="fmin_l_bfgs_b" if optimize else None,
        normalize_y=False,
    )


# -------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the example; returns the numbers it printed (the tests check them)."""
    args = _common.parser(__doc__, "default 200; 15 with --quick").parse_args(argv)
    steps = args.steps if args.steps is not None else (15 if args.quick else 200)
    t, y_raw = load_co2(args.quick)
    y_mean = float(y_raw.mean())
    y = y_raw - y_mean
    x_j, y_j = jnp.asarray(t), jnp.asarray(y)
    print(f"Mauna Loa CO2: {t.size} monthly means, {t[0]:.2f} to {t[-1]:.2f}")

    # 1. The trace-formula gradient agrees with autodiff and with scikit-learn at the start.
    th0 = jnp.asarray(THETA0)
    v_tr, g_tr = jax.jit(jax.value_and_grad(nlml))(th0, x_j, y_j)
    v_ad, g_ad = jax.jit(jax.value_and_grad(nlml_reference))(th0, x_j, y_j)
    lml_sk0, g_sk0 = (
        sklearn_gp(THETA0, optimize=False)
        .fit(t[:, None], y)
        .log_marginal_likelihood(THETA0, eval_gradient=True)
    )
    assert abs(float(v_tr - v_ad)) <= 1e-9 * abs(float(v_ad))
    grad_rel = float(jnp.max(jnp.abs(g_tr - g_ad)) / jnp.max(jnp.abs(g_ad)))
    grad_rel_sk = float(np.max(np.abs(-np.asarray(g_tr) - g_sk0)) / np.max(np.abs(g_sk0)))
    lml_rel0 = abs(-float(v_tr) - lml_sk0) / abs(lml_sk0)
    print(
        f"at the start: LML {-float(v_tr):.6f} (scikit-learn {lml_sk0:.6f}, rel. diff "
        f"{lml_rel0:.1e}); gradient by the trace formula vs autodiff rel. diff {grad_rel:.1e}, "
        f"vs scikit-learn {grad_rel_sk:.1e}"
    )

    # 2. Train with optax's L-BFGS.
    fit = _common.minimize_lbfgs(
        lambda th: nlml(th, x_j, y_j), THETA0, max_steps=steps, progress=not args.no_progress
    )
    theta = jax.block_until_ready(fit["theta"])
    theta_ours = np.asarray(theta)
    lml_ours = -float(nlml(theta, x_j, y_j))

    # 3. scikit-learn from the same start.
    t0 = time.perf_counter()
    gp_sk = sklearn_gp(THETA0, optimize=not args.quick).fit(t[:, None], y)
    time_sk = time.perf_counter() - t0
    theta_sk = gp_sk.kernel_.theta
    lml_sk = float(gp_sk.log_marginal_likelihood_value_)
    # Cross-evaluation: each LML by the other implementation, at the same θ.
    lml_sk_by_ours = -float(nlml(jnp.asarray(theta_sk), x_j, y_j))
    lml_ours_by_sk = float(gp_sk.log_marginal_likelihood(theta_ours))
    lml_rel = max(
        abs(lml_ours - lml_ours_by_sk) / abs(lml_ours_by_sk),
        abs(lml_sk - lml_sk_by_ours) / abs(lml_sk),
    )

    print(f"\n{'hyperparameter':<24}{'diffcholinv + optax':>20}{'scikit-learn':>16}")
    for (name, _), a, b in zip(HYPERPARAMETERS, np.exp(theta_ours), np.exp(theta_sk), strict=True):
        print(f"{name:<24}{a:>20.4g}{b:>16.4g}")
    print(
        f"{'log marginal likelihood':<24}{lml_ours:>20.4f}{lml_sk:>16.4f}\n"
        f"{'  (by the other code)':<24}{lml_ours_by_sk:>20.4f}{lml_sk_by_ours:>16.4f}\n"
        f"{'wall time [s]':<24}{fit['seconds']:>20.2f}{time_sk:>16.2f}\n"
        f"diffcholinv: {len(fit['history'])} L-BFGS steps, the step compiled "
        f"{fit['compiles']}x (first step {fit['first_step_s']:.2f} s); scikit-learn: L-BFGS-B"
        f"{'' if not args.quick else ' skipped (--quick)'}; LML rel. diff at equal θ "
        f"{lml_rel:.1e}"
    )

    # 4. Predictions, against scikit-learn's at the same θ; then the figure.
    t_new = np.arange(t[0], 2025.0, 1.0 / 12.0)
    mean, std = jax.jit(predict)(theta, x_j, y_j, jnp.asarray(t_new))
    gp_at_ours = sklearn_gp(theta_ours, optimize=False).fit(t[:, None], y)
    mean_sk, std_sk = gp_at_ours.predict(t_new[:, None], return_std=True)
    pred_rel = _common.agreement(mean, std, mean_sk, std_sk)
    if not args.no_plot:
        png = plot(t, y_raw, t_new, np.asarray(mean) + y_mean, np.asarray(std), args.out)
        print(f"saved {png}")

    return {
        "n": int(t.size),
        "lml_start": -float(v_tr),
        "lml_start_sklearn": float(lml_sk0),
        "grad_trace_vs_autodiff": grad_rel,
        "grad_vs_sklearn": grad_rel_sk,
        "lml_ours": lml_ours,
        "lml_ours_by_sklearn": lml_ours_by_sk,
        "lml_sklearn": lml_sk,
        "lml_sklearn_by_ours": lml_sk_by_ours,
        "history": fit["history"],
        "compiles": fit["compiles"],
        "pred_rel": pred_rel,
        "time_ours": fit["seconds"],
        "time_sklearn": time_sk,
        "time_first_step": fit["first_step_s"],
    }


def plot(
    t: np.ndarray,
    y: np.ndarray,
    t_new: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    out: Path,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    ax.fill_between(t_new, mean - 2 * std, mean + 2 * std, color="C0", alpha=0.25, lw=0)
    ax.plot(t_new, mean, color="C0", lw=1, label="predictive mean ±2σ (new observations)")
    ax.plot(t, y, ".", color="k", ms=2, label="monthly mean (data)")
    ax.axvline(t[-1], color="0.5", ls=":", lw=1)
    ax.text(t[-1] + 0.5, y.min(), "extrapolation", color="0.4", fontsize=8)
    ax.set_xlabel("year")
    ax.set_ylabel("CO$_2$ [ppm]")
    ax.set_title("Mauna Loa CO$_2$: exact GP, hyperparameters trained with optax")
    ax.legend(loc="upper left", frameon=False)
    fig.tight_layout()
    return _common.save(fig, out, "gp_regression.png")


if __name__ == "__main__":
    main()
