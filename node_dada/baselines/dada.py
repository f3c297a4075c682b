"""Learning-free DADA behind the baseline signature (DESIGN.md sections 2-3).

Depth is brought to the ~1 range the fixed ``kappa`` was set for by dividing
by ``depth_scale`` (1122.7 for millimetres, DESIGN.md section 1), and the
result is multiplied back, so it comes out in the source's unit.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real

import torch

from node_dada.api import MILLIMETRE_DEPTH_SCALE
from node_dada.baselines._inputs import bicubic_estimate, check_depth0, prepare
from node_dada.diffusion import (
    DEFAULT_KAPPA,
    DEFAULT_STEP,
    INFERENCE_PRE_ITER,
    learning_free_dada,
    normalize_guide,
)
from node_dada.errors import InputValueError

__all__ = ["dada"]


def dada(
    guide: torch.Tensor,
    source: torch.Tensor,
    *,
    scale: int,
    mask_lr: torch.Tensor | None = None,
    depth0: torch.Tensor | None = None,
    depth_scale: float = MILLIMETRE_DEPTH_SCALE,
    num_iter: int = INFERENCE_PRE_ITER,
    kappa: float = DEFAULT_KAPPA,
    step: float = DEFAULT_STEP,
    callback: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Learning-free DADA: the discrete diffusion-adjustment iteration from the
    masked bicubic estimate, with Perona-Malik coefficients of the normalised
    guide and the estimate.

    Args:
        guide: (B, C, H, W) float image in 0-1 (raw; normalised here), any C.
        source: (B, 1, h, w) positive depth in any unit, ``H = scale*h``.
        scale: integer factor.
        mask_lr: (B, 1, h, w) validity; None = finite non-zero values are valid.
        depth0: (B, 1, H, W) bicubic estimate in the source's unit, if already
            computed (see :func:`node_dada.baselines.bicubic`).
        depth_scale: divisor that brings the depth near 1: 1122.7 for
            millimetres (default), 1.1227 for metres.
        num_iter: iterations (8000, the reference inference setting).
        kappa: Perona-Malik parameter (0.03).
        step: ``lambda`` of the iteration (0.24).
        callback: called with the number of finished iterations (progress bars).

    Returns:
        (B, 1, H, W) depth in the units, dtype and device of ``source``; its
        ``scale x scale`` block means equal the source on valid blocks.
    """
    problem = prepare(guide, source, scale, mask_lr)
    if isinstance(depth_scale, bool) or not (isinstance(depth_scale, Real) and depth_scale > 0):
        raise InputValueError(
            f"depth_scale: expected a positive number (1122.7 for millimetres), got {depth_scale!r}"
        )
    start = bicubic_estimate(problem) if depth0 is None else check_depth0(depth0, problem)
    with torch.no_grad():
        result = learning_free_dada(
            normalize_guide(problem.guide),
            problem.source / depth_scale,
            problem.mask,
            start / depth_scale,
            kappa=kappa,
            num_iter=num_iter,
            step=step,
            callback=callback,
        )
    return result * depth_scale
