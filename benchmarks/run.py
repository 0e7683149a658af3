"""Time diffcholinv against its peers; print a table of times and ratios.

Run ``python -m benchmarks`` (or ``python benchmarks/run.py``) from the
repository root; ``--quick`` runs tiny sizes only (a smoke test, under a
minute). Peers, all measured in the same run:

- ``cho_solve``: ``jax.scipy.linalg.cho_solve((L, True), I)`` under ``jit``;
- ``inv``: ``jnp.linalg.inv(L Lᵀ)`` under ``jit``;
- ``potri``: SciPy LAPACK ``?potri`` and mirroring its lower triangle (numpy);
- ``torch``: ``torch.cholesky_inverse`` (if torch is installed);
- ``mlx``: ``mx.linalg.cholesky_inv`` on the CPU stream (if mlx is installed).

Cases (``--cases``):

- ``forward``: one ``n × n`` factor (``--sizes``, ``--dtypes``), every peer;
  the ``gemm`` row is an ``n × n`` matrix product at the largest size, whose
  flop rate gives the ``2n³/3 / peak`` line of the plot (potri's flop count at
  the machine's GEMM speed);
- ``grad``: value and gradient of ``sum(G * C)`` (``G`` an argument), float64,
  ``--grad-sizes``; diffcholinv, autodiff through ``cho_solve``, torch;
- ``batched``: float32 batches of small factors;
- ``compile``: lowering plus XLA compilation of a fresh function (a new lambda
  each time, so no cache is hit) at ``--compile-sizes`` and ``--dtypes``
  (``--quick``: the first dtype only), for the forward pass and for
  ``value_and_grad`` of ``sum(sin(C))``, diffcholinv and ``cho_solve``;
  ``--compile-repeats`` compilations each, the two implementations
  interleaved, after one untimed compilation of each program;
- ``first_call``: what a new user waits for: ``jax.jit(f)(L)`` called once, to
  its result, in a fresh Python process (after its imports and building
  ``L``), float64, forward and ``value_and_grad`` at ``--first-call-sizes``;
  ``--first-call-repeats`` processes each, interleaved;
- ``growing_n``: a GP fitted while its ``n`` grows by one per step (``n =
  50 … 69``, ``--growing-n``), each step ``jax.jit`` of value and gradient
  (in the log lengthscale) of a negative log marginal likelihood that uses
  ``K⁻¹``, compiled anew and called once, as Bayesian optimisation or active
  learning does: the whole loop's seconds in a fresh process,
  ``--growing-repeats`` processes each, diffcholinv and ``cho_solve``;
- ``memory``: compiled temp memory of ``jax.jit(jax.value_and_grad(loss))``
  (``memory_analysis().temp_size_in_bytes``), float64, ``--grad-sizes``, for
  three losses of ``C``: ``sum(G * C)`` and the GP-style ``y C y + tr(C)``
  (``G`` and ``y`` arguments, not constants) and ``sum(sin(C))``; in MiB and
  in ``n²`` elements (bytes / ``n² × itemsize``).

Every timed figure is summarised as ``min (median, max)`` over its samples,
in seconds per call: for forward, grad, batched and gemm, ``--repeats``
samples (default 9; 5 with ``--quick``) after a warm-up call, and a call
faster than 1 ms is repeated in a loop of about ``MIN_SAMPLE_SECONDS`` per
sample (timer resolution and dispatch jitter would otherwise dominate); for
compile and first_call, one compilation or process per sample.
``--blas-threads`` limits the threads of the BLAS under NumPy, SciPy and
jaxlib's LAPACK kernels (``--quick``: 1; otherwise the BLAS's own number, as
users get it). ``--help`` lists every option with its defaults. Ratios are computed
from the minimum: ``k×`` in the forward, grad and batched rows is *peer time /
diffcholinv time* (above 1: diffcholinv is faster); ``ours k× of it`` in the
compile, first_call, growing_n and memory rows is *diffcholinv / cho_solve* (below 1:
diffcholinv is cheaper).

Output: the table on stdout, ``results.json`` (every row with all its
samples) and ``benchmark.png`` (forward time against n, the band from min to
max) in ``--out`` (default ``benchmarks/out``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if not __package__:  # python benchmarks/run.py: import this checkout's packages
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.linalg.lapack as lapack  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402
from tqdm import tqdm  # noqa: E402

jax.config.update("jax_enable_x64", True)
# The compile case measures compilation: no persistent cache may answer it.
jax.config.update("jax_enable_compilation_cache", False)

from benchmarks.programs import (  # noqa: E402
    INVERSES,
    PROGRAMS,
    cho_solve_inv,
    factor,
    program,
)
from diffcholinv import cholesky_inv  # noqa: E402

try:
    import torch
except ImportError:  # optional peer
    torch = None
try:
    import mlx.core as mx
except ImportError:  # optional peer
    mx = None

CASES = ["forward", "grad", "batched", "compile", "first_call", "growing_n", "memory"]
# A call faster than LOOP_BELOW_SECONDS is timed in loops of about
# MIN_SAMPLE_SECONDS: single calls of tens of microseconds measure mostly
# dispatch jitter and the state of XLA's thread pool.
LOOP_BELOW_SECONDS = 1e-3
MIN_SAMPLE_SECONDS = 5e-3
RATIOS = (
    "from the minimum; forward, grad, batched: peer / diffcholinv (above 1: diffcholinv"
    " faster); compile, first_call, memory: diffcholinv / cho_solve (below 1: diffcholinv"
    " cheaper)"
)
# The losses of the memory case: loss(C, *data), and the shapes of data for n.
MEMORY_LOSSES: dict[
    str, tuple[Callable[..., jax.Array], Callable[[int], list[tuple[int, ...]]]]
] = {
    "sum(G*C)": (lambda C, G: jnp.sum(G * C), lambda n: [(n, n)]),
    "y@C@y+trace(C)": (lambda C, y: y @ C @ y + jnp.trace(C), lambda n: [(n,)]),
    "sum(sin(C))": (lambda C: jnp.sum(jnp.sin(C)), lambda n: []),
}
# The defaults of the size and repeat options: (full run, --quick).
DEFAULTS: dict[str, tuple[Any, Any]] = {
    "sizes": ([128, 256, 512, 1024, 2048], [16, 40]),
    "grad_sizes": ([1024, 2048], [16]),
    "compile_sizes": ([8, 16, 64, 257, 1000, 2048, 4096], [8, 64]),
    "first_call_sizes": ([64, 1000], [64]),
    "repeats": (9, 5),
    "compile_repeats": (3, 3),
    "first_call_repeats": (3, 2),
    "growing_n": ([50, 69], [50, 52]),
    "growing_repeats": (2, 2),
    # With --quick, one BLAS thread: tiny factors gain nothing from more, and
    # on a machine with few cores the idle BLAS threads (NumPy's and SciPy's
    # OpenBLAS each keep a pool) compete with XLA's for the cores, which can
    # make every microsecond-sized LAPACK call wait for the scheduler.
    "blas_threads": (None, 1),
}
PROGRAM_LABEL = {"forward": "forward", "value_and_grad": "value+grad"}
# A fresh process times the first call of one program (the first_call case).
FIRST_CALL_SCRIPT = """
import json, time
import jax
import jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_enable_compilation_cache", False)
from benchmarks.programs import factor, program
L = jax.block_until_ready(jnp.asarray(factor({n}, (), "float64")))
f = jax.jit(program({impl!r}, {kind!r}))
t0 = time.perf_counter()
jax.block_until_ready(f(L))
print(json.dumps(time.perf_counter() - t0))
"""


# A fresh process fits a GP whose n grows by one per step (the growing_n case):
# every step compiles value and gradient of the NLML anew, then runs it once.
GROWING_SCRIPT = """
import json, time
import jax
import jax.numpy as jnp
import numpy as np
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_enable_compilation_cache", False)
from benchmarks.programs import gp_nlml
rng = np.random.default_rng(0)
t0 = time.perf_counter()
for n in range({lo}, {hi} + 1):
    x = jnp.asarray(np.sort(rng.uniform(0.0, 10.0, n)))
    y = jnp.sin(x) + 0.1 * jnp.asarray(rng.standard_normal(n))
    jax.block_until_ready(jax.jit(gp_nlml({impl!r}))(jnp.asarray(0.0), x, y))
print(json.dumps(time.perf_counter() - t0))
"""


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
    return (time.perf_counter() - t0) / calls


def time_calls(fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
    """``repeats`` samples of the time of ``fn()``, after a warm-up call (and compilation).

    A call faster than ``LOOP_BELOW_SECONDS`` is timed in a loop of as many
    calls as fill ``MIN_SAMPLE_SECONDS``, each sample the loop's time divided by
    its calls.
    """
    jax.block_until_ready(fn())
    once = min(seconds_per_call(fn, 1) for _ in range(3))
    calls = 1
    if once < LOOP_BELOW_SECONDS:
        calls = min(1000, math.ceil(MIN_SAMPLE_SECONDS / max(once, 1e-7)))
        seconds_per_call(fn, calls)  # the first loops of a fast call run slower
    return summary([seconds_per_call(fn, calls) for _ in range(repeats)], calls)


def interleaved(names: list[str], repeats: int) -> Iterator[str]:
    """Each name ``repeats`` times, in turn, the order reversed every other round.

    Compilation and fresh processes are slow and noisy: a slow stretch of the
    machine then hits every implementation, and none always goes first.
    """
    for r in range(repeats):
        yield from (names if r % 2 == 0 else names[::-1])


def potri_mirrored(L: np.ndarray) -> np.ndarray:
    potri = lapack.dpotri if L.dtype == np.float64 else lapack.spotri
    C, _info = potri(L, lower=1)
    return np.tril(C) + np.tril(C, -1).T


def inv_of_product(L: jax.Array) -> jax.Array:
    return jnp.linalg.inv(L @ jnp.swapaxes(L, -1, -2))


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


def timed_row(
    case: str, n: int, batch: int, dtype: str, peers: dict[str, Callable[[], Any]], repeats: int
) -> dict[str, Any]:
    seconds = {k: time_calls(f, repeats) for k, f in peers.items()}
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


def compile_samples(n: int, dtype: str, kind: str, repeats: int) -> dict[str, list[float]]:
    """Seconds to lower and compile a fresh ``jit`` of each implementation's program."""
    spec = jax.ShapeDtypeStruct((n, n), jnp.dtype(dtype))
    samples: dict[str, list[float]] = {k: [] for k in INVERSES}
    for impl in interleaved(list(INVERSES), repeats):
        t0 = time.perf_counter()
        jax.jit(program(impl, kind)).lower(spec).compile()
        samples[impl].append(time.perf_counter() - t0)
    return samples


def warm_up_compiler(dtypes: list[str]) -> None:
    """One untimed compilation of every program, so that one-off set-up is not timed."""
    for dt in dtypes:
        spec = jax.ShapeDtypeStruct((8, 8), jnp.dtype(dt))
        for impl in INVERSES:
            for kind in PROGRAMS:
                jax.jit(program(impl, kind)).lower(spec).compile()


def first_call_samples(
    n: int, kind: str, repeats: int, blas_threads: int | None
) -> dict[str, list[float]]:
    """Seconds of the first call of ``jax.jit(program)(L)``, each in a fresh process."""
    return fresh_process_samples(
        lambda impl: FIRST_CALL_SCRIPT.format(n=n, impl=impl, kind=kind), repeats, blas_threads
    )


def growing_samples(
    lo: int, hi: int, repeats: int, blas_threads: int | None
) -> dict[str, list[float]]:
    """Seconds of the growing-n loop (``n = lo … hi``), each in a fresh process."""
    return fresh_process_samples(
        lambda impl: GROWING_SCRIPT.format(lo=lo, hi=hi, impl=impl), repeats, blas_threads
    )


def fresh_process_samples(
    script: Callable[[str], str], repeats: int, blas_threads: int | None
) -> dict[str, list[float]]:
    """Seconds that ``script(impl)`` prints, run in a fresh process per sample, interleaved."""
    env = dict(os.environ)
    if blas_threads is not None:  # OpenBLAS, as SciPy's wheels ship it
        env["OPENBLAS_NUM_THREADS"] = str(blas_threads)
    samples: dict[str, list[float]] = {k: [] for k in INVERSES}
    for impl in interleaved(list(INVERSES), repeats):
        code = script(impl)
        out = subprocess.run(
            [sys.executable, "-c", code],
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


def grad_temp_bytes(n: int, dtype: str, loss_name: str) -> dict[str, int]:
    """Compiled temp memory of ``value_and_grad`` of a loss of ``C``, per implementation."""
    loss, data_shapes = MEMORY_LOSSES[loss_name]
    specs = [jax.ShapeDtypeStruct(s, jnp.dtype(dtype)) for s in [(n, n), *data_shapes(n)]]

    def temp(f: Callable[[jax.Array], jax.Array]) -> int:
        g = jax.jit(jax.value_and_grad(lambda L, *data: loss(f(L), *data)))
        return int(g.lower(*specs).compile().memory_analysis().temp_size_in_bytes)

    return {k: temp(f) for k, f in INVERSES.items()}


def memory_row(n: int, dtype: str, loss_name: str) -> dict[str, Any]:
    temp = grad_temp_bytes(n, dtype, loss_name)
    n2 = {k: b / (n * n * jnp.dtype(dtype).itemsize) for k, b in temp.items()}
    ratio = temp["diffcholinv"] / temp["cho_solve"]
    return {
        "case": "memory",
        "n": n,
        "dtype": dtype,
        "loss": loss_name,
        "temp_bytes": temp,
        "temp_n2": n2,
        "ratio": ratio,
    }


def gemm_row(n: int, dtype: str, repeats: int) -> dict[str, Any]:
    """An ``n × n`` matrix product under jit; its flop rate is the machine's GEMM peak."""
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes only (a smoke test)")
    helps = {
        "sizes": "n for forward",
        "grad_sizes": "n for grad and memory",
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
    for name, (full, quick) in DEFAULTS.items():
        p.add_argument(
            "--" + name.replace("_", "-"),
            type=int,
            nargs="+" if isinstance(full, list) else None,
            help=f"{helps[name]} (default {full}; --quick: {quick})",
        )
    p.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32", "float64"],
        help="dtypes of forward and compile (--quick compiles the first only)",
    )
    p.add_argument("--cases", nargs="+", default=CASES, choices=[*CASES, "gp_step"])
    p.add_argument("--no-torch", action="store_true", help="leave torch out")
    p.add_argument("--out", default=os.path.join("benchmarks", "out"))
    args = p.parse_args(argv)
    for name, (full, quick) in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    args.compile_dtypes = args.dtypes[:1] if args.quick else args.dtypes
    args.batched = [(64, 4), (16, 16)] if args.quick else [(100000, 4), (20000, 16), (2000, 64)]
    return args


def run_jobs(
    jobs: list[tuple[str, tuple[Any, ...]]], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Run the jobs in turn: one row per measured job."""
    rows: list[dict[str, Any]] = []
    for case, params in tqdm(jobs, desc="benchmarks", unit="case", file=sys.stderr):
        if case in ("forward", "grad"):
            n, dt = params
            peers = (forward_peers if case == "forward" else grad_peers)(factor(n, (), dt))
            rows.append(timed_row(case, n, 1, dt, peers, args.repeats))
        elif case == "batched":
            b, n, dt = params
            rows.append(timed_row(case, n, b, dt, forward_peers(factor(n, (b,), dt)), args.repeats))
        elif case == "gemm":
            rows.append(gemm_row(*params, args.repeats))
        elif case == "memory":
            rows.append(memory_row(*params))
        elif case == "warm-up":
            warm_up_compiler(args.compile_dtypes)
        elif case == "compile":
            n, dt, kind = params
            rows.append(
                cold_row(case, n, dt, kind, compile_samples(n, dt, kind, args.compile_repeats))
            )
        elif case == "growing_n":
            lo, hi = params
            samples = growing_samples(lo, hi, args.growing_repeats, args.blas_threads)
            rows.append(cold_row(case, hi, "float64", "value_and_grad", samples) | {"n_from": lo})
        else:
            n, dt, kind = params
            samples = first_call_samples(n, kind, args.first_call_repeats, args.blas_threads)
            rows.append(cold_row(case, n, dt, kind, samples))
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    global torch
    if args.no_torch:
        torch = None
    if torch is not None:
        torch.set_num_threads(os.cpu_count() or 1)
    jobs: list[tuple[str, tuple[Any, ...]]] = []
    if "forward" in args.cases:
        jobs += [("forward", (n, dt)) for dt in args.dtypes for n in args.sizes]
        jobs += [("gemm", (max(args.sizes), dt)) for dt in args.dtypes]
    if "grad" in args.cases:
        jobs += [("grad", (n, "float64")) for n in args.grad_sizes]
    if "batched" in args.cases:
        jobs += [("batched", (b, n, "float32")) for b, n in args.batched]
    if "memory" in args.cases:
        jobs += [
            ("memory", (n, "float64", loss)) for n in args.grad_sizes for loss in MEMORY_LOSSES
        ]
    if "compile" in args.cases:
        jobs += [("warm-up", ())]
        jobs += [
            ("compile", (n, dt, kind))
            for kind in PROGRAMS
            for dt in args.compile_dtypes
            for n in args.compile_sizes
        ]
    if "first_call" in args.cases:
        jobs += [
            ("first_call", (n, "float64", kind)) for kind in PROGRAMS for n in args.first_call_sizes
        ]
    if "growing_n" in args.cases:
        jobs += [("growing_n", tuple(args.growing_n))]
    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        blas = [
            {k: lib[k] for k in ("internal_api", "version", "num_threads")}
            for lib in threadpool_info()
            if lib["user_api"] == "blas"
        ]
        rows = run_jobs(jobs, args)
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
            "blas": blas,
        },
        "repeats": args.repeats,
        "compile_repeats": args.compile_repeats,
        "first_call_repeats": args.first_call_repeats,
        "blas_threads": args.blas_threads,
        "min_sample_seconds": MIN_SAMPLE_SECONDS,
        "ratios": RATIOS,
        "rows": rows,
    }
    if "gp_step" in args.cases:  # benchmarks/gp_step.py: its own rows and table
        from benchmarks import gp_step

        result["gp_step"] = gp_step.rows(args.quick, torch is not None)
        print(gp_step.format_table(result["gp_step"]))
    os.makedirs(args.out, exist_ok=True)
    print(format_table(rows))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    plot(rows, os.path.join(args.out, "benchmark.png"))
    print(f"wrote {os.path.join(args.out, 'results.json')} and benchmark.png")
    return result


def spread(s: dict[str, Any], scale: float, unit: str) -> str:
    """``min (median, max) unit``."""
    return f"{s['min'] * scale:.3g} ({s['median'] * scale:.3g}, {s['max'] * scale:.3g}) {unit}"


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table: times as min (median, max), and each peer's ratio, from the minimum."""
    peers = ["diffcholinv", "potri", "cho_solve", "inv", "torch", "mlx"]
    caption = (
        "Times per call: min (median, max) over the samples. Ratios from the minimum:"
        " `k×` = peer / diffcholinv (above 1: diffcholinv faster); `ours k× of it` ="
        " diffcholinv / cho_solve (below 1: diffcholinv cheaper)."
    )
    head = (
        "| case | shape | dtype | diffcholinv: min (median, max) | " + " | ".join(peers[1:]) + " |"
    )
    lines = [caption, "", head, "|" + "---|" * (3 + len(peers))]
    for r in rows:
        shape = f"{r['batch']}×{r['n']}×{r['n']}" if r.get("batch", 1) > 1 else f"{r['n']}×{r['n']}"
        case = r["case"]
        cells = {p: "–" for p in peers}
        if case in ("forward", "grad", "batched"):
            t = r["seconds"]
            cells["diffcholinv"] = spread(t["diffcholinv"], 1e3, "ms")
            for p in peers[1:]:
                if p in t:
                    cells[p] = f"{spread(t[p], 1e3, 'ms')}, {r['ratio'][p]:.2f}×"
        elif case in ("compile", "first_call", "growing_n"):
            t = r["seconds"]
            if case == "growing_n":
                case, shape = "GP fit, n growing (value+grad per n)", f"n = {r['n_from']}…{r['n']}"
            else:
                case = f"{case.replace('_', ' ')} ({PROGRAM_LABEL[r['program']]})"
            cells["diffcholinv"] = spread(t["diffcholinv"], 1, "s")
            cells["cho_solve"] = f"{spread(t['cho_solve'], 1, 's')}, ours {r['ratio']:.2f}× of it"
        elif case == "memory":
            m, e = r["temp_bytes"], r["temp_n2"]
            case = f"memory ({r['loss']})"
            cells["diffcholinv"] = f"{m['diffcholinv'] / 2**20:.3g} MiB = {e['diffcholinv']:.3g} n²"
            cells["cho_solve"] = (
                f"{m['cho_solve'] / 2**20:.3g} MiB = {e['cho_solve']:.3g} n²,"
                f" ours {r['ratio']:.2f}× of it"
            )
        else:
            cells["diffcholinv"] = f"{r['flops'] / 1e9:.3g} GFLOP/s (matmul, from the min)"
        lines.append(f"| {case} | {shape} | {r['dtype']} | " + " | ".join(cells.values()) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: str) -> None:
    """Log-log forward time (min, band to max) against n, with the ``2n³/3 / peak`` line."""
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


if __name__ == "__main__":
    main()
