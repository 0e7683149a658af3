"""Batch-sharded inputs on forced host devices; run by test_sharding.py in a subprocess.

``XLA_FLAGS=--xla_force_host_platform_device_count=4`` must be set before jax is
imported, which is why this runs in its own process. Prints one line per check
and exits non-zero on the first failure.
"""

from __future__ import annotations

import re
import sys

COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")


def collective_counts(hlo: str) -> dict[str, int]:
    """How many collective instructions of each kind a compiled HLO text holds."""
    found = {c: len(re.findall(rf"\s{c}(-start)?\(", hlo)) for c in COLLECTIVES}
    return {c: k for c, k in found.items() if k}


def _collectives(hlo: str) -> set[str]:
    return set(collective_counts(hlo))


def _meshes(jax, np):
    """1-D and 2-D meshes over 4 devices, with auto and (where jax has them) explicit axes."""
    from jax.sharding import Mesh

    devs = np.array(jax.devices()[:4])
    meshes = {
        "1-D auto": Mesh(devs, ("b",)),
        "2-D auto": Mesh(devs.reshape(2, 2), ("b", "c")),
    }
    # A Mesh built directly has auto axes on every jax; make_mesh with
    # AxisType.Auto would build the same mesh again, so only explicit is added.
    AxisType = getattr(jax.sharding, "AxisType", None)
    if AxisType is not None:  # jax >= 0.6: explicit axis types (the make_mesh default)
        for shape, names, d in (((4,), ("b",), "1-D"), ((2, 2), ("b", "c"), "2-D")):
            meshes[f"{d} explicit"] = jax.make_mesh(
                shape, names, axis_types=(AxisType.Explicit,) * len(shape)
            )
            assert meshes[f"{d} auto"].axis_types == (AxisType.Auto,) * len(shape)
    return meshes


def _shard_map():
    import jax

    if hasattr(jax, "shard_map"):
        return jax.shard_map
    from jax.experimental.shard_map import shard_map

    return shard_map


def _xla_partitions_triangular_solve(L) -> bool:
    """Does this XLA split a batched triangular solve over a sharded batch locally?

    XLA in jaxlib < 0.5 gathers the batch first; there the triangular-solve path
    ("auto" on CPU/GPU) cannot be shard-local and only the product path is.
    """
    import jax
    from jax import lax

    def f(x):
        return lax.linalg.triangular_solve(x, x, left_side=True, lower=True)

    return not _collectives(jax.jit(f).lower(L).compile().as_text())


def main() -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from diffcholinv import cholesky_inv, spd_inv

    ndev = len(jax.devices())
    assert ndev >= 4, f"expected >= 4 forced host devices, got {ndev}"

    rng = np.random.default_rng(0)
    n, b = 16, 8
    X = rng.standard_normal((b, n, n))
    A = X @ np.swapaxes(X, -1, -2) / n + np.eye(n)
    L_np = np.linalg.cholesky(A)
    W_np = rng.standard_normal((b, n, n))
    expected = np.linalg.inv(A)

    def loss_ref(x, w):
        t = jnp.tril(x)
        return jnp.sum(w * jnp.linalg.inv(t @ jnp.swapaxes(t, -1, -2)))

    g_ref = np.asarray(jax.grad(loss_ref)(jnp.asarray(L_np), jnp.asarray(W_np)))

    for kind, mesh in _meshes(jax, np).items():
        # 1-D: the batch over "b". 2-D: the batch over both axes, and a 2-D batch
        # [4, 2, n, n] with one mesh axis per batch axis.
        specs = [P("b")] if "1-D" in kind else [P(("b", "c")), P("b", "c")]
        for spec in specs:
            shape = (4, 2, n, n) if len(spec) == 2 else (b, n, n)
            sharding = NamedSharding(mesh, spec)
            L = jax.device_put(L_np.reshape(shape), sharding)
            W = jax.device_put(W_np.reshape(shape), sharding)
            local_solve = _xla_partitions_triangular_solve(L)
            if not local_solve:
                print(f"note {kind} {spec}: this XLA gathers batched triangular solves")
            # Control: a reduction over the sharded batch must show up as a
            # collective, so that "none found" below means something.
            control = jax.jit(lambda x: jnp.sum(x, axis=0)).lower(L).compile().as_text()
            assert _collectives(control), f"{kind} {spec}: detector found no collective"
            for method in ("auto", "products") if local_solve else ("products",):
                tag = f"{kind} {spec} {method}"
                fwd = jax.jit(lambda x, m=method: cholesky_inv(x, method=m)).lower(L).compile()
                found = _collectives(fwd.as_text())
                assert not found, f"{tag}: forward has collectives {found}"
                C = fwd(L)
                np.testing.assert_allclose(
                    np.asarray(C).reshape(b, n, n), expected, rtol=1e-10, atol=1e-12
                )
                assert C.sharding.is_equivalent_to(L.sharding, C.ndim), (tag, C.sharding)
                if spec is not specs[0]:
                    continue  # gradients: one batch layout per mesh is enough

                def loss(x, w, m=method):
                    return jnp.sum(w * cholesky_inv(x, method=m))

                grad = jax.jit(jax.grad(loss)).lower(L, W).compile()
                g = grad(L, W)
                assert g.sharding.is_equivalent_to(L.sharding, g.ndim), (tag, g.sharding)
                np.testing.assert_allclose(
                    np.asarray(g).reshape(b, n, n), g_ref, rtol=1e-8, atol=1e-10
                )
                # The loss sums over the sharded batch: an all-reduce of the
                # scalar is the user's; nothing else may appear.
                bad = _collectives(grad.as_text()) - {"all-reduce"}
                assert not bad, f"{tag}: gradient has collectives {bad}"

                # forward_mode=True: its tangent (jvp) and its transposed
                # gradient stay shard-local too.
                def fm(x, m=method):
                    return cholesky_inv(x, method=m, forward_mode=True)

                jvp = jax.jit(lambda x, t: jax.jvp(fm, (x,), (t,))).lower(L, W).compile()
                found = _collectives(jvp.as_text())
                assert not found, f"{tag}: forward_mode jvp has collectives {found}"
                C_fm, dC = jvp(L, W)
                assert (C_fm == C).all() and dC.sharding.is_equivalent_to(L.sharding, dC.ndim)
                grad_fm = jax.jit(jax.grad(lambda x, w: jnp.sum(w * fm(x)))).lower(L, W).compile()
                bad = _collectives(grad_fm.as_text()) - {"all-reduce"}
                assert not bad, f"{tag}: forward_mode gradient has collectives {bad}"
                np.testing.assert_allclose(
                    np.asarray(grad_fm(L, W)).reshape(b, n, n), g_ref, rtol=1e-8, atol=1e-10
                )
            print(f"ok {kind} {spec}: sharding kept, no collectives in the forward")

        # device= with a sharding places an unsharded input there.
        sharding = NamedSharding(mesh, P("b"))
        C2 = cholesky_inv(L_np, device=sharding)
        assert C2.sharding.is_equivalent_to(sharding, C2.ndim), (kind, C2.sharding)
        np.testing.assert_allclose(np.asarray(C2), expected, rtol=1e-10, atol=1e-12)

        # shard_map: each device inverts its own block of the batch.
        sm = jax.jit(
            _shard_map()(lambda x: cholesky_inv(x), mesh=mesh, in_specs=P("b"), out_specs=P("b"))
        )
        L1 = jax.device_put(L_np, sharding)
        np.testing.assert_allclose(np.asarray(sm(L1)), expected, rtol=1e-10, atol=1e-12)
        found = _collectives(sm.lower(L1).compile().as_text())
        assert not found, f"{kind}: shard_map forward has collectives {found}"
        print(f"ok {kind}: device=sharding, shard_map")

    # spd_inv(forward_mode=True) on a sharded batch: its result is placed like the
    # input without the reverse-mode tie, which jax.jvp cannot go through.
    mesh = _meshes(jax, np)["1-D auto"]
    sharding = NamedSharding(mesh, P("b"))
    A_sh = jax.device_put(A, sharding)
    dA = jax.device_put(W_np + np.swapaxes(W_np, -1, -2), sharding)
    C_s, dC_s = jax.jit(lambda a, t: jax.jvp(lambda a: spd_inv(a, forward_mode=True), (a,), (t,)))(
        A_sh, dA
    )
    np.testing.assert_allclose(np.asarray(C_s), expected, rtol=1e-10, atol=1e-12)
    dC_ref = -expected @ np.asarray(dA) @ expected
    np.testing.assert_allclose(np.asarray(dC_s), dC_ref, rtol=1e-9, atol=1e-10)
    assert C_s.sharding.is_equivalent_to(sharding, 3) and dC_s.sharding.is_equivalent_to(
        sharding, 3
    )
    print("ok spd_inv(forward_mode=True) under jax.jvp on a sharded batch")

    # A batch not divisible by the mesh axis: JAX refuses to shard it, so pad it
    # with identity factors (their inverse is the identity) up to a multiple,
    # invert, and drop the padding. Still shard-local.
    mesh = _meshes(jax, np)["1-D auto"]
    sharding = NamedSharding(mesh, P("b"))
    odd = L_np[:5]
    try:
        jax.device_put(odd, sharding)
    except ValueError:
        pass
    else:
        raise AssertionError("jax sharded a batch of 5 over 4 devices; update the docs' rule")
    pad = np.concatenate([odd, np.broadcast_to(np.eye(n), (8 - 5, n, n))])
    Lp = jax.device_put(pad, sharding)
    f = jax.jit(lambda x: cholesky_inv(x, method="products"))
    Cp = f(Lp)
    assert not _collectives(f.lower(Lp).compile().as_text())
    np.testing.assert_allclose(np.asarray(Cp[:5]), expected[:5], rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(Cp[5:]), np.broadcast_to(np.eye(n), (3, n, n)))
    print("ok batch of 5 on 4 devices: refused by jax; padded with identities, shard-local")

    # One matrix sharded along its rows takes the row-sharded algorithm, which
    # has no forward-mode form: forward_mode=True says so.
    rows = jax.device_put(L_np[0], NamedSharding(mesh, P("b", None)))
    try:
        cholesky_inv(rows, forward_mode=True)
    except ValueError as err:
        assert "forward_mode=True is not supported" in str(err), err
    else:
        raise AssertionError("forward_mode=True on a row-sharded matrix did not raise")
    print("ok forward_mode=True on a row-sharded matrix: a clear ValueError")
    print("sharding checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
