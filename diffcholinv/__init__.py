"""diffcholinv: a differentiable Cholesky inverse for JAX."""

from ._api import cholesky_inv as cholesky_inv
from ._spd_api import spd_inv as spd_inv
from ._spd_api import spd_inv_logdet as spd_inv_logdet
from ._version import __version__ as __version__

__all__ = ["__version__", "cholesky_inv", "spd_inv", "spd_inv_logdet"]
