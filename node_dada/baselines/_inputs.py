"""Validation and preparation shared by every baseline: one place that turns
``(guide, source, scale, mask_lr)`` into checked tensors.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from node_dada.diffusion import initial_estimate
from node_dada.diffusion.checks import (
    check_finite,
    check_mask,
    check_pair,
    check_scale,
    check_tensor,
)
from node_dada.errors import InputTypeError, InputValueError, ShapeError


class Problem(NamedTuple):
    """Checked inputs of a baseline, all on the device and with the dtype of ``source``."""

    guide: torch.Tensor  # (B, C, H, W), raw 0-1 values
    source: torch.Tensor  # (B, 1, h, w), 0 at invalid pixels (never NaN)
    mask: torch.Tensor  # (B, 1, h, w) bool
    scale: int


def prepare(
    guide: torch.Tensor, source: torch.Tensor, scale: int, mask_lr: torch.Tensor | None
) -> Problem:
    """Check the common arguments of a baseline and return them ready to use.

    ``mask_lr=None`` marks every finite, non-zero source value valid. A given
    ``mask_lr`` must not mark a non-finite value valid. Invalid source values are
    replaced by 0 in the returned copy (the caller's tensors are never modified).
    """
    if isinstance(guide, torch.Tensor) and not guide.is_floating_point():
        raise InputTypeError(
            f"guide: expected a float tensor with values in 0-1, got dtype {guide.dtype}; "
            "convert 8-bit images with guide.float() / 255"
        )
    check_tensor("guide", guide)
    check_tensor("source", source, channels=1)
    scale = check_scale(scale)
    check_pair("guide", guide, "source", source, scale)
    check_finite("guide", guide)
    finite = torch.isfinite(source)
    if mask_lr is None:
        mask = finite & (source != 0)
        if not mask.any():
            raise InputValueError(
                "source: expected at least one valid pixel (finite and non-zero), got none; "
                "there is nothing to upsample"
            )
    else:
        mask = check_mask(mask_lr, source).to(source.device)
        bad = mask & ~finite
        if bad.any():
            raise InputValueError(
                f"source: expected finite values where mask_lr is true, got {int(bad.sum())} "
                "NaN or inf pixel(s) marked valid; mark them false in mask_lr"
            )
    clean = torch.where(mask, source, torch.zeros_like(source))
    return Problem(guide.to(device=source.device, dtype=source.dtype), clean, mask, scale)


def check_depth0(depth0: torch.Tensor, problem: Problem) -> torch.Tensor:
    """Validate a precomputed high-resolution estimate against ``problem``."""
    check_tensor("depth0", depth0, channels=1)
    expected = (problem.source.shape[0], 1, *problem.guide.shape[-2:])
    if tuple(depth0.shape) != expected:
        raise ShapeError(
            f"depth0: expected shape {expected} (batch and size of guide, one channel), "
            f"got {tuple(depth0.shape)}"
        )
    check_finite("depth0", depth0)
    return depth0.to(device=problem.source.device, dtype=problem.source.dtype)


def bicubic_estimate(problem: Problem, method: str = "griddata") -> torch.Tensor:
    """The masked bicubic estimate of ``problem`` (DADA's ``I0``), in source units."""
    return initial_estimate(problem.source, problem.mask, problem.scale, method=method)
