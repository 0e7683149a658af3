"""Bad input gets a clear error naming the argument, the shape or dtype, and what is expected."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from helpers import spd_factor
from jax.experimental import checkify

from diffcholinv import cholesky_inv


@pytest.mark.parametrize("shape", [(), (3,), (0,)])
def test_rank_below_two(shape):
    with pytest.raises(ValueError, match=r"L must have shape \[\.\.\., n, n\].*got shape") as e:
        cholesky_inv(jnp.ones(shape))
    assert str(tuple(shape)) in str(e.value)


@pytest.mark.parametrize("shape", [(2, 3), (4, 3, 2), (1, 0)])
def test_non_square(shape):
    with pytest.raises(ValueError, match="square") as e:
        cholesky_inv(jnp.ones(shape))
    assert str(tuple(shape)) in str(e.value)
    assert "[..., n, n]" in str(e.value)


@pytest.mark.parametrize(
    ("dtype", "name"),
    [(jnp.int32, "int32"), (jnp.int8, "int8"), (jnp.uint8, "uint8"), (jnp.bool_, "bool")],
)
def test_integer_and_bool_dtypes(dtype, name):
    with pytest.raises(TypeError, match=f"L has dtype {name}; expected a floating or complex") as e:
        cholesky_inv(jnp.ones((3, 3), dtype))
    assert "float32" in str(e.value)


@pytest.mark.parametrize("dtype", [jnp.complex64, jnp.complex128])
def test_complex_is_supported(dtype):
    C = cholesky_inv(2 * jnp.eye(3, dtype=dtype))
    assert C.dtype == jnp.dtype(dtype)
    np.testing.assert_array_equal(C, 0.25 * np.eye(3))


def test_python_int_list_is_integer_dtype():
    with pytest.raises(TypeError, match="int"):
        cholesky_inv([[1, 0], [0, 1]])


@pytest.mark.parametrize("obj", ["abc", None, {"a": 1}, object()])
def test_non_array_objects(obj):
    with pytest.raises(TypeError, match="L must be an array"):
        cholesky_inv(obj)


@pytest.mark.parametrize("upper", [1, 0, "lower", None, np.array([True])])
def test_upper_must_be_bool(upper):
    with pytest.raises(TypeError, match="upper must be a bool"):
        cholesky_inv(jnp.eye(2), upper)


def test_upper_numpy_bool_is_accepted():
    np.testing.assert_array_equal(cholesky_inv(jnp.eye(2), np.bool_(True)), jnp.eye(2))


@pytest.mark.parametrize("device", ["cpu", 0, jax.devices, [jax.devices()[0]]])
def test_device_wrong_type(device):
    with pytest.raises(TypeError, match=r"device must be None, a jax\.Device"):
        cholesky_inv(jnp.eye(2), device=device)


def test_upper_is_keyword_or_positional_but_device_keyword_only():
    with pytest.raises(TypeError):
        cholesky_inv(jnp.eye(2), False, jax.devices()[0])  # type: ignore[misc]


def test_checks_are_static_under_jit():
    # Errors come at trace time, from shapes and dtypes alone.
    with pytest.raises(ValueError, match="square"):
        jax.jit(cholesky_inv).lower(jax.ShapeDtypeStruct((2, 3), jnp.float32))
    with pytest.raises(TypeError, match="int32"):
        jax.jit(cholesky_inv).lower(jax.ShapeDtypeStruct((3, 3), jnp.int32))


# Rows of the input table in docs/robustness.md that are accepted.


def test_numpy_array_and_python_float_list():
    np.testing.assert_array_equal(cholesky_inv(np.eye(3) * 2.0), np.eye(3) * 0.25)
    C = cholesky_inv([[2.0, 0.0], [1.0, 1.0]])
    assert C.dtype == jnp.asarray(1.0).dtype  # the default float (float64 under x64)
    np.testing.assert_allclose(C, np.linalg.inv([[4.0, 2.0], [2.0, 2.0]]), rtol=1e-6)


def test_tracer_input():
    L = jnp.array([[2.0, 0.0], [1.0, 1.0]])
    np.testing.assert_array_equal(jax.jit(lambda x: cholesky_inv(x * 1.0))(L), cholesky_inv(L))
    with pytest.raises(ValueError, match="square"):
        jax.jit(lambda x: cholesky_inv(x[:, :1]))(L)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "complex64", "complex128"])
def test_accepted_dtypes_keep_their_dtype(dtype):
    C = cholesky_inv(jnp.eye(2, dtype=dtype) * 2)
    assert C.dtype == jnp.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(C.astype(jnp.complex64)), np.eye(2) * 0.25)


@pytest.mark.parametrize("dtype", [np.longdouble, np.clongdouble])
def test_extended_precision_dtype_is_named(dtype):
    if np.dtype(dtype).name in ("float64", "complex128"):
        pytest.skip("longdouble is float64 on this platform")
    with pytest.raises(TypeError, match=f"L has dtype {np.dtype(dtype).name}") as e:
        cholesky_inv(np.eye(3, dtype=dtype))
    assert "float64" in str(e.value) and "astype" in str(e.value)


def test_traced_upper_says_to_mark_it_static():
    with pytest.raises(TypeError, match="static_argnames='upper'"):
        jax.jit(cholesky_inv)(jnp.eye(3), True)
    C = jax.jit(cholesky_inv, static_argnames="upper")(2 * jnp.eye(3), True)
    np.testing.assert_array_equal(C, 0.25 * np.eye(3))


def test_symbolic_matrix_size_is_a_clear_error():
    export = pytest.importorskip("jax.export")
    spec = jax.ShapeDtypeStruct(export.symbolic_shape("n, n"), jnp.float32)
    with pytest.raises(ValueError, match="matrix size is symbolic"):
        export.export(jax.jit(cholesky_inv))(spec)
    # A symbolic batch is fine.
    spec = jax.ShapeDtypeStruct(export.symbolic_shape("b, 5, 5"), jnp.float32)
    export.export(jax.jit(cholesky_inv))(spec)


def _checked(x: np.ndarray, upper: bool, jit: bool = False) -> str | None:
    """The checked-mode error of ``cholesky_inv(x, upper=upper, check=True)``."""
    f = lambda x: cholesky_inv(x, upper=upper, check=True)  # noqa: E731
    return checkify.checkify(jax.jit(f) if jit else f)(x)[0].get()


@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("batch", [(), (3,)])
def test_check_flags_a_full_matrix_passed_as_L(rng, upper, batch):
    L = spd_factor(rng, batch, 4)
    F = np.swapaxes(L, -1, -2).copy() if upper else L  # the factors, as upper asks
    A = L @ np.swapaxes(L, -1, -2)
    X = F.copy()
    X[1 if batch else ...] = A[1 if batch else ...]  # A itself, by mistake
    msg = _checked(X, upper, jit=True)
    assert msg is not None
    which = f"L[1] of L of shape {X.shape}" if batch else f"L of shape {X.shape}"
    read, unread = ("upper", "lower") if upper else ("lower", "upper")
    assert f"{which} is a symmetric matrix, not a Cholesky factor" in msg
    assert f"its {unread} triangle, which is not read, is the exact mirror of its {read}" in msg
    assert "pass cholesky_inv(jnp.linalg.cholesky(A))" in msg
    with pytest.raises(checkify.JaxRuntimeError, match=r"jnp\.linalg\.cholesky\(A\)"):
        cholesky_inv(X, upper=upper, check=True)
    assert _checked(F, upper) is None
    # The value is that of the read triangle, as without check (nothing else changes).
    _, C = checkify.checkify(lambda x: cholesky_inv(x, upper=upper, check=True))(X)
    np.testing.assert_array_equal(C, cholesky_inv(X, upper=upper))


def test_check_flags_a_hermitian_matrix_passed_as_L(rng):
    L = spd_factor(rng, (), 3) + 1j * np.tril(rng.standard_normal((3, 3)), -1)
    A = L @ L.conj().T
    msg = _checked(A, False)
    assert msg is not None and "is a Hermitian matrix" in msg and "conjugate mirror" in msg
    assert _checked(L, False) is None
    err, _ = checkify.checkify(jax.vmap(lambda x: cholesky_inv(x, check=True)))(np.stack([L, A]))
    assert "L of shape (3, 3) is a Hermitian matrix" in err.get()


@pytest.mark.parametrize("upper", [False, True])
def test_check_passes_factors_whatever_their_unread_triangle(rng, upper):
    L = spd_factor(rng, (), 4)
    A = L @ L.T
    lower_factors = {
        "zeros": L,
        "noise": L + np.triu(rng.standard_normal((4, 4)), 1),
        "A's own entries (scipy.linalg.cho_factor)": scipy.linalg.cho_factor(A, lower=True)[0],
        "diagonal": np.diag(np.arange(1.0, 5.0)),  # its own mirror, and a factor
        "1 x 1": np.array([[2.0]]),
        "a batch of diagonals": np.tile(np.eye(4), (3, 1, 1)),
    }
    for name, F in lower_factors.items():
        F = np.swapaxes(F, -1, -2) if upper else F
        assert _checked(F, upper) is None, name
