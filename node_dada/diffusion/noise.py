"""Noise-aware source consistency (docs/design.md section 4b).

The exact adjustment makes every ``s x s`` block mean of the output equal the
low-resolution source. A real sensor's source is noisy, and the exact adjustment
then copies the noise into every block. The relaxed formulation replaces the
projection by a data-fidelity term with a weight per block:

    dI/dt = D(I) + U(mu * (source - P(I)))        on valid blocks

a gradient flow of ``1/2 sum c |grad I|^2 + s^2/2 sum_b mu_b (P(I) - source)_b^2``,
whose steady state is the smoothest depth (under the learned or learning-free
coefficients) that stays close to the source where the source is trusted.
``mu -> inf`` gives back the exact consistency; a small ``mu`` lets the diffusion
average the noise over whole regions.

This module holds the noise estimate (``estimate_source_noise``), the rule that
turns a noise level into weights (``fidelity_weights``) and the soft adjustment of
the discrete iteration (``relaxed_adjust``: the exact flow of the fidelity term over
one step, so that the discrete iteration is the splitting scheme of the same ODE).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from node_dada.diffusion.operators import block_mean, upsample_nearest
from node_dada.errors import InputValueError, ShapeError

__all__ = [
    "FIDELITY_GAIN",
    "FIDELITY_POWER",
    "check_source_noise",
    "estimate_source_noise",
    "fidelity_weights",
    "relaxed_adjust",
    "relaxed_field_term",
]

#: ``mu = FIDELITY_GAIN * (sigma / depth)^-FIDELITY_POWER``, measured on the validation
#: scenes (docs/design.md section 4b): the best weight fell like ``1 / sigma`` at x4 and
#: x8 alike (0.1, 0.025, 0.008 for 5, 20, 60 mm of noise on depths near 2 m).
FIDELITY_GAIN = 2.5e-4
FIDELITY_POWER = 1.0
# The noise is read on this flattest fraction of the source (in the guide).
_FLAT_QUANTILE = 0.25
# Largest growth exponent of the noise with depth (stereo: 2).
_MAX_GROWTH = 2.0
#: Upper bound of ``mu``: beyond it the relaxed solve is the exact one to within a
#: fraction of the noise, and the field would only grow stiffer.
MAX_FIDELITY = 1.0
# Second differences along both axes, normalised so that white noise of standard
# deviation sigma comes out with standard deviation sigma. It annihilates every
# f(x) + g(y) with f, g affine, so planes (most of a depth map) leave nothing.
_NOISE_KERNEL = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]]) / 6.0
_MAD_TO_SIGMA = 1.4826


def check_source_noise(value: object) -> float | str | None:
    """``None``, a non-negative finite number or ``"auto"``; anything else raises."""
    if value is None or value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InputValueError(
            f"source_noise: expected None (exact consistency), a noise standard deviation "
            f"in the source's units, or 'auto', got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise InputValueError(
            f"source_noise: expected a standard deviation >= 0 in the source's units, "
            f"got {value!r}")
    return value


def estimate_source_noise(source: torch.Tensor, mask_lr: torch.Tensor,
                          guide: torch.Tensor | None = None) -> torch.Tensor:
    """Standard deviation of the noise of ``source`` at each block, (B, 1, h, w), in its units.

    The source is filtered with a second-difference kernel that removes planes; what
    is left is noise plus the scene's edges and curved surfaces. The responses are
    read where the scene is least likely to have structure: with a ``guide``
    (B, C, s*h, s*w), at the quarter of the source pixels whose neighbourhood is
    flattest in the guide (edges and texture of the depth map nearly always show in
    the image; noise never does). Their median absolute value times 1.4826 estimates
    the noise robustly. The same estimate on the nearer and on the farther half of
    those pixels gives the growth with depth, ``sigma(d) = sigma_0 (d / d_0)^k``,
    ``k`` in [0, 2] (0: white noise, 1: time-of-flight-like, 2: stereo-like).
    A clean source gives a small value (what curvature the flattest quarter has).
    """
    if source.shape != mask_lr.shape:
        raise ShapeError(f"mask_lr: expected shape {tuple(source.shape)}, got "
                         f"{tuple(mask_lr.shape)}")
    kernel = _NOISE_KERNEL.to(source)
    filled = torch.where(mask_lr, source, torch.zeros_like(source))
    response = F.pad(F.conv2d(filled, kernel[None, None]).abs(), (1, 1, 1, 1))
    # a response is usable where all nine pixels under the kernel are valid
    usable = F.pad(F.avg_pool2d(mask_lr.to(source.dtype), 3, 1), (1, 1, 1, 1)) > 0.999
    activity = None if guide is None else _guide_activity(guide, source.shape[-2:])
    maps = []
    for index in range(source.shape[0]):
        valid = usable[index, 0]
        if int(valid.sum()) < 16:
            maps.append(torch.zeros_like(source[index, 0]))
            continue
        if activity is not None:
            flat = activity[index, 0][valid]
            valid = valid & (activity[index, 0] <= torch.quantile(flat, _FLAT_QUANTILE))
        depth = source[index, 0][valid].abs()
        values = response[index, 0][valid]
        sigma0 = _MAD_TO_SIGMA * values.median()
        depth0 = depth.median()
        near, far = depth <= depth0, depth > depth0
        growth = 0.0
        if int(near.sum()) >= 8 and int(far.sum()) >= 8:
            ratio_sigma = values[far].median() / values[near].median().clamp_min(1e-30)
            ratio_depth = depth[far].median() / depth[near].median().clamp_min(1e-30)
            if float(ratio_depth) > 1.05 and float(ratio_sigma) > 0:
                growth = float(torch.log(ratio_sigma) / torch.log(ratio_depth))
        growth = min(max(growth, 0.0), _MAX_GROWTH)
        relative = (source[index, 0].abs() / depth0.clamp_min(1e-30)).clamp_min(1e-3)
        maps.append(sigma0 * relative.pow(growth))
    return torch.stack(maps)[:, None]


def _guide_activity(guide: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Mean absolute gradient of the channel-averaged guide over each source pixel's
    3 x 3 neighbourhood, (B, 1, h, w)."""
    scale = guide.shape[-1] // size[-1]
    gray = guide.mean(dim=1, keepdim=True)
    across = F.pad((gray[..., :, 1:] - gray[..., :, :-1]).abs(), (0, 1))
    down = F.pad((gray[..., 1:, :] - gray[..., :-1, :]).abs(), (0, 0, 0, 1))
    per_pixel = F.avg_pool2d(across + down, scale)
    return F.pad(F.avg_pool2d(per_pixel, 3, 1), (1, 1, 1, 1), mode="replicate")


def fidelity_weights(sigma: torch.Tensor | float, source: torch.Tensor,
                     mask_lr: torch.Tensor) -> torch.Tensor:
    """Per-block fidelity weights ``mu`` (B, 1, h, w) for noise ``sigma`` (a number or a
    (B, 1, h, w) map, in the units of ``source``).

    The noise counts relative to the depth it sits on (``sigma / depth``, so the rule
    holds in any unit and at any depth range), and the weight falls like
    ``depth / sigma``: a noisier source is trusted less. Capped at ``MAX_FIDELITY``;
    zero noise gives the cap (close to the exact consistency)."""
    sigma_t = torch.as_tensor(sigma, dtype=source.dtype, device=source.device)
    sigma_t = sigma_t.expand_as(source) if sigma_t.ndim == 0 else sigma_t
    # depth of each block; a shifted (near-zero) source borrows the image's median
    valid = source[mask_lr]
    typical = valid.abs().median() if valid.numel() else source.new_tensor(1.0)
    depth = torch.where(mask_lr, source.abs(), typical).clamp_min(float(typical) * 0.05 + 1e-12)
    relative = (sigma_t / depth).clamp_min(1e-12)
    weights = FIDELITY_GAIN * relative.pow(-FIDELITY_POWER)
    return torch.where(mask_lr, weights.clamp_max(MAX_FIDELITY), torch.zeros_like(weights))


def relaxed_field_term(image: torch.Tensor, source: torch.Tensor, mask_lr: torch.Tensor,
                       scale: int, fidelity: torch.Tensor) -> torch.Tensor:
    """The fidelity term ``U(mu * (source - P(I)))`` (zero on invalid blocks)."""
    residual = torch.where(mask_lr, source - block_mean(image, scale), torch.zeros_like(source))
    return upsample_nearest(fidelity * residual, scale)


def relaxed_adjust(image: torch.Tensor, source: torch.Tensor, mask_lr: torch.Tensor,
                   scale: int, gain: torch.Tensor) -> torch.Tensor:
    """Soft adjustment ``I + U(gain * (source - P(I)))``: with
    ``gain = 1 - exp(-mu * step)`` the exact flow of the fidelity term over one step
    (``gain = 1`` is the additive hard adjustment)."""
    return image + relaxed_field_term(image, source, mask_lr, scale, gain)
