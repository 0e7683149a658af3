"""What every case shares: the peers' imports, timing, rows, the table and the plot.

A case module (``benchmarks/forward.py`` …) defines ``rows(args) -> list[dict]``
and is registered by one line in ``benchmarks/run.py`` (``CASES``).
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)
# The compile case measures compilation: no persistent cache may answer it.
jax.config.update("jax_enable_compilation_cache", False)

ROOT = Path(__file__).resolve().parents[1]

try:
    import torch
except ImportError:  # optional peer
    torch = None
try:
    import mlx.core as mx
except ImportError:  # optional peer
    mx = None

# A call faster than LOOP_BELOW_SECONDS is timed in loops of about
# MIN_SAMPLE_SECONDS: single calls of tens of microseconds measure mostly
# dispatch jitter and the state of XLA's thread pool.
LOOP_BELOW_SECONDS = 1e-3
MIN_SAMPLE_SECONDS = 5e-3
# Seconds of sleep before each sample of an interleaved row: the previous
# peer's worker threads (OpenBLAS, OpenMP, XLA) spin for a while after a call
# and would steal the cores of a 2-core machine from the next peer.
PAUSE_SECONDS = 0.25
PROGRAM_LABEL = {"forward": "forward", "value_and_grad": "value+grad"}
PEERS = ["diffcholinv", "potri", "cho_solve", "inv", "torch", "mlx"]


class Settings:
    """Run-wide switches set by ``run.main``: torch left out, the device of the peers."""

    use_torch: bool = True
    cuda: bool = False
    pause: float = PAUSE_SECONDS


def torch_module() -> Any:
    return torch if Settings.use_torch else None


def torch_sync() -> None:
    if torch is not None and Settings.cuda:
        torch.cuda.synchronize()


def to_torch(a: np.ndarray) -> Any:
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.cuda() if Settings.cuda else t


def summary(samples: list[float], calls_per_sample: int = 1) -> dict[str, Any]:
    """Min, median and max of ``samples`` (seconds per call), and the samples."""
    return {
        "min": min(samples),
        "median": statistics.median(samples),
        "max": max(samples),
        "calls_per_sample": calls_per_sample,
        "samples": samples,
    }


def seconds_per_call(fn: Callable[[], Any], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        jax.block_until_ready(fn())
    torch_sync()
    return (time.perf_counter() - t0) / calls


def calls_per_sample(fn: Callable[[], Any]) -> int:
    """Warm ``fn`` up (and compile it); the calls per sample that fill ``MIN_SAMPLE_SECONDS``."""
    jax.block_until_ready(fn())
    once = min(seconds_per_call(fn, 1) for _ in range(3))
    calls = 1
    if once < LOOP_BELOW_SECONDS:
        calls = min(1000, math.ceil(MIN_SAMPLE_SECONDS / max(once, 1e-7)))
        seconds_per_call(fn, calls)  # the first loops of a fast call run slower
    return calls


def time_calls(fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
    """``repeats`` samples of the time of ``fn()`` (one implementation alone)."""
    calls = calls_per_sample(fn)
    return summary([seconds_per_call(fn, calls) for _ in range(repeats)], calls)


def interleaved(names: list[str], repeats: int) -> Iterator[str]:
    """Each name ``repeats`` times, in turn, the order reversed every other round.

    A slow stretch of the machine then hits every implementation, and none
    always goes first.
    """
    for r in range(repeats):
        yield from (names if r % 2 == 0 else names[::-1])


def time_peers(peers: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, Any]]:
    """Samples of every peer, interleaved, each after ``Settings.pause`` seconds of sleep."""
    calls = {k: calls_per_sample(f) for k, f in peers.items()}
    samples: dict[str, list[float]] = {k: [] for k in peers}
    for k in interleaved(list(peers), repeats):
        time.sleep(Settings.pause)
        samples[k].append(seconds_per_call(peers[k], calls[k]))
    return {k: summary(s, calls[k]) for k, s in samples.items()}


def timed_row(
    case: str, n: int, batch: int, dtype: str, peers: dict[str, Callable[[], Any]], repeats: int
) -> dict[str, Any]:
    """A row of peers timed interleaved; ``ratio``: peer / diffcholinv, from the minimum."""
    seconds = time_peers(peers, repeats)
    ours = seconds["diffcholinv"]["min"]
    ratio = {k: s["min"] / ours for k, s in seconds.items() if k != "diffcholinv"}
    return {
        "case": case,
        "n": n,
        "batch": batch,
        "dtype": dtype,
        "seconds": seconds,
        "ratio": ratio,
    }


def cold_row(
    case: str, n: int, dtype: str, kind: str, samples: dict[str, list[float]]
) -> dict[str, Any]:
    """A compile or first_call row: both implementations' samples and ours / cho_solve."""
    seconds = {k: summary(s) for k, s in samples.items()}
    ratio = seconds["diffcholinv"]["min"] / seconds["cho_solve"]["min"]
    return {
        "case": case,
        "n": n,
        "dtype": dtype,
        "program": kind,
        "seconds": seconds,
        "ratio": ratio,
    }


def fresh_process_samples(
    script: Callable[[str], str], impls: list[str], repeats: int, blas_threads: int | None
) -> dict[str, list[float]]:
    """Seconds that ``script(impl)`` prints, run in a fresh process per sample, interleaved."""
    env = dict(os.environ)
    if blas_threads is not None:  # OpenBLAS, as SciPy's wheels ship it
        env["OPENBLAS_NUM_THREADS"] = str(blas_threads)
    samples: dict[str, list[float]] = {k: [] for k in impls}
    for impl in interleaved(impls, repeats):
        out = subprocess.run(
            [sys.executable, "-c", script(impl)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if out.returncode != 0:
            raise RuntimeError(f"{impl} failed in a fresh process:\n{out.stderr}")
        samples[impl].append(float(out.stdout.split()[-1]))
    return samples


def gemm_rate(n: int, dtype: str, repeats: int) -> dict[str, Any]:
    """An ``n × n`` matrix product under jit; its flop rate is the machine's product rate."""
    rng = np.random.default_rng(2)
    a = jnp.asarray(rng.standard_normal((n, n)).astype(dtype))
    mm = jax.jit(jnp.matmul)
    seconds = time_calls(lambda: mm(a, a), repeats)
    return {
        "case": "gemm",
        "n": n,
        "dtype": dtype,
        "seconds": seconds,
        "flops": 2 * n**3 / seconds["min"],
    }


def spread(s: dict[str, Any], scale: float, unit: str) -> str:
    """``min (median, max) unit``."""
    return f"{s['min'] * scale:.3g} ({s['median'] * scale:.3g}, {s['max'] * scale:.3g}) {unit}"


def _cells(r: dict[str, Any]) -> tuple[str, str, dict[str, str], str]:
    """Case label, shape, the peers' cells and the bound cell of one row."""
    shape = f"{r['batch']}×{r['n']}×{r['n']}" if r.get("batch", 1) > 1 else f"{r['n']}×{r['n']}"
    case = r["case"] if r["case"] != "grad" else "value+grad"
    cells = {p: "–" for p in PEERS}
    bound = "–"
    t = r.get("seconds", {})
    if "ratio" in r and isinstance(r["ratio"], dict):  # forward, grad, batched and the like
        cells["diffcholinv"] = spread(t["diffcholinv"], 1e3, "ms")
        for p in PEERS[1:]:
            if p in t:
                cells[p] = f"{spread(t[p], 1e3, 'ms')}, {r['ratio'][p]:.2f}×"
        if "bound" in r:
            bound = f"{r['bound']['ours_over_bound']:.2f}× the bound"
    elif r["case"] in ("compile", "first_call", "growing_n"):
        if r["case"] == "growing_n":
            case, shape = "GP fit, n growing (value+grad per n)", f"n = {r['n_from']}…{r['n']}"
        else:
            case = f"{r['case'].replace('_', ' ')} ({PROGRAM_LABEL[r['program']]})"
        cells["diffcholinv"] = spread(t["diffcholinv"], 1, "s")
        cells["cho_solve"] = f"{spread(t['cho_solve'], 1, 's')}, ours {r['ratio']:.2f}× of it"
    elif r["case"] == "memory":
        m, e = r["temp_bytes"], r["temp_n2"]
        case = f"memory ({r['loss']})"
        cells["diffcholinv"] = f"{m['diffcholinv'] / 2**20:.3g} MiB = {e['diffcholinv']:.3g} n²"
        cells["cho_solve"] = (
            f"{m['cho_solve'] / 2**20:.3g} MiB = {e['cho_solve']:.3g} n²,"
            f" ours {r['ratio']:.2f}× of it"
        )
    elif r["case"] == "gemm":
        cells["diffcholinv"] = f"{r['flops'] / 1e9:.3g} GFLOP/s (matmul, from the min)"
    elif r["case"] == "contention":
        case, shape = f"contention ({r['program']})", f"{r['n']}×{r['n']}"
        cells["diffcholinv"] = spread(t["diffcholinv"], 1e3, "ms")
    if r.get("threads", "default") != "default":
        case = f"{case} [OPENBLAS_NUM_THREADS={r['threads']}]"
    return case, shape, cells, bound


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table: times as min (median, max), and each peer's ratio, from the minimum."""
    caption = (
        "Times per call: min (median, max) over the samples. Ratios from the minimum:"
        " `k×` = peer / diffcholinv (above 1: diffcholinv faster); `ours k× of it` ="
        " diffcholinv / cho_solve (below 1: diffcholinv cheaper); `k× the bound` ="
        " diffcholinv / (3n³ / the float64 rate of a 1024 × 1024 product)."
    )
    head = (
        "| case | shape | dtype | diffcholinv: min (median, max) | "
        + " | ".join(PEERS[1:])
        + " | product-rate bound |"
    )
    lines = [caption, "", head, "|" + "---|" * (4 + len(PEERS))]
    for r in rows:
        case, shape, cells, bound = _cells(r)
        lines.append(
            f"| {case} | {shape} | {r['dtype']} | " + " | ".join(cells.values()) + f" | {bound} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: str) -> None:
    """Log-log forward time (min, band to max) against n, with the ``2n³/3 / peak`` line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.get("threads", "default") == "default"]
    dtypes = sorted({r["dtype"] for r in rows if r["case"] == "forward"})
    if not dtypes:
        return
    fig, axes = plt.subplots(1, len(dtypes), figsize=(6 * len(dtypes), 4.5), squeeze=False)
    for ax, dt in zip(axes[0], dtypes, strict=True):
        fw = [r for r in rows if r["case"] == "forward" and r["dtype"] == dt]
        ns = np.array([r["n"] for r in fw])
        for peer in fw[0]["seconds"]:
            low, high = (
                [r["seconds"][peer][k] if peer in r["seconds"] else np.nan for r in fw]
                for k in ("min", "max")
            )
            (line,) = ax.loglog(ns, low, "o-", label=peer)
            ax.fill_between(ns, low, high, color=line.get_color(), alpha=0.2)
        peak = [r["flops"] for r in rows if r["case"] == "gemm" and r["dtype"] == dt]
        if peak:
            limit = 2 * ns.astype(float) ** 3 / 3 / peak[0]
            ax.loglog(ns, limit, "k--", label="2n³/3 at GEMM peak")
        ax.set(title=f"forward, {dt} (min; band: min to max)", xlabel="n", ylabel="seconds")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
