"""Where a program's CPU time goes: Linux ``perf`` samples, grouped by what ran.

Each profile runs one program (a ``benchmarks`` peer at one shape) in a
fresh process: it is compiled and warmed up, then called in a loop while
``perf record -p`` samples that process (every thread: XLA's, OpenBLAS's,
torch's) for ``--seconds``. The samples are grouped by the library and symbol
they fell in:

- *products, BLAS*: the matrix-product kernels XLA calls (YNNPACK, Eigen)
  and OpenBLAS/LAPACK (``cho_solve``'s LAPACK calls, and their threads);
- *XLA fused loops*: the machine code XLA generates for its fusions
  (elementwise work, slices, copies, transposes, reductions);
- *XLA runtime*: its executor, thunks, thread pool and allocator;
- *kernel, memory*: page faults, page zeroing and unmapping in the Linux
  kernel, which fresh buffers cost on first touch;
- *kernel, other*: scheduling, system calls, interrupts;
- *torch*: all of ``libtorch_cpu`` (its LAPACK, MKL and OpenMP threads are
  linked in, so they are not told apart);
- *Python, libc, other*: the calling loop and the rest.

Run from the repository root, on Linux with ``perf`` installed (and
``perf_event_paranoid`` ≤ 2 for a process of your own)::

    python scripts/cpu_profile.py                 # the issue's figures, below
    python scripts/cpu_profile.py --seconds 4 --programs "value+grad 1 256 float64 ours"

A program is ``"<kind> <batch> <n> <dtype> <peer>"``: kind ``forward`` or
``value+grad`` (of ``sum(G * C)``, ``G`` an argument), peer ``ours``,
``cho_solve`` or ``torch``. Prints a Markdown table, one row per program: the
time per call (the mean over the sampled loop) and each group's share of the
samples. With ``--top K``, the ``K`` XLA operations (HLO fusions, dots,
loops) that take the longest in each JAX program, from a ``jax.profiler``
trace in another fresh process. docs/benchmarks.md, "What limits the
figures still missed", has its output.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# The figures of the issue on mid-size speed that one run did not meet, and the peer each missed.
DEFAULT_PROGRAMS = [
    "value+grad 1 64 float64 ours",
    "value+grad 1 64 float64 cho_solve",
    "value+grad 1 256 float64 ours",
    "value+grad 1 512 float64 ours",
    "forward 1 128 float32 ours",
    "forward 1 128 float32 torch",
    "forward 1 1024 float32 ours",
    "forward 1 1024 float32 torch",
    "forward 20000 16 float32 ours",
    "forward 20000 16 float32 torch",
    "forward 2000 64 float32 ours",
    "forward 2000 64 float32 torch",
]
GROUPS = [
    "products, BLAS",
    "XLA fused loops",
    "XLA runtime",
    "kernel, memory",
    "kernel, other",
    "torch",
    "Python, libc, other",
]
DOT = re.compile(r"ynn::|xnn|Eigen::internal::(gebp|gemm|general_matrix)|gemm_pack|sgemm|dgemm")
BLAS_DSO = re.compile(r"openblas|lapack|blas")
TORCH_DSO = re.compile(r"libtorch|libc10|libgomp|libiomp|libmkl")
KERNEL_MEMORY = re.compile(
    r"page|folio|mm_|_mm|unmap|zap_|memcg|lru|pte|pmd|tlb|rmqueue|mem_cgroup|clear_|vma|mmap|brk"
)


def group(dso: str, symbol: str) -> str:
    """The group of one perf sample, from its shared object and symbol."""
    if dso.startswith("[JIT]") or dso.startswith("jitted-"):
        return "XLA fused loops"
    if dso == "[kernel.kallsyms]":
        return "kernel, memory" if KERNEL_MEMORY.search(symbol) else "kernel, other"
    if TORCH_DSO.search(dso):
        return "torch"
    if DOT.search(symbol) or BLAS_DSO.search(dso):
        return "products, BLAS"
    if "jax" in dso or "xla" in dso:
        return "XLA runtime"
    return "Python, libc, other"


def make_call(kind: str, batch: int, n: int, dtype: str, peer: str) -> Callable[[], Any]:
    """A zero-argument call of one program, compiled and ready: the benchmarks' own peer."""
    sys.path.insert(0, str(ROOT))
    import jax

    from benchmarks import forward, grad
    from benchmarks.programs import factor

    L = factor(n, (batch,) if batch > 1 else (), dtype)
    peers = forward.peers(L, inv=False) if kind == "forward" else grad.peers(L)
    name = "diffcholinv" if peer == "ours" else peer
    if name not in peers:
        raise SystemExit(f"cpu_profile: no peer {peer!r} here (torch not installed?)")
    call = peers[name]
    return lambda: jax.block_until_ready(call())


def run_child(spec: str) -> None:
    """Warm up, say ``ready``, then call until stdin closes; print the mean seconds per call."""
    call = make_call(*parse(spec))
    for _ in range(3):
        call()
    print("ready", flush=True)
    import select

    calls, t0 = 0, time.perf_counter()
    while not select.select([sys.stdin], [], [], 0)[0]:
        call()
        calls += 1
    print((time.perf_counter() - t0) / max(calls, 1), flush=True)


def run_ops_child(spec: str, top: int) -> None:
    """Print (JSON) the ``top`` XLA ops by time per call, from a ``jax.profiler`` trace of 10 calls.

    Needs ``--xla_cpu_enable_xprof_traceme=true`` in ``XLA_FLAGS`` (set by
    :func:`ops`), so that XLA:CPU marks each thunk (a fusion, a dot, a loop)
    in the trace under its HLO name.
    """
    import collections
    import json

    import jax

    if not hasattr(jax.profiler, "ProfileData"):
        raise SystemExit(
            f"cpu_profile: --top needs jax.profiler.ProfileData, not in jax {jax.__version__}"
        )
    call, calls = make_call(*parse(spec)), 10
    for _ in range(3):
        call()
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            t0 = time.perf_counter()
            for _ in range(calls):
                call()
            wall = (time.perf_counter() - t0) / calls
        (path,) = Path(tmp).rglob("*.xplane.pb")
        data = jax.profiler.ProfileData.from_file(str(path))
    per_op: collections.Counter[str] = collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            if line.name.startswith("tf_XLA"):  # XLA's own threads: the thunks
                for event in line.events:
                    if not event.name.startswith("ThunkExecutor"):
                        per_op[event.name] += event.duration_ns * 1e-9 / calls
    print(json.dumps({"wall": wall, "ops": per_op.most_common(top), "sum": sum(per_op.values())}))


def ops(spec: str, top: int) -> dict[str, Any]:
    """The child of :func:`run_ops_child`: its JSON."""
    import json
    import os

    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()
    out = subprocess.run(
        [sys.executable, __file__, "--ops-child", spec, "--top", str(top)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def ops_table(spec: str, result: dict[str, Any]) -> str:
    lines = [
        f"{spec}: {result['wall'] * 1e3:.3g} ms per call while traced, of which XLA ops"
        f" {result['sum'] * 1e3:.3g} ms; the longest:",
        "",
        "| op | ms per call |",
        "|---|---|",
    ]
    lines += [f"| `{name}` | {t * 1e3:.3g} |" for name, t in result["ops"]]
    return "\n".join(lines)


def parse(spec: str) -> tuple[str, int, int, str, str]:
    kind, batch, n, dtype, peer = spec.split()
    return kind, int(batch), int(n), dtype, peer


def profile(spec: str, seconds: float) -> dict[str, Any]:
    """One program's seconds per call and the share of each group in its perf samples."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", spec],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{spec}: the program did not start")
        with tempfile.TemporaryDirectory() as tmp:
            data = str(Path(tmp) / "perf.data")
            record = ["perf", "record", "-q", "-F", "2000", "-p", str(child.pid), "-o", data]
            subprocess.run([*record, "--", "sleep", str(seconds)], check=True, capture_output=True)
            child.stdin.close()
            per_call = float(child.stdout.readline())
            columns = ["-F", "period,dso,sym", "--field-separator", "\t"]
            report = subprocess.run(
                ["perf", "report", "-i", data, "--stdio", "--no-children", *columns],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    shares = dict.fromkeys(GROUPS, 0.0)
    for line in report.splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and fields[0].strip().isdigit():
            period, dso, symbol = fields
            shares[group(dso.strip(), symbol.strip())] += float(period)
    total = sum(shares.values())
    if total == 0:
        raise RuntimeError(f"{spec}: perf recorded no samples that this script could read")
    return {"program": spec, "seconds": per_call, **{g: s / total for g, s in shares.items()}}


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| program | per call | " + " | ".join(GROUPS) + " |",
        "|---|---|" + "---|" * len(GROUPS),
    ]
    for r in rows:
        t = r["seconds"]
        per_call = f"{t * 1e3:.3g} ms"
        shares = " | ".join(f"{r[g]:.0%}" for g in GROUPS)
        lines.append(f"| {r['program']} | {per_call} | {shares} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--programs", nargs="+", default=DEFAULT_PROGRAMS)
    p.add_argument("--seconds", type=float, default=6.0, help="sampling time per program")
    p.add_argument(
        "--top",
        type=int,
        default=0,
        help="also list the TOP longest XLA ops of each JAX program (a jax.profiler trace)",
    )
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--ops-child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        run_child(args.child)
        return
    if args.ops_child:
        run_ops_child(args.ops_child, args.top)
        return
    if shutil.which("perf") is None:
        raise SystemExit("cpu_profile: needs Linux perf (Debian: apt install linux-perf)")
    rows = []
    for spec in args.programs:
        rows.append(profile(spec, args.seconds))
        print(f"{spec}: done", file=sys.stderr, flush=True)
    print(table(rows))
    if args.top:
        for spec in args.programs:
            if parse(spec)[-1] != "torch":
                print("\n" + ops_table(spec, ops(spec, args.top)))


if __name__ == "__main__":
    main()
