"""Static input checks for :func:`diffcholinv.cholesky_inv`.

Every check here looks at Python values, shapes and dtypes only, so under
``jax.jit`` it runs once at trace time and costs nothing at run time.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Floating dtypes the op accepts. The half-precision ones are computed in
# float32 and cast back (see ``compute_dtype``); complex factors are Hermitian
# (``A = L Lᴴ``).
SUPPORTED_DTYPES: tuple[str, ...] = (
    "float16",
    "bfloat16",
    "float32",
    "float64",
    "complex64",
    "complex128",
)
_HALF_DTYPES = ("float16", "bfloat16")
# Platforms without complex arithmetic (jax-metal has no complex dtypes).
_NO_COMPLEX_PLATFORMS = ("metal",)


def as_factor(L: Any, *, name: str = "L", fn: str = "cholesky_inv") -> jax.Array:
    """Return ``L`` as a jax array of shape ``[..., n, n]`` and a supported dtype.

    Errors name ``fn`` and its argument ``name``.

    Raises:
      TypeError: ``L`` is not array-like, or its dtype is not one of
        ``SUPPORTED_DTYPES`` (integer and bool included).
      ValueError: ``L`` has fewer than 2 dimensions or is not square in the last
        two.
    """
    if isinstance(L, (str, bytes, dict, set)) or L is None:
        raise TypeError(
            f"{fn}: {name} must be an array of shape [..., n, n], got an object "
            f"of type {type(L).__name__}."
        )
    given = getattr(L, "dtype", None)
    if given is not None and not isinstance(L, jax.Array):
        try:
            given = np.dtype(given)
        except TypeError:
            given = None
        if given is not None and given.name not in SUPPORTED_DTYPES and given.kind in "fc":
            raise TypeError(
                f"{fn}: {name} has dtype {given.name}, which JAX cannot hold; expected one "
                f"of {', '.join(SUPPORTED_DTYPES)}. Convert it first, e.g. "
                f"{name}.astype(numpy.float64)."
            )
    try:
        arr = jnp.asarray(L)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{fn}: {name} must be an array of shape [..., n, n]; could not "
            f"convert an object of type {type(L).__name__} to an array ({err})."
        ) from err

    dtype = np.dtype(arr.dtype)
    if dtype.name not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{fn}: {name} has dtype {dtype.name}; expected a floating or "
            f"complex dtype, one of {', '.join(SUPPORTED_DTYPES)}."
        )

    shape = tuple(arr.shape)
    if len(shape) >= 2 and not all(isinstance(d, (int, np.integer)) for d in shape[-2:]):
        raise ValueError(
            f"{fn}: {name} has shape {shape}, whose matrix size is symbolic; the "
            f"algorithm is chosen by the static matrix size n, so export with a concrete "
            f"n, e.g. jax.export.symbolic_shape('b, 64, 64') (a symbolic batch works)."
        )
    if len(shape) < 2:
        raise ValueError(
            f"{fn}: {name} must have shape [..., n, n] (at least 2 dimensions); "
            f"got shape {shape} with {len(shape)} dimension(s)."
        )
    if shape[-1] != shape[-2]:
        raise ValueError(
            f"{fn}: {name} must be square in its last two dimensions, shape "
            f"[..., n, n]; got shape {shape} (last two dimensions {shape[-2]} x "
            f"{shape[-1]})."
        )
    return arr


def compute_dtype(dtype: Any) -> np.dtype:
    """The dtype the algorithm runs in: float32 for half precision, else ``dtype``."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype.name in _HALF_DTYPES else dtype


def _as_bool(name: str, value: Any, meaning: str, fn: str = "cholesky_inv") -> bool:
    """Return ``value`` as a Python bool; it must be a (numpy) bool."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"{fn}: {name} must be a Python bool ({meaning}), known when the "
            f"function is traced; got a traced value. Under jax.jit mark it static: "
            f"jax.jit({fn}, static_argnames='{name}'), or close over it."
        )
    raise TypeError(
        f"{fn}: {name} must be a bool ({meaning}); got {value!r} of type {type(value).__name__}."
    )


def check_upper(upper: Any) -> bool:
    """Return ``upper`` as a Python bool; it must be a (numpy) bool."""
    return _as_bool(
        "upper", upper, "False: L is lower with A = L L^H; True: L is upper with A = U^H U"
    )


def check_flag(check: Any) -> bool:
    """Return ``check`` as a Python bool; it must be a (numpy) bool."""
    return _as_bool(
        "check",
        check,
        "True: fail through jax.experimental.checkify on a zero or non-finite factor",
    )


def check_forward_mode(forward_mode: Any) -> bool:
    """Return ``forward_mode`` as a Python bool; it must be a (numpy) bool."""
    return _as_bool(
        "forward_mode",
        forward_mode,
        "True: a jax.custom_jvp form that jax.jvp, jax.jacfwd and jax.linearize accept",
    )


def check_bool(name: str, value: Any, meaning: str, *, fn: str) -> bool:
    """Return ``value`` (the keyword ``name`` of ``fn``) as a Python bool."""
    return _as_bool(name, value, meaning, fn)


def check_device(device: Any, *, fn: str = "cholesky_inv") -> None:
    """``device`` must be ``None``, a ``jax.Device`` or a ``jax.sharding.Sharding``."""
    if device is None or isinstance(device, (jax.Device, jax.sharding.Sharding)):
        return
    raise TypeError(
        f"{fn}: device must be None, a jax.Device (e.g. jax.devices()[0]) "
        f"or a jax.sharding.Sharding; got {device!r} of type "
        f"{type(device).__name__}."
    )


METHODS: tuple[str, ...] = ("auto", "solve", "products")


def check_method(method: Any, *, fn: str = "cholesky_inv") -> str:
    """``method`` must be one of ``METHODS``."""
    if not isinstance(method, str):
        raise TypeError(
            f"{fn}: method must be a string, one of {', '.join(map(repr, METHODS))}; "
            f"got {method!r} of type {type(method).__name__}."
        )
    if method not in METHODS:
        raise ValueError(
            f"{fn}: method must be one of {', '.join(map(repr, METHODS))}; got {method!r}."
        )
    return method


def target_platform(arr: Any, device: Any) -> str:
    """Lower-case name of the platform ``cholesky_inv(arr, device=device)`` runs on.

    ``device`` if given, else the device of a committed concrete input, else
    the default backend (tracers under ``jit`` carry no device; the default
    backend is where ``jit`` compiles unless told otherwise).
    """
    if isinstance(device, jax.Device):
        return str(device.platform).lower()
    if isinstance(device, jax.sharding.Sharding):
        first: Any = next(iter(device.device_set))
        return str(first.platform).lower()
    try:  # a tracer has neither a device nor ``committed``: fall through
        if isinstance(arr, jax.Array) and arr.committed:
            placed: Any = next(iter(arr.devices()))
            return str(placed.platform).lower()
    except Exception:
        pass
    return str(jax.default_backend()).lower()


def check_platform(dtype: Any, platform: str, *, name: str = "L", fn: str = "cholesky_inv") -> None:
    """Complex dtypes need a platform with complex arithmetic (not Metal)."""
    dtype = np.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.complexfloating) and platform.lower() in _NO_COMPLEX_PLATFORMS:
        raise TypeError(
            f"{fn}: {name} has dtype {dtype.name}, but the {platform} platform has "
            f"no complex dtypes; compute on the CPU instead, e.g. "
            f"{fn}({name}, device=jax.devices('cpu')[0])."
        )


__all__ = [
    "METHODS",
    "SUPPORTED_DTYPES",
    "as_factor",
    "check_bool",
    "check_device",
    "check_flag",
    "check_method",
    "check_platform",
    "check_upper",
    "compute_dtype",
    "target_platform",
]
