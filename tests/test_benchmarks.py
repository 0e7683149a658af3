"""Smoke test: the benchmark script runs on tiny sizes and writes its outputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import jax
import pytest
from helpers import ROOT, script

TIMED = ("forward", "grad", "batched", "gemm", "compile", "first_call", "growing_n")


def _sane_summary(s):
    assert 0 < s["min"] <= s["median"] <= s["max"], s
    assert len(s["samples"]) >= 2 and min(s["samples"]) == s["min"], s
    assert s["calls_per_sample"] >= 1, s


def test_benchmark_quick_run(tmp_path):
    # --pause 0: a smoke test, whose figures nobody reads.
    cmd = [sys.executable, "-m", "benchmarks", "--quick", "--no-torch", "--pause", "0"]
    cmd += ["--out", str(tmp_path)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    for label in ("| forward |", "| compile (forward) |", "| first call (value+grad) |"):
        assert label in out.stdout, label
    result = json.loads((tmp_path / "results.json").read_text())
    rows = result["rows"]
    cases = {r["case"] for r in rows}
    assert cases == {
        "forward",
        "gemm",
        "grad",
        "batched",
        "memory",
        "compile",
        "first_call",
        "growing_n",
    }
    for r in rows:
        if r["case"] in TIMED:
            for s in [r["seconds"]] if r["case"] == "gemm" else r["seconds"].values():
                _sane_summary(s)
        if r["case"] in ("forward", "grad", "batched"):
            assert {"diffcholinv", "cho_solve"} <= set(r["seconds"])
            assert all(k in r["seconds"] and v > 0 for k, v in r["ratio"].items())
        if r["case"] in ("compile", "first_call", "growing_n"):
            assert set(r["seconds"]) == {"diffcholinv", "cho_solve"}
            assert r["ratio"] > 0
        if r["case"] == "memory":
            assert set(r["temp_bytes"]) == {"diffcholinv", "cho_solve"}
            assert all(b > 0 for b in r["temp_bytes"].values())
            assert all(e > 0 for e in r["temp_n2"].values()) and r["ratio"] > 0
    compiled = {(r["n"], r["program"]) for r in rows if r["case"] == "compile"}
    assert compiled == {(n, p) for n in (8, 16) for p in ("forward", "value_and_grad")}
    first = {(r["n"], r["program"]) for r in rows if r["case"] == "first_call"}
    assert first == {(16, "forward"), (16, "value_and_grad")}
    growing = [(r["n_from"], r["n"]) for r in rows if r["case"] == "growing_n"]
    assert growing == [(50, 51)]
    losses = {r["loss"] for r in rows if r["case"] == "memory"}
    assert losses == {"sum(G*C)", "y@C@y+trace(C)", "sum(sin(C))"}
    assert (tmp_path / "benchmark.png").stat().st_size > 0


def test_gpu_check_runs_reduced_without_a_gpu(tmp_path):
    cmd = [sys.executable, "-m", "benchmarks", "--gpu-check", "--no-torch", "--out", str(tmp_path)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    if not result["gpu"]:
        assert "no CUDA GPU here" in out.stdout and "running reduced" in out.stdout
    assert result["tests"]["returncode"] == 0 and "passed" in result["tests"]["summary"]
    assert {r["case"] for r in result["rows"]} == {"forward", "gemm", "grad", "batched", "compile"}
    for r in result["rows"]:
        if r["case"] in ("forward", "grad", "batched"):
            assert {"diffcholinv", "cho_solve"} <= set(r["seconds"])
            for s in r["seconds"].values():
                _sane_summary(s)
    assert "| value+grad |" in out.stdout


def test_compare_flags_ratios_that_moved(tmp_path):
    from benchmarks.run import compare

    def row(ratio, bound):
        return {
            "case": "grad",
            "n": 64,
            "batch": 1,
            "dtype": "float64",
            "threads": "default",
            "ratio": {"cho_solve": ratio},
            "bound": {"ours_over_bound": bound},
        }

    before = tmp_path / "before.json"
    before.write_text(json.dumps({"rows": [row(2.0, 3.0)]}))
    assert "largest change 10%: the runs agree within 15%" in compare([row(2.2, 3.0)], before)
    moved = compare([row(2.0, 4.0)], before)
    assert "largest change 33%: the runs disagree" in moved and "✗" in moved


def test_gp_step_quick_rows(monkeypatch):
    from benchmarks import gp_step

    monkeypatch.setattr(gp_step, "PAUSE", 0.0)
    monkeypatch.setattr(gp_step, "STEPS", 3)
    rows = gp_step.grad_rows([8], 1, use_torch=True) + gp_step.loo_rows([8], 1)
    grad, loo = rows
    peers = {"spd_inv", "cholesky_inv", "cho_solve", "inv"}
    assert peers <= set(grad["seconds"]) and grad["speedup"]["spd_inv"] == 1.0
    assert all(v > 0 for v in grad["products"].values()) and grad["matmul_seconds"] > 0
    assert set(loo["first_seconds"]) == set(loo["steady_seconds"]) == {"spd_inv", "cho_solve"}
    assert loo["steady_speedup"] > 0 and loo["first_speedup"] > 0
    table = gp_step.format_table(rows)
    assert "| 8 |" in table and "steady" in table


def _cpu_profile():
    return script("cpu_profile")


def test_cpu_profile_groups_perf_symbols():
    cp = _cpu_profile()
    assert cp.group("[JIT] tid 123", "[.] 0x00007f") == "XLA fused loops"
    assert (
        cp.group("libjax_common.so", "[.] ynn::dot_fp32_5x32x1_1x16x1_avx512") == "products, BLAS"
    )
    assert cp.group("libjax_common.so", "[.] xla::cpu::ThunkExecutor::Execute") == "XLA runtime"
    assert cp.group("libscipy_openblas64_.so", "[.] dgemm_kernel") == "products, BLAS"
    assert cp.group("[kernel.kallsyms]", "[k] clear_page_erms") == "kernel, memory"
    assert cp.group("[kernel.kallsyms]", "[k] schedule") == "kernel, other"
    assert cp.group("libtorch_cpu.so", "[.] at::native::foo") == "torch"
    assert cp.group("libpython3.11.so.1.0", "[.] _PyEval_EvalFrameDefault") == "Python, libc, other"


@pytest.mark.skipif(
    not hasattr(jax.profiler, "ProfileData"), reason="this jax has no jax.profiler.ProfileData"
)
def test_cpu_profile_lists_the_xla_ops_of_a_program():
    # A jax.profiler trace in a fresh process: the names of the program's ops.
    cp = _cpu_profile()
    result = cp.ops("value+grad 1 8 float64 ours", top=5)
    assert result["wall"] > 0 and result["sum"] > 0
    assert 1 <= len(result["ops"]) <= 5 and all(t > 0 for _, t in result["ops"])
    assert "ms per call" in cp.ops_table("value+grad 1 8 float64 ours", result)


@pytest.mark.skipif(shutil.which("perf") is None, reason="Linux perf is not installed")
def test_cpu_profile_samples_a_program_with_perf():
    cp = _cpu_profile()
    try:
        row = cp.profile("forward 1 8 float64 ours", seconds=0.5)
    except subprocess.CalledProcessError as err:  # perf present but not allowed here
        pytest.skip(f"perf record failed: {err.stderr}")
    assert row["seconds"] > 0
    assert sum(row[g] for g in cp.GROUPS) == pytest.approx(1.0)
    assert "| forward 1 8 float64 ours |" in cp.table([row])
