"""Composition with jit, vmap, grad, scan, checkpoint, chex variants and jax.export."""

from __future__ import annotations

import chex
import jax
import jax.export  # a submodule: jax 0.4.x has no jax.export before it is imported
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from helpers import assert_close_rel, reference_inv, spd_factor

from diffcholinv import cholesky_inv, spd_inv


def test_jit_matches_eager_bitwise(rng):
    L = spd_factor(rng, (3,), 10)
    np.testing.assert_array_equal(jax.jit(cholesky_inv)(L), cholesky_inv(L))
    np.testing.assert_array_equal(
        jax.jit(cholesky_inv, static_argnums=1)(L.swapaxes(-1, -2), True), cholesky_inv(L)
    )


def test_vmap_in_axes_and_nested(rng):
    L = spd_factor(rng, (2, 3), 6)  # [2, 3, n, n]
    expected = reference_inv(L)
    assert_close_rel(jax.vmap(cholesky_inv)(L), expected, "float64")
    # Batch axis 1 of the input, out_axes 1 keeps the layout.
    assert_close_rel(jax.vmap(cholesky_inv, in_axes=1, out_axes=1)(L), expected, "float64")
    # Batch axis last: [n, n, 3].
    Lt = np.moveaxis(L[0], 0, -1)
    out = jax.vmap(cholesky_inv, in_axes=2)(Lt)
    assert_close_rel(out, expected[0], "float64")
    nested = jax.vmap(jax.vmap(cholesky_inv))(L)
    assert_close_rel(nested, expected, "float64")
    nested_upper = jax.vmap(jax.vmap(lambda x: cholesky_inv(x, upper=True)), in_axes=1)(
        np.swapaxes(L, -1, -2)
    )
    assert_close_rel(nested_upper, np.swapaxes(expected, 0, 1), "float64")


def test_vmap_of_grad_and_grad_under_jit(rng):
    L = jnp.asarray(spd_factor(rng, (4,), 5))
    W = jnp.asarray(rng.standard_normal((4, 5, 5)))

    def loss(x, w):
        return jnp.sum(w * cholesky_inv(x))

    def loss_ref(x, w):
        t = jnp.tril(x)
        return jnp.sum(w * jnp.linalg.inv(t @ t.T))

    g_ref = jax.vmap(jax.grad(loss_ref))(L, W)
    np.testing.assert_allclose(jax.vmap(jax.grad(loss))(L, W), g_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        jax.jit(jax.vmap(jax.grad(loss)))(L, W), g_ref, rtol=1e-9, atol=1e-12
    )
    g_batched = jax.jit(jax.grad(lambda x: jnp.sum(W * cholesky_inv(x))))(L)
    np.testing.assert_allclose(g_batched, g_ref, rtol=1e-9, atol=1e-12)


class VariantsTest(chex.TestCase, parameterized.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(False, True)
    def test_value_and_grad(self, upper):
        rng = np.random.default_rng(0)
        L = spd_factor(rng, (2,), 4)
        F = jnp.asarray(np.swapaxes(L, -1, -2) if upper else L)

        @self.variant
        def f(x):
            return jax.value_and_grad(lambda y: jnp.sum(cholesky_inv(y, upper=upper) ** 2))(x)

        v, g = f(F)
        C = reference_inv(L)
        np.testing.assert_allclose(v, np.sum(C**2), rtol=1e-11)
        chex.assert_shape(g, F.shape)
        chex.assert_tree_all_finite(g)


def test_no_retrace_on_equal_shapes(rng):
    @jax.jit
    @chex.assert_max_traces(n=1)
    def f(x):
        return cholesky_inv(x)

    try:
        for _ in range(3):
            f(spd_factor(rng, (2,), 4))
    finally:
        chex.clear_trace_counter()


def test_inside_scan_and_checkpoint(rng):
    Ls = jnp.asarray(spd_factor(rng, (5,), 4))

    def body(carry, L):
        return carry + jnp.trace(cholesky_inv(L)), cholesky_inv(L)

    total, Cs = jax.lax.scan(body, 0.0, Ls)
    expected = reference_inv(np.asarray(Ls))
    assert_close_rel(Cs, expected, "float64")
    np.testing.assert_allclose(total, np.trace(expected, axis1=-2, axis2=-1).sum(), rtol=1e-12)

    def loss(Ls):
        return jax.lax.scan(body, 0.0, Ls)[0]

    g = jax.grad(loss)(Ls)
    g_ckpt = jax.grad(jax.checkpoint(loss))(Ls)
    g_ckpt_inner = jax.grad(lambda x: jnp.sum(jax.vmap(jax.checkpoint(cholesky_inv))(x)))(Ls)
    g_plain_inner = jax.grad(lambda x: jnp.sum(jax.vmap(cholesky_inv)(x)))(Ls)
    np.testing.assert_allclose(g_ckpt, g, rtol=1e-12)
    np.testing.assert_allclose(g_ckpt_inner, g_plain_inner, rtol=1e-12)

    def loss_ref(x):
        t = jnp.tril(x)
        return jnp.sum(jnp.trace(jnp.linalg.inv(t @ jnp.swapaxes(t, -1, -2)), axis1=-2, axis2=-1))

    g_ref = jax.grad(loss_ref)(Ls)
    np.testing.assert_allclose(g, g_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("upper", [False, True])
def test_export_round_trip(rng, upper):
    L = spd_factor(rng, (3,), 6)
    F = jnp.asarray(np.swapaxes(L, -1, -2) if upper else L)

    def f(x):
        return cholesky_inv(x, upper=upper)

    exp = jax.export.export(jax.jit(f))(jax.ShapeDtypeStruct(F.shape, F.dtype))
    blob = exp.serialize(vjp_order=1)
    restored = jax.export.deserialize(blob)
    np.testing.assert_array_equal(restored.call(F), f(F))
    g = jax.grad(lambda x: jnp.sum(restored.call(x) ** 2))(F)
    g_ref = jax.grad(lambda x: jnp.sum(f(x) ** 2))(F)
    np.testing.assert_allclose(g, g_ref, rtol=1e-12)
    # Pure JAX: no host callback in the exported module.
    assert "callback" not in exp.mlir_module()


@pytest.mark.parametrize("n", [20, 100])
@pytest.mark.parametrize("fn", ["cholesky_inv", "spd_inv"])
def test_export_with_a_symbolic_batch(rng, n, fn):
    # One exported program for every batch size (a serving path, Keras's dynamic
    # shapes): forward and value+grad, serialised, called at two batch sizes.
    op = {"cholesky_inv": cholesky_inv, "spd_inv": spd_inv}[fn]
    spec = jax.ShapeDtypeStruct(jax.export.symbolic_shape(f"b, {n}, {n}"), jnp.float64)
    assert jax.eval_shape(op, spec).shape == spec.shape

    def value_and_grad(x):
        return jax.value_and_grad(lambda x: jnp.sum(jnp.sin(op(x))))(x)

    for f in (op, value_and_grad):
        exported = jax.export.export(jax.jit(f))(spec)
        restored = jax.export.deserialize(exported.serialize())
        for batch in (3, 70):
            L = spd_factor(rng, (batch,), n)
            x = jnp.asarray(L @ np.swapaxes(L, -1, -2) if fn == "spd_inv" else L)
            # Equal to rounding: XLA compiles the shape-polymorphic module apart,
            # and a concrete batch of 64 small factors or more takes unrolled leaves.
            got, want = restored.call(x), jax.jit(f)(x)
            jax.tree.map(lambda a, b: assert_close_rel(a, np.asarray(b), "float64"), got, want)
