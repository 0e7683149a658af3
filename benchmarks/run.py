"""Time diffcholinv against its peers; print a table of times and ratios.

Run ``python -m benchmarks`` from the repository root; ``--quick`` runs tiny
sizes only (a smoke test). One module per case, registered in ``CASES``:
``forward``, ``grad`` (value+grad with the product-rate bound), ``batched``,
``compile``, ``first_call``, ``growing_n``, ``memory``, ``contention`` (each
module's docstring says what it measures); timing, rows and the table are in
``benchmarks/_common.py``.

Peers of a timed row are measured interleaved (the order reversed every other
round), each sample after a pause of ``--pause`` seconds so that the previous
peer's worker threads have gone idle, with the thread settings users get by
default. ``--threads default 1`` runs the whole set again in a fresh process
with ``OPENBLAS_NUM_THREADS=1``, each row tagged with its setting.
``--compare previous.json`` prints every ratio against an earlier run's.
``--gpu-check`` runs the core tests and the forward, grad, batched and compile
cases on a CUDA GPU (reduced on CPU).

Every timed figure is ``min (median, max)`` over its samples, in seconds per
call; a call faster than 1 ms is repeated in a loop of about 5 ms per sample.
Ratios are computed from the minimum: ``k×`` is *peer time / diffcholinv
time* (above 1: diffcholinv is faster); ``ours k× of it`` (compile,
first_call, growing_n, memory) is *diffcholinv / cho_solve* (below 1:
diffcholinv is cheaper); ``k× the bound`` is diffcholinv / ``3n³ / r``.

Output: the table on stdout, ``results.json`` (every row with all its
samples) and ``benchmark.png`` in ``--out`` (default ``benchmarks/out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import jax
import numpy as np
import scipy
from threadpoolctl import threadpool_info, threadpool_limits
from tqdm import tqdm

from benchmarks import (
    batched,
    compile,
    contention,
    first_call,
    forward,
    gp_step,
    grad,
    growing_n,
    memory,
)
from benchmarks._common import (
    MIN_SAMPLE_SECONDS,
    PAUSE_SECONDS,
    ROOT,
    Settings,
    format_table,
    mx,
    plot,
    torch,
)

# The cases, in the order they run: name -> rows(args). One more case is one
# more line here (a module with ``rows(args: argparse.Namespace) -> list[dict]``).
CASES: dict[str, Callable[[argparse.Namespace], list[dict[str, Any]]]] = {
    "forward": forward.rows,
    "grad": grad.rows,
    "batched": batched.rows,
    "memory": memory.rows,
    "compile": compile.rows,
    "first_call": first_call.rows,
    "growing_n": growing_n.rows,
    "contention": contention.rows,
}
# Cases whose rows have columns of their own, printed as their own table:
# name -> (rows(quick, use_torch), format_table(rows)). Not run by default.
OWN_TABLE: dict[str, tuple[Callable[[bool, bool], list[dict[str, Any]]], Callable[..., str]]] = {
    "gp_step": (gp_step.rows, gp_step.format_table),
}
# Run by default (contention runs its own fresh processes with both settings).
DEFAULT_CASES = ["forward", "grad", "batched", "memory", "compile", "first_call", "growing_n"]
RATIOS = (
    "from the minimum; forward, grad, batched: peer / diffcholinv (above 1: diffcholinv"
    " faster); compile, first_call, memory: diffcholinv / cho_solve (below 1: diffcholinv"
    " cheaper); bound: diffcholinv / (3n³ / float64 rate of a 1024 × 1024 product)"
)
# The defaults of the size and repeat options: (full run, --quick).
DEFAULTS: dict[str, tuple[Any, Any]] = {
    "sizes": ([128, 256, 512, 1024, 2048], [16]),
    "grad_sizes": ([64, 128, 256, 512, 1024, 2048], [16]),
    "memory_sizes": ([1024, 2048], [16]),
    "compile_sizes": ([8, 16, 64, 257, 1000, 2048, 4096], [8, 16]),
    "first_call_sizes": ([64, 1000], [16]),
    "repeats": (7, 2),
    "compile_repeats": (3, 2),
    "first_call_repeats": (3, 2),
    "growing_n": ([50, 69], [50, 51]),
    "growing_repeats": (2, 2),
    # With --quick, one BLAS thread: tiny factors gain nothing from more.
    "blas_threads": (None, 1),
}
HELPS = {
    "sizes": "n for forward",
    "grad_sizes": "n for grad",
    "memory_sizes": "n for memory",
    "compile_sizes": "n for compile",
    "first_call_sizes": "n for first_call",
    "repeats": "samples per forward, grad, batched and gemm figure",
    "compile_repeats": "compilations per compile figure",
    "first_call_repeats": "fresh processes per first_call figure",
    "growing_n": "first and last n of the growing_n loop",
    "growing_repeats": "fresh processes per growing_n figure",
    "blas_threads": "threads of the BLAS that NumPy, SciPy and jaxlib's LAPACK kernels"
    " call (threadpoolctl; None: the BLAS's own number)",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes only (a smoke test)")
    for name, (full, quick) in DEFAULTS.items():
        p.add_argument(
            "--" + name.replace("_", "-"),
            type=int,
            nargs="+" if isinstance(full, list) else None,
            help=f"{HELPS[name]} (default {full}; --quick: {quick})",
        )
    p.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32", "float64"],
        help="dtypes of forward and compile (--quick compiles the first only)",
    )
    p.add_argument("--cases", nargs="+", default=DEFAULT_CASES, choices=[*CASES, *OWN_TABLE])
    p.add_argument("--no-torch", action="store_true", help="leave torch out")
    p.add_argument("--out", default=os.path.join("benchmarks", "out"))
    p.add_argument(
        "--pause", type=float, default=PAUSE_SECONDS, help="seconds of sleep before each sample"
    )
    p.add_argument(
        "--threads",
        nargs="+",
        default=["default"],
        help="BLAS thread settings, one row set each: 'default' (as users get it) or a"
        " number for OPENBLAS_NUM_THREADS (each setting in a fresh process)",
    )
    p.add_argument("--compare", help="an earlier results.json: print every ratio's change")
    p.add_argument(
        "--gpu-check",
        action="store_true",
        help="core tests and forward, grad, batched, compile on the GPU (reduced on CPU)",
    )
    args = p.parse_args(argv)
    for name, (full, quick) in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    args.compile_dtypes = args.dtypes[:1] if args.quick else args.dtypes
    args.batched = [(64, 4), (16, 16)] if args.quick else [(100000, 4), (20000, 16), (2000, 64)]
    return args


def current_threads() -> str:
    return os.environ.get("OPENBLAS_NUM_THREADS", "default")


def in_fresh_process(argv: list[str], threads: str) -> list[dict[str, Any]]:
    """The rows of this run under another BLAS thread setting, from a fresh process."""
    env = dict(os.environ)
    env.pop("OPENBLAS_NUM_THREADS", None)
    if threads != "default":
        env["OPENBLAS_NUM_THREADS"] = threads
    with tempfile.TemporaryDirectory() as out:
        child = [*argv, "--threads", threads, "--out", out]
        subprocess.run([sys.executable, "-m", "benchmarks", *child], cwd=ROOT, env=env, check=True)
        with open(os.path.join(out, "results.json")) as f:
            rows: list[dict[str, Any]] = json.load(f)["rows"]
    return rows


def row_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(r.get(k) for k in ("case", "n", "batch", "dtype", "program", "loss", "threads"))


def compare(rows: list[dict[str, Any]], path: str, tolerance: float = 0.15) -> str:
    """Each ratio of ``rows`` against the same row's in an earlier ``results.json``."""
    with open(path) as f:
        before = {row_key(r): r for r in json.load(f)["rows"]}
    lines = ["| row | ratio | now | before | change |", "|---|---|---|---|---|"]
    worst = 0.0
    for r in rows:
        old = before.get(row_key(r))
        if old is None or "ratio" not in r:
            continue
        pairs = (
            [(k, v, old["ratio"].get(k)) for k, v in r["ratio"].items()]
            if isinstance(r["ratio"], dict)
            else [("vs cho_solve", r["ratio"], old["ratio"])]
        )
        if "bound" in r and "bound" in old:
            pairs.append(("bound", r["bound"]["ours_over_bound"], old["bound"]["ours_over_bound"]))
        for name, now, then in pairs:
            if then is None:
                continue
            change = now / then - 1
            worst = max(worst, abs(change))
            label = " ".join(str(x) for x in row_key(r) if x is not None)
            flag = " ✗" if abs(change) > tolerance else ""
            lines.append(f"| {label} | {name} | {now:.3g} | {then:.3g} | {change:+.0%}{flag} |")
    verdict = "agree" if worst <= tolerance else "disagree"
    lines.append(f"\nlargest change {worst:.0%}: the runs {verdict} within {tolerance:.0%}")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    blas = [
        {k: lib[k] for k in ("internal_api", "version", "num_threads")}
        for lib in threadpool_info()
        if lib["user_api"] == "blas"
    ]
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch": None if torch is None else torch.__version__,
        "mlx": None if mx is None else getattr(mx, "__version__", "?"),
        "blas": blas,
    }


def run_cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        cases = [c for c in args.cases if c in CASES]
        for case in tqdm(cases, desc="benchmarks", unit="case", file=sys.stderr):
            rows += CASES[case](args)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    Settings.use_torch = not args.no_torch
    Settings.pause = args.pause
    if args.gpu_check:
        from benchmarks import gpu_check

        return gpu_check.main(args)
    here = current_threads()
    if args.threads == [here]:
        rows = run_cases(args)
        for r in rows:
            r.setdefault("threads", here)
    else:  # every setting in its own process: the BLAS reads its threads when loaded
        parent = _drop_options(argv, ("--threads", "--out", "--compare"))
        rows = [r for t in args.threads for r in in_fresh_process(parent, t)]
    return write(args, rows)


def _drop_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """``argv`` without the options ``names`` and their values."""
    out: list[str] = []
    skip = False
    for a in argv:
        if a.startswith("--"):
            skip = a.split("=")[0] in names
        if not skip:
            out.append(a)
    return out


def write(args: argparse.Namespace, rows: list[dict[str, Any]]) -> dict[str, Any]:
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "repeats": args.repeats,
        "compile_repeats": args.compile_repeats,
        "first_call_repeats": args.first_call_repeats,
        "blas_threads": args.blas_threads,
        "threads": args.threads,
        "pause_seconds": args.pause,
        "min_sample_seconds": MIN_SAMPLE_SECONDS,
        "ratios": RATIOS,
        "rows": rows,
    }
    for case in args.cases:
        if case in OWN_TABLE:
            own_rows, own_table = OWN_TABLE[case]
            result[case] = own_rows(args.quick, torch is not None)
            print(own_table(result[case]))
    os.makedirs(args.out, exist_ok=True)
    print(format_table(rows))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    plot(rows, os.path.join(args.out, "benchmark.png"))
    print(f"wrote {os.path.join(args.out, 'results.json')} and benchmark.png")
    if args.compare:
        print(compare(rows, args.compare))
    return result


if __name__ == "__main__":
    main()
