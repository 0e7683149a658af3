"""The ``forward`` case: one ``n × n`` factor, every peer, and the ``gemm`` rate row.

Peers: ``cho_solve`` and ``inv(L Lᵀ)`` under ``jit``, SciPy's ``?potri`` (CPU),
``torch.cholesky_inverse`` and ``mx.linalg.cholesky_inv`` when installed. The
``gemm`` row (an ``n × n`` product at the largest size) gives the plot's
``2n³/3 / peak`` line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg.lapack as lapack

from benchmarks._common import Settings, gemm_rate, mx, timed_row, to_torch, torch_module
from benchmarks.programs import cho_solve_inv, factor
from diffcholinv import cholesky_inv


def potri_mirrored(L: np.ndarray) -> np.ndarray:
    potri = lapack.dpotri if L.dtype == np.float64 else lapack.spotri
    C, _info = potri(L, lower=1)
    return np.tril(C) + np.tril(C, -1).T


def inv_of_product(L: jax.Array) -> jax.Array:
    return jnp.linalg.inv(L @ jnp.swapaxes(L, -1, -2))


def peers(L: np.ndarray, *, inv: bool = True) -> dict[str, Callable[[], Any]]:
    """Zero-argument callables computing ``(L Lᵀ)⁻¹``, one per implementation."""
    Lj = jnp.asarray(L)
    ours = jax.jit(cholesky_inv)
    cs = jax.jit(cho_solve_inv)
    out: dict[str, Callable[[], Any]] = {
        "diffcholinv": lambda: ours(Lj),
        "cho_solve": lambda: cs(Lj),
    }
    if inv:
        inverse = jax.jit(inv_of_product)
        out["inv"] = lambda: inverse(Lj)
    if L.ndim == 2 and not Settings.cuda:
        Lf = np.asfortranarray(L)
        out["potri"] = lambda: potri_mirrored(Lf)
    torch = torch_module()
    if torch is not None:
        Lt = to_torch(L)
        out["torch"] = lambda: torch.cholesky_inverse(Lt)
    if mx is not None and not Settings.cuda:
        Lm = mx.array(L)
        out["mlx"] = lambda: mx.eval(mx.linalg.cholesky_inv(Lm, stream=mx.cpu))
    return out


def rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = [
        timed_row("forward", n, 1, dt, peers(factor(n, (), dt)), args.repeats)
        for dt in args.dtypes
        for n in args.sizes
    ]
    return out + [gemm_rate(max(args.sizes), dt, args.repeats) for dt in args.dtypes]
