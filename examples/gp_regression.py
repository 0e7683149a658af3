"""Exact Gaussian-process regression on the Mauna Loa CO2 record.

The kernel is the one of Rasmussen & Williams (2006, §5.4.3): a long-term
RBF trend, a periodic seasonal term with an RBF decay, a rational-quadratic
term for medium-term irregularities, and a short RBF plus white noise. Its
11 hyperparameters live in log space and are trained with ``optax.lbfgs``
on the negative log marginal likelihood (NLML)

    NLML(θ) = ½ yᵀ K⁻¹ y + Σᵢ log Lᵢᵢ + (n/2) log 2π,   K = L Lᵀ.

The gradient is computed in two ways that must agree:

* ``trace``: the textbook formula ``∂LML/∂θⱼ = ½ tr((ααᵀ − K⁻¹) ∂K/∂θⱼ)``
  with ``α = K⁻¹ y`` and ``K⁻¹ = cholesky_inv(L)``; all ``j`` at once by one
  vector-Jacobian product of the kernel builder with ``½(ααᵀ − K⁻¹)``;
* ``autodiff``: ``jax.grad`` of the NLML written with ``cholesky_inv``,
  differentiating through the op's analytic backward pass.

Then it fits scikit-learn's ``GaussianProcessRegressor`` on the same kernel,
data and starting point, prints both final LML values (each evaluated by both
implementations), the learned hyperparameters side by side and the wall
times, and saves a figure of the data, the predictive mean and the ±2σ band
with the extrapolation beyond the data.

Run ``python examples/gp_regression.py`` (``--help`` for the options;
``--quick`` runs a tiny subset, as the tests do).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from tqdm import tqdm  # noqa: E402

from diffcholinv import cholesky_inv  # noqa: E402

JITTER = 1e-10  # scikit-learn's default ``alpha``, added to the diagonal of K
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
FIGURES = Path(__file__).resolve().parents[1] / "docs" / "images"


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
def kernel(theta: jax.Array, x1: jax.Array, x2: jax.Array) -> jax.Array:
    """Cross-covariance ``k(x1, x2)`` without the white-noise term (scikit-learn's formulas)."""
    p = jnp.exp(theta)
    d = x1[:, None] - x2[None, :]
    d2 = d * d
    trend = p[0] * jnp.exp(-0.5 * d2 / p[1] ** 2)
    seasonal = (
        p[2]
        * jnp.exp(-0.5 * d2 / p[3] ** 2)
        * jnp.exp(-2.0 * (jnp.sin(jnp.pi * d / PERIOD) / p[4]) ** 2)
    )
    irregular = p[5] * (1.0 + d2 / (2.0 * p[6] * p[7] ** 2)) ** (-p[6])
    noise_rbf = p[8] * jnp.exp(-0.5 * d2 / p[9] ** 2)
    return trend + seasonal + irregular + noise_rbf


def k_train(theta: jax.Array, x: jax.Array) -> jax.Array:
    """``K = k(x, x) + (σ²_white + jitter) I``."""
    return kernel(theta, x, x) + (jnp.exp(theta[10]) + JITTER) * jnp.eye(x.size)


def sklearn_kernel(theta: np.ndarray) -> Any:
    """The same kernel as a scikit-learn kernel object, at ``theta``."""
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
    return k


# ---------------------------------------------------------------------- the NLML
_LOG_2PI = math.log(2.0 * math.pi)


def nlml_autodiff(theta: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    """NLML written with ``cholesky_inv``; ``jax.grad`` of it goes through the op's VJP."""
    L = jnp.linalg.cholesky(k_train(theta, x))
    K_inv = cholesky_inv(L)
    return 0.5 * y @ (K_inv @ y) + jnp.sum(jnp.log(jnp.diag(L))) + 0.5 * y.size * _LOG_2PI


def nlml_and_grad_trace(
    theta: jax.Array, x: jax.Array, y: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """NLML and its gradient by ``∂NLML/∂θ = −½ tr((ααᵀ − K⁻¹) ∂K/∂θ)``.

    ``vjp(W)`` of the kernel builder is ``[tr(W ∂K/∂θⱼ)]ⱼ`` for symmetric
    ``W``, so one VJP gives every component.
    """
    K, k_vjp = jax.vjp(lambda t: k_train(t, x), theta)
    L = jnp.linalg.cholesky(K)
    K_inv = cholesky_inv(L)
    alpha = K_inv @ y
    value = 0.5 * y @ alpha + jnp.sum(jnp.log(jnp.diag(L))) + 0.5 * y.size * _LOG_2PI
    (grad,) = k_vjp(-0.5 * (jnp.outer(alpha, alpha) - K_inv))
    return value, grad


@jax.custom_vjp
def nlml_trace(theta: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    """The NLML as a function whose ``jax.grad`` is the trace formula above."""
    return nlml_and_grad_trace(theta, x, y)[0]


def _nlml_trace_fwd(
    theta: jax.Array, x: jax.Array, y: jax.Array
) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
    value, grad = nlml_and_grad_trace(theta, x, y)
    return value, (grad, x, y)


def _nlml_trace_bwd(
    res: tuple[jax.Array, jax.Array, jax.Array], g: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    grad, x, y = res  # the data are constants here
    return g * grad, jnp.zeros_like(x), jnp.zeros_like(y)


nlml_trace.defvjp(_nlml_trace_fwd, _nlml_trace_bwd)


def predict(
    theta: jax.Array, x: jax.Array, y: jax.Array, x_new: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Predictive mean and standard deviation of new observations (noise included).

    ``var = k(x*, x*) + σ²_white − diag(K*ᵀ K⁻¹ K*)``: the posterior covariance
    needs ``K⁻¹`` itself, which ``cholesky_inv`` gives in one call.
    """
    L = jnp.linalg.cholesky(k_train(theta, x))
    K_inv = cholesky_inv(L)
    K_s = kernel(theta, x, x_new)  # [n, m]
    mean = K_s.T @ (K_inv @ y)
    prior = jnp.exp(theta[0]) + jnp.exp(theta[2]) + jnp.exp(theta[5]) + jnp.exp(theta[8])
    var = prior + jnp.exp(theta[10]) - jnp.sum(K_s * (K_inv @ K_s), axis=0)
    return mean, jnp.sqrt(jnp.maximum(var, 0.0))


# ---------------------------------------------------------------------- training
def train(
    nlml: Callable[[jax.Array], jax.Array],
    theta0: np.ndarray,
    max_steps: int,
    progress: bool,
    gtol: float = 1e-5,
) -> tuple[jax.Array, list[float], float]:
    """``optax.lbfgs`` (zoom line search) on the NLML in log space.

    Stops when the largest gradient component is below ``gtol`` (scikit-learn's
    L-BFGS-B uses ``pgtol=1e-5`` too) or after ``max_steps``. Returns the
    final θ, the NLML per step and the seconds the first (compiling) step took.
    """
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(nlml)

    @jax.jit
    def step(theta: jax.Array, state: Any) -> tuple[jax.Array, Any, jax.Array, jax.Array]:
        value, grad = value_and_grad(theta, state=state)
        updates, state = opt.update(grad, state, theta, value=value, grad=grad, value_fn=nlml)
        return optax.apply_updates(theta, updates), state, value, jnp.max(jnp.abs(grad))

    theta = jnp.asarray(theta0)
    state = opt.init(theta)
    history: list[float] = []
    bar = tqdm(range(max_steps), desc="optax.lbfgs", unit="step", disable=not progress)
    t0 = time.perf_counter()
    first = 0.0
    for _ in bar:
        new_theta, state, value, gmax = step(theta, state)
        history.append(float(value))
        first = first or time.perf_counter() - t0
        bar.set_postfix(nlml=f"{history[-1]:.4f}", grad=f"{float(gmax):.1e}")
        if float(gmax) < gtol:  # θ is already optimal; keep it
            break
        theta = new_theta
    bar.close()
    return theta, history, first


def fit_sklearn(
    t: np.ndarray, y: np.ndarray, theta: np.ndarray, optimize: bool
) -> tuple[Any, float]:
    """scikit-learn's GP on the same kernel and data; L-BFGS-B from ``theta`` if ``optimize``."""
    from sklearn.gaussian_process import GaussianProcessRegressor

    gp = GaussianProcessRegressor(
        kernel=sklearn_kernel(theta),
        alpha=JITTER,
        optimizer="fmin_l_bfgs_b" if optimize else None,
        normalize_y=False,
    )
    t0 = time.perf_counter()
    gp.fit(t[:, None], y)
    return gp, time.perf_counter() - t0


# -------------------------------------------------------------------------- main
def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny subset and few steps (tests)")
    p.add_argument("--steps", type=int, default=None, help="most optimizer steps (default 200)")
    p.add_argument(
        "--grad",
        choices=("trace", "autodiff"),
        default="trace",
        help="gradient used for training (both are checked to agree)",
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
    steps = args.steps if args.steps is not None else (15 if args.quick else 200)
    t, y_raw = load_co2(args.quick)
    y_mean = float(y_raw.mean())
    y = y_raw - y_mean
    x_j, y_j = jnp.asarray(t), jnp.asarray(y)
    print(f"Mauna Loa CO2: {t.size} monthly means, {t[0]:.2f} to {t[-1]:.2f}")

    # 1. Both gradients agree at the starting point, and match scikit-learn's.
    th0 = jnp.asarray(THETA0)
    v_tr, g_tr = jax.jit(jax.value_and_grad(nlml_trace))(th0, x_j, y_j)
    v_ad, g_ad = jax.jit(jax.value_and_grad(nlml_autodiff))(th0, x_j, y_j)
    gp0, _ = fit_sklearn(t, y, THETA0, optimize=False)
    lml_sk0, g_sk0 = gp0.log_marginal_likelihood(THETA0, eval_gradient=True)
    assert abs(float(v_tr - v_ad)) <= 1e-9 * abs(float(v_ad))
    grad_rel = float(jnp.max(jnp.abs(g_tr - g_ad)) / jnp.max(jnp.abs(g_ad)))
    grad_rel_sk = float(np.max(np.abs(-np.asarray(g_tr) - g_sk0)) / np.max(np.abs(g_sk0)))
    lml_rel0 = abs(-float(v_tr) - lml_sk0) / abs(lml_sk0)
    print(
        f"at the start: LML {-float(v_tr):.6f} (scikit-learn {lml_sk0:.6f}, rel. diff "
        f"{lml_rel0:.1e}); gradient trace vs autodiff rel. diff {grad_rel:.1e}, "
        f"vs scikit-learn {grad_rel_sk:.1e}"
    )

    # 2. Train with optax.
    nlml = nlml_trace if args.grad == "trace" else nlml_autodiff
    t0 = time.perf_counter()
    theta, history, time_compile = train(
        lambda th: nlml(th, x_j, y_j), THETA0, steps, progress=not args.no_progress
    )
    theta = jax.block_until_ready(theta)
    time_ours = time.perf_counter() - t0
    theta_ours = np.asarray(theta)
    lml_ours = -float(nlml_autodiff(theta, x_j, y_j))

    # 3. scikit-learn from the same start.
    gp_sk, time_sk = fit_sklearn(t, y, THETA0, optimize=not args.quick)
    theta_sk = gp_sk.kernel_.theta
    lml_sk = float(gp_sk.log_marginal_likelihood_value_)
    # Cross-evaluation: each LML by the other implementation, at the same θ.
    lml_sk_by_ours = -float(nlml_autodiff(jnp.asarray(theta_sk), x_j, y_j))
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
        f"{'wall time [s]':<24}{time_ours:>20.2f}{time_sk:>16.2f}\n"
        f"diffcholinv: {len(history)} L-BFGS steps, the first (compilation) "
        f"{time_compile:.2f} s; scikit-learn: L-BFGS-B"
        f"{'' if not args.quick else ' skipped (--quick)'}; LML rel. diff at equal θ "
        f"{lml_rel:.1e}"
    )

    # 4. Predictions: agree with scikit-learn at the same θ, then the figure.
    t_new = np.arange(t[0], 2025.0, 1.0 / 12.0)
    mean, std = jax.jit(predict)(theta, x_j, y_j, jnp.asarray(t_new))
    gp_ours, _ = fit_sklearn(t, y, theta_ours, optimize=False)
    mean_sk, std_sk = gp_ours.predict(t_new[:, None], return_std=True)
    pred_rel = max(
        float(np.max(np.abs(np.asarray(mean) - mean_sk)) / np.max(np.abs(mean_sk))),
        float(np.max(np.abs(np.asarray(std) - std_sk)) / np.max(std_sk)),
    )
    print(f"predictions vs scikit-learn at the same θ: max rel. diff {pred_rel:.1e}")
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
        "history": history,
        "pred_rel": pred_rel,
        "time_ours": time_ours,
        "time_sklearn": time_sk,
        "time_compile": time_compile,
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
    ax.plot(t_new, mean, color="C0", lw=1, label="predictive mean ±2σ")
    ax.plot(t, y, ".", color="k", ms=2, label="monthly mean (data)")
    ax.axvline(t[-1], color="0.5", ls=":", lw=1)
    ax.text(t[-1] + 0.5, y.min(), "extrapolation", color="0.4", fontsize=8)
    ax.set_xlabel("year")
    ax.set_ylabel("CO$_2$ [ppm]")
    ax.set_title("Mauna Loa CO$_2$: exact GP, hyperparameters trained with optax")
    ax.legend(loc="upper left", frameon=False)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    png = out / "gp_regression.png"
    fig.savefig(png)
    plt.close(fig)
    return png


if __name__ == "__main__":
    main()
