"""The ``grad`` case: value and gradient of ``sum(G * C)`` (``G`` an argument), float64.

Peers: autodiff through ``cho_solve`` and torch. Each row also carries the
product-rate bound ``3n³ / r``: ``r`` is the float64 rate of a 1024 × 1024
product measured in the same run, ``3n³`` the flops of a pass made of products
at full speed (``2n³/3`` forward as LAPACK ``potri`` counts them, ``7n³/3``
backward); ``ours_over_bound`` is how many times slower than that we run.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._common import gemm_rate, timed_row, to_torch, torch_module
from benchmarks.programs import cho_solve_inv, factor
from diffcholinv import cholesky_inv

BOUND_GEMM_N = 1024


def peers(L: np.ndarray) -> dict[str, Callable[[], Any]]:
    """Value and gradient of ``sum(G * inv(L))``, one callable per implementation."""
    G = np.random.default_rng(1).standard_normal(L.shape).astype(L.dtype)
    Lj, Gj = jnp.asarray(L), jnp.asarray(G)
    # G is an argument, not a constant folded into the program: in training
    # the cotangent is data.
    ours = jax.jit(jax.value_and_grad(lambda L, G: jnp.sum(G * cholesky_inv(L))))
    cs = jax.jit(jax.value_and_grad(lambda L, G: jnp.sum(G * cho_solve_inv(L))))
    out: dict[str, Callable[[], Any]] = {
        "diffcholinv": lambda: ours(Lj, Gj),
        "cho_solve": lambda: cs(Lj, Gj),
    }
    torch = torch_module()
    if torch is not None:
        Gt, L0 = to_torch(G), to_torch(L)

        def torch_grad() -> Any:
            Lt = L0.detach().requires_grad_(True)
            value = (Gt * torch.cholesky_inverse(Lt)).sum()
            value.backward()
            return value.detach(), Lt.grad

        out["torch"] = torch_grad
    return out


def rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    gemm_n = min(BOUND_GEMM_N, max(args.grad_sizes))  # --quick: tiny sizes, a tiny product
    gemm = gemm_rate(gemm_n, "float64", args.repeats)
    out = [gemm]
    for n in args.grad_sizes:
        row = timed_row("grad", n, 1, "float64", peers(factor(n, (), "float64")), args.repeats)
        bound = 3 * n**3 / gemm["flops"]
        row["bound"] = {
            "seconds": bound,
            "gemm_n": gemm_n,
            "ours_over_bound": row["seconds"]["diffcholinv"]["min"] / bound,
        }
        out.append(row)
    return out
