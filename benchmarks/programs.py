"""The factors and JAX programs the benchmarks time, importing only NumPy, JAX and diffcholinv.

Kept apart from ``run.py`` so that the ``first_call`` case can import them in
a fresh Python process without SciPy, torch or matplotlib loaded first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffcholinv import cholesky_inv


def factor(n: int, batch: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    """Lower Cholesky factor of a random well-conditioned SPD matrix."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((*batch, n, n))
    A = X @ np.swapaxes(X, -1, -2) / n + np.eye(n)
    return np.linalg.cholesky(A).astype(dtype)


def eye_like(L: jax.Array) -> jax.Array:
    return jnp.zeros_like(L) + jnp.eye(L.shape[-1], dtype=L.dtype)


def cho_solve_inv(L: jax.Array) -> jax.Array:
    return jax.scipy.linalg.cho_solve((L, True), eye_like(L))


# The two implementations of the compile, first_call and memory cases.
INVERSES: dict[str, Callable[[jax.Array], jax.Array]] = {
    "diffcholinv": cholesky_inv,
    "cho_solve": cho_solve_inv,
}
PROGRAMS = ("forward", "value_and_grad")


def program(impl: str, kind: str) -> Callable[[jax.Array], Any]:
    """A new function object on every call, so that ``jax.jit`` of it misses every cache.

    ``kind`` is ``"forward"`` (the inverse) or ``"value_and_grad"`` (value and
    gradient of ``sum(sin(C))``, a loss whose cotangent depends on ``C``).
    """
    f = INVERSES[impl]
    if kind == "forward":
        return lambda L: f(L)
    if kind == "value_and_grad":
        return jax.value_and_grad(lambda L: jnp.sum(jnp.sin(f(L))))
    raise ValueError(f"kind must be one of {PROGRAMS}, got {kind!r}")


def gp_nlml(impl: str) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
    """Value and gradient in the log lengthscale of a GP's negative log marginal likelihood.

    Uses ``K⁻¹`` from ``impl`` (``yᵀ K⁻¹ y / 2 + Σ log Lᵢᵢ``); the growing_n
    case jits it for every new ``n``, as Bayesian optimisation or active
    learning does when a point is added.
    """
    inverse = INVERSES[impl]

    def nlml(log_ell: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
        d = (x[:, None] - x[None, :]) / jnp.exp(log_ell)
        K = jnp.exp(-0.5 * d**2) + 1e-2 * jnp.eye(x.shape[0], dtype=x.dtype)
        L = jnp.linalg.cholesky(K)
        return 0.5 * y @ inverse(L) @ y + jnp.sum(jnp.log(jnp.diagonal(L)))

    return jax.value_and_grad(nlml)
