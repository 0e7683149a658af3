"""Accuracy of ``cholesky_inv`` against ``cho_solve(L, I)`` and LAPACK ``potri``.

For each dtype and target condition number κ, draws factors ``L`` of
``A = Q diag(σ) Qᴴ`` (σ geometric from 1 to 1/κ, ``Q`` Haar-random), casts
``L`` to the dtype, and measures the normwise relative error

    err = ‖Ĉ − A⁻¹‖₂ / ‖A⁻¹‖₂

of three methods on the same (cast) ``L``, against ``A⁻¹ = L⁻ᴴ L⁻¹`` computed
in extended precision (``numpy.longdouble``), and reports ``err / (κ ε)``
with κ = κ₂(A) measured on the cast factor and ε the machine epsilon of
the dtype (``numpy.finfo(dtype).eps``). Prints a Markdown table (the one in
docs/math.md, "Accuracy")::

    python scripts/accuracy.py            # the table in the docs
    python scripts/accuracy.py --quick    # a smaller run
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import jax.scipy.linalg as jsl  # noqa: E402
import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402
import scipy.linalg.lapack as lapack  # noqa: E402

from diffcholinv import cholesky_inv  # noqa: E402

KAPPAS = {
    "float32": (1e0, 1e2, 1e4, 1e6),
    "float64": (1e0, 1e3, 1e6, 1e9, 1e12),
    "complex64": (1e0, 1e2, 1e4, 1e6),
    "complex128": (1e0, 1e3, 1e6, 1e9, 1e12),
}
POTRI = {"float32": "spotri", "float64": "dpotri", "complex64": "cpotri", "complex128": "zpotri"}


def spd_with_condition(rng: np.random.Generator, n: int, kappa: float, dtype: str) -> np.ndarray:
    """A random Hermitian positive definite ``A`` with κ₂(A) ≈ ``kappa``, cast to ``dtype``."""
    complex_ = np.issubdtype(np.dtype(dtype), np.complexfloating)
    X = rng.standard_normal((n, n))
    if complex_:
        X = X + 1j * rng.standard_normal((n, n))
    Q, R = np.linalg.qr(X)
    Q = Q * (np.diagonal(R) / np.abs(np.diagonal(R)))  # Haar-distributed
    sigma = np.logspace(0.0, -np.log10(kappa), n) if n > 1 else np.ones(1)
    A = (Q * sigma) @ Q.conj().T
    return ((A + A.conj().T) / 2).astype(dtype)


def exact_cholesky(A: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of ``A`` in extended precision (``numpy.longdouble``)."""
    ext = np.clongdouble if np.iscomplexobj(A) else np.longdouble
    A = A.astype(ext)
    n = A.shape[-1]
    L = np.zeros((n, n), ext)
    for j in range(n):  # column by column
        d = A[j, j] - np.sum(L[j, :j] * L[j, :j].conj())
        L[j, j] = np.sqrt(d.real)
        L[j + 1 :, j] = (A[j + 1 :, j] - L[j + 1 :, :j] @ L[j, :j].conj()) / L[j, j]
    return L


def exact_inverse(L: np.ndarray) -> np.ndarray:
    """``L⁻ᴴ L⁻¹`` of a lower-triangular ``L``, in extended precision."""
    ext = np.clongdouble if np.iscomplexobj(L) else np.longdouble
    Lx = np.tril(L.astype(ext))
    n = Lx.shape[-1]
    X = np.zeros((n, n), ext)
    for i in range(n):  # forward substitution, row by row: L X = I
        rhs = -(Lx[i, :i] @ X[:i, :])
        rhs[i] += 1
        X[i, :] = rhs / Lx[i, i]
    return np.asarray(X.conj().T @ X)


def _cho_solve(L: np.ndarray) -> np.ndarray:
    eye = jnp.eye(L.shape[-1], dtype=L.dtype)
    return np.asarray(jsl.cho_solve((jnp.asarray(L), True), eye))


def _potri(L: np.ndarray) -> np.ndarray:
    fn = getattr(lapack, POTRI[np.dtype(L.dtype).name])
    C, info = fn(L, lower=1)
    if info != 0:
        return np.full(L.shape, np.nan, L.dtype)
    lower = np.tril(C)
    return np.asarray(lower + np.tril(lower, -1).conj().T)


METHODS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "cholesky_inv": lambda L: np.asarray(cholesky_inv(L)),
    "cho_solve(L, I)": _cho_solve,
    "LAPACK potri": _potri,
}


def _errors(L: np.ndarray, C: np.ndarray, kappa: float, dtype: str) -> dict[str, float]:
    """Per method: ``‖Ĉ − C‖₂ / ‖C‖₂ / (κ ε)`` for the factor ``L`` and exact ``C``."""
    c128 = np.complex128 if np.iscomplexobj(C) else np.float64
    scale = float(np.linalg.norm(np.asarray(C, c128), 2))
    eps = float(np.finfo(np.dtype(dtype)).eps)
    return {
        name: float(np.linalg.norm(np.asarray(fn(L) - C, c128), 2) / scale / (kappa * eps))
        for name, fn in METHODS.items()
    }


def measure(dtype: str, kappa: float, n: int, seed: int) -> dict[str, dict[str, float]]:
    """``err / (κ ε)`` per method on one random ``A`` of the ``dtype``, two ways.

    ``"end_to_end"``: ``L = scipy.linalg.cholesky(A)`` in the dtype, error
    against the exact ``A⁻¹`` (what a user sees; κ·ε growth lives here).
    ``"factor"``: error against the exact ``(L Lᴴ)⁻¹`` of that same ``L``
    (the inverse step alone). κ is κ₂(A), measured.
    """
    rng = np.random.default_rng(seed)
    A = spd_with_condition(rng, n, kappa, dtype)
    C_A = exact_inverse(exact_cholesky(A))
    c128 = np.complex128 if np.iscomplexobj(A) else np.float64
    kappa_true = float(np.linalg.norm(np.asarray(A, c128), 2) * np.linalg.norm(C_A.astype(c128), 2))
    L = scipy.linalg.cholesky(A, lower=True)  # potrf in the dtype (numpy's runs in double)
    assert L.dtype == A.dtype
    return {
        "end_to_end": _errors(L, C_A, kappa_true, dtype),
        "factor": _errors(L, exact_inverse(L), kappa_true, dtype),
    }


def table(dtypes: Sequence[str], sizes: Sequence[int], seeds: int) -> str:
    """Markdown table: worst ``err / (κ ε)`` over sizes and seeds, per dtype and κ."""
    names = list(METHODS)
    kinds = ("end_to_end", "factor")
    lines = [
        "| dtype | κ(A) | "
        + " | ".join(f"{m}: A⁻¹" for m in names)
        + " | "
        + " | ".join(f"{m}: (LLᴴ)⁻¹" for m in names)
        + " |",
        "|---|---|" + "---|" * (2 * len(names)),
    ]
    for dtype in dtypes:
        for kappa in KAPPAS[dtype]:
            worst = {(k, m): 0.0 for k in kinds for m in names}
            for n in sizes:
                for seed in range(seeds):
                    r = measure(dtype, kappa, n, seed)
                    for k in kinds:
                        for m in names:
                            worst[k, m] = max(worst[k, m], r[k][m])
            cells = " | ".join(f"{worst[k, m]:.2g}" for k in kinds for m in names)
            lines.append(f"| {dtype} | 1e{round(np.log10(kappa))} | {cells} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="n = 32, 2 seeds (default: 16, 64, 128, 5)")
    p.add_argument("--dtypes", nargs="+", default=list(KAPPAS), choices=list(KAPPAS))
    args = p.parse_args(argv)
    sizes, seeds = ((32,), 2) if args.quick else ((16, 64, 128), 5)
    print(
        f"jax {jax.__version__}, device {jax.devices()[0].platform}; worst err/(κε) over "
        f"n in {list(sizes)} and {seeds} seeds"
    )
    print(table(args.dtypes, sizes, seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
