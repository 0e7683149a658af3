"""Batch sharding over forced host devices (in a subprocess: XLA_FLAGS must precede jax)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_on_devices
from sharding_check import _collectives


def test_collective_detector_sees_collectives():
    # Guards the HLO scan itself, so the subprocess check cannot pass vacuously.
    assert _collectives("%x = f64[2] all-reduce(f64[2] %y)") == {"all-reduce"}
    assert _collectives("%x = f64[4] all-gather-start(f64[2] %y)") == {"all-gather"}
    assert _collectives("%x = f64[4] add(f64[2] %y)") == set()


@pytest.mark.timeout(900)  # may wait for another subprocess test (helpers.device_lock)
def test_batch_sharded_input_is_computed_shard_locally():
    proc = run_on_devices(Path(__file__).with_name("sharding_check.py"), devices=4)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sharding checks passed" in proc.stdout
