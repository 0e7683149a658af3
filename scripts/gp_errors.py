"""Errors of GP quantities computed through ``K⁻¹`` and through the factor ``L``.

A GP with a squared-exponential kernel (unit variance and length scale) on
``n`` training inputs drawn uniformly from [0, 10] and ``m`` test inputs on a
grid, in float64, at each noise variance σ² (``K = K_xx + σ² I``). For each
quantity it measures the relative error of two ways of computing it, against
a reference computed by mpmath (50 significant digits) from the same float64
``K``, ``K*``, ``K**`` and ``y``:

* predictive variance of the latent function, ``K** − K*ᵀ K⁻¹ K*`` with
  ``K⁻¹ = cholesky_inv(L)``, and ``K** − VᵀV`` with ``V = L⁻¹ K*``
  (``solve_triangular``);
* predictive mean, ``K*ᵀ (K⁻¹ y)`` and ``K*ᵀ cho_solve(L, y)``;
* log-determinant, ``−log det K⁻¹`` (``slogdet``) and ``2 Σ log Lᵢᵢ``;
* LOO residuals ``yᵢ − E[yᵢ | y₋ᵢ]``, ``(K⁻¹ y)ᵢ / (K⁻¹)ᵢᵢ``, and ``n`` refits
  (``cholesky`` of each ``K₋ᵢ``, ``cho_solve``);
* the likelihood gradient's trace term ``tr(K⁻¹ ∂K/∂ℓ)``, ``Σ (K⁻¹ ⊙ ∂K/∂ℓ)``
  and ``tr(cho_solve(L, ∂K/∂ℓ))``;
* ``K⁻¹`` itself, ``spd_inv(K)`` and ``cho_solve((L, True), I)``;
* the gradient in ``K`` of ``yᵀ K⁻¹ y = Σ (y yᵀ) ⊙ K⁻¹`` (``−αα ᵀ``,
  ``α = K⁻¹ y``), by ``jax.grad`` through ``spd_inv(K)`` (products only) and
  through ``cho_solve((jnp.linalg.cholesky(K), True), I)`` (the Cholesky's
  backward pass).

The relative error of a vector is ``max |x̂ − x| / max |x|``. Prints the
Markdown table of docs/guides/gaussian-processes.md::

    python scripts/gp_errors.py            # the table in the docs
    python scripts/gp_errors.py --quick    # a smaller run
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import jax.scipy.linalg as jsl  # noqa: E402
import mpmath  # noqa: E402
import numpy as np  # noqa: E402

from diffcholinv import cholesky_inv, spd_inv  # noqa: E402

NOISES = (1e-2, 1e-4, 1e-6, 1e-8)
DIGITS = 50


def problem(n: int, m: int, noise: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Training and test covariances (float64) of a squared-exponential GP."""
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0.0, 10.0, n))
    xs = np.linspace(0.05, 9.95, m)
    y = np.sin(x) + 0.1 * rng.standard_normal(n)

    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.exp(-0.5 * (a[:, None] - b[None, :]) ** 2)

    r2 = (x[:, None] - x[None, :]) ** 2
    return {
        "K": k(x, x) + noise * np.eye(n),
        "Ks": k(x, xs),
        "kss": np.ones(m),  # diag K**
        "y": y,
        "dK": k(x, x) * r2,  # ∂K/∂ℓ at ℓ = 1
    }


def _mp(a: np.ndarray) -> list[list[mpmath.mpf]]:
    return [[mpmath.mpf(float(v)) for v in row] for row in np.atleast_2d(a)]


def reference(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every quantity in extended precision (mpmath), from the float64 inputs."""
    with mpmath.workdps(DIGITS):
        n = p["K"].shape[0]
        L = mpmath.cholesky(mpmath.matrix(p["K"].tolist()))
        Lr = [[L[i, j] for j in range(i + 1)] for i in range(n)]

        def forward(b: list[mpmath.mpf]) -> list[mpmath.mpf]:  # L z = b
            z: list[mpmath.mpf] = []
            for i in range(n):
                z.append((b[i] - mpmath.fdot(Lr[i][:i], z)) / Lr[i][i])
            return z

        def backward(b: list[mpmath.mpf]) -> list[mpmath.mpf]:  # Lᵀ z = b
            z = [mpmath.mpf(0)] * n
            for i in reversed(range(n)):
                s = mpmath.fdot([Lr[k][i] for k in range(i + 1, n)], z[i + 1 :])
                z[i] = (b[i] - s) / Lr[i][i]
            return z

        y = _mp(p["y"])[0]
        alpha = backward(forward(y))  # K⁻¹ y
        Linv_cols = [forward([mpmath.mpf(int(i == j)) for i in range(n)]) for j in range(n)]
        diag_inv = [mpmath.fdot(c, c) for c in Linv_cols]  # (K⁻¹)ⱼⱼ = ‖L⁻¹ eⱼ‖²
        Ks = _mp(p["Ks"].T)
        V = [forward(col) for col in Ks]  # L⁻¹ K*, one column per test point
        var = [mpmath.mpf(float(s)) - mpmath.fdot(v, v) for s, v in zip(p["kss"], V, strict=True)]
        mean = [mpmath.fdot(col, alpha) for col in Ks]
        logdet = 2 * mpmath.fsum(mpmath.log(Lr[i][i]) for i in range(n))
        loo = [a / d for a, d in zip(alpha, diag_inv, strict=True)]
        # tr(K⁻¹ D) = Σⱼ eⱼᵀ L⁻ᵀ L⁻¹ D eⱼ = Σⱼ ⟨L⁻¹ eⱼ, L⁻¹ D eⱼ⟩
        D = _mp(p["dK"].T)
        trace = mpmath.fsum(mpmath.fdot(Linv_cols[j], forward(D[j])) for j in range(n))
        # (K⁻¹)ᵢⱼ = ⟨L⁻¹ eᵢ, L⁻¹ eⱼ⟩
        C = np.empty((n, n))
        for i in range(n):
            for j in range(i, n):
                C[i, j] = C[j, i] = float(mpmath.fdot(Linv_cols[i], Linv_cols[j]))
        a = np.array([float(v) for v in alpha])
        return {
            "inverse": C,
            "grad": -np.outer(a, a),  # ∂(yᵀ K⁻¹ y)/∂K = −K⁻¹ y yᵀ K⁻¹
            "var": np.array([float(v) for v in var]),
            "mean": np.array([float(v) for v in mean]),
            "logdet": np.array([float(logdet)]),
            "loo": np.array([float(v) for v in loo]),
            "trace": np.array([float(trace)]),
        }


def by_inverse(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each quantity through ``K⁻¹ = cholesky_inv(L)``."""
    L = jnp.linalg.cholesky(p["K"])
    K_inv = cholesky_inv(L)
    Ks, y = jnp.asarray(p["Ks"]), jnp.asarray(p["y"])
    alpha = K_inv @ y
    return {
        "var": np.asarray(p["kss"] - jnp.sum(Ks * (K_inv @ Ks), axis=0)),
        "mean": np.asarray(Ks.T @ alpha),
        "logdet": np.asarray([-jnp.linalg.slogdet(K_inv)[1]]),
        "loo": np.asarray(alpha / jnp.diagonal(K_inv)),
        "trace": np.asarray([jnp.sum(K_inv * p["dK"])]),
        "inverse": np.asarray(spd_inv(p["K"])),
        "grad": np.asarray(jax.grad(lambda K: y @ spd_inv(K) @ y)(jnp.asarray(p["K"]))),
    }


def _inverse_by_solve(K: jax.Array) -> jax.Array:
    return jsl.cho_solve((jnp.linalg.cholesky(K), True), jnp.eye(K.shape[0], dtype=K.dtype))


def by_factor(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each quantity through triangular solves with ``L`` (LOO: ``n`` refits)."""
    K, Ks, y = jnp.asarray(p["K"]), jnp.asarray(p["Ks"]), jnp.asarray(p["y"])
    n = K.shape[0]
    L = jnp.linalg.cholesky(K)
    V = jsl.solve_triangular(L, Ks, lower=True)
    keep = np.array([np.delete(np.arange(n), i) for i in range(n)])  # [n, n - 1]
    L_minus = jnp.linalg.cholesky(K[keep[:, :, None], keep[:, None, :]])  # each K₋ᵢ
    alpha_minus = jax.vmap(lambda Li, yi: jsl.cho_solve((Li, True), yi))(L_minus, y[keep])
    k_minus = K[np.arange(n)[:, None], keep]  # k(xᵢ, x₋ᵢ)
    return {
        "var": np.asarray(p["kss"] - jnp.sum(V * V, axis=0)),
        "mean": np.asarray(Ks.T @ jsl.cho_solve((L, True), y)),
        "logdet": np.asarray([2 * jnp.sum(jnp.log(jnp.diagonal(L)))]),
        "loo": np.asarray(y - jnp.sum(k_minus * alpha_minus, axis=1)),
        "trace": np.asarray([jnp.trace(jsl.cho_solve((L, True), p["dK"]))]),
        "inverse": np.asarray(_inverse_by_solve(K)),
        "grad": np.asarray(jax.grad(lambda K: y @ _inverse_by_solve(K) @ y)(K)),
    }


def rel_error(x: np.ndarray, ref: np.ndarray) -> float:
    """``max |x − ref| / max |ref|``."""
    return float(np.max(np.abs(x - ref)) / np.max(np.abs(ref)))


# quantity: its name, how it is computed through K⁻¹, through L, and which is right.
ROWS = {
    "var": ("predictive variance", "`K** − K*ᵀ K⁻¹ K*`", "`K** − VᵀV`, `V = L⁻¹K*`", "L"),
    "mean": ("predictive mean", "`K*ᵀ (K⁻¹ y)`", "`K*ᵀ cho_solve(L, y)`", "L"),
    "logdet": ("log det K", "`−log det K⁻¹`", "`2 Σ log Lᵢᵢ`", "L"),
    "loo": ("LOO residuals", "`(K⁻¹y)ᵢ / (K⁻¹)ᵢᵢ`", "n refits (`cholesky` of each `K₋ᵢ`)", "inv"),
    "trace": ("trace term", "`Σ K⁻¹ ⊙ ∂K/∂ℓ`", "`tr(cho_solve(L, ∂K/∂ℓ))`", "inv"),
    "inverse": ("K⁻¹", "`spd_inv(K)`", "`cho_solve(L, I)`", "inv"),
    "grad": (
        "∂(yᵀK⁻¹y)/∂K",
        "`jax.grad` through `spd_inv(K)`",
        "`jax.grad` through `cho_solve(cholesky(K), I)`",
        "inv",
    ),
}


def measure(n: int, m: int, noise: float) -> dict[str, tuple[float, float]]:
    """``{quantity: (error through K⁻¹, error through L)}``, and ``"kappa": (κ(K), 0)``."""
    p = problem(n, m, noise)
    ref, inv, fac = reference(p), by_inverse(p), by_factor(p)
    out = {q: (rel_error(inv[q], ref[q]), rel_error(fac[q], ref[q])) for q in ROWS}
    out["kappa"] = (float(np.linalg.cond(p["K"])), 0.0)
    return out


def table(n: int, m: int, noises: Sequence[float]) -> str:
    """The Markdown table: two rows per quantity (through K⁻¹, through L), one column per σ²."""
    results = {s: measure(n, m, s) for s in noises}
    lines = [
        "| quantity | computed as | " + " | ".join(f"σ² = {s:.0e}" for s in noises) + " | use |",
        "|---|---|" + "---:|" * len(noises) + "---|",
        "| κ(K) | | " + " | ".join(f"{results[s]['kappa'][0]:.1e}" for s in noises) + " | |",
    ]
    for q, (name, inv, fac, best) in ROWS.items():
        for k, (how, which) in enumerate(((inv, "inv"), (fac, "L"))):
            cells = " | ".join(f"{results[s][q][k]:.1e}" for s in noises)
            use = "**this**" if which == best else ""
            lines.append(f"| {name if k == 0 else ''} | {how} | {cells} | {use} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="n = 30, m = 10 (default: 100, 50)")
    args = p.parse_args(argv)
    n, m = (30, 10) if args.quick else (100, 50)
    print(f"jax {jax.__version__}, device {jax.devices()[0].platform}; n = {n}, m = {m}, float64")
    print(table(n, m, NOISES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
