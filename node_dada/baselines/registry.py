"""The registry of baselines: every method behind one signature,
``method(guide, source, *, scale, mask_lr=None, **params) -> (B, 1, H, W)``,
looked up by name (like torchdiffeq's ``method=`` strings).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from node_dada.baselines.dada import dada, dada_ode
from node_dada.baselines.interpolation import bicubic, bilinear, nearest
from node_dada.baselines.opencv_filters import (
    fast_global_smoother,
    guided_filter,
    joint_bilateral,
    weighted_median,
)
from node_dada.errors import InputTypeError, InputValueError

__all__ = ["BASELINES", "Baseline", "get_baseline", "register_baseline"]

#: ``method(guide, source, *, scale, mask_lr=None, **params) -> depth``.
Baseline = Callable[..., torch.Tensor]

#: Every method by name. Trained models join through :func:`register_baseline`.
BASELINES: dict[str, Baseline] = {
    "nearest": nearest,
    "bilinear": bilinear,
    "bicubic": bicubic,
    "guided_filter": guided_filter,
    "joint_bilateral": joint_bilateral,
    "fast_global_smoother": fast_global_smoother,
    "weighted_median": weighted_median,
    "dada": dada,
    "dada_ode": dada_ode,
}


def get_baseline(name: str) -> Baseline:
    """The method registered as ``name``.

    Example:
        >>> get_baseline("bicubic").__name__
        'bicubic'
    """
    try:
        return BASELINES[name]
    except (KeyError, TypeError):
        raise InputValueError(
            f"method: expected one of {', '.join(sorted(BASELINES))}, got {name!r}"
        ) from None


def register_baseline(name: str, method: Baseline, *, overwrite: bool = False) -> None:
    """Add ``method`` to :data:`BASELINES` under ``name``.

    ``method`` must follow the common signature
    ``method(guide, source, *, scale, mask_lr=None, **params)`` and return a
    (B, 1, H, W) depth in the source's unit. A name already taken is refused
    unless ``overwrite=True``.
    """
    if not isinstance(name, str) or not name:
        raise InputTypeError(f"name: expected a non-empty string, got {name!r}")
    if not callable(method):
        raise InputTypeError(f"method: expected a callable baseline, got {type(method).__name__}")
    if name in BASELINES and not overwrite:
        raise InputValueError(
            f"name: {name!r} is already registered (as {BASELINES[name].__qualname__}); "
            "choose another name or pass overwrite=True"
        )
    BASELINES[name] = method
