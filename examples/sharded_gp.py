"""A GP too large for one device: the kernel matrix sharded along its rows.

The weekly Mauna Loa CO2 record (statsmodels, offline; 2048 of its 2225
weeks) under an RBF + noise kernel. The ``n × n`` kernel matrix ``K``, its
Cholesky factor and ``K⁻¹`` are never held whole by any device: each of the
``D`` devices of a 1-D mesh holds ``n / D`` rows of each.

- ``K`` is built row-sharded from the inputs.
- ``L = chol(K)`` by a right-looking blocked Cholesky written in this file
  (JAX's ``jnp.linalg.cholesky`` would gather ``K`` onto one device): one
  ``s × s`` diagonal block factorized per step, the panel below it solved
  against it, and the trailing matrix updated by a product, ``s = n / D``.
- ``K⁻¹ = cholesky_inv(L, device=rows)``: the placement splits the matrix
  axes, so the library's row-sharded algorithm runs.
- The log marginal likelihood and its gradient by the trace formula
  (Rasmussen & Williams 2006, eq. 5.9; what scikit-learn computes):
  ``∂LML/∂θ = ½ tr((α αᵀ − K⁻¹) ∂K/∂θ)``, ``α = K⁻¹ y``: elementwise products
  of row-sharded matrices and one sum.

Which tool for which quantity: the trace term of the gradient needs ``K⁻¹``
itself, so ``cholesky_inv`` is the right tool there. ``α = K⁻¹ y`` alone
would be a solve elsewhere (the other examples use ``cho_solve``); here it is
a row-sharded product with the ``K⁻¹`` already formed, because JAX's
triangular solve would gather the factor onto one device. This ``K`` is well
conditioned (noise variance 0.01), and the LML matches scikit-learn's, which
solves, to about 1e-15. The kernel is written by hand rather than taken from
tinygp: ``K`` must be born row-sharded (the sharding constraint on the
squared distances), and the gradient uses the kernel's pieces (``E``, ``d²``)
directly. The example does not predict.

The devices are forced host (CPU) devices, so the example runs anywhere; the
"device memory" is a budget this example sets: the one-device program needs
more than it, each device of the sharded program less. The script prints the
per-device memory of both compiled programs (``memory_analysis()``), checks
the LML and gradient against scikit-learn at the same hyperparameters, and
exits non-zero on a mismatch.

Run ``python examples/sharded_gp.py`` (``--quick``: n = 256, as the tests do).
On real accelerators drop the ``XLA_FLAGS`` line below and build the mesh
over ``jax.devices()``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

DEVICES = 8
# Forced host devices: must be set before jax is imported.
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={DEVICES}")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from diffcholinv import cholesky_inv  # noqa: E402

# log [signal variance, length scale in years, noise variance]: scikit-learn's order.
THETA = np.log([1.0, 0.5, 0.01])
_LOG_2PI = math.log(2.0 * math.pi)


def load_co2(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` weekly CO2 readings: time in years, standardized ppm."""
    from statsmodels.datasets import co2

    s = co2.load_pandas().data["co2"].dropna()
    t = (s.index.year + (s.index.day_of_year - 1) / 365.25).to_numpy(np.float64)[:n]
    y = s.to_numpy(np.float64)[:n]
    return t - t[0], (y - y.mean()) / y.std()


def blocked_cholesky(K: jax.Array, rows: NamedSharding, blocks: int) -> jax.Array:
    """Lower Cholesky factor of a row-sharded SPD ``K``, kept row-sharded.

    Right-looking, ``blocks`` column blocks of ``s`` columns: step ``k`` gathers
    the ``s × s`` block ``K_kk`` (a masked sum over the row shards), factors
    it, solves the panel below (``L_ik = K_ik L_kk⁻ᴴ``, local) and subtracts
    ``L_:k L_:kᴴ`` from the rest (the panel gathered, ``n × s``).
    """
    n = K.shape[-1]
    s = n // blocks

    def keep(x: jax.Array) -> jax.Array:
        return lax.with_sharding_constraint(x, rows)

    row = lax.broadcasted_iota(jnp.int32, (n, 1), 0)

    def step(k: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        A, L = carry
        col = lax.dynamic_slice_in_dim(A, k * s, s, axis=1)  # [n, s], local
        Akk = jnp.sum(jnp.where(row // s == k, col, 0.0).reshape(blocks, s, s), axis=0)
        Lkk = jnp.linalg.cholesky(Akk)  # s × s, on every device
        below = jnp.where(row >= (k + 1) * s, col, 0.0)
        panel = lax.linalg.triangular_solve(
            Lkk, below, left_side=False, lower=True, transpose_a=True
        )
        A = keep(A - jnp.matmul(panel, panel.T, precision=lax.Precision.HIGHEST))
        Lcol = keep(jnp.where(row // s == k, jnp.tile(Lkk, (blocks, 1)), panel))
        return A, keep(lax.dynamic_update_slice_in_dim(L, Lcol, k * s, axis=1))

    _, L = lax.fori_loop(0, blocks, step, (keep(K), keep(jnp.zeros_like(K))))
    return L


def make_lml(t: np.ndarray, y: np.ndarray, rows: NamedSharding, blocks: int) -> Any:
    """``theta -> (LML, dLML/dtheta)`` with every ``n × n`` matrix placed by ``rows``."""

    def lml_and_grad(theta: jax.Array, t: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        sf2, ell, sn2 = jnp.exp(theta[0]), jnp.exp(theta[1]), jnp.exp(theta[2])
        # Row-sharded t_i against the replicated t_j: K is born row-sharded.
        d2 = lax.with_sharding_constraint((t[:, None] - t[None, :]) ** 2, rows)
        E = sf2 * jnp.exp(-0.5 * d2 / ell**2)
        eye = lax.with_sharding_constraint(jnp.eye(t.size, dtype=E.dtype), rows)
        K = E + sn2 * eye
        L = blocked_cholesky(K, rows, blocks)
        Kinv = cholesky_inv(L, device=rows)  # the row-sharded algorithm
        alpha = jnp.matmul(Kinv, y, precision=lax.Precision.HIGHEST)
        lml = -0.5 * y @ alpha - jnp.sum(jnp.log(jnp.diagonal(L))) - 0.5 * t.size * _LOG_2PI
        # ½ tr((α αᵀ − K⁻¹) ∂K/∂θ) for log-parameters: ∂K/∂log sf2 = E,
        # ∂K/∂log ell = E d²/ell², ∂K/∂log sn2 = sn2 I.
        R = jnp.outer(alpha, alpha) - Kinv
        grad = 0.5 * jnp.stack([jnp.sum(R * E), jnp.sum(R * E * d2) / ell**2, sn2 * jnp.trace(R)])
        return lml, grad

    return jax.jit(lml_and_grad), (jnp.asarray(THETA), jnp.asarray(t), jnp.asarray(y))


def program_mib(compiled: Any) -> float:
    """Per-device memory of a compiled program: arguments + outputs + temporaries."""
    m = compiled.memory_analysis()
    return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes) / 2**20


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="n = 256 instead of 2048")
    args = p.parse_args(argv)
    n = 256 if args.quick else 2048
    devices = jax.devices()
    if len(devices) < DEVICES:
        raise SystemExit(f"needs {DEVICES} devices, found {len(devices)} (XLA_FLAGS set late?)")
    t, y = load_co2(n)

    mesh = Mesh(np.array(devices[:DEVICES]), ("rows",))
    rows = NamedSharding(mesh, P("rows", None))
    fn, inputs = make_lml(t, y, rows, DEVICES)
    sharded = fn.lower(*inputs).compile()
    lml, grad = sharded(*inputs)

    # The same program on one device (a one-device mesh: the ordinary op).
    one = NamedSharding(Mesh(np.array(devices[:1]), ("rows",)), P("rows", None))
    fn1, _ = make_lml(t, y, one, DEVICES)
    single = fn1.lower(*inputs).compile()
    lml1, grad1 = single(*inputs)

    mib, mib1 = program_mib(sharded), program_mib(single)
    budget = 0.5 * mib1  # this example's "device memory"
    print(f"n = {n} points, float64; K is {n * n * 8 / 2**20:.1f} MiB")
    print(f"one device:  {mib1:7.1f} MiB  (> the {budget:.1f} MiB budget: does not fit)")
    print(f"{DEVICES} devices:   {mib:7.1f} MiB per device  ({mib / mib1:.3f} of one device)")
    print(f"LML {float(lml):.6f}, gradient {np.asarray(grad)}")

    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, WhiteKernel
    from sklearn.gaussian_process.kernels import ConstantKernel as Amp

    kernel = Amp() * RBF() + WhiteKernel()
    gp = GaussianProcessRegressor(kernel, alpha=0.0, optimizer=None).fit(t[:, None], y)
    lml_sk, grad_sk = gp.log_marginal_likelihood(THETA, eval_gradient=True)
    lml_err = abs(float(lml) - lml_sk) / abs(lml_sk)
    grad_err = float(np.max(np.abs(np.asarray(grad) - grad_sk)) / np.max(np.abs(grad_sk)))
    print(f"vs scikit-learn: LML relative error {lml_err:.1e}, gradient {grad_err:.1e}")
    return {
        "n": n,
        "mib_sharded": mib,
        "mib_single": mib1,
        "lml_err": lml_err,
        "grad_err": grad_err,
        "single_vs_sharded": max(
            abs(float(lml1) - float(lml)), float(np.max(np.abs(np.asarray(grad1) - grad)))
        ),
    }


if __name__ == "__main__":
    r = main()
    ok = r["lml_err"] < 1e-8 and r["grad_err"] < 1e-6 and r["single_vs_sharded"] < 1e-6
    ok = ok and r["mib_sharded"] < 0.5 * r["mib_single"]
    sys.exit(0 if ok else 1)
