"""Guide-free interpolation baselines: nearest, bilinear and the masked bicubic
initial estimate (docs/design.md section 2).

All place the low-resolution samples at their pixel centres,
``((s-1)/2 + s*i, (s-1)/2 + s*j)`` in high-resolution pixel coordinates, and
ignore invalid source pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.interpolate import griddata

from node_dada.baselines._inputs import bicubic_estimate, prepare

__all__ = ["bicubic", "bilinear", "nearest"]

# Below this interpolated mask weight a pixel has no valid bilinear neighbour
# (all four are invalid): it takes the nearest valid sample instead.
_MIN_WEIGHT = 1e-6


def _nearest_valid(source: torch.Tensor, mask: torch.Tensor, scale: int) -> torch.Tensor:
    """Value of the valid sample whose centre is closest to each HR pixel."""
    height, width = source.shape[-2:]
    offset = (scale - 1) / 2.0
    rows = offset + scale * np.arange(height)
    cols = offset + scale * np.arange(width)
    grid_r, grid_c = np.meshgrid(rows, cols, indexing="ij")
    target = tuple(np.meshgrid(np.arange(height * scale), np.arange(width * scale), indexing="ij"))
    out = []
    for values, valid in zip(
        source.detach().cpu().double().numpy(), mask.cpu().numpy(), strict=True
    ):
        points = np.stack([grid_r[valid[0]], grid_c[valid[0]]], axis=1)
        out.append(griddata(points, values[0][valid[0]], target, method="nearest")[None])
    return torch.from_numpy(np.stack(out)).to(device=source.device, dtype=source.dtype)


def nearest(
    guide: torch.Tensor,
    source: torch.Tensor,
    *,
    scale: int,
    mask_lr: torch.Tensor | None = None,
) -> torch.Tensor:
    """Nearest-neighbour upsampling (the guide only fixes the output size).

    Each high-resolution pixel takes the valid source sample whose pixel centre
    is closest; with an all-valid source that is block replication ``U``.

    Args:
        guide: (B, C, H, W) float image in 0-1 (unused apart from its size).
        source: (B, 1, h, w) depth in any unit, ``H = scale*h``, ``W = scale*w``.
        scale: integer factor.
        mask_lr: (B, 1, h, w) validity; None = finite non-zero values are valid.

    Returns:
        (B, 1, H, W) depth in the units, dtype and device of ``source``.

    Example:
        >>> import torch
        >>> guide, source = torch.rand(1, 3, 8, 8), torch.rand(1, 1, 2, 2) + 1
        >>> nearest(guide, source, scale=4).shape
        torch.Size([1, 1, 8, 8])
    """
    problem = prepare(guide, source, scale, mask_lr)
    if problem.mask.all():
        return F.interpolate(problem.source, scale_factor=problem.scale, mode="nearest")
    return _nearest_valid(problem.source, problem.mask, problem.scale)


def bilinear(
    guide: torch.Tensor,
    source: torch.Tensor,
    *,
    scale: int,
    mask_lr: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bilinear upsampling of the valid source samples.

    Invalid samples are left out by normalised convolution (the bilinear
    interpolation of ``source * mask`` divided by that of ``mask``); a pixel with
    no valid neighbour takes the nearest valid sample. With an all-valid source
    this is ``F.interpolate(..., mode="bilinear", align_corners=False)``, which
    clamps at the border.

    Args and returns as :func:`nearest`.
    """
    problem = prepare(guide, source, scale, mask_lr)
    src, mask, scale = problem.source, problem.mask, problem.scale

    def up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)

    if mask.all():
        return up(src)
    weight = up(mask.to(src.dtype))
    blended = up(src) / weight.clamp_min(_MIN_WEIGHT)
    covered = weight > _MIN_WEIGHT
    if covered.all():
        return blended
    return torch.where(covered, blended, _nearest_valid(src, mask, scale))


def bicubic(
    guide: torch.Tensor,
    source: torch.Tensor,
    *,
    scale: int,
    mask_lr: torch.Tensor | None = None,
    method: str = "griddata",
) -> torch.Tensor:
    """Masked bicubic interpolation: DADA's initial estimate ``I0``.

    ``method="griddata"`` (default) is the reference protocol (scipy's cubic
    interpolation of the valid samples, nearest outside their convex hull);
    ``"bicubic"`` is torch's faster bicubic convolution for all-valid sources.
    See :func:`node_dada.diffusion.initial_estimate`.

    Args and returns as :func:`nearest`.
    """
    return bicubic_estimate(prepare(guide, source, scale, mask_lr), method)
