"""One matrix sharded across forced host devices (a subprocess: XLA_FLAGS must precede jax)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import collective_flags, device_lock, run_on_devices
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


# The subprocess tests may wait for one another (helpers.device_lock).
@pytest.mark.timeout(900)
def test_one_matrix_sharded_over_four_devices():
    proc = run_on_devices(Path(__file__).with_name("distributed_check.py"), devices=4)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "distributed checks passed" in proc.stdout
    print(proc.stdout)  # the memory ratio and the collectives, shown with pytest -s -n 0


@pytest.mark.timeout(900)
def test_sharded_gp_example():
    # examples/sharded_gp.py --quick on 8 forced devices: LML and gradient match
    # scikit-learn, and each device needs less than half the one-device memory.
    pytest.importorskip("sklearn")
    pytest.importorskip("statsmodels")
    script = Path(__file__).resolve().parents[1] / "examples" / "sharded_gp.py"
    proc = run_on_devices(script, "--quick", devices=8)  # the example's own count
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "vs scikit-learn" in proc.stdout and "8 devices" in proc.stdout


@pytest.mark.timeout(900)
def test_two_processes_joined_by_jax_distributed():
    # examples/two_processes.py: two processes of 2 forced host devices each on
    # 127.0.0.1 (gloo CPU collectives), a batch and one row-sharded matrix over
    # all 4 devices, each process checking its own shards against NumPy. The
    # launcher kills both if either has not finished within its timeout and
    # says which one hung, with what each printed.
    script = Path(__file__).resolve().parents[1] / "examples" / "two_processes.py"
    env = dict(os.environ, XLA_FLAGS=collective_flags(), JAX_PLATFORMS="cpu")
    with device_lock():
        proc = subprocess.run(
            [sys.executable, str(script), "--timeout", "240"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    if proc.returncode == 77:
        pytest.skip(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for i in (0, 1):
        assert f"process {i} of 2: one matrix P('x', None): 2 shards" in proc.stdout
        assert f"process {i} of 2: batch P('b'): 2 shards" in proc.stdout
        assert f"process {i} of 2: ok" in proc.stdout
    print(proc.stdout.splitlines()[-1])
