"""Gradients against finite differences and against independent autodiff references."""

from __future__ import annotations

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import spd_factor
from jax.test_util import check_grads

import diffcholinv
from diffcholinv import cholesky_inv


@pytest.mark.parametrize("n", [1, 6])  # 1 × 1, and a factor of several columns
@pytest.mark.parametrize("batch", [(), (2,)])
@pytest.mark.parametrize("upper", [False, True])
def test_check_grads_second_order(rng, n, batch, upper):
    L = spd_factor(rng, batch, n)
    F = jnp.asarray(np.swapaxes(L, -1, -2) if upper else L)
    W = jnp.asarray(rng.standard_normal((*batch, n, n)))
    check_grads(
        lambda x: jnp.sum(W * cholesky_inv(x, upper=upper)),
        (F,),
        order=2,
        modes=["rev"],
    )
    # The op itself, all output entries (vjp against random cotangents).
    check_grads(lambda x: cholesky_inv(x, upper=upper), (F,), order=1, modes=["rev"])


@pytest.mark.parametrize("method", ["auto", "solve", "products"])
@pytest.mark.parametrize("n", [70, 150])
def test_check_grads_of_the_blocked_pass(rng, method, n):
    # Factors of several diagonal leaves (the doubling, its refinement, the
    # level-batched Gram matrix), every method; n = 150 is odd-split in the
    # backward pass's product.
    L = jnp.asarray(spd_factor(rng, (), n))
    W = jnp.asarray(rng.standard_normal((n, n)))
    V = jnp.asarray(np.tril(rng.standard_normal((n, n))))

    def f(x):
        return jnp.sum(W * cholesky_inv(x, method=method))

    def f_ref(x):  # autodiff through a general inverse of the lower triangle
        return jnp.sum(W * jnp.linalg.inv(jnp.tril(x) @ jnp.tril(x).T))

    check_grads(f, (L,), order=1, modes=["rev"])
    g = jax.grad(f)(L)
    assert not np.any(np.triu(np.asarray(g), 1)), "gradient above the diagonal"
    np.testing.assert_allclose(g, jnp.tril(jax.grad(f_ref)(L)), rtol=1e-9, atol=1e-9)
    # Second order (grad of grad, through the forward pass's levels);
    # finite differences of second order are too noisy at this size.
    hv = jax.grad(lambda x: jnp.sum(V * jax.grad(f)(x)))(L)
    hv_ref = jnp.tril(jax.grad(lambda x: jnp.sum(V * jax.grad(f_ref)(x)))(L))
    np.testing.assert_allclose(hv, hv_ref, rtol=1e-8, atol=1e-8 * float(jnp.abs(hv_ref).max()))


@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradient_zero_on_unread_triangle(rng, upper, dtype):
    n = 6
    L = spd_factor(rng, (3,), n)
    F = jnp.asarray((np.swapaxes(L, -1, -2) if upper else L).astype(dtype))
    # Junk in the unread triangle, which must change neither value nor gradient.
    unread = jnp.asarray(np.tril(np.ones((n, n)), -1) if upper else np.triu(np.ones((n, n)), 1))
    F_junk = jnp.where(unread.astype(bool), jnp.asarray(rng.standard_normal((3, n, n)), dtype), F)
    W = jnp.asarray(rng.standard_normal((3, n, n)), dtype)

    def loss(x):
        return jnp.sum(W * cholesky_inv(x, upper=upper))

    for x in (F, F_junk):
        g = jax.grad(loss)(x)
        assert g.dtype == jnp.dtype(dtype)
        assert bool(jnp.all(jnp.where(unread.astype(bool), g, 0) == 0))
        assert bool(jnp.any(g != 0))
        gv = jax.vmap(jax.grad(lambda x, w: jnp.sum(w * cholesky_inv(x, upper=upper))))(x, W)
        np.testing.assert_array_equal(gv, g)
    np.testing.assert_array_equal(jax.grad(loss)(F), jax.grad(loss)(F_junk))


def test_grad_through_cholesky_equals_grad_of_inv(rng):
    n = 5
    X = rng.standard_normal((n, n))
    A = jnp.asarray(X @ X.T + n * np.eye(n))
    W = jnp.asarray(rng.standard_normal((n, n)))

    def via_op(A):
        return jnp.sum(W * cholesky_inv(jnp.linalg.cholesky(A)))

    def via_inv(A):
        # jnp.linalg.cholesky symmetrizes its input, so compare with inv of the
        # symmetrized A.
        return jnp.sum(W * jnp.linalg.inv((A + A.T) / 2))

    np.testing.assert_allclose(via_op(A), via_inv(A), rtol=1e-12)
    np.testing.assert_allclose(jax.grad(via_op)(A), jax.grad(via_inv)(A), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n", [600, 1024])
def test_gradient_of_large_factors_matches_autodiff_of_inv(rng, n):
    # Sizes whose backward pass splits each half into column blocks (600 is
    # padded to 640), against autodiff through jnp.linalg.inv.
    L = jnp.asarray(spd_factor(rng, (), n))
    W = jnp.asarray(rng.standard_normal((n, n)))
    ours = jax.jit(jax.grad(lambda x: jnp.sum(W * cholesky_inv(x))))(L)
    ref = jax.jit(jax.grad(lambda x: jnp.sum(W * jnp.linalg.inv(x @ x.T))))(L)
    ref = np.tril(np.asarray(ref))  # ours is zero on the unread upper triangle
    assert not np.any(np.triu(np.asarray(ours), 1))
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9 * np.max(np.abs(ref)))


@pytest.mark.parametrize("upper", [False, True])
def test_hessian_matches_reference(rng, upper):
    n = 4
    L = spd_factor(rng, (), n)
    F = jnp.asarray(np.swapaxes(L, -1, -2) if upper else L)
    W = jnp.asarray(rng.standard_normal((n, n)))

    def f(x):
        C = cholesky_inv(x, upper=upper)
        return jnp.sum(W * C) + jnp.sum(C**2)

    def f_ref(x):
        # Plain autodiff through jnp.linalg.inv of the product of the read triangle.
        t = jnp.triu(x) if upper else jnp.tril(x)
        A = t.T @ t if upper else t @ t.T
        Ainv = jnp.linalg.inv(A)
        return jnp.sum(W * Ainv) + jnp.sum(Ainv**2)

    H = jax.hessian(f)(F)
    H_ref = jax.hessian(f_ref)(F)
    assert H.shape == (n, n, n, n)
    np.testing.assert_allclose(H, H_ref, rtol=1e-8, atol=1e-10)
    # grad-of-grad (reverse over reverse) agrees too.
    v = jnp.asarray(rng.standard_normal((n, n)))
    hvp = jax.grad(lambda x: jnp.vdot(jax.grad(f)(x), v))(F)
    hvp_ref = jax.grad(lambda x: jnp.vdot(jax.grad(f_ref)(x), v))(F)
    np.testing.assert_allclose(hvp, hvp_ref, rtol=1e-8, atol=1e-10)


def test_jacrev_matches_reference(rng):
    n = 3
    L = jnp.asarray(spd_factor(rng, (2,), n))
    J = jax.jacrev(cholesky_inv)(L)
    J_ref = jax.jacrev(lambda x: jnp.linalg.inv(jnp.tril(x) @ jnp.swapaxes(jnp.tril(x), -1, -2)))(L)
    np.testing.assert_allclose(J, J_ref, rtol=1e-9, atol=1e-12)


def test_forward_mode_directly_is_refused(rng):
    L = jnp.asarray(spd_factor(rng, (), 3))
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(cholesky_inv, (L,), (L,))


ROOT = Path(__file__).resolve().parents[1]


def _check_grads_block(page: str) -> str:
    """The one ```python block of ``page`` that calls ``check_grads``."""
    text = (ROOT / page).read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    (block,) = [b for b in blocks if "check_grads(" in b]
    return block


def test_documented_check_grads_call(monkeypatch):
    # The README's contract and the pitfalls page show the same call.
    code = _check_grads_block("README.md")
    assert code == _check_grads_block("docs/guides/pitfalls.md")
    assert 'check_grads(cholesky_inv, (L,), order=2, modes=["rev"])' in code
    # A gradient-checking user's first call fails, as both pages say ...
    L = jnp.array([[2.0, 0.0], [1.0, 3.0]])
    with pytest.raises(TypeError, match="can't apply forward-mode autodiff"):
        check_grads(cholesky_inv, (L,), order=1)
    # ... and the documented call passes,
    exec(compile(code, "README.md[check_grads]", "exec"), {"__name__": "__docs__"})

    # and fails where the gradient is 5% off.
    @jax.custom_vjp
    def off(L):
        return cholesky_inv(L)

    def off_bwd(L, g):
        return (1.05 * jax.vjp(cholesky_inv, L)[1](g)[0],)

    off.defvjp(lambda L: (cholesky_inv(L), L), off_bwd)
    monkeypatch.setattr(diffcholinv, "cholesky_inv", off)
    with pytest.raises(AssertionError):
        exec(compile(code, "README.md[check_grads]", "exec"), {"__name__": "__docs__"})
