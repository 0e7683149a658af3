"""Session settings and fixtures (x64, hypothesis profiles); shared helpers are in helpers.py."""

from __future__ import annotations

import os

# One OpenBLAS thread (SciPy's, which jaxlib's LAPACK kernels may share):
# a rare stall of the XLA:CPU runtime was seen with every thread idle and
# OpenBLAS's thread server among them (since traced to a program that
# tests/test_algorithms.py no longer runs). Set before NumPy/SciPy load it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# The tests run in several worker processes (pytest-xdist); on a GPU each
# would otherwise reserve most of its memory at start-up.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# Most of the suite's time is XLA compiling, and many tests compile programs
# that another test (or worker) has compiled already: new lambdas around the
# same computation. JAX's persistent compilation cache, keyed by the program
# itself, compiles each once per run. The directory is new for every run (made
# by the controller, inherited by the xdist workers and by the subprocesses
# that the distributed and example tests start), so no state outlives the run.
if "PYTEST_XDIST_WORKER" not in os.environ and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _cache = tempfile.mkdtemp(prefix="diffcholinv-jax-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# XLA:CPU compiles in two stages: HLO passes, which fix what a program computes
# (its fusions, loops, buffers, collectives and custom calls: what the tests
# check), then LLVM's optimisation of the generated machine code, which takes
# most of the compile time of the small programs the tests run. LLVM at -O0
# (no fast-math either way) keeps the suite within CI's budget, and with the
# jaxlib of this project's [dev] environment it computes bitwise what level 3
# computes. Not with jaxlib 0.4.34: there -O0 contracts multiply-adds
# differently from one fusion to the next (an ulp between programs that share
# a forward pass) and its triangular-solve expander is 1.5× less accurate, so
# .ci/run's minimum-jax pass runs at the default level 3, as its strict pass
# does. Set XLA_FLAGS with an optimisation level to choose one.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    os.environ["XLA_FLAGS"] = flags.strip()

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_enable_x64", True)

# Property-based tests (tests/test_properties.py). "ci", the default: a fixed
# seed (derandomize) and a bounded example count, so the suite stays fast and
# reproducible. "long": many random examples, for local runs:
#   python -m pytest tests/test_properties.py --hypothesis-profile=long
# Every example compiles a new shape, so "too slow" health checks are off.
_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "ci",
    max_examples=10,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=_SLOW,
)
settings.register_profile("long", max_examples=1000, deadline=None, suppress_health_check=_SLOW)
settings.load_profile("ci")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
