"""``python -m examples``: run every example, each in its own process, figures into ``--out``.

``python -m examples --out docs/images`` regenerates the figures of docs/examples.md.
Each example runs as ``python examples/<name>.py`` would (its own process:
``sharded_gp`` sets ``XLA_FLAGS`` before JAX starts), and a failing one does not
stop the others; the exit status says whether all passed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
# name -> writes <name>.png into --out
EXAMPLES = {"gp_regression": True, "loo_cv": True, "batched_gps": True, "sharded_gp": False}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m examples",
        description="Run the examples (all, or the NAMEs given), each in its own process.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help=f"some of {', '.join(EXAMPLES)}")
    p.add_argument(
        "--out", type=Path, default=HERE / "out", help="folder for the PNGs (default examples/out)"
    )
    p.add_argument("--quick", action="store_true", help="each example's tiny subset (as the tests)")
    args = p.parse_args(argv)
    unknown = sorted(set(args.names) - set(EXAMPLES))
    if unknown:
        p.error(f"unknown example(s) {', '.join(unknown)}; choose from {', '.join(EXAMPLES)}")
    failed = []
    for name in args.names or EXAMPLES:
        cmd = [sys.executable, str(HERE / f"{name}.py")] + (["--quick"] if args.quick else [])
        if EXAMPLES[name]:
            cmd += ["--out", str(args.out), "--no-progress"]
        print(f"\n=== examples/{name}.py {' '.join(cmd[2:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd)
        print(
            f"=== {name}: {'ok' if rc == 0 else f'failed ({rc})'}, {time.perf_counter() - t0:.1f} s"
        )
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
