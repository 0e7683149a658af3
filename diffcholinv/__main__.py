"""Self-check and demo: ``python -m diffcholinv``.

Inverts a batch of random symmetric positive definite matrices on the default
device, compares with ``numpy.linalg.inv``, checks the gradient against finite
differences, and prints a one-line verdict. Exit code 0 on success, 1 on
failure.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m diffcholinv",
        description=(
            "Self-check and demo of diffcholinv.cholesky_inv: inverts a batch of "
            "random SPD matrices from their Cholesky factors, compares with "
            "numpy.linalg.inv, and checks the gradient against finite differences."
        ),
    )
    p.add_argument("--n", type=int, default=64, help="matrix size (default 64)")
    p.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float64",
        help="dtype of the demo (default float64)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = p.parse_args(argv)
    if args.n < 1 or args.batch < 1:
        p.error("--n and --batch must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)

    import jax

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    from jax.test_util import check_grads

    from diffcholinv import __version__, cholesky_inv

    dev = jax.devices()[0]
    print(f"diffcholinv {__version__}  jax {jax.__version__}  device {dev} ({dev.platform})")

    rng = np.random.default_rng(args.seed)
    n, b = args.n, args.batch
    X = rng.standard_normal((b, n, n))
    A = X @ np.swapaxes(X, -1, -2) / n + np.eye(n)  # SPD, well conditioned
    L = np.linalg.cholesky(A).astype(args.dtype)
    # Junk in the unread triangle must change nothing.
    L_junk = L + np.triu(rng.standard_normal((b, n, n)), 1).astype(args.dtype) * 1e3

    t0 = time.perf_counter()
    C = jax.block_until_ready(cholesky_inv(L_junk))
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    C = jax.block_until_ready(cholesky_inv(L_junk))
    t_second = time.perf_counter() - t0

    ref = np.linalg.inv(L.astype(np.float64) @ np.swapaxes(L, -1, -2).astype(np.float64))
    err = float(np.max(np.abs(np.asarray(C, np.float64) - ref)) / np.max(np.abs(ref)))
    eps = float(np.finfo(args.dtype).eps)
    tol = 100 * eps * n  # A is well conditioned (kappa < 10)
    sym = bool(jnp.all(jnp.swapaxes(C, -1, -2) == C))
    print(
        f"forward: batch {b} x {n} x {n} {args.dtype}: max relative error vs "
        f"numpy.linalg.inv {err:.2e} (tolerance {tol:.1e}); bitwise symmetric: {sym}; "
        f"{t_first * 1e3:.1f} ms first call (compile), {t_second * 1e3:.2f} ms after"
    )

    # Gradient vs central finite differences, in float64 where enabled.
    m = min(n, 6)
    Lg = jnp.asarray(np.linalg.cholesky(A[0, :m, :m]).astype(args.dtype))
    W = jnp.asarray(rng.standard_normal((m, m)).astype(args.dtype))
    grad_ok = True
    try:
        check_grads(
            lambda L: jnp.sum(W * cholesky_inv(L)),
            (Lg,),
            order=2,
            modes=["rev"],
            atol=1e-5 if args.dtype == "float64" else 5e-2,
            rtol=1e-5 if args.dtype == "float64" else 5e-2,
        )
    except AssertionError as e:
        grad_ok = False
        print(f"gradient check FAILED: {e}")
    g = jax.grad(lambda L: jnp.sum(W * cholesky_inv(L)))(Lg)
    masked = bool(jnp.all(jnp.triu(g, 1) == 0))
    print(
        f"gradient: {m} x {m} {args.dtype}: first and second order vs finite "
        f"differences {'ok' if grad_ok else 'FAILED'}; zero on the unread triangle: {masked}"
    )

    ok = err <= tol and sym and grad_ok and masked
    print("diffcholinv self-check: " + ("PASSED" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
