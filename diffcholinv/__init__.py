"""diffcholinv: a differentiable Cholesky inverse for JAX."""

from ._api import cholesky_inv as cholesky_inv
from ._version import __version__ as __version__

__all__ = ["__version__", "cholesky_inv"]
