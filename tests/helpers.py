"""Helpers the tests share: factors, references nobody here wrote, one tolerance rule."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

# Relative tolerances (to max |A⁻¹|) for well-conditioned inputs (kappa(A) < ~50),
# loose enough for any LAPACK/XLA ordering of the sums, tight enough to catch a
# wrong formula.
RTOL = {
    "float64": 1e-11,
    "float32": 2e-4,
    "float16": 1e-2,
    "bfloat16": 5e-2,
}


def spd_factor(rng: np.random.Generator, batch: tuple[int, ...], n: int) -> np.ndarray:
    """Lower Cholesky factor (float64) of a random well-conditioned SPD matrix."""
    X = rng.standard_normal((*batch, n, n))
    A = X @ np.swapaxes(X, -1, -2) / max(n, 1) + np.eye(n)
    return np.linalg.cholesky(A)


def reference_inv(L: np.ndarray, upper: bool = False) -> np.ndarray:
    """``numpy.linalg.inv`` of ``L Lᵀ`` (or ``Uᵀ U``), computed in float64."""
    L = np.asarray(L, np.float64)
    L = np.triu(L) if upper else np.tril(L)
    Lt = np.swapaxes(L, -1, -2)
    A = Lt @ L if upper else L @ Lt
    return np.linalg.inv(A)


def tolerance(dtype: object) -> float:
    """The relative tolerance of ``dtype`` (a complex dtype takes its real part's)."""
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    return RTOL[{"complex64": "float32", "complex128": "float64"}.get(name, name)]


def assert_close_rel(actual: object, expected: np.ndarray, dtype: object) -> None:
    """``max |actual - expected| <= tolerance(dtype) * max(1, max |expected|)``."""
    a = np.asarray(actual)
    a = a.astype(np.complex128 if np.iscomplexobj(a) else np.float64)
    assert a.shape == expected.shape
    scale = max(float(np.max(np.abs(expected))), 1.0) if expected.size else 1.0
    err = float(np.max(np.abs(a - expected))) if expected.size else 0.0
    tol = tolerance(dtype)
    assert err <= tol * scale, f"max error {err:.3e} > {tol:.1e} * {scale:.3e}"


def run_on_eight_devices(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh Python on 8 forced host CPU devices.

    A subprocess, because ``XLA_FLAGS`` must be set before jax starts.
    """
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    env["XLA_FLAGS"] = flags.strip()
    env["JAX_PLATFORMS"] = "cpu"
    return subprocess.run(
        [sys.executable, str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).parent,
    )
