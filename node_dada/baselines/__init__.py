"""Baselines behind one signature (docs/design.md section 7):

``method(guide, source, *, scale, mask_lr=None, **params) -> (B, 1, H, W)``

``guide`` is a (B, C, H, W) float image in 0-1 (raw, not normalised),
``source`` a (B, 1, h, w) depth in any positive unit, ``mask_lr`` its
(B, 1, h, w) validity (None = finite non-zero values are valid). The result has
the dtype, device and unit of ``source``.

>>> from node_dada.baselines import BASELINES, get_baseline
>>> sorted(BASELINES)[:3]
['bicubic', 'bilinear', 'dada']
"""

from node_dada.baselines.dada import dada, dada_ode
from node_dada.baselines.interpolation import bicubic, bilinear, nearest
from node_dada.baselines.opencv_filters import (
    DEFAULT_PARAMS,
    TUNED_PARAMS,
    default_params,
    fast_global_smoother,
    guided_filter,
    joint_bilateral,
    weighted_median,
)
from node_dada.baselines.registry import BASELINES, Baseline, get_baseline, register_baseline

__all__ = [
    "BASELINES",
    "DEFAULT_PARAMS",
    "TUNED_PARAMS",
    "Baseline",
    "bicubic",
    "bilinear",
    "dada",
    "dada_ode",
    "default_params",
    "fast_global_smoother",
    "get_baseline",
    "guided_filter",
    "joint_bilateral",
    "nearest",
    "register_baseline",
    "weighted_median",
]
