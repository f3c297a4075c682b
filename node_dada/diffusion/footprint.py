"""Non-integer resolution ratios (docs/design.md section 4c): a source pixel whose
footprint covers ``r x r`` guide pixels with ``r`` not an integer (a 192 x 144 phone
ToF under a 512 x 384 image: ``r = 8/3``).

The problem is solved on the nearest integer-scale grid (the guide resampled to
``s x`` the source, ``s = round(r)``), the result resampled back to the guide, and the
exact consistency restored on the real footprints: every source pixel ``i`` covers the
guide interval ``[i r, (i + 1) r)`` along each axis, and its footprint mean is the
area-weighted mean ``P_r(I) = A_y I A_x^T`` (``A`` rows: the overlap of each guide
pixel with the footprint, divided by ``r``). The additive correction of least norm

    I <- I + A_y^T (A_y A_y^T)^-1 R (A_x A_x^T)^-1 A_x,    R = source - P_r(I)

makes ``P_r(I) = source`` exactly (``R = 0`` on invalid source pixels keeps their
footprint means as they are). ``A A^T`` is tridiagonal and diagonally dominant.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from node_dada.errors import ShapeError

__all__ = [
    "footprint_adjust",
    "footprint_matrix",
    "footprint_mean",
    "resample",
    "source_ratio",
]

# Largest disagreement between the two axes' ratios, relative.
_RATIO_TOLERANCE = 0.02


def source_ratio(guide_hw: tuple[int, int], source_hw: tuple[int, int]) -> float:
    """The guide-to-source size ratio (same along both axes within 2 %), >= 1."""
    (big_h, big_w), (h, w) = guide_hw, source_hw
    ratio_h, ratio_w = big_h / h, big_w / w
    if abs(ratio_h - ratio_w) > _RATIO_TOLERANCE * max(ratio_h, ratio_w):
        raise ShapeError(
            f"source: the guide {guide_hw} is {ratio_h:.4g} x the source {source_hw} in height "
            f"but {ratio_w:.4g} x in width; crop or resample one of them so that the two "
            "ratios agree")
    ratio = (big_h + big_w) / (h + w)
    if ratio < 1:
        raise ShapeError(
            f"source: expected a guide at least as large as the source, got guide {guide_hw} "
            f"and source {source_hw}")
    return ratio


def footprint_matrix(count: int, size: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """``A`` (count, size): row ``i`` holds the overlap of guide pixel ``j`` with source
    pixel ``i``'s footprint ``[i r, (i + 1) r)``, ``r = size / count``, divided by ``r``."""
    ratio = size / count
    starts = torch.arange(count, dtype=torch.float64)[:, None] * ratio
    left = torch.arange(size, dtype=torch.float64)[None, :]
    overlap = (torch.minimum(left + 1, starts + ratio) - torch.maximum(left, starts)).clamp_min(0)
    return (overlap / ratio).to(dtype=dtype, device=device)


def footprint_mean(image: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``P_r(I) = A_y I A_x^T`` for (B, C, H, W) ``image``."""
    return rows @ image @ cols.transpose(0, 1)


def footprint_adjust(image: torch.Tensor, source: torch.Tensor, mask_lr: torch.Tensor
                     ) -> torch.Tensor:
    """The least-norm additive correction that makes every valid source pixel's
    footprint mean of ``image`` (B, 1, H, W) equal ``source`` (B, 1, h, w)."""
    dtype = torch.float64
    rows = footprint_matrix(source.shape[-2], image.shape[-2], dtype, image.device)
    cols = footprint_matrix(source.shape[-1], image.shape[-1], dtype, image.device)
    work = image.to(dtype)
    residual = torch.where(mask_lr, source.to(dtype) - footprint_mean(work, rows, cols),
                           torch.zeros((), dtype=dtype, device=image.device))
    gram_rows = torch.linalg.solve(rows @ rows.T, residual)
    both = torch.linalg.solve(cols @ cols.T, gram_rows.transpose(-1, -2)).transpose(-1, -2)
    return (work + rows.T @ both @ cols).to(image.dtype)


def resample(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resampling with antialiasing when shrinking (area-like averaging)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    shrinking = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False,
                         antialias=shrinking)


def integer_grid(ratio: float) -> int:
    """The integer scale of the working grid: the nearest integer to ``ratio`` (>= 1)."""
    return max(1, int(math.floor(ratio + 0.5)))
