"""``device=`` placement on one device (multi-device sharding: test_sharding.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from helpers import assert_close_rel, reference_inv, spd_factor

from diffcholinv import cholesky_inv


def test_device_and_single_device_sharding(rng):
    L = spd_factor(rng, (2,), 5)
    dev = jax.devices("cpu")[-1]
    C = cholesky_inv(L, device=dev)
    assert C.devices() == {dev}
    assert_close_rel(C, reference_inv(L), "float64")

    sharding = jax.sharding.SingleDeviceSharding(dev)
    C2 = cholesky_inv(L, device=sharding)
    assert C2.sharding == sharding
    np.testing.assert_array_equal(C2, C)


def test_device_none_follows_committed_input(rng):
    dev = jax.devices("cpu")[-1]
    L = jax.device_put(jnp.asarray(spd_factor(rng, (), 4)), dev)
    C = cholesky_inv(L)
    assert C.devices() == {dev}


def test_device_under_jit_and_grad(rng):
    dev = jax.devices("cpu")[0]
    L = jnp.asarray(spd_factor(rng, (), 4))
    g = jax.jit(jax.grad(lambda x: jnp.sum(cholesky_inv(x, device=dev))))(L)
    g_ref = jax.grad(lambda x: jnp.sum(cholesky_inv(x)))(L)
    np.testing.assert_allclose(g, g_ref, rtol=1e-12)
