"""What the examples share: the NLML and its gradient, predictions, an L-BFGS loop, the checks.

Which tool computes which quantity, and why:

* ``K⁻¹ y`` alone (the NLML's data term, the predictive mean): two triangular
  solves with the Cholesky factor (``cho_solve``). Forming ``K⁻¹`` for it
  costs more and is no more accurate.
* ``log det K = 2 Σᵢ log Lᵢᵢ``, from the factor's diagonal.
* The predictive variance ``k(x*, x*) − K*ᵀ K⁻¹ K*``: ``V = L⁻¹ K*`` by one
  triangular solve, then ``k(x*, x*) − Σ V²`` (a sum of squares, the column
  norms of ``V``). Through ``K⁻¹`` the subtraction cancels what the rounding
  of ``K⁻¹`` left: against an extended-precision reference the relative
  error of the variance is 6.6e-6 at noise 1e-4 (κ(K) = 2.5e5) and 1.4 at
  noise 1e-6 (κ = 2.5e7) that way, 4.9e-12 and 5.9e-10 through the solve
  (``python scripts/gp_errors.py``; docs/guides/gaussian-processes.md).
* Where ``K⁻¹`` of ``K`` itself is the quantity, ``spd_inv(K)`` (or
  ``spd_inv_logdet(K)``, with ``log det K`` from the same factor): the trace
  term ``tr(K⁻¹ ∂K/∂θ)`` of the likelihood gradient (every ``θⱼ`` from one
  ``K⁻¹``), ``diag(K⁻¹)`` for leave-one-out predictions, precision matrices.
  Its gradient in ``K`` is two products, not the Cholesky's backward pass.

The kernels are tinygp's; the optimizer is ``optax.lbfgs`` with its zoom line
search, run by :func:`minimize_lbfgs` so that its step compiles once.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.scipy.linalg import cho_solve, solve_triangular
from tqdm import tqdm

from diffcholinv import spd_inv_logdet

OUT = Path(__file__).resolve().parent / "out"
JITTER = 1e-10  # scikit-learn's default ``alpha``, added to the diagonal of K
LOG_2PI = math.log(2.0 * math.pi)
AGREEMENT = "predictive mean and std vs scikit-learn: max relative difference"


def parser(doc: str, steps: str) -> argparse.ArgumentParser:
    """The options every example takes: ``--quick``, ``--steps``, ``--out``, ``--no-plot``."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny subset and few steps (tests)")
    p.add_argument("--steps", type=int, default=None, help=f"most optimizer steps ({steps})")
    p.add_argument(
        "--out", type=Path, default=OUT, help="folder for the PNG (default examples/out)"
    )
    p.add_argument("--no-plot", action="store_true", help="skip the figure")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


# ------------------------------------------------------------------- likelihood
def nlml_from_factor(L: jax.Array, y: jax.Array) -> jax.Array:
    """``½ yᵀ K⁻¹ y + Σᵢ log Lᵢᵢ + (n/2) log 2π`` from ``L = chol(K)``, by solves."""
    alpha = cho_solve((L, True), y)  # K⁻¹ y alone: two triangular solves
    return 0.5 * y @ alpha + jnp.sum(jnp.log(jnp.diag(L))) + 0.5 * y.size * LOG_2PI


def nlml_autodiff(
    k_train: Callable[[jax.Array, jax.Array], jax.Array],
) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
    """``(θ, x, y) -> NLML`` whose ``jax.grad`` is JAX's own, through the factor and solves.

    The reference the trace-formula gradient is checked against; it never
    forms ``K⁻¹``.
    """

    def nlml(theta: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
        return nlml_from_factor(jnp.linalg.cholesky(k_train(theta, x)), y)

    return nlml


def nlml_trace(
    k_train: Callable[[jax.Array, jax.Array], jax.Array],
) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
    """``(θ, x, y) -> NLML`` whose ``jax.grad`` is the trace formula (R&W eq. 5.9).

    ``∂NLML/∂θⱼ = ½ tr((K⁻¹ − ααᵀ) ∂K/∂θⱼ)``, ``α = K⁻¹ y``: ``K⁻¹`` itself
    is the quantity here. ``spd_inv_logdet(K)`` gives ``K⁻¹`` and ``log det K``
    from one factor, and its backward pass in ``K`` is products only:
    ``−K⁻¹ sym(K̄_C) K⁻¹ + ℓ̄ K⁻¹``, which for ``NLML = ½ yᵀ K⁻¹ y + ½ log det K``
    is ``K̄ = ½ (K⁻¹ − ααᵀ)``, the trace formula; ``jax.grad`` then takes it
    through the kernel builder (one VJP for every ``θⱼ``).
    """

    def nlml(theta: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
        K_inv, logdet = spd_inv_logdet(k_train(theta, x))  # tr(K⁻¹ ∂K/∂θ) needs K⁻¹ itself
        alpha = K_inv @ y
        return 0.5 * y @ alpha + 0.5 * logdet + 0.5 * y.size * LOG_2PI

    return nlml


# ------------------------------------------------------------------- prediction
def predict(
    L: jax.Array, y: jax.Array, K_s: jax.Array, k_ss: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Predictive mean and standard deviation at ``m`` new points, by solves.

    Args:
        L: ``[n, n]`` lower Cholesky factor of the training covariance ``K``.
        y: ``[n]`` training targets.
        K_s: ``[n, m]`` cross-covariance ``k(x, x*)``.
        k_ss: ``[m]`` prior variances ``k(x*, x*)`` (plus the noise variance
            for new observations rather than the latent function).

    Returns:
        ``mean = K*ᵀ K⁻¹ y`` (``cho_solve``) and ``std = sqrt(k_ss − Σ V²)``
        with ``V = L⁻¹ K*`` (one triangular solve), not ``K*ᵀ K⁻¹ K*``
        through ``K⁻¹``: see this module's docstring.
    """
    mean = K_s.T @ cho_solve((L, True), y)
    V = solve_triangular(L, K_s, lower=True)
    var = k_ss - jnp.sum(V * V, axis=0)
    return mean, jnp.sqrt(jnp.maximum(var, 0.0))


def agreement(
    mean: Any, std: Any, mean_sk: np.ndarray, std_sk: np.ndarray, *, show: bool = True
) -> float:
    """``max(max|μ − μ_sk| / max|μ_sk|, max |σ − σ_sk| / σ_sk)`` over the points; printed.

    The mean is compared relative to its largest value (it crosses zero), the
    standard deviation point by point.
    """
    mean, std = np.asarray(mean), np.asarray(std)
    rel = max(
        float(np.max(np.abs(mean - mean_sk)) / np.max(np.abs(mean_sk))),
        float(np.max(np.abs(std - std_sk) / std_sk)),
    )
    if show:
        print(f"{AGREEMENT} {rel:.1e}")
    return rel


# -------------------------------------------------------------------- optimizer
def minimize_lbfgs(
    fun: Callable[[jax.Array], jax.Array],
    theta0: Any,
    *,
    max_steps: int,
    gtol: float = 1e-5,
    progress: bool = True,
) -> dict[str, Any]:
    """``optax.lbfgs`` (zoom line search) on ``fun`` from ``theta0``; the step compiles once.

    Stops when the largest gradient component is below ``gtol`` (what
    scikit-learn's L-BFGS-B uses, ``pgtol=1e-5``) or after ``max_steps``. A
    Python loop around one jitted step, so that the progress bar shows each
    step.

    Returns:
        ``theta`` (the last iterate), ``history`` (``fun`` at each iterate),
        ``first_step_s`` (seconds of the first step: compilation included),
        ``seconds`` (the whole loop) and ``compiles`` (times the step was
        traced, each a compilation).
    """
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fun)
    traces = 0

    def step(theta: jax.Array, state: Any) -> tuple[jax.Array, Any, jax.Array, jax.Array]:
        nonlocal traces
        traces += 1  # a Python side effect: runs once per trace
        value, grad = value_and_grad(theta, state=state)
        updates, state = opt.update(grad, state, theta, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(theta, updates), state, value, jnp.max(jnp.abs(grad))

    step_jit = jax.jit(step)
    theta = jnp.asarray(theta0)
    # opt.init leaves the line search's info scalars weakly typed (Python
    # number defaults) and update returns them strongly typed: that change of
    # type would compile the step a second time after the first step. Every
    # leaf strongly typed from the start, the step compiles once.
    state = jax.tree.map(lambda a: lax.convert_element_type(a, a.dtype), opt.init(theta))
    history: list[float] = []
    bar = tqdm(range(max_steps), desc="optax.lbfgs", unit="step", disable=not progress)
    t0 = time.perf_counter()
    first = 0.0
    for _ in bar:
        new_theta, state, value, gmax = step_jit(theta, state)
        history.append(float(value))
        first = first or time.perf_counter() - t0
        bar.set_postfix(loss=f"{history[-1]:.4f}", grad=f"{float(gmax):.1e}")
        if float(gmax) < gtol:  # θ is already optimal; keep it
            break
        theta = new_theta
    bar.close()
    return fit_record(theta, history, first, t0, traces)


def fit_record(
    theta: Any, history: list[float], first: float, t0: float, compiles: int
) -> dict[str, Any]:
    """What an optimizer loop reports: the result, the loss history and its timings."""
    return {
        "theta": theta,
        "history": history,
        "first_step_s": first,
        "seconds": time.perf_counter() - t0,
        "compiles": compiles,
    }


# ------------------------------------------------------------------------ plots
def save(fig: Any, out: Path, name: str) -> Path:
    """Save a matplotlib figure as ``out/name`` (the folder created) and close it."""
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    png = out / name
    fig.savefig(png)
    plt.close(fig)
    return png
