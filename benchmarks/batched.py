"""The ``batched`` case: float32 batches of small factors against ``cho_solve`` and torch."""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks import forward
from benchmarks._common import timed_row
from benchmarks.programs import factor


def rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [
        timed_row(
            "batched", n, b, "float32", forward.peers(factor(n, (b,), "float32")), args.repeats
        )
        for b, n in args.batched
    ]
