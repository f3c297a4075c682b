"""Building blocks of DADA (docs/design.md section 2): pooling, upsampling, edge
coefficients, the diffusion operator and the hard adjustment.

All functions are batched, differentiable and take device and dtype from their
inputs. Shapes: ``I`` (B, 1, H, W), ``cv`` (B, 1, H-1, W), ``ch`` (B, 1, H, W-1),
``source``/``mask_lr`` (B, 1, h, w) with ``H = s*h``, ``W = s*w``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from node_dada.diffusion.checks import check_tensor
from node_dada.errors import InputValueError, ShapeError

__all__ = [
    "ADJUST_EPS",
    "DEFAULT_LOG_KAPPA",
    "block_mean",
    "upsample_nearest",
    "perona_malik",
    "edge_coefficients",
    "diffusion_operator",
    "block_ratio",
    "hard_adjust",
]

#: ``eps`` of the hard adjustment (the paper's Eq. 3).
ADJUST_EPS = 1e-8
#: Initial ``log(kappa)`` of the Perona-Malik function.
DEFAULT_LOG_KAPPA = math.log(0.03)


def block_mean(image: torch.Tensor, scale: int) -> torch.Tensor:
    """``P``: mean over non-overlapping ``scale x scale`` blocks, (B,C,H,W) -> (B,C,H/s,W/s).

    Raises ``ShapeError`` when ``H`` or ``W`` is not a multiple of ``scale`` (pooling
    would silently drop the last rows and columns)."""
    if image.shape[-2] % scale or image.shape[-1] % scale:
        raise ShapeError(
            f"block_mean: expected height and width divisible by scale {scale}, got shape "
            f"{tuple(image.shape)}; crop or pad the image to a multiple of the scale"
        )
    if scale == 1:
        return image
    return F.avg_pool2d(image, scale)


def upsample_nearest(image: torch.Tensor, scale: int) -> torch.Tensor:
    """``U``: nearest-neighbour upsampling by ``scale``, (B,C,h,w) -> (B,C,s*h,s*w)."""
    if scale == 1:
        return image
    return image.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)


def perona_malik(x: torch.Tensor, kappa: torch.Tensor | float) -> torch.Tensor:
    """Edge-stopping function ``g(x) = 1 / (1 + x^2 / kappa^2)``, values in (0, 1]."""
    return 1.0 / (1.0 + (x * x) / (kappa * kappa))


def edge_coefficients(
    features: torch.Tensor, kappa: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertical and horizontal diffusion coefficients from a feature map.

    ``cv = g(mean_k |F[:, :, 1:, :] - F[:, :, :-1, :]|)`` and likewise ``ch`` along
    the width (docs/design.md section 2).

    Args:
        features: (B, K, H, W) float tensor (guide + initial estimate, or CNN features).
        kappa: positive scalar (float or 0-d tensor, e.g. ``log_kappa.exp()``).

    Returns:
        ``cv`` (B, 1, H-1, W) and ``ch`` (B, 1, H, W-1).

    Example:
        >>> cv, ch = edge_coefficients(torch.rand(2, 4, 8, 8), 0.03)
        >>> cv.shape, ch.shape
        (torch.Size([2, 1, 7, 8]), torch.Size([2, 1, 8, 7]))
    """
    check_tensor("features", features)
    if features.shape[-2] < 2 or features.shape[-1] < 2:
        raise ShapeError(
            f"features: expected height and width of at least 2, got {tuple(features.shape)}"
        )
    kappa_value = float(kappa) if not isinstance(kappa, torch.Tensor) else float(kappa.detach())
    if not kappa_value > 0:
        raise InputValueError(f"kappa: expected a positive number, got {kappa_value}")
    grad_v = (features[:, :, 1:, :] - features[:, :, :-1, :]).abs().mean(dim=1, keepdim=True)
    grad_h = (features[:, :, :, 1:] - features[:, :, :, :-1]).abs().mean(dim=1, keepdim=True)
    return perona_malik(grad_v, kappa), perona_malik(grad_h, kappa)


def diffusion_operator(image: torch.Tensor, cv: torch.Tensor, ch: torch.Tensor) -> torch.Tensor:
    """``D(I)``: divergence of the 4-neighbour fluxes ``c * grad I``, zero flux at the border.

    ``D(I)[i,j] = cv[i,j](I[i+1,j]-I[i,j]) - cv[i-1,j](I[i,j]-I[i-1,j]) + (same with ch)``.
    """
    flux_v = cv * (image[..., 1:, :] - image[..., :-1, :])
    flux_h = ch * (image[..., :, 1:] - image[..., :, :-1])
    return (
        F.pad(flux_v, (0, 0, 0, 1))
        - F.pad(flux_v, (0, 0, 1, 0))
        + F.pad(flux_h, (0, 1, 0, 0))
        - F.pad(flux_h, (1, 0, 0, 0))
    )


def block_ratio(
    image: torch.Tensor,
    source: torch.Tensor,
    mask_lr: torch.Tensor,
    scale: int,
    eps: float = ADJUST_EPS,
) -> torch.Tensor:
    """``r = source / (P(I) + eps)`` on valid blocks, 1 on invalid ones, shape (B,1,h,w).

    ``source`` must already be finite everywhere (invalid entries are ignored
    but a NaN there would poison the gradient of ``torch.where``).
    """
    ratio = source / (block_mean(image, scale) + eps)
    return torch.where(mask_lr, ratio, torch.ones_like(ratio))


def hard_adjust(
    image: torch.Tensor,
    source: torch.Tensor,
    mask_lr: torch.Tensor,
    scale: int,
    eps: float = ADJUST_EPS,
) -> torch.Tensor:
    """The hard adjustment ``A(I) = I * U(r)`` (the paper's Eq. 3).

    After it, ``P(A(I)) = source`` on every valid block (up to ``eps`` and
    round-off); invalid blocks are left unchanged.
    """
    return image * upsample_nearest(block_ratio(image, source, mask_lr, scale, eps), scale)
