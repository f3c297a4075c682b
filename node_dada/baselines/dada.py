"""Learning-free DADA behind the baseline signature: the discrete iteration
(docs/design.md sections 2-3) and its continuous counterpart (section 4).

Depth is brought to the ~1 range the fixed ``kappa`` was set for by dividing
by ``depth_scale`` (1122.7 for millimetres, docs/design.md section 1), and the
result is multiplied back, so it comes out in the source's unit.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real
from typing import Any

import torch

from node_dada.baselines._inputs import bicubic_estimate, check_depth0, prepare
from node_dada.diffusion import (
    DEFAULT_KAPPA,
    DEFAULT_STEP,
    INFERENCE_PRE_ITER,
    SolveInfo,
    learning_free_dada,
    learning_free_ode,
    normalize_guide,
)
from node_dada.diffusion.learning_free import ODE_METHOD, ODE_STEP_GROWTH, ODE_STEP_SIZE
from node_dada.diffusion.sampling import MILLIMETRE_DEPTH_SCALE
from node_dada.errors import InputValueError

__all__ = ["ODE_METHOD", "ODE_STEP_GROWTH", "ODE_STEP_SIZE", "ODE_T_END", "dada", "dada_ode"]

#: Horizon of the continuous variant: ``T = lambda * N`` reproduces the N = 8000
#: discrete inference iterations (docs/design.md section 4).
ODE_T_END = DEFAULT_STEP * INFERENCE_PRE_ITER


def _prepared(guide, source, scale, mask_lr, depth0, depth_scale):
    """Checked inputs and the starting estimate (bicubic unless ``depth0`` is given)."""
    problem = prepare(guide, source, scale, mask_lr)
    if isinstance(depth_scale, bool) or not (isinstance(depth_scale, Real) and depth_scale > 0):
        raise InputValueError(
            f"depth_scale: expected a positive number (1122.7 for millimetres), got {depth_scale!r}"
        )
    start = bicubic_estimate(problem) if depth0 is None else check_depth0(depth0, problem)
    return problem, start


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
    problem, start = _prepared(guide, source, scale, mask_lr, depth0, depth_scale)
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


def dada_ode(
    guide: torch.Tensor,
    source: torch.Tensor,
    *,
    scale: int,
    mask_lr: torch.Tensor | None = None,
    depth0: torch.Tensor | None = None,
    depth_scale: float = MILLIMETRE_DEPTH_SCALE,
    t_end: float = ODE_T_END,
    method: str = ODE_METHOD,
    step_size: float | None = ODE_STEP_SIZE,
    step_growth: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    projection: str = "multiplicative",
    max_nfe: int | None = None,
    options: dict[str, Any] | None = None,
    kappa: float = DEFAULT_KAPPA,
    on_info: Callable[[SolveInfo], None] | None = None,
) -> torch.Tensor:
    """Learning-free DADA as an ODE: the same coefficients as :func:`dada`, the
    projected diffusion integrated to ``t_end`` by
    :func:`node_dada.diffusion.solve_ode` (hard adjustment at both ends).

    The default (``t_end = 1920``, RKC2 with steps growing from 10 by 1.5x) is
    the continuous counterpart of :func:`dada`'s 8000 iterations at 536 function
    evaluations.

    Args:
        guide, source, scale, mask_lr, depth0, depth_scale, kappa: as :func:`dada`.
        t_end: horizon (``0.24 * N`` matches ``N`` discrete iterations).
        method, step_size, step_growth, rtol, atol, projection, max_nfe, options: passed
            to :func:`~node_dada.diffusion.solve_ode` (any torchdiffeq method or ``"rkc"``);
            ``step_growth=None`` grows rkc's steps by ``ODE_STEP_GROWTH`` and keeps any
            other method's uniform.
        on_info: called with the solve's :class:`~node_dada.diffusion.SolveInfo`
            (function evaluations, wall time), e.g. by the benchmark.

    Returns:
        (B, 1, H, W) depth in the units, dtype and device of ``source``; its
        ``scale x scale`` block means equal the source on valid blocks.

    Example:
        >>> import torch
        >>> guide, source = torch.rand(1, 3, 16, 16), torch.rand(1, 1, 4, 4) + 1000
        >>> dada_ode(guide, source, scale=4, t_end=2.4).shape
        torch.Size([1, 1, 16, 16])
    """
    problem, start = _prepared(guide, source, scale, mask_lr, depth0, depth_scale)
    with torch.no_grad():
        result, info = learning_free_ode(
            normalize_guide(problem.guide), problem.source / depth_scale, problem.mask,
            start / depth_scale, t_end=t_end, kappa=kappa, method=method, step_size=step_size,
            step_growth=step_growth, rtol=rtol, atol=atol, projection=projection,
            max_nfe=max_nfe, options=options,
        )
    if on_info is not None:
        on_info(info)
    return result * depth_scale
