"""Accuracy of ``cholesky_inv`` and ``spd_inv`` on GP kernels, against LAPACK and autodiff.

Every method is judged on the same stored input, against the exact answer of
that input computed in extended precision (``numpy.longdouble``, a 64-bit
mantissa), and the peers' errors on it show what is achievable: nothing is
divided by ``κ ε``.

The inputs are what GP users factor: a kernel on inputs *in order* (sorted
1-D inputs, as a time series; 2-D inputs sorted by their first coordinate, as
a scan) plus a jitter ``σ² I``, from well conditioned (``σ² = 1e-2``) to
badly (``1e-10``). Random order and Haar-random factors hide most of what a
products-only inverse can lose (``--haar`` keeps those as controls).

The reference of a factor ``L`` (float64 or complex128, or a float32 one
read as float64, which is exact) is ``X = L⁻¹`` from ``solve_triangular``,
refined with residuals ``I − L X`` in extended precision until the
correction is below ``2⁻⁷⁰``, then ``C = Xᴴ X`` in extended precision. The
reference of a matrix ``K`` is ``inv(K)`` refined the same way with
``I − K C``. Extended-precision products are made exactly in float64 BLAS
(:func:`ext_matmul`: each operand cut into slices whose products and sums are
exact, Ozaki et al. 2012) and summed in ``numpy.longdouble``: the same
result as a ``numpy.longdouble`` matrix product, in seconds at ``n = 2048``
instead of minutes (``tests/test_accuracy.py`` checks them against each other
and against mpmath).

Errors are relative Frobenius norms, per matrix (per member of a batch). The
targets (ratios to the best peer; ``≤ 2`` is "as accurate as LAPACK"):

- ``cholesky_inv(L)``, every ``method``, ``upper=True``, complex128, batches
  mixing conditions, the row-sharded path of one matrix: LAPACK ``potri``,
  ``cho_solve((L, True), I)`` and ``torch.cholesky_inverse``;
- the gradient in ``L`` of ``Σ G ⊙ A⁻¹`` and of the leave-one-out log
  predictive density: autodiff through ``cho_solve``;
- the tangent of ``forward_mode=True``: ``jax.jvp`` through ``cho_solve``;
- ``spd_inv(K)``, ``spd_inv_logdet`` (value and gradient) and their
  ``forward_mode=True`` tangent: ``cho_solve(cholesky(K), I)`` and, in
  float64, ``numpy.linalg.inv`` (``jnp.linalg.inv`` for the derivatives).

Prints the Markdown tables of docs/robustness.md ("Accuracy") and a last
line with the worst ratio; exits 1 if a target is missed::

    python scripts/accuracy.py --kappa    # the sweep (n up to 2048; about 15 min on 2 cores)
    python scripts/accuracy.py --quick    # n = 64 and 256
    python scripts/accuracy.py --haar     # Haar-random factors (controls)
"""

from __future__ import annotations

import os
import sys

# The row-sharded path needs several devices: four forced CPU devices, set
# before jax starts (run as a script only; imported, the caller's jax is used).
if __name__ == "__main__" and "host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    os.environ["XLA_FLAGS"] = flags.strip()

import argparse
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import jax.scipy.linalg as jsl  # noqa: E402
import numpy as np  # noqa: E402
import scipy.linalg as sl  # noqa: E402
import scipy.linalg.lapack as lapack  # noqa: E402

from diffcholinv import cholesky_inv, spd_inv, spd_inv_logdet  # noqa: E402

try:
    import torch
except ImportError:  # torch is an optional peer
    torch = None

LD, CLD = np.longdouble, np.clongdouble
METHODS = ("auto", "solve", "products")
NOISES = {"float64": (1e-2, 1e-4, 1e-6, 1e-8, 1e-10), "float32": (1e-2, 1e-4, 1e-6)}
TARGET = 2.0  # ours / best peer


# ---- extended precision ---------------------------------------------------


def check_extended() -> None:
    """Raise if ``numpy.longdouble`` is not wider than float64 on this machine."""
    if np.finfo(LD).nmant < 63:
        raise SystemExit(
            f"numpy.longdouble has {np.finfo(LD).nmant} mantissa bits here, no more than "
            "float64's 52: the extended-precision reference needs an x86 machine "
            "(80-bit long double), e.g. Linux on x86-64."
        )


def _slices(A: np.ndarray, axis: int, beta: int, k: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``A = s ⊙ Σᵢ Aᵢ 2^(-β(i+1))`` (+ a rest below ``2^(-βk) s``): integer slices, scales.

    ``s`` is a power of two per row (``axis=1``) or column (``axis=0``), at
    least the largest ``|A|`` there; each slice holds integers of at most
    ``β`` bits, exact in float64. All arithmetic is exact in longdouble
    (scaling by powers of two, rounding to integers, subtracting them).
    """
    A = np.asarray(A, LD)
    mu = np.max(np.abs(A), axis=axis, keepdims=True)
    _, e = np.frexp(mu)  # mu = m 2^e, 1/2 ≤ m < 1 (0 for a zero row: s = 1)
    s = np.ldexp(np.ones_like(mu), e)
    Z = A / s
    out = []
    for _ in range(k):
        Z = np.ldexp(Z, beta)
        T = np.rint(Z)
        out.append(T.astype(np.float64))
        Z = Z - T
    return out, s


def _ext_matmul_real(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    n = A.shape[-1]
    beta = (53 - math.ceil(math.log2(max(n, 2)))) // 2  # n 2^(2β) < 2^53: exact sums
    k = math.ceil(76 / beta)
    As, sa = _slices(A, 1, beta, k)
    Bs, sb = _slices(B, 0, beta, k)
    acc = np.zeros((A.shape[0], B.shape[1]), LD)
    for a in range(k):
        for b in range(k - a):  # the pairs left out are below 2^(-β(k+1)) |A| |B|
            acc += np.ldexp((As[a] @ Bs[b]).astype(LD), -beta * (a + b + 2))
    return np.asarray(acc * sa * sb)


def ext_matmul(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``A @ B`` (2-D) to longdouble precision, from exact float64 products (Ozaki et al. 2012)."""
    if np.iscomplexobj(A) or np.iscomplexobj(B):
        A, B = np.asarray(A, CLD), np.asarray(B, CLD)
        ar, ai, br, bi = A.real, A.imag, B.real, B.imag
        re = _ext_matmul_real(ar, br) - _ext_matmul_real(ai, bi)
        im = _ext_matmul_real(ar, bi) + _ext_matmul_real(ai, br)
        return np.asarray(re + 1j * im.astype(CLD), CLD)
    return _ext_matmul_real(A, B)


def _wide(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, CLD if np.iscomplexobj(x) else LD)


def _working(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.complex128 if np.iscomplexobj(x) else np.float64)


def _refine(apply: Callable[[np.ndarray], np.ndarray], X0: np.ndarray) -> np.ndarray:
    """``X`` with ``apply(X) = I`` in extended precision, from an approximation ``X0``.

    Steps ``X ← X + X₀ (I − apply(X))``, the residual in extended precision,
    until a correction no longer shrinks: each step multiplies the error by
    about ``κ ε``, down to the rounding of the residual, ``κ ε_ext``, which is
    ``2¹¹`` times below the ``κ ε`` of any float64 method (the limiting
    accuracy of refinement: Higham, *Accuracy and Stability*, §12.1).
    """
    X, eye = _wide(X0), np.eye(X0.shape[-1], dtype=LD)
    last = np.inf
    for _ in range(10):
        D = X0 @ _working(eye - apply(X))
        X = X + D
        size = float(np.linalg.norm(D)) / float(np.linalg.norm(_working(X)))
        if size > last / 4:
            break
        last = size
    if last > 1e-6:
        raise RuntimeError("the reference did not converge: the input is too close to singular")
    return X


def factor_inverse(L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(X, C)``: ``X = L⁻¹`` and ``C = (L Lᴴ)⁻¹ = Xᴴ X`` of the stored lower factor, extended."""
    Lw = np.tril(_working(L))
    X0 = sl.solve_triangular(Lw, np.eye(L.shape[-1]), lower=True)
    X = np.tril(_refine(lambda X: ext_matmul(Lw, X), X0))
    C = ext_matmul(X.conj().T, X)
    return X, (C + C.conj().T) / 2


def matrix_inverse(K: np.ndarray) -> np.ndarray:
    """``K⁻¹`` of the stored Hermitian ``K`` (read as ``(K + Kᴴ)/2``), extended."""
    Kw = _working(K)
    H = (_wide(Kw) + _wide(Kw).conj().T) / 2
    C = _refine(lambda X: ext_matmul(H, X), np.linalg.inv(Kw))
    return (C + C.conj().T) / 2


def logdet(K: np.ndarray) -> LD:
    """``log det K`` of the stored Hermitian positive definite ``K``, extended.

    ``K = L Lᴴ + E`` with ``L`` float64's Cholesky factor and ``E`` its
    residual: ``log det K = 2 Σ log Lᵢᵢ + log det(I + F)``, ``F = L⁻¹ E L⁻ᴴ``,
    the last term ``tr F − tr F²/2 + tr F³/3`` (``‖F‖ ≈ κ ε``).
    """
    Kw = _working(K)
    L = np.linalg.cholesky(Kw)
    X, _ = factor_inverse(L)
    E = _wide(Kw) - ext_matmul(L, L.conj().T)
    F = ext_matmul(ext_matmul(X, E), X.conj().T)
    F2 = ext_matmul(F, F)
    tr = np.trace(F) - np.trace(F2) / 2 + np.sum(F2 * F.T) / 3
    return LD(2 * np.sum(np.log(np.diagonal(L).real.astype(LD))) + np.real(tr))


def rel(x: object, ref: np.ndarray) -> float:
    """Relative Frobenius error of ``x`` against ``ref`` (per matrix: call it per member)."""
    d = _wide(np.asarray(x)) - ref
    den = float(np.sqrt(np.sum(np.abs(ref) ** 2)))
    return float(np.sqrt(np.sum(np.abs(d) ** 2))) / den if den else float(np.abs(d).max())


# ---- inputs -----------------------------------------------------------------


KERNELS = ("se", "matern32", "se-2d", "complex")


def kernel(kind: str, n: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(K + σ² I, x)`` of ``kind`` on ``n`` inputs in order, float64 (complex128: ``"complex"``).

    ``"se"``: ``exp(-(x - x')²/2)`` on sorted inputs from ``U[0, 10]``;
    ``"matern32"``: Matérn 3/2, ``(1 + √3 r) exp(-√3 r)``, on the same;
    ``"se-2d"``: the squared exponential on 2-D inputs from ``U[0, 10]²``,
    sorted by their first coordinate; ``"complex"``: a Hermitian kernel,
    the squared exponential times ``exp(i ω (x - x'))`` (``ω = 2``; the
    covariance of a complex process with a shifted spectrum).
    """
    rng = np.random.default_rng(seed)
    if kind == "se-2d":
        pts = rng.uniform(0.0, 10.0, (n, 2))
        pts = pts[np.argsort(pts[:, 0])]
        d2 = np.sum((pts[:, None, :] - pts[None, :, :]) ** 2, axis=-1)
        return np.exp(-0.5 * d2) + noise * np.eye(n), pts[:, 0]
    x = np.sort(rng.uniform(0.0, 10.0, n))
    d = x[:, None] - x[None, :]
    if kind == "se":
        K = np.exp(-0.5 * d**2)
    elif kind == "matern32":
        r = np.sqrt(3.0) * np.abs(d)
        K = (1.0 + r) * np.exp(-r)
    elif kind == "complex":
        K = np.exp(-0.5 * d**2) * np.exp(2j * d)
    else:
        raise ValueError(f"unknown kernel {kind!r}; one of {KERNELS}")
    return K + noise * np.eye(n), x


def factor(kind: str, n: int, noise: float, dtype: str, seed: int = 0) -> np.ndarray:
    """The lower Cholesky factor of :func:`kernel`, made in float64 and stored in ``dtype``."""
    K, _ = kernel(kind, n, noise, seed)
    return np.linalg.cholesky(K).astype(dtype)


def loo_y(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Targets of the leave-one-out objective: ``sin x`` plus noise of 0.1."""
    return np.sin(x) + 0.1 * np.random.default_rng(seed + 1).standard_normal(x.shape)


def cotangent(n: int, complex_: bool, seed: int = 0) -> np.ndarray:
    """``G``, standard normal (complex normal for complex factors)."""
    rng = np.random.default_rng(seed + 2)
    G = rng.standard_normal((n, n))
    return G + 1j * rng.standard_normal((n, n)) if complex_ else G


# ---- the functions differentiated -----------------------------------------


def sum_objective(G: jax.Array) -> Callable[[jax.Array], jax.Array]:
    """``C ↦ Re Σ G ⊙ C``."""
    return lambda C: jnp.real(jnp.sum(G * C))


def loo_objective(y: jax.Array) -> Callable[[jax.Array], jax.Array]:
    """``C ↦ Σᵢ ½ log dᵢ − ½ |rᵢ|² / dᵢ``, ``d = Re diag C``, ``r = C y`` (R&W §5.4.2)."""

    def f(C: jax.Array) -> jax.Array:
        d = jnp.real(jnp.diagonal(C))
        r = C @ y.astype(C.dtype)
        return jnp.sum(0.5 * jnp.log(d) - 0.5 * jnp.abs(r) ** 2 / d)

    return f


def loo_cotangent(C: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The cotangent (JAX's convention) of :func:`loo_objective` at ``C``, extended.

    ``Ḡᵢⱼ = −conj(rᵢ) yⱼ / dᵢ + δᵢⱼ (1/(2dᵢ) + |rᵢ|²/(2dᵢ²))``.
    """
    d = np.real(np.diagonal(C))
    r = C @ y.astype(LD)
    G = -np.conj(r)[:, None] * y.astype(LD)[None, :] / d[:, None]
    return G + np.diag(0.5 / d + 0.5 * np.abs(r) ** 2 / d**2)


def factor_gradient(X: np.ndarray, C: np.ndarray, G: np.ndarray) -> np.ndarray:
    """The gradient in ``L`` for the cotangent ``G`` of ``C``, extended (JAX's convention).

    ``−tril(C S Xᴴ)`` with ``S = G + Gᴴ``; for complex factors
    ``conj(−tril(C S Xᴴ))`` with ``S = conj(G) + Gᵀ`` (docs/math.md, "Gradient").
    """
    S = np.conj(G) + G.T if np.iscomplexobj(C) else G + G.T
    Y = -np.tril(ext_matmul(ext_matmul(C, _wide(S)), X.conj().T))
    return np.conj(Y) if np.iscomplexobj(C) else Y


def cho_solve_inv(L: jax.Array) -> jax.Array:
    """``cho_solve((L, True), I)``, as JAX, tinygp and GPJax users write it."""
    return jsl.cho_solve((L, True), jnp.broadcast_to(jnp.eye(L.shape[-1], dtype=L.dtype), L.shape))


def potri(L: np.ndarray) -> np.ndarray:
    name = {"float32": "spotri", "float64": "dpotri", "complex128": "zpotri"}[L.dtype.name]
    P, info = getattr(lapack, name)(L, lower=1)
    if info:
        return np.full(L.shape, np.nan, L.dtype)
    return np.tril(P) + np.tril(P, -1).conj().T


def torch_inv(L: np.ndarray) -> np.ndarray | None:
    if torch is None:
        return None
    return torch.cholesky_inverse(torch.from_numpy(np.ascontiguousarray(L))).numpy()


# ---- the sweep --------------------------------------------------------------


@dataclass
class Row:
    """One input: the peers' errors, ours per variant, and the best peer per target."""

    label: str
    dtype: str
    peers: dict[str, float] = field(default_factory=dict)
    ours: dict[str, float] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)

    def ratio(self, variant: str) -> float:
        """Ours over the best peer; an error below the unit roundoff counts as that.

        Below it no method is distinguishable from the rounded answer (a scalar
        such as ``log det`` can come out exact).
        """
        target = variant.split(":")[0]
        u = float(np.finfo(np.dtype(self.dtype)).eps) / 2
        return max(self.ours[variant], u) / max(self.best[target], u)


_JIT: dict[object, Callable[..., object]] = {}


def jitted(key: object, make: Callable[[], Callable[..., object]]) -> Callable[..., object]:
    """One compiled function per key (shapes recompile inside jax.jit as needed)."""
    if key not in _JIT:
        _JIT[key] = jax.jit(make())
    return _JIT[key]


def value_row(label: str, L: np.ndarray, ref_C: np.ndarray, sharded: bool) -> Row:
    """``cholesky_inv`` (every method, ``upper``, row-sharded) against the peers."""
    row = Row(label, L.dtype.name)
    Lj = jnp.asarray(L)
    peers = {
        "potri": potri(L),
        "cho_solve": jitted("cho", lambda: cho_solve_inv)(Lj),
        "torch": torch_inv(L),
    }
    row.peers = {k: rel(v, ref_C) for k, v in peers.items() if v is not None}
    row.best["C"] = min(row.peers.values())
    for m in METHODS:
        row.ours[f"C:{m}"] = rel(
            jitted(("C", m), lambda m=m: lambda L: cholesky_inv(L, method=m))(Lj), ref_C
        )
    U = jnp.asarray(np.ascontiguousarray(L.conj().T))
    row.ours["C:upper"] = rel(
        jitted("upper", lambda: lambda U: cholesky_inv(U, upper=True))(U), ref_C
    )
    if sharded:
        mesh = jax.sharding.Mesh(np.array(jax.devices()[:4]), ("x",))
        placed = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("x", None))
        row.ours["C:row-sharded"] = rel(
            cholesky_inv(jax.device_put(Lj, placed), device=placed), ref_C
        )
    return row


def gradient_row(row: Row, L: np.ndarray, X: np.ndarray, C: np.ndarray, x: np.ndarray) -> None:
    """Gradients in ``L`` (``Σ G ⊙ C``, LOO) and the forward-mode tangent, into ``row``."""
    n, complex_ = L.shape[-1], np.iscomplexobj(L)
    Lj = jnp.asarray(L)
    G, y = cotangent(n, complex_), loo_y(x)
    for name, objective, Gbar in (
        ("grad", sum_objective, _wide(G)),
        ("loo", loo_objective, loo_cotangent(C, y)),
    ):
        arg = jnp.asarray(G if name == "grad" else y, Lj.dtype if name == "grad" else Lj.real.dtype)
        ref = factor_gradient(X, C, Gbar)
        peer = jitted(
            (name, "cho"),
            lambda o=objective: lambda L, a: jax.grad(lambda L: o(a)(cho_solve_inv(L)))(L),
        )
        row.peers[f"{name}: cho_solve"] = row.best[name] = rel(peer(Lj, arg), ref)
        for m in METHODS:
            ours = jitted(
                (name, m),
                lambda o=objective, m=m: (
                    lambda L, a: jax.grad(lambda L: o(a)(cholesky_inv(L, method=m)))(L)
                ),
            )
            row.ours[f"{name}:{m}"] = rel(ours(Lj, arg), ref)
    # The tangent of forward_mode=True in a direction L̇: Ċ = −(P + Pᴴ), P = C L̇ X.
    dL = np.tril(cotangent(n, complex_, seed=7)).astype(L.dtype)
    P = ext_matmul(ext_matmul(C, _wide(dL)), X)
    ref = -(P + P.conj().T)
    jvp_peer = jitted("jvp-cho", lambda: lambda L, d: jax.jvp(cho_solve_inv, (L,), (d,))[1])
    row.peers["jvp: cho_solve"] = row.best["jvp"] = rel(jvp_peer(Lj, jnp.asarray(dL)), ref)
    jvp_ours = jitted(
        "jvp",
        lambda: lambda L, d: jax.jvp(lambda L: cholesky_inv(L, forward_mode=True), (L,), (d,))[1],
    )
    row.ours["jvp:auto"] = rel(jvp_ours(Lj, jnp.asarray(dL)), ref)


def spd_row(label: str, K: np.ndarray, dtype: str) -> Row | None:
    """``spd_inv``, ``spd_inv_logdet``: value, gradients, tangent; ``None``: ``K`` not PD."""
    Ks = K.astype(dtype)
    if not np.all(np.isfinite(np.linalg.cholesky(Ks.astype(np.float64)))):
        return None
    Kj = jnp.asarray(Ks)
    chol = jitted("spd-cho", lambda: lambda K: cho_solve_inv(jnp.linalg.cholesky(K)))
    if not bool(jnp.all(jnp.isfinite(chol(Kj)))):
        return None  # jnp.linalg.cholesky fails in this dtype: every peer gives nan
    row = Row(label, dtype)
    C = matrix_inverse(Ks)
    row.peers["spd: cho_solve"] = rel(chol(Kj), C)
    if dtype == "float64":  # numpy.linalg.inv computes float32 in float64: no float32 peer
        row.peers["spd: inv"] = rel(np.linalg.inv(Ks), C)
    row.best["spd"] = min(v for k, v in row.peers.items() if k.startswith("spd:"))
    row.ours["spd:spd_inv"] = rel(jitted("spd", lambda: spd_inv)(Kj), C)
    C_ld, ld_ours = jitted("spd-ld", lambda: spd_inv_logdet)(Kj)
    row.ours["spd:spd_inv_logdet"] = rel(C_ld, C)
    # log det: 2 Σ log diag(cholesky(K)), what cho_solve users compute (numpy's slogdet
    # computes float32 in float64: no peer in float32, as inv).
    ref_ld = float(logdet(Ks))
    ld_cho = jitted(
        "ld-cho", lambda: lambda K: 2 * jnp.sum(jnp.log(jnp.diagonal(jnp.linalg.cholesky(K))))
    )
    row.peers["logdet: cholesky"] = row.best["logdet"] = abs(float(ld_cho(Kj)) - ref_ld) / abs(
        ref_ld
    )
    row.ours["logdet:spd_inv_logdet"] = abs(float(ld_ours) - ref_ld) / abs(ref_ld)
    # The gradient of Σ G ⊙ C + w log det K (G symmetric, so that inv's gradient, which
    # does not symmetrise, is the same function's): Ā = −C G C + w C.
    n = K.shape[-1]
    G0 = cotangent(n, False, seed=3)
    G, w = (G0 + G0.T) / 2, 0.5
    CG = ext_matmul(C, _wide(G))
    ref_val = -ext_matmul(CG, C)
    ref_ld_grad = ref_val + LD(w) * C
    Gj = jnp.asarray(G, dtype)

    def grad_of(f: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array, jax.Array], jax.Array]:
        return lambda K, G: jax.grad(lambda K: jnp.sum(G * f(K)))(K)

    def grad_ld_of(
        f: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    ) -> Callable[..., jax.Array]:
        return lambda K, G: jax.grad(lambda K: jnp.sum(G * f(K)[0]) + w * f(K)[1])(K)

    def cho_ld(K: jax.Array) -> tuple[jax.Array, jax.Array]:
        L = jnp.linalg.cholesky(K)
        return cho_solve_inv(L), 2 * jnp.sum(jnp.log(jnp.diagonal(L)))

    def inv_ld(K: jax.Array) -> tuple[jax.Array, jax.Array]:
        return jnp.linalg.inv(K), jnp.linalg.slogdet(K)[1]

    row.peers["spd-grad: cho_solve"] = rel(
        jitted("g-cho", lambda: grad_of(lambda K: cho_ld(K)[0]))(Kj, Gj), ref_val
    )
    row.peers["spd-grad: inv"] = rel(
        jitted("g-inv", lambda: grad_of(jnp.linalg.inv))(Kj, Gj), ref_val
    )
    row.best["spd-grad"] = min(row.peers["spd-grad: cho_solve"], row.peers["spd-grad: inv"])
    row.ours["spd-grad:spd_inv"] = rel(jitted("g-spd", lambda: grad_of(spd_inv))(Kj, Gj), ref_val)
    row.peers["ld-grad: cho_solve"] = rel(
        jitted("gl-cho", lambda: grad_ld_of(cho_ld))(Kj, Gj), ref_ld_grad
    )
    row.peers["ld-grad: inv"] = rel(
        jitted("gl-inv", lambda: grad_ld_of(inv_ld))(Kj, Gj), ref_ld_grad
    )
    row.best["ld-grad"] = min(row.peers["ld-grad: cho_solve"], row.peers["ld-grad: inv"])
    row.ours["ld-grad:spd_inv_logdet"] = rel(
        jitted("gl-spd", lambda: grad_ld_of(spd_inv_logdet))(Kj, Gj), ref_ld_grad
    )
    # The tangent of forward_mode=True in a symmetric direction K̇: Ċ = −C K̇ C.
    dK = jnp.asarray(G, dtype)
    ref_t = -ext_matmul(ext_matmul(C, _wide(G)), C)
    t_cho = jitted("t-cho", lambda: lambda K, d: jax.jvp(lambda K: cho_ld(K)[0], (K,), (d,))[1])
    row.peers["spd-jvp: cho_solve"] = row.best["spd-jvp"] = rel(t_cho(Kj, dK), ref_t)
    t_ours = jitted(
        "t-spd",
        lambda: lambda K, d: jax.jvp(lambda K: spd_inv(K, forward_mode=True), (K,), (d,))[1],
    )
    row.ours["spd-jvp:spd_inv"] = rel(t_ours(Kj, dK), ref_t)
    return row


def batch_rows(label: str, Ls: np.ndarray) -> list[Row]:
    """A batch ``[B, n, n]`` through one call of each method; one row per member."""
    Lj = jnp.asarray(Ls)
    ours = {m: np.asarray(jax.jit(lambda L, m=m: cholesky_inv(L, method=m))(Lj)) for m in METHODS}
    cho = np.asarray(jax.jit(cho_solve_inv)(Lj))
    tor = torch_inv(Ls)
    rows = []
    for i, L in enumerate(Ls):
        _, C = factor_inverse(L)
        row = Row(f"{label} [{i}]", L.dtype.name)
        row.peers = {"potri": rel(potri(L), C), "cho_solve": rel(cho[i], C)}
        if tor is not None:
            row.peers["torch"] = rel(tor[i], C)
        row.best["C"] = min(row.peers.values())
        for m in METHODS:
            row.ours[f"C:{m}"] = rel(ours[m][i], C)
        rows.append(row)
    return rows


@dataclass
class Sweep:
    sizes: Sequence[int]
    other_kernels_at: Sequence[int]  # sizes at which Matérn, 2-D and complex run too
    spd_at: Sequence[int]
    batch_n: int
    small_batch: int


SWEEPS = {
    "full": Sweep((64, 128, 256, 512, 1000, 1024, 2048), (256, 1000), (256, 1000), 256, 64),
    "quick": Sweep((64, 256), (256,), (256,), 64, 64),
}


def cases(sweep: Sweep) -> Iterator[tuple[str, str, int, float]]:
    """``(dtype, kernel, n, σ²)`` of the sweep."""
    for dtype, noises in NOISES.items():
        for n in sweep.sizes:
            for kind in KERNELS:
                if kind != "se" and n not in sweep.other_kernels_at:
                    continue
                if kind == "complex" and dtype != "float64":
                    continue
                for noise in noises:
                    yield dtype, kind, n, noise


def run(sweep: Sweep, *, log: Callable[[str], None] = print) -> dict[str, list[Row]]:
    """Every row of the sweep, by table."""
    check_extended()
    sharded = jax.device_count() >= 4
    out: dict[str, list[Row]] = {"factor": [], "spd": [], "batch": []}
    for dtype, kind, n, noise in cases(sweep):
        start = time.perf_counter()
        store = "complex128" if kind == "complex" else dtype
        L = factor(kind, n, noise, store)
        X, C = factor_inverse(L)
        label = f"{store} | {kind} | {n} | {noise:g}"
        row = value_row(label, L, C, sharded and n % 4 == 0)
        gradient_row(row, L, X, C, kernel(kind, n, noise)[1])
        out["factor"].append(row)
        if n in sweep.spd_at and kind in ("se", "se-2d"):
            srow = spd_row(label, kernel(kind, n, noise)[0], dtype)
            if srow is not None:
                out["spd"].append(srow)
        log(
            f"{label}: worst ratio {max(row.ratio(v) for v in row.ours):.3g} "
            f"({time.perf_counter() - start:.1f} s)"
        )
    for dtype in NOISES:
        # One call on factors of every condition: a batch mixing jitters, and a
        # batch of small factors, which "auto" inverts with unrolled leaves.
        noises = NOISES[dtype]
        big = np.stack([factor("se", sweep.batch_n, s, dtype) for s in noises])
        out["batch"] += batch_rows(
            f"{dtype} | se, σ² = {', '.join(f'{s:g}' for s in noises)} | {sweep.batch_n}", big
        )
        small = np.stack(
            [
                factor("se", 64, noises[i % len(noises)], dtype, seed=i)
                for i in range(sweep.small_batch)
            ]
        )
        rows = batch_rows(f"{dtype} | {sweep.small_batch} × se, σ² mixed | 64", small)
        out["batch"].append(max(rows, key=lambda r: max(r.ratio(v) for v in r.ours)))
        log(f"{dtype} batches done")
    return out


GROUPS = ("inverse", "derivatives", "spd, Cholesky route", "spd, best incl. LU")
"""The targets :func:`tables` reports a worst ratio for."""

_SPD_TARGETS = (
    ("spd", "spd: cho_solve"),
    ("logdet", "logdet: cholesky"),
    ("spd-grad", "spd-grad: cho_solve"),
    ("ld-grad", "ld-grad: cho_solve"),
    ("spd-jvp", "spd-jvp: cho_solve"),
)


def _e(x: float | None) -> str:
    return "—" if x is None else f"{x:.1e}"


def tables(out: dict[str, list[Row]]) -> tuple[str, dict[str, float]]:
    """The Markdown tables and the worst ratio of each of :data:`GROUPS`."""
    worst = dict.fromkeys(GROUPS, 0.0)

    def mine(row: Row, target: str) -> float:
        return max(v for k, v in row.ours.items() if k.split(":")[0] == target)

    def ratio(row: Row, target: str) -> float:
        return max(row.ratio(v) for v in row.ours if v.split(":")[0] == target)

    lines = [
        "**The inverse.** Errors of `(L Lᴴ)⁻¹`; ratio: the worst of `cholesky_inv`'s "
        "methods, `upper=True` and the row-sharded path over the best peer.",
        "",
        "| dtype | kernel | n | σ² | potri | cho_solve | torch | cholesky_inv (worst) | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in out["factor"] + out["batch"]:
        r = ratio(row, "C")
        worst["inverse"] = max(worst["inverse"], r)
        p = row.peers
        lines.append(
            f"| {row.label} | {_e(p['potri'])} | {_e(p['cho_solve'])} | {_e(p.get('torch'))} "
            f"| {_e(mine(row, 'C'))} | {r:.2f} |"
        )
    lines += [
        "",
        "**Derivatives in `L`.** Autodiff through `cho_solve` against `cholesky_inv` "
        "(the worst method); ratio ours / cho_solve's.",
        "",
        "| dtype | kernel | n | σ² | Σ G ⊙ A⁻¹: cho_solve | ours | ratio "
        "| LOO: cho_solve | ours | ratio | tangent: cho_solve | ours | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in out["factor"]:
        cells = []
        for t in ("grad", "loo", "jvp"):
            r = ratio(row, t)
            worst["derivatives"] = max(worst["derivatives"], r)
            cells.append(f"{_e(row.best[t])} | {_e(mine(row, t))} | {r:.2f}")
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "**From the matrix: `spd_inv`, `spd_inv_logdet`.** Errors of the value, `log det`, "
        "the gradients (of `Σ G ⊙ K⁻¹`, and with `+ ½ log det K`) and the "
        "`forward_mode=True` tangent: the Cholesky route (`cho_solve(cholesky(K), I)`, "
        "`2 Σ log Lᵢᵢ`, their autodiff), `inv` (NumPy's LU for the value, `jnp.linalg.inv`'s "
        "autodiff for the gradients; float64 only) and ours. Ratios: ours over the Cholesky "
        "route, and over the best of both.",
        "",
        "| dtype | kernel | n | σ² | K⁻¹: cholesky | inv | ours | log det: cholesky | ours "
        "| gradient: cholesky | inv | ours | tangent: cholesky | ours | ratio: cholesky | best |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in out["spd"]:
        u = float(np.finfo(np.dtype(row.dtype)).eps) / 2
        r_chol = max(
            max(v, u) / max(row.peers[peer], u)
            for target, peer in _SPD_TARGETS
            for k, v in row.ours.items()
            if k.split(":")[0] == target
        )
        r_best = max(row.ratio(v) for v in row.ours)
        worst["spd, Cholesky route"] = max(worst["spd, Cholesky route"], r_chol)
        worst["spd, best incl. LU"] = max(worst["spd, best incl. LU"], r_best)
        p = row.peers
        lines.append(
            f"| {row.label} | {_e(p['spd: cho_solve'])} | {_e(p.get('spd: inv'))} "
            f"| {_e(mine(row, 'spd'))} | {_e(p['logdet: cholesky'])} | {_e(mine(row, 'logdet'))} "
            f"| {_e(p['spd-grad: cho_solve'])} | {_e(p['spd-grad: inv'])} "
            f"| {_e(mine(row, 'spd-grad'))} | {_e(p['spd-jvp: cho_solve'])} "
            f"| {_e(mine(row, 'spd-jvp'))} | {r_chol:.2f} | {r_best:.2f} |"
        )
    return "\n".join(lines), worst


# ---- Haar-random controls ---------------------------------------------------


def haar_factor(rng: np.random.Generator, n: int, kappa: float, dtype: str) -> np.ndarray:
    """The factor of ``Q diag(σ) Qᴴ`` (``σ`` geometric from 1 to 1/κ, ``Q`` Haar), in ``dtype``."""
    complex_ = dtype.startswith("complex")
    Z = rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if complex_ else 0)
    Q, R = np.linalg.qr(Z)
    Q = Q * (np.diagonal(R) / np.abs(np.diagonal(R)))
    A = (Q * np.logspace(0.0, -np.log10(kappa), n)) @ Q.conj().T
    return sl.cholesky((A + A.conj().T) / 2, lower=True).astype(dtype)


def haar_table(n: int = 128, seeds: int = 3) -> tuple[str, float]:
    """Haar-random factors (controls): ours against the best peer, worst over seeds."""
    lines = [
        "| dtype | κ(A) | potri | cho_solve | cholesky_inv (worst method) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    worst = 0.0
    for dtype, kappas in (
        ("float32", (1e2, 1e4, 1e6)),
        ("float64", (1e3, 1e6, 1e9, 1e12)),
        ("complex128", (1e6, 1e12)),
    ):
        for kappa in kappas:
            rows = []
            for seed in range(seeds):
                L = haar_factor(np.random.default_rng(seed), n, kappa, dtype)
                rows.append(value_row(f"{dtype} | {kappa:.0e}", L, factor_inverse(L)[1], False))
            row = max(rows, key=lambda r: max(r.ratio(f"C:{m}") for m in METHODS))
            r = max(row.ratio(f"C:{m}") for m in METHODS)
            worst = max(worst, r)
            mine = max(row.ours[f"C:{m}"] for m in METHODS)
            lines.append(
                f"| {row.label} | {_e(row.peers['potri'])} | {_e(row.peers['cho_solve'])} "
                f"| {_e(mine)} | {r:.2f} |"
            )
    return "\n".join(lines), worst


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--kappa", action="store_true", help="the sweep over jitters (the default)")
    mode.add_argument("--quick", action="store_true", help="the sweep at n = 64 and 256 only")
    mode.add_argument("--haar", action="store_true", help="Haar-random factors (controls)")
    args = p.parse_args(argv)
    check_extended()
    print(
        f"jax {jax.__version__}, {jax.devices()[0].platform}, {jax.device_count()} devices; "
        f"torch {'—' if torch is None else torch.__version__}; numpy.longdouble: "
        f"{np.finfo(LD).nmant + 1}-bit mantissa"
    )
    if args.haar:
        text, haar = haar_table()
        worst = {"inverse, Haar-random": haar}
    else:
        out = run(
            SWEEPS["quick" if args.quick else "full"], log=lambda s: print(s, file=sys.stderr)
        )
        text, worst = tables(out)
    print(text)
    print()
    for group, w in worst.items():
        print(
            f"worst ratio, {group}: {w:.2f} "
            f"(target ≤ {TARGET:g}: {'holds' if w <= TARGET else 'MISSED'})"
        )
    return 0 if max(worst.values()) <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
