"""The discrete DADA iteration (docs/design.md section 3), the yardstick of the project.

One iteration with step ``lam``:

1. vertical transmissions ``t = lam * cv * (I[1:] - I[:-1])``, ``I[1:] -= t``, ``I[:-1] += t``;
2. horizontal transmissions on the image already updated by step 1;
3. the hard adjustment ``I = A(I)``.

The in-place updates of the reference are written out of place with the same
floating-point operations in the same order (``(I - t_above) + t_below``), so
the result is bit-identical and autograd needs no clones. Where no graph is
recorded, CPU work goes to the fused kernel of ``fused.py`` (bit-identical too;
``NODE_DADA_FUSED=0`` or ``fused.set_mode("never")`` keeps this loop); where one is
(unrolled training), to the same kernel with the fused backward of ``unrolled.py``
(the forward bit-identical, the gradient equal up to round-off). On CUDA
each step runs through ``torch.compile`` (``compiled.py``; within float32
round-off, with or without a graph).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
import torch.nn.functional as F

from node_dada.diffusion import compiled as _compiled
from node_dada.diffusion import fused as _fused
from node_dada.diffusion import unrolled as _unrolled
from node_dada.diffusion.checks import (
    check_mask,
    check_pair,
    check_tensor,
    infer_scale,
)
from node_dada.diffusion.noise import relaxed_adjust
from node_dada.diffusion.operators import ADJUST_EPS, hard_adjust
from node_dada.errors import InputValueError, ShapeError

__all__ = [
    "DEFAULT_STEP",
    "INFERENCE_PRE_ITER",
    "TRAIN_ITER",
    "check_fidelity",
    "prepare_problem",
    "discrete_step",
    "discrete_dada",
    "discrete_dada_two_phase",
]

#: Step ``lambda`` of the discrete iteration; stable for ``lam * max(c) <= 0.25``.
DEFAULT_STEP = 0.24
#: Iterations without gradient (inference runs all of them, training a random number).
INFERENCE_PRE_ITER = 8000
#: Iterations with gradient, after the lead-in.
TRAIN_ITER = 1024


def prepare_problem(
    depth0: torch.Tensor,
    cv: torch.Tensor,
    ch: torch.Tensor,
    source: torch.Tensor,
    mask_lr: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Validate a diffusion problem; return (finite source, bool mask, scale).

    Raises ``ShapeError``/``InputTypeError``/``InputValueError`` that name the
    offending argument.
    """
    check_tensor("depth0", depth0, channels=1)
    check_tensor("source", source, channels=1)
    check_tensor("cv", cv, channels=1)
    check_tensor("ch", ch, channels=1)
    big_h, big_w = depth0.shape[-2:]
    if tuple(cv.shape) != (depth0.shape[0], 1, big_h - 1, big_w):
        raise ShapeError(
            f"cv: expected shape {(depth0.shape[0], 1, big_h - 1, big_w)} "
            f"(B, 1, H-1, W for depth0 {tuple(depth0.shape)}), got {tuple(cv.shape)}"
        )
    if tuple(ch.shape) != (depth0.shape[0], 1, big_h, big_w - 1):
        raise ShapeError(
            f"ch: expected shape {(depth0.shape[0], 1, big_h, big_w - 1)} "
            f"(B, 1, H, W-1 for depth0 {tuple(depth0.shape)}), got {tuple(ch.shape)}"
        )
    scale = infer_scale((big_h, big_w), tuple(source.shape[-2:]), "source")
    check_pair("depth0", depth0, "source", source, scale)
    mask = check_mask(mask_lr, source)
    if not torch.isfinite(depth0).all():
        raise InputValueError("depth0: expected finite values, got NaN or inf")
    if not torch.isfinite(source[mask]).all():
        raise InputValueError(
            "source: expected finite values on valid pixels (mask_lr true), got NaN or inf"
        )
    # Invalid entries never enter the result, but a NaN there would poison gradients.
    source = torch.where(mask, source, torch.ones_like(source))
    return source, mask, scale


def check_fidelity(fidelity: object, source: torch.Tensor) -> torch.Tensor:
    """Per-block fidelity weights ``mu`` (``noise.py``): a finite tensor >= 0 of the
    source's shape (or a number), returned as a tensor of that shape."""
    if not isinstance(fidelity, torch.Tensor):
        if isinstance(fidelity, bool) or not isinstance(fidelity, (int, float)):
            raise InputValueError(
                f"fidelity: expected None, a number or a (B, 1, h, w) tensor of weights "
                f">= 0, got {type(fidelity).__name__}")
        fidelity = torch.tensor(float(fidelity))
    fidelity = fidelity.to(device=source.device, dtype=source.dtype)
    if fidelity.ndim == 0:
        fidelity = fidelity.expand_as(source)
    if tuple(fidelity.shape) != tuple(source.shape):
        raise ShapeError(f"fidelity: expected shape {tuple(source.shape)} (that of source) "
                         f"or a number, got {tuple(fidelity.shape)}")
    if not torch.isfinite(fidelity).all() or (fidelity < 0).any():
        raise InputValueError("fidelity: expected finite weights >= 0, got negative, NaN "
                              "or inf values")
    return fidelity


def discrete_step(
    image: torch.Tensor,
    cv: torch.Tensor,
    ch: torch.Tensor,
    source: torch.Tensor,
    mask_lr: torch.Tensor,
    scale: int,
    step: float = DEFAULT_STEP,
    eps: float = ADJUST_EPS,
    relax: torch.Tensor | None = None,
) -> torch.Tensor:
    """One diffusion + adjustment iteration on validated inputs (no checks, out of place);
    ``relax`` (per-block gains ``1 - exp(-mu * step)``): the soft adjustment instead."""
    trans = step * cv * (image[..., 1:, :] - image[..., :-1, :])
    image = image - F.pad(trans, (0, 0, 1, 0)) + F.pad(trans, (0, 0, 0, 1))
    trans = step * ch * (image[..., :, 1:] - image[..., :, :-1])
    image = image - F.pad(trans, (1, 0, 0, 0)) + F.pad(trans, (0, 1, 0, 0))
    if relax is not None:
        return relaxed_adjust(image, source, mask_lr, scale, relax)
    return hard_adjust(image, source, mask_lr, scale, eps)


def _iterate(
    image: torch.Tensor,
    cv: torch.Tensor,
    ch: torch.Tensor,
    source: torch.Tensor,
    mask: torch.Tensor,
    scale: int,
    num_iter: int,
    step: float,
    callback: Callable[[int], None] | None,
    fidelity: torch.Tensor | None = None,
) -> torch.Tensor:
    # relaxed consistency (noise.py): the soft adjustment, eager ops only
    relax = None if fidelity is None else -torch.expm1(-fidelity * step)
    tracked = torch.is_grad_enabled() and any(
        t.requires_grad for t in (image, cv, ch, source))
    if relax is None and num_iter and not tracked and _fused.supports(
            image, cv, ch, source, work=image.numel() * num_iter):
        # no graph to record: the fused kernel, bit-identical to the loop below
        return _fused.discrete_iterate(image, cv, ch, source, mask, scale, num_iter, step,
                                       callback=callback)
    if relax is None and num_iter and tracked and not source.requires_grad and _fused.supports(
            image, cv, ch, source, work=image.numel() * num_iter) and _fused.fits(
            image, cv, ch, mask, scale):
        # a graph to record: the fused forward (bit-identical) with the fused backward
        return _unrolled.unrolled_iterate(image, cv, ch, source, mask, scale, num_iter, step,
                                          callback=callback)
    use_compiled = relax is None and _compiled.supports(image)
    for index in range(num_iter):
        if use_compiled:
            image = _compiled.call(discrete_step, image, cv, ch, source, mask, scale, step)
        else:
            image = discrete_step(image, cv, ch, source, mask, scale, step, relax=relax)
        if callback is not None:
            callback(index + 1)
    return image


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputValueError(f"{name}: expected a non-negative integer, got {value!r}")
    return value


def discrete_dada(
    depth0: torch.Tensor,
    cv: torch.Tensor,
    ch: torch.Tensor,
    source: torch.Tensor,
    mask_lr: torch.Tensor,
    num_iter: int,
    step: float = DEFAULT_STEP,
    *,
    callback: Callable[[int], None] | None = None,
    fidelity: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run ``num_iter`` discrete DADA iterations from ``depth0`` (docs/design.md section 3).

    No adjustment is applied before the first iteration; every iteration ends
    with one, so the output's block means equal ``source`` on valid blocks.
    The caller's tensors are never modified. Differentiable w.r.t. ``depth0``,
    ``cv``, ``ch`` and ``source`` (backprop through every iteration: the
    ``unrolled`` gradient mode).

    Args:
        depth0: (B, 1, H, W) initial estimate, positive.
        cv, ch: (B, 1, H-1, W) and (B, 1, H, W-1) coefficients in (0, 1].
        source: (B, 1, h, w) low-resolution depth, ``H = s*h``, ``W = s*w``.
        mask_lr: (B, 1, h, w) bool or {0, 1} float, true where ``source`` is valid.
        num_iter: number of iterations.
        step: ``lambda`` (0.24 in the paper; stable while ``step * max(c) <= 0.25``).
        callback: called with the number of finished iterations (progress bars).
        fidelity: ``None`` (the hard adjustment) or per-block weights ``mu`` of the
            relaxed consistency (``noise.py``): each iteration then ends with the soft
            adjustment ``I + U((1 - exp(-mu * step)) * (source - P(I)))``.

    Returns:
        (B, 1, H, W) depth.

    Example:
        >>> depth0 = torch.rand(1, 1, 8, 8) + 1
        >>> cv, ch = torch.ones(1, 1, 7, 8), torch.ones(1, 1, 8, 7)
        >>> source = torch.rand(1, 1, 2, 2) + 1
        >>> out = discrete_dada(depth0, cv, ch, source, torch.ones_like(source), 100)
        >>> torch.allclose(F.avg_pool2d(out, 4), source)
        True
    """
    num_iter = _check_count("num_iter", num_iter)
    source, mask, scale = prepare_problem(depth0, cv, ch, source, mask_lr)
    if fidelity is not None:
        fidelity = check_fidelity(fidelity, source)
    return _iterate(depth0, cv, ch, source, mask, scale, num_iter, step, callback, fidelity)


def discrete_dada_two_phase(
    depth0: torch.Tensor,
    cv: torch.Tensor,
    ch: torch.Tensor,
    source: torch.Tensor,
    mask_lr: torch.Tensor,
    *,
    num_pre: int,
    num_train: int = TRAIN_ITER,
    step: float = DEFAULT_STEP,
    randomize_pre: bool = False,
    rng: random.Random | None = None,
    fidelity: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int]:
    """The reference's two phases: ``num_pre`` iterations without gradient, then
    ``num_train`` with gradient.

    With ``randomize_pre`` (training), the lead-in length is drawn uniformly from
    ``{0, ..., num_pre - 1}`` per call (per batch). Returns the depth and the
    number of lead-in iterations actually run. ``fidelity``: as in :func:`discrete_dada`.
    """
    num_pre = _check_count("num_pre", num_pre)
    num_train = _check_count("num_train", num_train)
    source, mask, scale = prepare_problem(depth0, cv, ch, source, mask_lr)
    if fidelity is not None:
        fidelity = check_fidelity(fidelity, source)
    if randomize_pre and num_pre > 0:
        num_pre = (rng or random).randrange(num_pre)
    image = depth0
    if num_pre:
        with torch.no_grad():
            image = _iterate(image, cv.detach(), ch.detach(), source, mask, scale, num_pre,
                             step, None, fidelity)
    image = _iterate(image, cv, ch, source, mask, scale, num_train, step, None, fidelity)
    return image, num_pre
