"""Time diffcholinv against its peers; print a table of times and ratios.

Run ``python -m benchmarks`` (or ``python benchmarks/run.py``) from the
repository root; ``--quick`` runs tiny sizes only (a smoke test). Peers, all
measured in the same run, each the minimum over ``--repeats`` calls after a
warm-up (and compilation):

- ``cho_solve``: ``jax.scipy.linalg.cho_solve((L, True), I)`` under ``jit``;
- ``inv``: ``jnp.linalg.inv(L Lᵀ)`` under ``jit``;
- ``potri``: SciPy LAPACK ``?potri`` and mirroring its lower triangle (numpy);
- ``torch``: ``torch.cholesky_inverse`` (if torch is installed);
- ``mlx``: ``mx.linalg.cholesky_inv`` on the CPU stream (if mlx is installed).

Cases: ``forward`` (one ``n × n`` factor), ``grad`` (value and gradient of
``sum(G * inv)``, float64), ``batched`` (float32 batches of small factors),
``compile`` (lowering plus compilation of the forward pass) and ``memory``
(compiled temp memory of the gradient, from ``memory_analysis()``). Ratios are
``peer time / diffcholinv time``: above 1 means diffcholinv is faster. The
``gemm`` row is an ``n × n`` matrix product; its flop rate gives the
``2n³/3 / peak`` line of the plot (potri's flop count at the machine's GEMM
speed).

Output: the table on stdout, ``results.json`` and ``benchmark.png`` in
``--out`` (default ``benchmarks/out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.linalg.lapack as lapack
from tqdm import tqdm

jax.config.update("jax_enable_x64", True)

from diffcholinv import cholesky_inv  # noqa: E402

try:
    import torch
except ImportError:  # optional peer
    torch = None
try:
    import mlx.core as mx
except ImportError:  # optional peer
    mx = None


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    """Minimum wall time of ``fn()`` over ``repeats`` calls, after one warm-up."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)


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


def inv_of_product(L: jax.Array) -> jax.Array:
    return jnp.linalg.inv(L @ jnp.swapaxes(L, -1, -2))


def potri_mirrored(L: np.ndarray) -> np.ndarray:
    potri = lapack.dpotri if L.dtype == np.float64 else lapack.spotri
    C, _info = potri(L, lower=1)
    return np.tril(C) + np.tril(C, -1).T


def forward_peers(L: np.ndarray) -> dict[str, Callable[[], Any]]:
    """Zero-argument callables computing ``(L Lᵀ)⁻¹``, one per implementation."""
    Lj = jnp.asarray(L)
    ours = jax.jit(cholesky_inv)
    cs = jax.jit(cho_solve_inv)
    inv = jax.jit(inv_of_product)
    peers: dict[str, Callable[[], Any]] = {
        "diffcholinv": lambda: ours(Lj),
        "cho_solve": lambda: cs(Lj),
        "inv": lambda: inv(Lj),
    }
    if L.ndim == 2:
        Lf = np.asfortranarray(L)
        peers["potri"] = lambda: potri_mirrored(Lf)
    if torch is not None:
        Lt = torch.from_numpy(L)
        peers["torch"] = lambda: torch.cholesky_inverse(Lt)
    if mx is not None:
        Lm = mx.array(L)
        peers["mlx"] = lambda: mx.eval(mx.linalg.cholesky_inv(Lm, stream=mx.cpu))
    return peers


def grad_peers(L: np.ndarray) -> dict[str, Callable[[], Any]]:
    """Value and gradient of ``sum(G * inv(L))``, one callable per implementation."""
    G = np.random.default_rng(1).standard_normal(L.shape).astype(L.dtype)
    Lj, Gj = jnp.asarray(L), jnp.asarray(G)
    # G is an argument, not a constant folded into the program: in training
    # the cotangent is data.
    ours = jax.jit(jax.value_and_grad(lambda L, G: jnp.sum(G * cholesky_inv(L))))
    cs = jax.jit(jax.value_and_grad(lambda L, G: jnp.sum(G * cho_solve_inv(L))))
    peers: dict[str, Callable[[], Any]] = {
        "diffcholinv": lambda: ours(Lj, Gj),
        "cho_solve": lambda: cs(Lj, Gj),
    }
    if torch is not None:
        Gt = torch.from_numpy(G)

        def torch_grad() -> Any:
            Lt = torch.from_numpy(L).requires_grad_(True)
            value = (Gt * torch.cholesky_inverse(Lt)).sum()
            value.backward()
            return value.detach(), Lt.grad

        peers["torch"] = torch_grad
    return peers


def grad_temp_bytes(n: int, dtype: str) -> dict[str, int]:
    """Compiled temp memory of the gradient, diffcholinv and autodiff through cho_solve."""
    spec = jax.ShapeDtypeStruct((n, n), jnp.dtype(dtype))

    def temp(f: Callable[[jax.Array], jax.Array]) -> int:
        g = jax.jit(jax.grad(lambda L: jnp.sum(jnp.sin(f(L)))))
        return int(g.lower(spec).compile().memory_analysis().temp_size_in_bytes)

    return {"diffcholinv": temp(cholesky_inv), "cho_solve": temp(cho_solve_inv)}


def compile_seconds(n: int, dtype: str) -> float:
    """Lowering plus compilation of the forward pass (a fresh function each time)."""
    spec = jax.ShapeDtypeStruct((n, n), jnp.dtype(dtype))
    t0 = time.perf_counter()
    jax.jit(lambda L: cholesky_inv(L)).lower(spec).compile()
    return time.perf_counter() - t0


def gemm_flops(n: int, dtype: str, repeats: int) -> float:
    """Flop rate of an ``n × n`` matrix product under jit (the machine's GEMM peak)."""
    rng = np.random.default_rng(2)
    a = jnp.asarray(rng.standard_normal((n, n)).astype(dtype))
    mm = jax.jit(jnp.matmul)
    return 2 * n**3 / best_time(lambda: mm(a, a), repeats)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes only (a smoke test)")
    p.add_argument("--sizes", type=int, nargs="+", help="n for forward/grad")
    p.add_argument("--grad-sizes", type=int, nargs="+", help="n for the gradient")
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--compile-n", type=int, help="n for the compile-time figure")
    p.add_argument(
        "--cases",
        nargs="+",
        default=["forward", "grad", "batched", "compile", "memory"],
        choices=["forward", "grad", "batched", "compile", "memory"],
    )
    p.add_argument("--no-torch", action="store_true", help="leave torch out")
    p.add_argument("--out", default=os.path.join("benchmarks", "out"))
    args = p.parse_args(argv)
    if args.quick:
        args.sizes = args.sizes or [16, 40]
        args.grad_sizes = args.grad_sizes or [16]
        args.batched = [(64, 4), (16, 16)]
        args.compile_n = args.compile_n or 64
        args.repeats = min(args.repeats, 2)
    else:
        args.sizes = args.sizes or [128, 256, 512, 1024, 2048]
        args.grad_sizes = args.grad_sizes or [1024, 2048]
        args.batched = [(100000, 4), (20000, 16), (2000, 64)]
        args.compile_n = args.compile_n or 4096
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    global torch
    if args.no_torch:
        torch = None
    if torch is not None:
        torch.set_num_threads(os.cpu_count() or 1)
    rows: list[dict[str, Any]] = []
    jobs: list[tuple[str, tuple[Any, ...]]] = []
    if "forward" in args.cases:
        jobs += [("forward", (n, dt)) for dt in args.dtypes for n in args.sizes]
        jobs += [("gemm", (max(args.sizes), dt)) for dt in args.dtypes]
    if "grad" in args.cases:
        jobs += [("grad", (n, "float64")) for n in args.grad_sizes]
    if "batched" in args.cases:
        jobs += [("batched", (b, n, "float32")) for b, n in args.batched]
    if "memory" in args.cases:
        jobs += [("memory", (n, "float64")) for n in args.grad_sizes]
    if "compile" in args.cases:
        jobs += [("compile", (args.compile_n, "float32"))]
    for case, params in tqdm(jobs, desc="benchmarks", unit="case", file=sys.stderr):
        if case in ("forward", "grad"):
            n, dt = params
            L = factor(n, (), dt)
            peers = (forward_peers if case == "forward" else grad_peers)(L)
            times = {k: best_time(f, args.repeats) for k, f in peers.items()}
            rows.append({"case": case, "n": n, "batch": 1, "dtype": dt, "seconds": times})
        elif case == "batched":
            b, n, dt = params
            peers = forward_peers(factor(n, (b,), dt))
            times = {k: best_time(f, args.repeats) for k, f in peers.items()}
            rows.append({"case": case, "n": n, "batch": b, "dtype": dt, "seconds": times})
        elif case == "gemm":
            n, dt = params
            rows.append(
                {"case": case, "n": n, "dtype": dt, "flops": gemm_flops(n, dt, args.repeats)}
            )
        elif case == "memory":
            n, dt = params
            rows.append({"case": case, "n": n, "dtype": dt, "temp_bytes": grad_temp_bytes(n, dt)})
        else:
            n, dt = params
            rows.append({"case": case, "n": n, "dtype": dt, "seconds": compile_seconds(n, dt)})
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "jax": jax.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "torch": None if torch is None else torch.__version__,
            "mlx": None if mx is None else getattr(mx, "__version__", "?"),
        },
        "repeats": args.repeats,
        "rows": rows,
    }
    os.makedirs(args.out, exist_ok=True)
    print(format_table(rows))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    plot(rows, os.path.join(args.out, "benchmark.png"))
    print(f"wrote {os.path.join(args.out, 'results.json')} and benchmark.png")
    return result


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table: times in ms, and each peer's ratio to diffcholinv."""
    peers = ["diffcholinv", "potri", "cho_solve", "inv", "torch", "mlx"]
    head = "| case | shape | dtype | " + " | ".join(peers) + " |"
    lines = [head, "|" + "---|" * (3 + len(peers))]
    for r in rows:
        shape = f"{r['batch']}×{r['n']}×{r['n']}" if r.get("batch", 1) > 1 else f"{r['n']}×{r['n']}"
        if r["case"] in ("forward", "grad", "batched"):
            t = r["seconds"]
            ours = t["diffcholinv"]
            cells = [f"{ours * 1e3:.3g} ms"]
            for p in peers[1:]:
                cells.append(f"{t[p] * 1e3:.3g} ms ({t[p] / ours:.2f}×)" if p in t else "–")
        elif r["case"] == "memory":
            m = r["temp_bytes"]
            cells = [f"{m['diffcholinv'] / 2**20:.3g} MiB", "–"]
            share = m["diffcholinv"] / m["cho_solve"]
            cells += [f"{m['cho_solve'] / 2**20:.3g} MiB (ours {share:.2f}× of it)"]
            cells += ["–"] * (len(peers) - 3)
        elif r["case"] == "gemm":
            cells = [f"{r['flops'] / 1e9:.3g} GFLOP/s (matmul)"] + ["–"] * (len(peers) - 1)
        else:
            cells = [f"{r['seconds']:.3g} s"] + ["–"] * (len(peers) - 1)
        lines.append(f"| {r['case']} | {shape} | {r['dtype']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: str) -> None:
    """Log-log forward time against n per implementation, with the ``2n³/3 / peak`` line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes = sorted({r["dtype"] for r in rows if r["case"] == "forward"})
    if not dtypes:
        return
    fig, axes = plt.subplots(1, len(dtypes), figsize=(6 * len(dtypes), 4.5), squeeze=False)
    for ax, dt in zip(axes[0], dtypes, strict=True):
        fw = [r for r in rows if r["case"] == "forward" and r["dtype"] == dt]
        ns = np.array([r["n"] for r in fw])
        for peer in fw[0]["seconds"]:
            ts = [r["seconds"].get(peer, np.nan) for r in fw]
            ax.loglog(ns, ts, "o-", label=peer)
        peak = [r["flops"] for r in rows if r["case"] == "gemm" and r["dtype"] == dt]
        if peak:
            limit = 2 * ns.astype(float) ** 3 / 3 / peak[0]
            ax.loglog(ns, limit, "k--", label="2n³/3 at GEMM peak")
        ax.set(title=f"forward, {dt}", xlabel="n", ylabel="seconds")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
