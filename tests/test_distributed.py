"""One matrix sharded across forced host devices (a subprocess: XLA_FLAGS must precede jax)."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import run_on_eight_devices
from sharding_check import collective_counts

from diffcholinv import _rowsharded, cholesky_inv


def test_collective_counter_counts_instructions():
    # Guards the HLO scan itself, so the memory/collective report means something.
    hlo = (
        "%a = f64[8] all-reduce(f64[8] %x)\n%b = f64[8] all-reduce(f64[8] %a)\n"
        "%c = f64[64] all-gather-start(f64[8] %b)\n%d = f64[8] add(f64[8] %b, f64[8] %b)"
    )
    assert collective_counts(hlo) == {"all-reduce": 2, "all-gather": 1}


def test_one_device_and_unsharded_inputs_take_the_ordinary_path():
    L = np.eye(4)
    dev = jax.devices()[0]
    mesh = jax.sharding.Mesh(np.array([dev]), ("x",))
    one = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("x", None))
    assert _rowsharded.matrix_plan(jax.numpy.asarray(L), None) is None
    assert _rowsharded.matrix_plan(jax.numpy.asarray(L), one) is None  # 1 row shard
    np.testing.assert_array_equal(cholesky_inv(L, device=one), np.eye(4))


def test_one_matrix_sharded_over_eight_devices():
    proc = run_on_eight_devices(Path(__file__).with_name("distributed_check.py"), "--n", "2048")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "distributed checks passed" in proc.stdout
    print(proc.stdout)  # the memory ratio and the collectives, shown with pytest -s -n 0


def test_sharded_gp_example():
    # examples/sharded_gp.py --quick on 8 forced devices: LML and gradient match
    # scikit-learn, and each device needs less than half the one-device memory.
    pytest.importorskip("sklearn")
    pytest.importorskip("statsmodels")
    script = Path(__file__).resolve().parents[1] / "examples" / "sharded_gp.py"
    proc = run_on_eight_devices(script, "--quick")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "vs scikit-learn" in proc.stdout and "8 devices" in proc.stdout
