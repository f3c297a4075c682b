"""node_dada: guided depth super-resolution by deep anisotropic diffusion,
as the discrete DADA iteration and as a continuous ODE.

>>> import node_dada
>>> # depth_hr = node_dada.upsample(rgb, depth_lr, scale=8)
"""

from node_dada.api import upsample
from node_dada.errors import NodeDadaError

__all__ = ["NodeDadaError", "upsample", "__version__"]
__version__ = "0.1.0"
