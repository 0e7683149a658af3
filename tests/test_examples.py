"""Smoke tests: each example on a tiny subset (``--quick``), its numbers checked against
scikit-learn (same hyperparameters) and brute-force refits."""

from __future__ import annotations

import importlib.util
import logging
import re
from pathlib import Path
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("statsmodels")
pytest.importorskip("matplotlib")
pytest.importorskip("optax")
pytest.importorskip("tinygp")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# The line each example that predicts prints once; the bound for it.
AGREEMENT = re.compile(
    r"^predictive mean and std vs scikit-learn: max relative difference (\S+)$", re.MULTILINE
)
BOUND = 1e-9


@pytest.fixture(autouse=True)
def _examples_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    # The examples import their shared module as ``python examples/x.py`` does.
    monkeypatch.syspath_prepend(str(EXAMPLES))


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[dict, float]:
    """Run one example quickly; its results and the agreement figure it printed."""
    r = _load(name).main(["--quick", "--no-progress", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    found = AGREEMENT.findall(out)
    assert len(found) == 1, out
    assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    return r, float(found[0])


def test_gp_regression(tmp_path, capsys):
    r, agreement = _run("gp_regression", tmp_path, capsys)
    # Same hyperparameters, same LML and gradient as scikit-learn.
    assert r["lml_start"] == pytest.approx(r["lml_start_sklearn"], rel=1e-9)
    assert r["lml_ours"] == pytest.approx(r["lml_ours_by_sklearn"], rel=1e-9)
    assert r["lml_sklearn"] == pytest.approx(r["lml_sklearn_by_ours"], rel=1e-9)
    assert r["grad_vs_sklearn"] < 1e-8
    # The trace formula (K⁻¹ by cholesky_inv) and autodiff through the solves agree.
    assert r["grad_trace_vs_autodiff"] < 1e-9
    # Training improves the likelihood, with one compilation of the step.
    assert r["lml_ours"] > r["lml_start"] + 1.0
    assert r["compiles"] == 1
    # Predictions through solves agree with scikit-learn's.
    assert agreement == pytest.approx(r["pred_rel"], rel=0.1)
    assert agreement <= BOUND


def test_loo_cv(tmp_path, capsys):
    r, agreement = _run("loo_cv", tmp_path, capsys)
    # diag(K⁻¹) gives the brute-force LOO means and standard deviations.
    assert r["loo_rel"] <= BOUND
    assert agreement <= BOUND
    # Maximizing the LOO objective improves it, and beats the max-LML choice on it.
    assert r["history"][-1] > r["history"][0]
    assert r["loo_lpp_ours"] >= r["loo_lpp_ml"] - 1e-6
    assert r["compiles"] == 1


def test_batched_gps(tmp_path, capsys):
    r, agreement = _run("batched_gps", tmp_path, capsys)
    np.testing.assert_allclose(r["lml_ours"], r["lml_ours_by_sklearn"], rtol=1e-9)
    np.testing.assert_allclose(r["lml_sklearn"], r["lml_sklearn_by_ours"], rtol=1e-9)
    # Every series' fit improved on its start; the batched step compiled once.
    assert np.all(r["lml_ours"] > r["lml_start"])
    assert r["compiles"] == 1
    assert agreement <= BOUND


def test_lbfgs_step_compiles_once(caplog):
    # optax.lbfgs's initial state has weakly typed scalars that its update
    # returns strongly typed; the examples' loop makes the step compile once.
    # Counted by JAX's own compile log, not only by the loop's trace counter.
    import _common

    def rosenbrock(x: jax.Array) -> jax.Array:
        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        r = _common.minimize_lbfgs(rosenbrock, np.zeros(4), max_steps=100, progress=False)
    compiled = [m for m in caplog.messages if m.startswith("Compiling jit(step)")]
    assert len(r["history"]) > 5
    assert r["compiles"] == 1
    assert len(compiled) == 1, compiled
    np.testing.assert_allclose(r["theta"], 1.0, rtol=1e-4)
