"""The product-only path (``method="products"``), forced on CPU, and the choice of method.

It is what Metal runs (``method="auto"`` picks it there through
``lax.platform_dependent``); on CPU it is tested by forcing it. Values,
the unread triangle and gradients of every method are tested with the
others (test_forward.py, test_grad.py); here: that the two algorithms agree,
and that the product-only programs hold no triangular solve.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import spd_factor
from jax.test_util import check_grads

from diffcholinv import _blocked, cholesky_inv

prod = functools.partial(cholesky_inv, method="products")


@pytest.mark.parametrize("n", [45, 130])
def test_agrees_with_triangular_solve_path(rng, n):
    # Two algorithms side by side (one block, and the blocked loop): they
    # must agree to rounding.
    L = spd_factor(rng, (2, 2), n)
    np.testing.assert_allclose(
        np.asarray(prod(L)), np.asarray(cholesky_inv(L, method="solve")), rtol=1e-12, atol=1e-13
    )


def test_singular_factor_gives_inf_or_nan(rng):
    L = spd_factor(rng, (), 40)
    L[5, 5] = 0.0
    C = np.asarray(prod(L))
    assert not np.isfinite(C).all()


def test_gradients_first_and_second_order(rng):
    L = jnp.asarray(spd_factor(rng, (), 6))

    def f(x):
        return cholesky_inv(jnp.tril(x), method="products")

    check_grads(f, (L,), order=2, modes=["rev"], atol=1e-6, rtol=1e-6)
    W = jnp.asarray(rng.standard_normal(L.shape))

    def loss(x, method):
        return jnp.sum(W * cholesky_inv(x, method=method))

    g = jax.grad(loss)(L, "products")
    np.testing.assert_allclose(g, jax.grad(loss)(L, "solve"), rtol=1e-10, atol=1e-12)
    assert (np.triu(np.asarray(g), 1) == 0).all()
    H = jax.hessian(loss)(L, "products")
    np.testing.assert_allclose(H, jax.hessian(loss)(L, "solve"), rtol=1e-8, atol=1e-10)


def test_jit_and_vmap(rng):
    L = spd_factor(rng, (4,), 35)
    ref = np.asarray(cholesky_inv(L, method="solve"))
    np.testing.assert_allclose(jax.jit(prod)(L), ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(jax.vmap(prod)(L), ref, rtol=1e-12, atol=1e-13)
    g = jax.vmap(jax.grad(lambda x: jnp.trace(prod(x))))(L)
    g_ref = jax.vmap(jax.grad(lambda x: jnp.trace(cholesky_inv(x, method="solve"))))(L)
    np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("log10_kappa", [1, 3, 5])
def test_float32_accuracy_vs_condition_number(log10_kappa):
    # A = Q diag(s) Qᵀ with kappa(A) = 10**log10_kappa. A backward-stable inverse
    # has relative error O(kappa * eps); we require it within a small factor of
    # the triangular-solve path's error (and of kappa * eps).
    n = 64
    rng = np.random.default_rng(log10_kappa)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (Q * np.logspace(0, -log10_kappa, n)) @ Q.T
    L = np.linalg.cholesky(A).astype(np.float32)
    ref = np.linalg.inv(np.float64(L) @ np.float64(L).T)

    def rel(C):
        return np.linalg.norm(np.float64(C) - ref) / np.linalg.norm(ref)

    eps = np.finfo(np.float32).eps
    err_p, err_s = rel(prod(L)), rel(cholesky_inv(L, method="solve"))
    assert err_p <= max(4 * err_s, 10 * eps), (err_p, err_s)
    assert err_p <= 10 * n * eps * 10**log10_kappa, err_p


def _lowered(f, *args):
    return jax.jit(f).lower(*args).as_text()


def _without_locations(mlir: str) -> str:
    # Location lines name the Python functions on the stack when a piece was
    # traced, which may be another test's (one named after triangular_solve):
    # only the operations count.
    return "\n".join(line for line in mlir.splitlines() if not line.startswith("#loc"))


def test_lowered_program_has_no_triangular_solve_or_custom_call(rng):
    # n = 200: the blocked loop, whose leaves are LAPACK solves with "solve".
    L = jnp.asarray(spd_factor(rng, (3,), 200), jnp.float32)

    def loss(x, method):
        return jnp.sum(jnp.sin(cholesky_inv(x, method=method)))

    programs = {
        "forward": lambda m: _lowered(lambda x: cholesky_inv(x, method=m), L),
        "grad": lambda m: _lowered(jax.grad(lambda x: loss(x, m)), L),
        "grad of grad": lambda m: _lowered(jax.grad(lambda x: jnp.sum(jax.grad(loss)(x, m))), L),
    }
    # Controls, so the scan can fail: the reference forward and the solve
    # path's programs do contain a triangular solve on CPU (its leaves).
    controls = {
        "forward": _lowered(_blocked.reference, L),
        "grad": programs["grad"]("solve"),
        "grad of grad": programs["grad of grad"]("solve"),
    }
    for name, lower in programs.items():
        text = lower("products")
        assert "triangular_solve" not in text and "custom_call" not in text, name
        control = controls[name]
        assert "triangular_solve" in control or "custom_call" in control, name


def test_auto_picks_products_for_metal_export():
    export = pytest.importorskip("jax.export")

    # n = 40 is one block; n = 200 the doubling. "auto" is products only on
    # every platform, so no jax version needs a per-platform branch here.
    def loss(x):
        return jnp.sum(jnp.sin(cholesky_inv(x)))

    for n in (40, 200):
        spec = jax.ShapeDtypeStruct((2, n, n), jnp.float32)
        for f in (cholesky_inv, jax.grad(loss)):
            exported = export.export(jax.jit(f), platforms=["metal"])(spec)
            metal = _without_locations(exported.mlir_module())
            assert "triangular_solve" not in metal and "custom_call" not in metal
    # Control: for CPU, method="solve" keeps its triangular solve (the leaf).
    spec = jax.ShapeDtypeStruct((2, 40, 40), jnp.float32)

    def loss_solve(x):
        return jnp.sum(jnp.sin(cholesky_inv(x, method="solve")))

    exported = export.export(jax.jit(jax.grad(loss_solve)), platforms=["cpu"])(spec)
    cpu = _without_locations(exported.mlir_module())
    assert "triangular_solve" in cpu or "custom_call" in cpu


def test_auto_picks_products_when_running_on_metal(rng, monkeypatch):
    # On a Mac the default backend is "metal": the choice is also made before
    # tracing, which is what jax < 0.5 (no branch pruning) relies on.
    from diffcholinv import _api

    L = jnp.asarray(spd_factor(rng, (2,), 40), jnp.float32)  # one block: a LAPACK leaf on CPU

    def grad(x, method="auto"):  # a new function each time, so no trace is reused
        return jax.grad(lambda y: jnp.sum(jnp.sin(cholesky_inv(y, method=method))))(x)

    monkeypatch.setattr(_api, "target_platform", lambda arr, device: "metal")
    text = _lowered(grad, L)
    assert "triangular_solve" not in text and "custom_call" not in text
    # Control: on CPU, method="solve" keeps its triangular solves (the leaves).
    monkeypatch.setattr(_api, "target_platform", lambda arr, device: "cpu")
    text = _lowered(lambda x: grad(x, "solve"), L)
    assert "triangular_solve" in text or "custom_call" in text


@pytest.mark.parametrize("n", [4, 16, 40, 64, 65, 200])
def test_default_cpu_programs_hold_no_library_call(rng, n):
    # The compiled CPU programs of method="auto", forward and value+grad,
    # single and batched: no custom call (LAPACK trsm, potrf, ...) at all.
    L = jnp.asarray(spd_factor(rng, (3,), n))
    G = jnp.asarray(rng.standard_normal((3, n, n)))

    def value_and_grad(x, g):
        return jax.value_and_grad(lambda y: jnp.sum(g * cholesky_inv(y)))(x)

    for f, args in [(cholesky_inv, (L,)), (cholesky_inv, (L[0],)), (value_and_grad, (L, G))]:
        assert not _calls_library(jax.jit(f).lower(*args).compile().as_text()), n
    # Control: the same scan finds the LAPACK call (potrf) of jnp.linalg.cholesky.
    # Not method="solve": XLA:CPU of jaxlib 0.4 expands a triangular solve into
    # loops of its own, with no custom call; a Cholesky is LAPACK on every jaxlib.
    M = jnp.asarray(spd_factor(rng, (3,), 16))
    A = M @ jnp.swapaxes(M, -1, -2)
    assert _calls_library(jax.jit(jnp.linalg.cholesky).lower(A).compile().as_text())


def _calls_library(hlo: str) -> bool:
    """Does compiled HLO text hold a custom call (a LAPACK kernel) or a triangular solve?"""
    return any(word in hlo for word in ("custom-call(", "custom_call_target", "triangular-solve("))


@pytest.mark.parametrize("bad", ["fast", "", "Products"])
def test_unknown_method_is_a_value_error(bad):
    with pytest.raises(ValueError, match="method must be one of"):
        cholesky_inv(np.eye(3), method=bad)


def test_method_must_be_a_string():
    with pytest.raises(TypeError, match="method must be a string"):
        cholesky_inv(np.eye(3), method=1)
