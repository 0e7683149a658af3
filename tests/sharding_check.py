"""Batch-sharded inputs on forced host devices; run by test_sharding.py in a subprocess.

``XLA_FLAGS=--xla_force_host_platform_device_count=4`` must be set before jax is
imported, which is why this runs in its own process. Prints one line per check
and exits non-zero on the first failure.
"""

from __future__ import annotations

import re
import sys

COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")


def _collectives(hlo: str) -> set[str]:
    return {c for c in COLLECTIVES if re.search(rf"\b{c}(-start)?\(", hlo) or f" {c}(" in hlo}


def main() -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from diffcholinv import cholesky_inv

    ndev = len(jax.devices())
    assert ndev >= 4, f"expected >= 4 forced host devices, got {ndev}"

    meshes = {"auto": jax.sharding.Mesh(np.array(jax.devices()[:4]), ("b",))}
    AxisType = getattr(jax.sharding, "AxisType", None)
    if AxisType is not None:
        meshes["auto"] = jax.make_mesh((4,), ("b",), axis_types=(AxisType.Auto,))
        meshes["explicit"] = jax.make_mesh((4,), ("b",), axis_types=(AxisType.Explicit,))

    rng = np.random.default_rng(0)
    n, b = 16, 8
    X = rng.standard_normal((b, n, n))
    A = X @ np.swapaxes(X, -1, -2) / n + np.eye(n)
    L_np = np.linalg.cholesky(A)
    W_np = rng.standard_normal((b, n, n))
    expected = np.linalg.inv(A)

    for kind, mesh in meshes.items():
        sharding = NamedSharding(mesh, P("b"))
        L = jax.device_put(L_np, sharding)
        W = jax.device_put(W_np, sharding)

        C = cholesky_inv(L)
        np.testing.assert_allclose(np.asarray(C), expected, rtol=1e-10, atol=1e-12)
        assert C.sharding.is_equivalent_to(L.sharding, C.ndim), (kind, C.sharding)

        # device= with a sharding places an unsharded input there.
        C2 = cholesky_inv(L_np, device=sharding)
        assert C2.sharding.is_equivalent_to(sharding, C2.ndim), (kind, C2.sharding)
        np.testing.assert_array_equal(np.asarray(C2), np.asarray(C))

        # Control: a reduction over the sharded batch must show up as a collective,
        # so that "none found" below means something.
        control = jax.jit(lambda x: jnp.sum(x, axis=0)).lower(L).compile().as_text()
        assert _collectives(control), f"{kind}: detector found no collective in a batch sum"

        fwd_hlo = jax.jit(cholesky_inv).lower(L).compile().as_text()
        found = _collectives(fwd_hlo)
        assert not found, f"{kind}: forward has collectives {found}"

        def loss(x, w):
            return jnp.sum(w * cholesky_inv(x))

        grad = jax.jit(jax.grad(loss))
        g = grad(L, W)
        assert g.sharding.is_equivalent_to(L.sharding, g.ndim), (kind, g.sharding)

        def loss_ref(x, w):
            t = jnp.tril(x)
            return jnp.sum(w * jnp.linalg.inv(t @ jnp.swapaxes(t, -1, -2)))

        g_ref = jax.grad(loss_ref)(jnp.asarray(L_np), jnp.asarray(W_np))
        np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=1e-8, atol=1e-10)
        grad_hlo = grad.lower(L, W).compile().as_text()
        bad = _collectives(grad_hlo) - {"all-reduce"}
        assert not bad, f"{kind}: gradient has collectives {bad}"
        in_grad = sorted(_collectives(grad_hlo)) or "none"
        print(f"ok {kind} mesh: sharding kept, forward collectives none, gradient {in_grad}")
    print("sharding checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
