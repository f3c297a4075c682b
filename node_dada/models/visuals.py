"""Colourised panels for TensorBoard and previews (uint8 HWC numpy arrays)."""

from __future__ import annotations

import math

import numpy as np
import torch

from node_dada.diffusion.sampling import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["colourise", "guide_to_rgb"]


def colourise(
    image: torch.Tensor, low: float, high: float, *, cmap: str = "viridis_r"
) -> np.ndarray:
    """(H, W) tensor -> (H, W, 3) uint8 through a matplotlib colour map; NaN -> white."""
    from matplotlib import colormaps

    values = image.detach().float().cpu().numpy()
    span = high - low if high > low else 1.0
    scaled = np.clip((values - low) / span, 0.0, 1.0)
    rgba = colormaps[cmap](np.nan_to_num(scaled, nan=0.0))
    rgba[~np.isfinite(values)] = 1.0
    return (rgba[..., :3] * 255).astype(np.uint8)


def guide_to_rgb(guide: torch.Tensor) -> np.ndarray:
    """A normalised (C, H, W) guide back to a viewable (H, W, 3) uint8 image."""
    channels = guide.shape[0]
    values = guide.detach().float().cpu()
    if channels == 3:
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        rgb = values * std + mean
    else:
        first = values[:1]
        low, high = float(first.min()), float(first.max())
        rgb = ((first - low) / (high - low if high > low else 1.0)).expand(3, -1, -1)
    array = rgb.clamp(0, 1).permute(1, 2, 0).numpy()
    return (array * 255 + 0.5).astype(np.uint8) if not math.isnan(array.sum()) else \
        np.zeros(array.shape, np.uint8)
