"""Smoke tests: each example on a tiny subset, its numbers checked against
scikit-learn (same hyperparameters) and brute-force refits."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("statsmodels")
pytest.importorskip("matplotlib")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _args(tmp_path: Path) -> list[str]:
    return ["--quick", "--no-progress", "--out", str(tmp_path)]


def test_gp_regression(tmp_path):
    r = _load("gp_regression").main(_args(tmp_path))
    # Same hyperparameters, same LML and gradient as scikit-learn.
    assert r["lml_start"] == pytest.approx(r["lml_start_sklearn"], rel=1e-6)
    assert r["lml_ours"] == pytest.approx(r["lml_ours_by_sklearn"], rel=1e-6)
    assert r["lml_sklearn"] == pytest.approx(r["lml_sklearn_by_ours"], rel=1e-6)
    assert r["grad_vs_sklearn"] < 1e-6
    # The trace formula and autodiff through cholesky_inv agree.
    assert r["grad_trace_vs_autodiff"] < 1e-8
    # Training improves the likelihood; predictions match scikit-learn's.
    assert r["lml_ours"] > r["lml_start"] + 1.0
    assert r["pred_rel"] < 1e-5
    assert (tmp_path / "gp_regression.png").stat().st_size > 10_000


def test_loo_cv(tmp_path):
    r = _load("loo_cv").main(_args(tmp_path))
    # diag(K⁻¹) gives the brute-force LOO means and variances.
    assert r["loo_rel"] < 1e-6
    assert r["loo_rel_final"] < 1e-6
    # Maximizing the LOO objective improves it, and beats the max-LML choice on it.
    assert r["history"][-1] > r["history"][0]
    assert r["loo_lpp_ours"] >= r["loo_lpp_ml"] - 1e-6
    assert (tmp_path / "loo_cv.png").stat().st_size > 10_000


def test_batched_gps(tmp_path):
    r = _load("batched_gps").main(_args(tmp_path))
    np.testing.assert_allclose(r["lml_ours"], r["lml_ours_by_sklearn"], rtol=1e-6)
    np.testing.assert_allclose(r["lml_sklearn"], r["lml_sklearn_by_ours"], rtol=1e-6)
    # Every series' fit improved on its start.
    assert np.all(r["lml_ours"] > r["lml_start"])
    assert (tmp_path / "batched_gps.png").stat().st_size > 10_000
