"""Helpers the tests share: factors, references nobody here wrote, one tolerance rule."""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import mpmath
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


ROOT = Path(__file__).resolve().parents[1]


def script(name: str) -> ModuleType:
    """The module ``scripts/<name>.py`` (registered in ``sys.modules``, as its dataclasses need)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def spd_factor(rng: np.random.Generator, batch: tuple[int, ...], n: int) -> np.ndarray:
    """Lower Cholesky factor (float64) of a random well-conditioned SPD matrix."""
    X = rng.standard_normal((*batch, n, n))
    A = X @ np.swapaxes(X, -1, -2) / max(n, 1) + np.eye(n)
    return np.linalg.cholesky(A)


def nan_factor(rng: np.random.Generator, batch: tuple[int, ...], n: int, dtype: str) -> np.ndarray:
    """A lower factor (float64, or complex128 for a complex ``dtype``) whose upper triangle is nan.

    The unread triangle holds nan, so neither a value nor a derivative may see it.
    """
    L = spd_factor(rng, batch, n)
    if dtype.startswith("complex"):
        X = rng.standard_normal((*batch, n, n)) + 1j * rng.standard_normal((*batch, n, n))
        L = np.linalg.cholesky(X @ np.conj(np.swapaxes(X, -1, -2)) / n + np.eye(n))
    return np.where(np.tril(np.ones((n, n), bool)), L, np.nan)


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


def exact_inverse(L: np.ndarray, dtype: object) -> tuple[np.ndarray, np.ndarray]:
    """``A⁻¹ = L⁻ᴴ L⁻¹`` of the lower factor exactly as given, in mpmath, rounded to ``dtype``.

    Also ``k``: ``2^kᵢ ≈ √|A⁻¹ᵢᵢ|``, the scale of row and column ``i`` of
    ``A⁻¹`` (an integer, so that it is not limited to the range of a float).

    mpmath has an unbounded exponent range, so the reference holds the true
    value where ``A⁻¹`` is far beyond the range of ``dtype``: it rounds to
    ±inf where ``A⁻¹`` overflows and to 0 (or a subnormal) where it
    underflows. ``L⁻¹`` by forward substitution (componentwise accurate,
    whatever the scaling of the rows), with 300 bits; real and imaginary
    parts are rounded apart. One matrix, ``[n, n]``.
    """
    n = L.shape[-1]
    with mpmath.workprec(300):
        real = not np.iscomplexobj(L)
        Lm = [
            [
                mpmath.mpf(float(L[i, j])) if real else mpmath.mpc(complex(L[i, j]))
                for j in range(i + 1)
            ]
            for i in range(n)
        ]
        X = [[mpmath.mpf(0)] * n for _ in range(n)]
        for i in range(n):
            for j in range(i + 1):
                acc = mpmath.mpf(1 if i == j else 0) - mpmath.fsum(
                    Lm[i][k] * X[k][j] for k in range(j, i)
                )
                X[i][j] = acc / Lm[i][i]
        C = np.empty((n, n), np.complex128)
        scale = np.zeros(n, np.int64)
        for i in range(n):
            for j in range(n):
                c = mpmath.fsum(mpmath.conj(X[k][i]) * X[k][j] for k in range(max(i, j), n))
                C[i, j] = complex(float(mpmath.re(c)), float(mpmath.im(c)))
                if i == j and c != 0 and mpmath.isfinite(c):
                    scale[i] = int(mpmath.nint(mpmath.log(abs(c), 2) / 2))
    with np.errstate(over="ignore", under="ignore"):
        out = C.astype(np.result_type(np.dtype(dtype), np.complex64))
    return (out if np.iscomplexobj(np.empty(0, np.dtype(dtype))) else out.real), scale


def assert_edges(
    C: np.ndarray, ref: np.ndarray, k: np.ndarray, dtype: str, rtol: float | None = None
) -> None:
    """No nan; ±inf exactly where ``ref`` overflows; 0 or subnormal where it underflows;
    elsewhere each entry within ``rtol`` of ``ref`` relative to its row's and column's scale
    ``2^(kᵢ+kⱼ)`` (:func:`exact_inverse`: the size of entry (i, j) of a well-scaled ``A⁻¹``)."""
    info = np.finfo(np.dtype(dtype))
    rtol = 10 * tolerance(dtype) if rtol is None else rtol
    C, ref = np.asarray(C), np.asarray(ref)
    assert not np.any(np.isnan(C)), np.argwhere(np.isnan(C))
    for part in (np.real, np.imag):
        c, r = part(C).astype(np.float64), part(ref).astype(np.float64)
        big, tiny = np.isinf(r), np.abs(r) < info.tiny
        np.testing.assert_array_equal(c[big], r[big])
        assert np.all(np.abs(c[tiny]) <= info.tiny)
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            err = np.abs(np.ldexp(np.ldexp(c - r, -k[:, None]), -k[None, :]))
        ok = ~big & ~tiny
        assert np.all(err[ok] <= rtol), float(np.max(err[ok], initial=0))


def collective_flags() -> str:
    """XLA flags that give XLA:CPU collectives time on a loaded machine, where jaxlib has them.

    Each forced host device is a thread; a collective waits until all of them
    arrive, and XLA:CPU aborts the process (exit 134, "Expected N threads to
    join the rendezvous") once that wait passes a time limit. On a 2-core
    machine running other work, one shard can fall that far behind. jaxlib
    0.10 has flags for these limits; an XLA flag that jaxlib does not know
    aborts the process, so older jaxlib (0.4.34, the minimum) gets none.
    """
    import jaxlib.version

    if tuple(int(p) for p in jaxlib.version.__version__.split(".")[:2]) < (0, 10):
        return ""
    return (
        "--xla_cpu_collective_call_warn_stuck_timeout_seconds=120 "
        "--xla_cpu_collective_call_terminate_timeout_seconds=600 "
        "--xla_cpu_collective_timeout_seconds=600"
    )


@contextlib.contextmanager
def device_lock() -> Iterator[None]:
    """One multi-device subprocess at a time on this machine (across xdist workers).

    A file lock in the temporary directory: the forced-device programs run
    one thread per device, and two of them at once on few cores double the
    threads that must meet at every collective.
    """
    path = Path(tempfile.gettempdir()) / "diffcholinv-multidevice-tests.lock"
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def device_env(devices: int) -> dict[str, str]:
    """The environment of a fresh Python on ``devices`` forced host CPU devices."""
    env = dict(os.environ)
    flags = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    env["XLA_FLAGS"] = f"{flags} {collective_flags()}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    return env


def run_on_devices(
    script: Path, *args: str, devices: int = 4, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh Python on ``devices`` forced host CPU devices.

    A subprocess, because ``XLA_FLAGS`` must be set before jax starts; one at
    a time (:func:`device_lock`), with the collective waits of
    :func:`collective_flags`.
    """
    with device_lock():
        try:
            return subprocess.run(
                [sys.executable, str(script), *args],
                env=device_env(devices),
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=Path(__file__).parent,
            )
        except subprocess.TimeoutExpired as err:  # killed; say so, with its output
            out = "".join(
                s.decode(errors="replace") if isinstance(s, bytes) else s
                for s in (err.stdout or "", err.stderr or "")
            )
            raise AssertionError(
                f"{script.name} on {devices} devices did not finish within {timeout:.0f} s "
                f"(killed); its output:\n{out}"
            ) from err
