"""One matrix sharded across forced host devices; run by test_distributed.py.

``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (the test; any even
count >= 4 works, all devices are used) must be set before jax is imported,
which is why this runs in its own process. ``--n`` is the size of the
large check (default 1024, float64). Prints one line per check, the memory
ratio and the collectives, and exits non-zero on the first failure.
"""

from __future__ import annotations

import argparse
import sys

from sharding_check import collective_counts

# Per-device memory of the row-sharded program against the one-device program
# of cho_solve, times the device count p: 2.9 measured at n = 1024, p = 4 (2.2
# before the refinement step of X, which holds one more row-sharded matrix).
MAX_MEMORY_RATIO_TIMES_P = 3.0
# Per-device bytes (arguments + outputs + temporaries) of the row-sharded
# forward program and of the gradient of sum(sin(C)), in n² elements times p:
# the targets of docs/scaling.md, explicit axes and auto axes with device=.
# Measured at n = 1024 float64 on 4 devices: 8.8 and 10.8.
MAX_FORWARD_N2_TIMES_P = 9.0
MAX_GRADIENT_N2_TIMES_P = 11.0


def program_bytes(compiled) -> int:
    """Per-device bytes of a compiled program: arguments + outputs + temporaries."""
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes)


def _spd(np, rng, n):
    X = rng.standard_normal((n, n))
    A = X @ X.T / n + np.eye(n)
    return A, np.linalg.cholesky(A)


def _auto(jax) -> dict:
    """``make_mesh`` keywords for auto axis types where jax has them (>= 0.5), else empty."""
    AxisType = getattr(jax.sharding, "AxisType", None)
    return {"axis_types": (AxisType.Auto,)} if AxisType is not None else {}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1024)
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P
    from jax.test_util import check_grads

    from diffcholinv import cholesky_inv

    devices = jax.devices()
    p = len(devices)
    assert p >= 4 and p % 2 == 0, f"expected an even number >= 4 of devices, got {p}"
    mesh = Mesh(np.array(devices), ("x",))
    rows = NamedSharding(mesh, P("x", None))
    rng = np.random.default_rng(0)

    def rel_err(a, b):
        a, b = np.asarray(a), np.asarray(b)
        return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))

    # --- The large check: n x n float64 sharded along rows over p devices. ---
    n = args.n
    A, L_np = _spd(np, rng, n)
    A_inv = np.linalg.inv(A)

    def loss(x, **kw):  # the gradient: of sum(sin(C))
        return jnp.sum(jnp.sin(cholesky_inv(x, **kw)))

    def loss_ref(x):  # autodiff through jnp.linalg.inv: a reference we did not write
        t = jnp.tril(x)
        return jnp.sum(jnp.sin(jnp.linalg.inv(t @ t.T)))

    g_ref = np.asarray(jax.jit(jax.grad(loss_ref))(jnp.asarray(L_np)))

    # Against what one device holds to compute A⁻¹ the usual way (cho_solve
    # against I, a program nobody here wrote); the single-device op itself
    # holds only its input, its output and 0.4 n² of temporaries.
    def cho_solve_inv(x):
        eye = jnp.zeros_like(x) + jnp.eye(x.shape[-1], dtype=x.dtype)
        return jax.scipy.linalg.cho_solve((x, True), eye)

    on_one = jax.device_put(L_np, devices[0])
    single = program_bytes(jax.jit(cho_solve_inv).lower(on_one).compile())
    single_fwd = program_bytes(jax.jit(cholesky_inv).lower(on_one).compile())
    single_grad = program_bytes(jax.jit(jax.grad(loss)).lower(on_one).compile())
    n2 = n * n * L_np.dtype.itemsize  # bytes of one n x n matrix
    # Each way in to the row-sharded computation: a mesh with explicit axes
    # (the sharding is in the traced type), auto axes with device= naming it,
    # and a plain jit on auto axes, where the library cannot see the sharding
    # and the partitioner places the per-matrix algorithm.
    ways = [("auto, device=", mesh, {"device": rows}), ("auto, plain jit", mesh, {})]
    AxisType = getattr(jax.sharding, "AxisType", None)
    if AxisType is not None:  # jax >= 0.6
        explicit = jax.make_mesh((p,), ("x",), axis_types=(AxisType.Explicit,))
        ways.insert(0, ("explicit", explicit, {}))
    for way, m_, kw in ways:
        if way == "auto, plain jit" and not jax.config.jax_use_shardy_partitioner:
            print("note: GSPMD partitioner: the plain-jit auto case is not tied; skipped")
            continue
        placed = NamedSharding(m_, P("x", None))
        L = jax.device_put(L_np, placed)
        fwd = jax.jit(lambda x, kw=kw: cholesky_inv(x, **kw)).lower(L).compile()
        grad = jax.jit(jax.grad(lambda x, kw=kw: loss(x, **kw))).lower(L).compile()
        C, g = fwd(L), grad(L)
        err, g_err = rel_err(C, A_inv), rel_err(g, g_ref)
        assert err < 1e-11, f"{way}: relative error {err:.2e}"
        assert g_err < 1e-9, f"{way}: gradient relative error {g_err:.2e}"
        assert C.sharding.is_equivalent_to(placed, 2), (way, C.sharding)
        assert g.sharding.is_equivalent_to(placed, 2), (way, g.sharding)
        assert (np.asarray(C) == np.asarray(C).T).all(), f"{way}: not bitwise symmetric"
        assert (np.triu(np.asarray(g), 1) == 0).all(), f"{way}: gradient above the diagonal"
        f_mem, g_mem = program_bytes(fwd) / n2, program_bytes(grad) / n2
        print(
            f"memory n={n} float64, {p} devices, {way}: forward {f_mem:.2f} n² per device "
            f"({f_mem * p:.1f} n²/p), gradient of sum(sin(C)) {g_mem:.2f} n² ({g_mem * p:.1f} "
            f"n²/p); one device, cho_solve: {single / n2:.2f} n²; value error {err:.1e}, "
            f"gradient error {g_err:.1e}"
        )
        if way == "auto, plain jit":
            # The per-matrix algorithm, which the library runs without seeing the
            # placement: its levels are not tied to L, so per device it holds
            # about what one device holds, and no more (docs/scaling.md).
            assert f_mem <= single_fwd / n2, f"{way}: forward {f_mem:.2f} n² per device"
            assert g_mem <= single_grad / n2, f"{way}: gradient {g_mem:.2f} n² per device"
            continue
        # The row-sharded algorithm: per device at most 9 n²/p forward and 11 n²/p
        # for the gradient.
        assert f_mem * p <= MAX_FORWARD_N2_TIMES_P, f"{way}: forward {f_mem * p:.1f} n²/p"
        assert g_mem * p <= MAX_GRADIENT_N2_TIMES_P, f"{way}: gradient {g_mem * p:.1f} n²/p"
        if kw:  # only these collectives, no collective-permute
            counts = collective_counts(fwd.as_text())
            print(f"collectives in the forward program ({way}): {counts}")
            assert set(counts) <= {"all-gather", "all-reduce", "all-to-all"}, counts
            ratio = program_bytes(fwd) / single
            bound = MAX_MEMORY_RATIO_TIMES_P / p
            assert ratio <= bound, f"memory ratio {ratio:.3f} > {bound:.3f} on {p} devices"

    # --- Small checks of every way in. ---
    m = 64
    A, L_np = _spd(np, rng, m)
    expected = np.linalg.inv(A)
    L = jax.device_put(L_np, rows)

    # Eagerly the input's sharding selects the path; device= also from an
    # unsharded input.
    for C in (cholesky_inv(L), cholesky_inv(L_np, device=rows)):
        assert rel_err(C, expected) < 1e-12 and C.sharding.is_equivalent_to(rows, 2)
    U = jax.device_put(L_np.T.copy(), rows)
    assert rel_err(cholesky_inv(U, upper=True), expected) < 1e-12
    junk = jax.device_put(np.where(np.triu(np.ones((m, m)), 1) > 0, np.nan, L_np), rows)
    assert rel_err(cholesky_inv(junk), expected) < 1e-12
    print("ok eager, device=, upper=True, nan in the unread triangle")

    # 2-D blocks: computed row-sharded over both axes, returned in 2-D blocks.
    mesh2 = Mesh(np.array(devices).reshape(2, p // 2), ("x", "y"))
    blocks = NamedSharding(mesh2, P("x", "y"))
    C = cholesky_inv(jax.device_put(L_np, blocks))
    assert rel_err(C, expected) < 1e-12 and C.sharding.is_equivalent_to(blocks, 2)
    # A batch of matrices, each sharded along its rows.
    Lb = np.stack([L_np, _spd(np, rng, m)[1]])
    batch_rows = NamedSharding(mesh, P(None, "x", None))
    Cb = cholesky_inv(jax.device_put(Lb, batch_rows))
    Ab = Lb @ np.swapaxes(Lb, -1, -2)
    assert rel_err(Cb, np.linalg.inv(Ab)) < 1e-12 and Cb.sharding.is_equivalent_to(batch_rows, 3)
    print("ok 2-D blocks P('x', 'y') and a batch P(None, 'x', None)")

    # Explicit axis types (jax >= 0.6; the make_mesh default there).
    AxisType = getattr(jax.sharding, "AxisType", None)
    if AxisType is not None:
        emesh = jax.make_mesh((p,), ("x",), axis_types=(AxisType.Explicit,))
        erows = NamedSharding(emesh, P("x", None))
        Le = jax.device_put(L_np, erows)
        for name, f in (("eager", cholesky_inv), ("jit", jax.jit(cholesky_inv))):
            C = f(Le)
            assert rel_err(C, expected) < 1e-12, name
            assert C.sharding.is_equivalent_to(erows, 2), (name, C.sharding)
        ge = jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(cholesky_inv(x)))))(Le)
        assert ge.sharding.is_equivalent_to(erows, 2), ge.sharding
        print("ok explicit axis types: eager, jit (sharding in the type), grad")

    # Auto axes under jit: the input's sharding is not in its traced type, so
    # the per-matrix path runs, and its result (and gradient) come back placed
    # like the input (a sharding group with it; with the Shardy partitioner).
    if jax.config.jax_use_shardy_partitioner:
        amesh = jax.make_mesh((p,), ("r",), **auto_kw) if (auto_kw := _auto(jax)) else mesh
        axis = amesh.axis_names[0]
        for spec, upper in ((P(axis, None), False), (P(axis, None), True), (P(None, axis), False)):
            placed = NamedSharding(amesh, spec)
            F = jax.device_put(L_np.T.copy() if upper else L_np, placed)
            C = jax.jit(lambda x, u=upper: cholesky_inv(x, upper=u))(F)
            assert rel_err(C, expected) < 1e-12, (spec, upper)
            assert C.sharding.is_equivalent_to(placed, 2), (spec, upper, C.sharding)
            gf = jax.jit(jax.grad(lambda x, u=upper: jnp.sum(jnp.sin(cholesky_inv(x, upper=u)))))
            g = gf(F)
            assert g.sharding.is_equivalent_to(placed, 2), (spec, upper, g.sharding)
        C = jax.jit(cholesky_inv)(jax.device_put(L_np, blocks))
        assert rel_err(C, expected) < 1e-12 and C.sharding.is_equivalent_to(blocks, 2), C.sharding
        print("ok auto axes under jit: P('r', None), upper=True, P(None, 'r'), 2-D blocks keep it")
    else:
        print("note: GSPMD partitioner: under jit on auto axes the result is placed freely")

    # Gradients to second order, against finite differences (2 rows a shard).
    Lg = jax.device_put(_spd(np, rng, 2 * p)[1], rows)
    check_grads(cholesky_inv, (Lg,), order=2, modes=["rev"], atol=1e-6, rtol=1e-6)
    print("ok first and second order gradients vs finite differences")

    # The product-only path: nothing but products, also across devices.
    hlo = jax.jit(lambda x: cholesky_inv(x, method="products")).lower(L).as_text()
    assert "triangular_solve" not in hlo and "custom_call" not in hlo
    assert rel_err(cholesky_inv(L, method="products"), expected) < 1e-12
    print("ok method='products': no triangular solve, no custom call")

    # n not a multiple of the number of row shards: a clear error.
    try:
        cholesky_inv(np.eye(p + 2), device=rows)
    except ValueError as e:
        assert f"multiple of {p}" in str(e), e
    else:
        raise AssertionError(f"n = {p + 2} over {p} row shards was accepted")
    print(f"ok n = {p + 2} over {p} row shards: ValueError")
    print("distributed checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
