"""The GP step: ``K⁻¹`` of the kernel matrix ``K``, with the gradient reaching ``K``.

Two measurements, every peer in the same process, interleaved, a pause of
``PAUSE`` seconds before each sample (worker threads of the previous peer
spin down), minimum over the rounds:

- ``grad``: ``jax.grad`` of ``sum(G * K⁻¹)`` in ``K`` (``G`` an argument),
  float64, under ``jit``, for ``spd_inv(K)`` (ours),
  ``cholesky_inv(jnp.linalg.cholesky(K))``,
  ``cho_solve((jnp.linalg.cholesky(K), True), I)`` and ``jnp.linalg.inv(K)``
  (autodiff), and torch's ``cholesky_inverse(linalg.cholesky(K))`` with
  autograd (if torch is installed). Seconds, and units of one ``n × n``
  float64 matrix product's time measured in the same process.
- ``loo``: a GP's leave-one-out training loop (Rasmussen & Williams 2006,
  eq. 5.10–5.12: ``diag(K⁻¹)`` and ``K⁻¹ y``), three hyperparameters, 100
  Adam steps in one jitted ``lax.scan``: the first run (compilation plus the
  steps, a new function each time) and the steady run, ``spd_inv(K)``
  against the same code with ``cho_solve((L, True), I)``.

Run ``python -m benchmarks.gp_step [--quick]`` or
``python -m benchmarks --cases gp_step``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax import lax  # noqa: E402
from jax.scipy.linalg import cho_solve  # noqa: E402

from diffcholinv import cholesky_inv, spd_inv  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover - torch is optional
    torch = None

PAUSE = 0.25
STEPS = 100
GRAD_SIZES = ([256, 500, 1000, 2048], [16, 70])
LOO_SIZES = ([200, 500, 1000], [16, 40])


def _block(x: Any) -> Any:
    return jax.tree_util.tree_map(lambda a: a.block_until_ready(), x)


def _call(f: Callable[..., Any], *args: Any) -> Any:
    return _block(f(*args))


def _interleaved(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Minimum seconds of each ``fn()`` over ``rounds`` interleaved samples."""
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            time.sleep(PAUSE)
            t0 = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def kernel_matrix(n: int, lengthscale: float = 0.3) -> tuple[jax.Array, jax.Array]:
    """An RBF kernel matrix plus noise on ``n`` sorted points in ``[0, 1]``, and ``y``."""
    rng = np.random.default_rng(n)
    x = np.sort(rng.uniform(0, 1, n))
    K = np.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / lengthscale**2) + 0.1 * np.eye(n)
    return jnp.asarray(K), jnp.asarray(np.sin(6 * x) + 0.3 * rng.standard_normal(n))


def _eye(K: jax.Array) -> jax.Array:
    return jnp.eye(K.shape[-1], dtype=K.dtype)


# K ↦ K⁻¹ for each JAX peer.
INVERSES: dict[str, Callable[[jax.Array], jax.Array]] = {
    "spd_inv": spd_inv,
    "cholesky_inv": lambda K: cholesky_inv(jnp.linalg.cholesky(K)),
    "cho_solve": lambda K: cho_solve((jnp.linalg.cholesky(K), True), _eye(K)),
    "inv": jnp.linalg.inv,
}


def grad_rows(sizes: list[int], rounds: int, use_torch: bool) -> list[dict[str, Any]]:
    """``jax.grad`` of ``sum(G * K⁻¹)`` in ``K``, each peer, in seconds and products' time."""
    rows = []
    for n in sizes:
        K, _ = kernel_matrix(n)
        G = jnp.asarray(np.random.default_rng(1).standard_normal((n, n)))
        mm = jax.jit(jnp.matmul)
        fns: dict[str, Callable[[], Any]] = {"matmul": partial(_call, mm, K, G)}
        for name, inv in INVERSES.items():
            g = jax.jit(jax.grad(lambda K, G, inv=inv: jnp.sum(G * inv(K))))
            _block(g(K, G))  # compile
            fns[name] = partial(_call, g, K, G)
        if use_torch and torch is not None:
            Kt, Gt = torch.tensor(np.asarray(K)), torch.tensor(np.asarray(G))

            def torch_grad(Kt: Any = Kt, Gt: Any = Gt) -> Any:
                k = Kt.clone().requires_grad_(True)
                C = torch.cholesky_inverse(torch.linalg.cholesky(k))
                (Gt * C).sum().backward()
                return k.grad

            torch_grad()
            fns["torch"] = torch_grad
        _block(mm(K, G))
        best = _interleaved(fns, rounds)
        unit = best.pop("matmul")
        rows.append(
            {
                "case": "gp_step/grad",
                "n": n,
                "seconds": best,
                "matmul_seconds": unit,
                "products": {k: v / unit for k, v in best.items()},
                "speedup": {k: v / best["spd_inv"] for k, v in best.items()},
            }
        )
    return rows


def loo_objective(inverse: Callable[[jax.Array], jax.Array]) -> Callable[..., jax.Array]:
    """Negative LOO log predictive probability (R&W eq. 5.10–5.12), up to a constant."""

    def loss(theta: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
        var, ell, noise = jnp.exp(theta[0]), jnp.exp(theta[1]), jnp.exp(theta[2])
        d = x[:, None] - x[None, :]
        K = var * jnp.exp(-0.5 * d**2 / ell**2) + (noise + 1e-6) * _eye(d)
        C = inverse(K)
        c = jnp.diagonal(C)  # 1 / σᵢ²
        alpha = C @ y  # (yᵢ − μᵢ) / σᵢ² = αᵢ
        return jnp.sum(-0.5 * jnp.log(c) + 0.5 * alpha**2 / c)

    return loss


def _train(inverse: Callable[[jax.Array], jax.Array]) -> Callable[..., Any]:
    """A fresh jitted function: ``STEPS`` Adam steps on the LOO objective in one scan."""
    opt = optax.adam(0.05)
    grad = jax.value_and_grad(loo_objective(inverse))

    def run(theta: jax.Array, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        def step(carry: Any, _: Any) -> tuple[Any, jax.Array]:
            theta, state = carry
            value, g = grad(theta, x, y)
            updates, state = opt.update(g, state)
            return (optax.apply_updates(theta, updates), state), value

        (theta, _), values = lax.scan(step, (theta, opt.init(theta)), None, length=STEPS)
        return theta, values

    return jax.jit(run)


def _first_run(inverse: Callable[[jax.Array], jax.Array], *args: Any) -> Any:
    return _block(_train(inverse)(*args))  # a new function: compiled anew


def loo_rows(sizes: list[int], rounds: int) -> list[dict[str, Any]]:
    """First run (compile + steps) and steady run of the LOO loop, ours and ``cho_solve``."""
    peers = {k: INVERSES[k] for k in ("spd_inv", "cho_solve")}
    rows = []
    for n in sizes:
        rng = np.random.default_rng(n)
        x = jnp.asarray(np.sort(rng.uniform(0, 5, n)))
        y = jnp.sin(2 * x) + jnp.asarray(0.2 * rng.standard_normal(n))
        theta = jnp.log(jnp.asarray([1.0, 0.5, 0.1]))
        first = _interleaved(
            {k: partial(_first_run, f, theta, x, y) for k, f in peers.items()}, rounds
        )
        trained = {k: _train(f) for k, f in peers.items()}
        for f in trained.values():
            _block(f(theta, x, y))
        steady = _interleaved(
            {k: partial(_call, f, theta, x, y) for k, f in trained.items()}, rounds
        )
        rows.append(
            {
                "case": "gp_step/loo",
                "n": n,
                "steps": STEPS,
                "first_seconds": first,
                "steady_seconds": steady,
                "first_speedup": first["cho_solve"] / first["spd_inv"],
                "steady_speedup": steady["cho_solve"] / steady["spd_inv"],
            }
        )
    return rows


def rows(
    quick: bool = False,
    use_torch: bool = True,
    rounds: int | None = None,
    grad_sizes: list[int] | None = None,
    loo_sizes: list[int] | None = None,
    loo_rounds: int | None = None,
) -> list[dict[str, Any]]:
    """The table rows of both measurements (``quick``: tiny sizes, two rounds).

    Each row is printed (as JSON) when it is measured, so a long run shows its progress.
    """
    r = rounds if rounds is not None else (2 if quick else 5)
    out: list[dict[str, Any]] = []
    for n in GRAD_SIZES[quick] if grad_sizes is None else grad_sizes:
        out += grad_rows([n], r, use_torch)
        print(json.dumps(out[-1]), flush=True)
    for n in LOO_SIZES[quick] if loo_sizes is None else loo_sizes:
        out += loo_rows([n], loo_rounds if loo_rounds is not None else max(2, r - 2))
        print(json.dumps(out[-1]), flush=True)
    return out


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: seconds and products' time per peer, and ours' speedup over each."""
    grad = [r for r in rows if r["case"] == "gp_step/grad"]
    loo = [r for r in rows if r["case"] == "gp_step/loo"]
    out = []
    if grad:
        peers = list(grad[0]["seconds"])
        out += [
            "`jax.grad` of `sum(G * K⁻¹)` in `K`, float64: min seconds, (n × n products' time),"
            " and peer / spd_inv",
            "",
            "| n | " + " | ".join(peers) + " |",
            "|---|" + "---|" * len(peers),
        ]
        for r in grad:
            cells = [
                f"{r['seconds'][p] * 1e3:.3g} ms ({r['products'][p]:.1f}), {r['speedup'][p]:.2f}×"
                for p in peers
            ]
            out.append(f"| {r['n']} | " + " | ".join(cells) + " |")
        out.append("")
    if loo:
        out += [
            f"LOO training loop, {loo[0]['steps']} Adam steps in one jitted scan: min seconds,"
            " cho_solve / spd_inv",
            "",
            "| n | first run: spd_inv | cho_solve | speedup"
            " | steady: spd_inv | cho_solve | speedup |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in loo:
            f, s = r["first_seconds"], r["steady_seconds"]
            out.append(
                f"| {r['n']} | {f['spd_inv']:.3g} s | {f['cho_solve']:.3g} s | "
                f"{r['first_speedup']:.2f}× | {s['spd_inv']:.3g} s | {s['cho_solve']:.3g} s | "
                f"{r['steady_speedup']:.2f}× |"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, two rounds")
    p.add_argument("--no-torch", action="store_true", help="leave torch out")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5)")
    p.add_argument("--loo-rounds", type=int, default=None, help="LOO loop rounds (default 3)")
    p.add_argument("--grad-sizes", type=int, nargs="*", default=None, help="n of the gradient")
    p.add_argument("--loo-sizes", type=int, nargs="*", default=None, help="n of the LOO loop")
    args = p.parse_args(argv)
    if torch is not None:
        torch.set_num_threads(1 if args.quick else max(1, torch.get_num_threads()))
    result = rows(
        args.quick, not args.no_torch, args.rounds, args.grad_sizes, args.loo_sizes, args.loo_rounds
    )
    print(format_table(result))
    return result


if __name__ == "__main__":
    main()
