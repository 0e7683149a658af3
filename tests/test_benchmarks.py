"""Smoke test: the benchmark script runs on tiny sizes and writes its outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_quick_run(tmp_path):
    cmd = [sys.executable, "-m", "benchmarks", "--quick", "--no-torch", "--out", str(tmp_path)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    assert "| forward |" in out.stdout
    result = json.loads((tmp_path / "results.json").read_text())
    cases = {r["case"] for r in result["rows"]}
    assert cases == {"forward", "gemm", "grad", "batched", "memory", "compile"}
    for r in result["rows"]:
        if r["case"] in ("forward", "grad", "batched"):
            assert {"diffcholinv", "cho_solve"} <= set(r["seconds"])
            assert all(t > 0 for t in r["seconds"].values())
    assert (tmp_path / "benchmark.png").stat().st_size > 0
