"""Making and starting a problem (docs/design.md sections 1-2): the NaN-aware
degradation, the masked bicubic initial estimate, guide normalisation and the
positivity shift.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from scipy.interpolate import CloughTocher2DInterpolator, NearestNDInterpolator
from scipy.spatial import QhullError
from threadpoolctl import threadpool_limits

from node_dada.diffusion.checks import check_mask, check_scale, check_tensor
from node_dada.errors import InputValueError

__all__ = [
    "MILLIMETRE_DEPTH_SCALE",
    "POSITIVITY_THRESHOLD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "degrade",
    "initial_estimate",
    "normalize_guide",
    "shift_positive",
]

#: The Middlebury depth scale, the protocol's divisor for depth in millimetres: training,
#: the benchmarks and the learning-free baselines (docs/design.md section 1).
MILLIMETRE_DEPTH_SCALE = 1122.7
#: Sources with a valid value at or below this (after scaling) are shifted (docs/design.md s. 1).
POSITIVITY_THRESHOLD = 0.1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Guides that are not RGB get the channel-averaged ImageNet statistics, so a
# 0-1 guide of any modality lands on the same numeric range as an RGB one.
_OTHER_MEAN, _OTHER_STD = 0.449, 0.226


def degrade(depth: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """NaN-aware ``scale x scale`` block mean of a high-resolution depth map.

    Args:
        depth: (B, 1, H, W), NaN (or inf) where invalid; ``H`` and ``W`` divisible by ``scale``.
        scale: integer factor.

    Returns:
        ``source`` (B, 1, H/s, W/s), the mean of each block's valid pixels (0 where a
        block has none), and ``mask_lr`` (bool, same shape), true where a block has
        at least one valid pixel.
    """
    check_tensor("depth", depth, channels=1)
    scale = check_scale(scale)
    height, width = depth.shape[-2:]
    if height % scale or width % scale:
        raise InputValueError(
            f"depth: expected height and width divisible by scale {scale}, got "
            f"{(height, width)}; crop to {(height - height % scale, width - width % scale)}"
        )
    valid = torch.isfinite(depth)
    total = F.avg_pool2d(torch.where(valid, depth, torch.zeros_like(depth)), scale)
    count = F.avg_pool2d(valid.to(depth.dtype), scale)
    mask_lr = count > 0
    source = torch.where(mask_lr, total / count.clamp_min(1e-12), torch.zeros_like(total))
    return source, mask_lr


def _lr_centres(height: int, width: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    offset = (scale - 1) / 2.0
    return offset + scale * np.arange(height), offset + scale * np.arange(width)


#: Rows of the high-resolution grid evaluated at once by ``_initial_estimate_one``
#: (bounds its temporaries on large frames; the values do not depend on it).
_ESTIMATE_CHUNK_PIXELS = 1 << 20


def _initial_estimate_one(source: np.ndarray, mask: np.ndarray, scale: int,
                          dtype: np.dtype = np.float64) -> np.ndarray:
    """griddata's cubic (Clough-Tocher) interpolation of the valid samples, nearest
    sample outside their convex hull, evaluated in chunks of rows (the interpolants
    are built once; each pixel's value is the same as in one whole-image call)."""
    rows, cols = _lr_centres(*source.shape, scale)
    grid_r, grid_c = np.meshgrid(rows, cols, indexing="ij")
    points = np.stack([grid_r[mask], grid_c[mask]], axis=1)
    values = source[mask].astype(np.float64)
    big_h, big_w = source.shape[0] * scale, source.shape[1] * scale
    nearest = NearestNDInterpolator(points, values)
    cubic = None
    if len(values) >= 3:
        try:
            cubic = CloughTocher2DInterpolator(points, values)
        except QhullError:  # all valid samples on one line: no triangulation exists
            cubic = None
    out = np.empty((big_h, big_w), dtype=dtype)
    step = max(1, _ESTIMATE_CHUNK_PIXELS // big_w)
    for first in range(0, big_h, step):
        last = min(first + step, big_h)
        target = np.meshgrid(np.arange(first, last), np.arange(big_w), indexing="ij")
        if cubic is None:
            out[first:last] = nearest(*target)
            continue
        chunk = cubic(*target)
        # nearest sample only where the cubic is undefined (outside the convex hull)
        outside = ~np.isfinite(chunk)
        if outside.any():
            chunk[outside] = nearest(target[0][outside], target[1][outside])
        out[first:last] = chunk
    return out


def initial_estimate(
    source: torch.Tensor,
    mask_lr: torch.Tensor,
    scale: int,
    *,
    method: str = "griddata",
) -> torch.Tensor:
    """The initial estimate ``I0``: bicubic interpolation of the valid source samples.

    Valid samples sit at LR pixel centres ``((s-1)/2 + s*i, (s-1)/2 + s*j)`` in HR
    pixel coordinates.

    Args:
        source: (B, 1, h, w) low-resolution depth.
        mask_lr: (B, 1, h, w) validity (bool or {0, 1}).
        scale: integer factor.
        method: ``"griddata"`` (the reference protocol: scipy's cubic
            Clough-Tocher interpolation of the valid samples, nearest outside
            their convex hull; any mask) or ``"bicubic"`` (torch's bicubic
            convolution, which places samples at the same centres and clamps at
            the border; much faster, needs an all-valid source; a different
            interpolant, so numbers differ slightly from the reference).

    Returns:
        (B, 1, s*h, s*w) tensor on the device and with the dtype of ``source``.
    """
    check_tensor("source", source, channels=1)
    scale = check_scale(scale)
    mask = check_mask(mask_lr, source)
    if scale == 1:
        return source.clone()
    if method == "bicubic":
        if not mask.all():
            raise InputValueError(
                "method: 'bicubic' needs an all-valid source, got invalid pixels in "
                "mask_lr; use method='griddata'"
            )
        return F.interpolate(source, scale_factor=scale, mode="bicubic", align_corners=False)
    if method != "griddata":
        raise InputValueError(f"method: expected 'griddata' or 'bicubic', got {method!r}")
    source_np = source.detach().cpu().double().numpy()
    mask_np = mask.cpu().numpy()
    pairs = zip(source_np, mask_np, strict=True)
    # griddata's cubic interpolation makes one tiny LAPACK call per triangle; with
    # OpenBLAS's thread pool awake each call wakes it: a 256 x 256 x8 estimate took
    # 0.07-22 s on a busy 2-core machine, a steady 0.02 s on one thread.
    with threadpool_limits(limits=1, user_api="blas"):
        # float32 for float32 sources: the float64 interpolation rounded once, as before
        dtype = np.float64 if source.dtype == torch.float64 else np.float32
        out = np.stack([_initial_estimate_one(s[0], m[0], scale, dtype)[None]
                        for s, m in pairs])
    return torch.from_numpy(out).to(device=source.device, dtype=source.dtype)


def normalize_guide(guide: torch.Tensor) -> torch.Tensor:
    """Standardise a (B, C, H, W) guide with values in 0-1.

    RGB (C = 3) uses the ImageNet mean/std; any other channel count the
    channel-averaged ImageNet statistics, so every modality lands on the range
    the Perona-Malik ``kappa`` was tuned for.
    """
    check_tensor("guide", guide)
    channels = guide.shape[1]
    if channels == 3:
        mean = guide.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = guide.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    else:
        mean, std = _OTHER_MEAN, _OTHER_STD
    return (guide - mean) / std


def shift_positive(
    source: torch.Tensor,
    depth0: torch.Tensor,
    mask_lr: torch.Tensor,
    threshold: float = POSITIVITY_THRESHOLD,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Shift ``source`` and ``depth0`` up by ``threshold`` when a valid source value
    is at or below it (the multiplicative adjustment needs positive depth).

    Returns new tensors (the inputs are never modified) and the shift to subtract
    from the result (0.0 when nothing was shifted). Warns when it shifts.
    """
    mask = mask_lr if mask_lr.dtype == torch.bool else mask_lr > 0.5
    low = source[mask].min() if mask.any() else source.new_tensor(threshold + 1)
    if float(low) > threshold:
        return source, depth0, 0.0
    warnings.warn(
        f"source has valid values down to {float(low):.4g} (<= {threshold}); source and "
        f"initial estimate are shifted by +{threshold} for the solve and the result is "
        "shifted back. Use a positive depth unit (not zero-centred) for best results.",
        stacklevel=2,
    )
    return source + threshold, depth0 + threshold, threshold
