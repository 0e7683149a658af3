"""Many independent small GPs, fitted at once with ``vmap`` under ``jit``.

One GP per series of the US macroeconomic record that ships with statsmodels
(quarterly 1959–2009): growth rates of GDP, consumption, investment,
government spending, income, prices, money and population, and the levels of
the T-bill rate, unemployment, inflation and the real interest rate. Each
series gets its own hyperparameters (RBF + white noise, in log space), and
the NLML of one series is written once; ``jax.vmap`` of its ``jax.grad``
runs all series in one compiled program, with ``cholesky_inv`` batched over
the series, and ``optax.adam`` updates all hyperparameters together (Adam
scales each coordinate on its own, so the fits stay independent; L-BFGS
would couple them through its line search and its curvature pairs, which is
why this example does not use it).

Each quantity with the tool that is right for it (``examples/_common.py``):
the NLML's ``yᵀ K⁻¹ y`` by ``cho_solve`` and ``log det K`` from ``diag(L)``;
its gradient by the trace formula ``½ tr((K⁻¹ − ααᵀ) ∂K/∂θ)``, whose trace
term needs ``K⁻¹`` itself (``cholesky_inv``, batched); the posterior of the
latent function by solves: mean ``K*ᵀ α``, variance ``k(x*, x*) − ‖V‖²`` with
``V = L⁻¹ K*``. The kernel is tinygp's ``ExpSquared``.

scikit-learn fits the same GPs one after the other in a loop from the same
start; the example prints both log marginal likelihoods per series (each
checked by the other implementation at the same hyperparameters), the wall
times and one line comparing the posterior mean and standard deviation of
the latent function with scikit-learn's at the same hyperparameters (its
kernel without the white-noise term, ``alpha`` the noise variance), and
saves a small-multiples figure into ``--out``.

Run ``python examples/batched_gps.py`` (``--quick`` for a tiny subset, as the
tests do).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

import _common  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import tinygp  # noqa: E402
from tqdm import tqdm  # noqa: E402

GROWTH = ("realgdp", "realcons", "realinv", "realgovt", "realdpi", "cpi", "m1", "pop")
LEVELS = ("tbilrate", "unemp", "infl", "realint")
# log [signal variance, length scale in years, noise variance]: scikit-learn's order.
THETA0 = np.log([1.0, 2.0, 0.3])


def load_macro(quick: bool) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Time in years ``[n]``, standardized series ``[B, n]`` and their names."""
    from statsmodels.datasets import macrodata

    d = macrodata.load_pandas().data
    t = (d["year"] + (d["quarter"] - 1) / 4).to_numpy(np.float64)[1:]
    rows = [400 * np.diff(np.log(d[c].to_numpy(np.float64))) for c in GROWTH]
    rows += [d[c].to_numpy(np.float64)[1:] for c in LEVELS]
    Y, names = np.stack(rows), GROWTH + LEVELS
    if quick:  # 4 series, every 4th quarter
        Y, names, t = Y[::3, ::4], names[::3], t[::4]
    Y = (Y - Y.mean(1, keepdims=True)) / Y.std(1, keepdims=True)
    return t, Y, names


def kernel(theta: jax.Array) -> tinygp.kernels.Kernel:
    """``σ_f² exp(−½ (t − t')²/ℓ²)``: the latent function's prior covariance."""
    p = jnp.exp(theta)
    return p[0] * tinygp.kernels.ExpSquared(scale=p[1])


def k_train(theta: jax.Array, t: jax.Array) -> jax.Array:
    """``K = k(t, t) + (σ_n² + jitter) I``."""
    return kernel(theta)(t, t) + (jnp.exp(theta[2]) + _common.JITTER) * jnp.eye(t.size)


nlml = _common.nlml_trace(k_train)  # one series; jax.grad: the trace formula, K⁻¹ by spd_inv_logdet


def predict(
    theta: jax.Array, t: jax.Array, y: jax.Array, t_new: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Posterior mean and standard deviation of the latent function at ``t_new``, by solves."""
    k = kernel(theta)
    L = jnp.linalg.cholesky(k_train(theta, t))
    return _common.predict(L, y, k(t, t_new), k(t_new))


def fit_batched(
    t: jax.Array, Y: jax.Array, steps: int, learning_rate: float, progress: bool
) -> dict[str, Any]:
    """Adam on every series' NLML at once: ``vmap`` of ``value_and_grad`` under ``jit``.

    Adam scales each coordinate on its own, so one optimizer over θ ``[B, 3]``
    is ``B`` independent fits. Returns θ, the total NLML per step, the
    seconds of the first (compiling) step and of all, and the compilations.
    """
    opt = optax.adam(learning_rate)
    batched = jax.vmap(jax.value_and_grad(nlml), in_axes=(0, None, 0))
    traces = 0

    def step(theta: jax.Array, state: Any) -> tuple[jax.Array, Any, jax.Array]:
        nonlocal traces
        traces += 1  # a Python side effect: runs once per trace
        values, grads = batched(theta, t, Y)  # [B], [B, 3]
        updates, state = opt.update(grads, state, theta)
        return optax.apply_updates(theta, updates), state, jnp.sum(values)

    step_jit = jax.jit(step)
    theta = jnp.tile(jnp.asarray(THETA0), (Y.shape[0], 1))
    state = opt.init(theta)
    history: list[float] = []
    t0, first = time.perf_counter(), 0.0
    bar = tqdm(range(steps), desc="vmap(grad) + optax.adam", unit="step", disable=not progress)
    for _ in bar:
        theta, state, total = step_jit(theta, state)
        history.append(float(total))
        first = first or time.perf_counter() - t0
        bar.set_postfix(total_nlml=f"{history[-1]:.3f}")
    return _common.fit_record(theta, history, first, t0, traces)


def sklearn_gp(theta: np.ndarray, optimize: bool, *, latent: bool = False) -> Any:
    """scikit-learn's GP at ``theta``; ``latent``: the noise as ``alpha``, not a WhiteKernel.

    With ``latent``, ``predict`` gives the latent function's posterior, as
    :func:`predict` does.
    """
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    p = np.exp(theta)
    if latent:
        return GaussianProcessRegressor(
            kernel=ConstantKernel(p[0]) * RBF(p[1]), alpha=p[2] + _common.JITTER, optimizer=None
        )
    kernel = ConstantKernel(p[0]) * RBF(p[1]) + WhiteKernel(p[2])
    assert np.allclose(kernel.theta, theta), "hyperparameter order differs from scikit-learn's"
    return GaussianProcessRegressor(
        kernel=kernel, alpha=_common.JITTER, optimizer="fmin_l_bfgs_b" if optimize else None
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the example; returns the numbers it printed (the tests check them)."""
    p = _common.parser(__doc__, "Adam, default 300; 20 with --quick")
    p.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (default 0.05)")
    args = p.parse_args(argv)
    steps = args.steps if args.steps is not None else (20 if args.quick else 300)
    t, Y, names = load_macro(args.quick)
    tj, Yj = jnp.asarray(t), jnp.asarray(Y)
    B, n = Y.shape
    print(f"US macro data: {B} series of {n} quarters, {t[0]:.2f} to {t[-1]:.2f}")

    fit = fit_batched(tj, Yj, steps, args.lr, progress=not args.no_progress)
    theta = jax.block_until_ready(fit["theta"])
    lml_ours = -np.asarray(jax.vmap(nlml, in_axes=(0, None, 0))(theta, tj, Yj))

    lml_sk, lml_ours_by_sk, lml_sk_by_ours, thetas_sk = [], [], [], []
    time_sk = 0.0
    for b in range(B):
        gp = sklearn_gp(THETA0, optimize=not args.quick)
        t1 = time.perf_counter()
        gp.fit(t[:, None], Y[b])
        time_sk += time.perf_counter() - t1
        thetas_sk.append(gp.kernel_.theta)
        lml_sk.append(float(gp.log_marginal_likelihood_value_))
        lml_ours_by_sk.append(float(gp.log_marginal_likelihood(np.asarray(theta[b]))))
        lml_sk_by_ours.append(-float(nlml(jnp.asarray(gp.kernel_.theta), tj, Yj[b])))
    lml_rel = max(
        float(np.max(np.abs(lml_ours - np.array(lml_ours_by_sk)) / np.abs(lml_ours_by_sk))),
        float(np.max(np.abs(np.array(lml_sk) - lml_sk_by_ours) / np.abs(lml_sk))),
    )

    print(f"\n{'series':<10}{'LML ours':>11}{'LML sklearn':>13}{'ℓ ours':>9}{'ℓ sklearn':>11}")
    for b in range(B):
        print(
            f"{names[b]:<10}{lml_ours[b]:>11.3f}{lml_sk[b]:>13.3f}"
            f"{math.exp(theta[b, 1]):>9.3g}{math.exp(thetas_sk[b][1]):>11.3g}"
        )
    print(
        f"\nall {B} GPs, vmap(grad) + optax.adam under jit: {fit['seconds']:.2f} s for {steps} "
        f"steps, the step compiled {fit['compiles']}x (first step {fit['first_step_s']:.2f} s); "
        f"scikit-learn, one after the other"
        f"{' (no optimizer, --quick)' if args.quick else ''}: {time_sk:.2f} s\n"
        f"LML rel. diff at equal θ (each by the other code): {lml_rel:.1e}"
    )

    # The latent function's posterior, against scikit-learn's at the same θ.
    t_new = np.linspace(t[0], t[-1] + 3.0, 400)
    mean, std = jax.jit(jax.vmap(predict, in_axes=(0, None, 0, None)))(
        theta, tj, Yj, jnp.asarray(t_new)
    )
    sk = [
        sklearn_gp(np.asarray(theta[b]), False, latent=True)
        .fit(t[:, None], Y[b])
        .predict(t_new[:, None], return_std=True)
        for b in range(B)
    ]
    pred_rel = _common.agreement(
        mean, std, np.stack([m for m, _ in sk]), np.stack([s for _, s in sk])
    )
    if not args.no_plot:
        png = plot(t, Y, names, t_new, np.asarray(mean), np.asarray(std), args.out)
        print(f"saved {png}")
    return {
        "B": B,
        "n": n,
        "lml_ours": lml_ours,
        "lml_sklearn": np.array(lml_sk),
        "lml_ours_by_sklearn": np.array(lml_ours_by_sk),
        "lml_sklearn_by_ours": np.array(lml_sk_by_ours),
        "lml_start": -np.asarray(
            jax.vmap(nlml, in_axes=(None, None, 0))(jnp.asarray(THETA0), tj, Yj)
        ),
        "pred_rel": pred_rel,
        "compiles": fit["compiles"],
        "time_ours": fit["seconds"],
        "time_sklearn": time_sk,
        "history": fit["history"],
    }


def plot(
    t: np.ndarray,
    Y: np.ndarray,
    names: Sequence[str],
    t_new: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    out: Path,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    B = Y.shape[0]
    cols = min(B, 4)
    rows = -(-B // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.3 * cols, 1.7 * rows + 0.7), dpi=100, sharex=True, squeeze=False
    )
    for b, ax in enumerate(axes.flat):
        if b >= B:
            ax.axis("off")
            continue
        ax.plot(t, Y[b], ".", color="k", ms=1.5, label="data")
        ax.fill_between(
            t_new,
            mean[b] - 2 * std[b],
            mean[b] + 2 * std[b],
            color="C0",
            alpha=0.3,
            lw=0,
            label="latent function: posterior mean ±2σ",
        )
        ax.plot(t_new, mean[b], color="C0", lw=1)
        ax.set_title(names[b], fontsize=8)
        ax.tick_params(labelsize=6)
        if b % cols == 0:
            ax.set_ylabel("standardized", fontsize=7)
        if b >= B - cols:
            ax.set_xlabel("year", fontsize=7)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, frameon=False, fontsize=7)
    fig.suptitle(
        f"{B} GPs fitted at once (vmap + optax.adam under jit); the band is the latent "
        "function's, without the noise",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _common.save(fig, out, "batched_gps.png")


if __name__ == "__main__":
    main()
