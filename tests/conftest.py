"""Shared fixtures and helpers. float64 tests need x64, enabled here for the session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# One OpenBLAS thread (SciPy's, which jaxlib's LAPACK kernels may share):
# a rare stall of the XLA:CPU runtime was seen with every thread idle and
# OpenBLAS's thread server among them (since traced to a program that
# tests/test_algorithms.py no longer runs). Set before NumPy/SciPy load it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# The tests run in several worker processes (pytest-xdist); on a GPU each
# would otherwise reserve most of its memory at start-up.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_enable_x64", True)

# Property-based tests (tests/test_properties.py). "ci", the default: a fixed
# seed (derandomize) and a bounded example count, so the suite stays fast and
# reproducible. "long": many random examples, for local runs:
#   python -m pytest tests/test_properties.py --hypothesis-profile=long
# Every example compiles a new shape, so "too slow" health checks are off.
_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "ci",
    max_examples=15,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=_SLOW,
)
settings.register_profile("long", max_examples=1000, deadline=None, suppress_health_check=_SLOW)
settings.load_profile("ci")

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


def assert_close_rel(actual: object, expected: np.ndarray, dtype: str) -> None:
    """``max |actual - expected| <= RTOL[dtype] * max |expected|``."""
    a = np.asarray(actual, np.float64)
    assert a.shape == expected.shape
    scale = max(float(np.max(np.abs(expected))), 1.0) if expected.size else 1.0
    err = float(np.max(np.abs(a - expected))) if expected.size else 0.0
    assert err <= RTOL[dtype] * scale, f"max error {err:.3e} > {RTOL[dtype]:.1e} * {scale:.3e}"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


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
