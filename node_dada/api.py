"""The user's one-liner: ``node_dada.upsample(guide, source, scale=...)`` (docs/design.md s. 9)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from node_dada.diffusion import (
    DEFAULT_KAPPA,
    DEFAULT_STEP,
    INFERENCE_PRE_ITER,
    initial_estimate,
    learning_free_dada,
    learning_free_ode,
    normalize_guide,
    shift_positive,
)
from node_dada.diffusion.checks import check_finite, check_pair, check_scale, check_tensor
from node_dada.diffusion.footprint import footprint_adjust, integer_grid, resample, source_ratio
from node_dada.diffusion.noise import check_source_noise, estimate_source_noise, fidelity_weights
from node_dada.diffusion.sampling import MILLIMETRE_DEPTH_SCALE
from node_dada.errors import InputTypeError, InputValueError, ShapeError
from node_dada.libc import release_free_memory

__all__ = ["MILLIMETRE_DEPTH_SCALE", "upsample"]

#: ``solver`` words: "fast" (default) = the growing-step RKC integration of the ODE,
#: "exact" = the reference (learning-free: the discrete iteration; a checkpoint: the
#: solver it was trained with); "ode" and "discrete" name the learning-free two directly.
_SOLVERS = ("fast", "exact", "ode", "discrete")
_LEARNING_FREE_SOLVER = {"fast": "ode", "exact": "discrete", "ode": "ode", "discrete": "discrete"}


def _guide_to_tensor(guide: Any) -> tuple[torch.Tensor, bool]:
    """(B, C, H, W) float tensor in 0-1, and whether the input was numpy."""
    if isinstance(guide, torch.Tensor):
        check_tensor("guide", guide)
        finite = guide[torch.isfinite(guide)]
        if finite.numel() and (float(finite.min()) < -1e-3 or float(finite.max()) > 1.0 + 1e-3):
            raise InputValueError(
                f"guide: expected values in 0-1 for a tensor guide, got range "
                f"[{float(finite.min()):.4g}, {float(finite.max()):.4g}]; divide 8-bit images "
                "by 255 (or pass the numpy array as it is)"
            )
        return guide, False
    if not isinstance(guide, np.ndarray):
        raise InputTypeError(
            f"guide: expected a numpy array (H, W, C) or a tensor (B, C, H, W), "
            f"got {type(guide).__name__}"
        )
    array = guide[..., None] if guide.ndim == 2 else guide
    if array.ndim != 3:
        raise ShapeError(f"guide: expected an (H, W, C) or (H, W) array, got shape {guide.shape}")
    if array.shape[0] in (1, 3, 4) and array.shape[2] > 4:
        raise ShapeError(
            f"guide: expected an (H, W, C) array, got shape {guide.shape}, which looks like "
            "(C, H, W); transpose it with guide.transpose(1, 2, 0)")
    if array.size == 0:
        raise ShapeError(f"guide: expected a non-empty image, got shape {guide.shape}")
    # (H, W, C) -> (C, H, W) before the float conversion, which then runs in place:
    # one float copy of the guide (a 4000 x 6000 RGB guide is 288 MB in float32)
    planar = np.ascontiguousarray(array.transpose(2, 0, 1))
    if array.dtype == np.uint8:
        return torch.from_numpy(planar)[None].float().div_(255.0), True
    if array.dtype == np.uint16:
        from node_dada.data.io import warn_if_8bit_in_16bit

        warn_if_8bit_in_16bit(array, what="guide")
        return torch.from_numpy(planar)[None].float().div_(65535.0), True
    if np.issubdtype(array.dtype, np.floating):
        finite = array[np.isfinite(array)]
        if finite.size and (finite.min() < -1e-3 or finite.max() > 1.0 + 1e-3):
            raise InputValueError(
                f"guide: expected float values in 0-1, got range [{finite.min():.4g}, "
                f"{finite.max():.4g}]; pass uint8/uint16 images as they are, or divide by "
                "their maximum"
            )
        return torch.from_numpy(planar.astype(np.float32, copy=False))[None], True
    raise InputTypeError(
        f"guide: expected dtype uint8, uint16 or float, got {array.dtype}"
    )


def _source_to_tensor(source: Any) -> torch.Tensor:
    if isinstance(source, torch.Tensor):
        check_tensor("source", source, channels=1)
        return source
    if not isinstance(source, np.ndarray):
        raise InputTypeError(
            f"source: expected a numpy array (h, w) or a tensor (B, 1, h, w), "
            f"got {type(source).__name__}"
        )
    if source.ndim != 2:
        raise ShapeError(f"source: expected an (h, w) array, got shape {source.shape}")
    if source.size == 0:
        raise ShapeError(f"source: expected a non-empty (h, w) array, got shape {source.shape}")
    if not (np.issubdtype(source.dtype, np.floating) or np.issubdtype(source.dtype, np.integer)):
        raise InputTypeError(f"source: expected a numeric array, got dtype {source.dtype}")
    return torch.from_numpy(source.astype(np.float64))[None, None]


def _mask_from(source: torch.Tensor, mask_lr: Any) -> torch.Tensor:
    if mask_lr is None:
        finite = torch.isfinite(source)
        if (source[finite] < 0).any():
            raise InputValueError(
                "source: expected positive depth (0 or NaN = invalid), got negative values; "
                "pass mask_lr explicitly if they are valid measurements"
            )
        return finite & (source != 0)
    mask = torch.as_tensor(mask_lr) if not isinstance(mask_lr, torch.Tensor) else mask_lr
    if mask.ndim == 2:
        mask = mask[None, None]
    if mask.shape != source.shape:
        raise ShapeError(
            f"mask_lr: expected shape {tuple(source.shape)} (that of source), "
            f"got {tuple(mask.shape)}"
        )
    mask = mask.to(source.device)
    return mask if mask.dtype == torch.bool else mask > 0.5


def upsample(
    guide: np.ndarray | torch.Tensor,
    source: np.ndarray | torch.Tensor,
    *,
    scale: float | None = None,
    mask_lr: np.ndarray | torch.Tensor | None = None,
    checkpoint: str | None = None,
    solver: str = "fast",
    num_iter: int | None = None,
    step: float | None = None,
    kappa: float | None = None,
    depth_scale: float | None = None,
    source_noise: float | str | None = None,
    max_fill: float | None = None,
    callback: Callable[[int], None] | None = None,
) -> np.ndarray | torch.Tensor:
    """Upsample a low-resolution depth map guided by a high-resolution image.

    Args:
        guide: (H, W, C) or (H, W) numpy array (uint8 read as 0-255, uint16 as
            0-65535, float as 0-1) or a (B, C, H, W) tensor in 0-1. Any channel count.
        source: (h, w) array or (B, 1, h, w) tensor in any positive unit;
            NaN, inf or 0 mean invalid unless ``mask_lr`` is given.
        scale: the factor between guide and source, ``H = scale*h`` and ``W = scale*w``;
            ``None`` (default): read from the shapes. A factor that is not an integer
            (a 192 x 144 sensor under a 512 x 384 guide: 8/3) is solved on the nearest
            integer-scale grid and resampled back, with the consistency kept on each
            source pixel's real footprint (docs/design.md section 4c).
        mask_lr: optional validity of ``source`` (same shape), true = valid.
        checkpoint: a trained model: a shipped name (``node_dada.models.NAMED_CHECKPOINTS``)
            or a checkpoint path (loaded weights-only). ``None``: learning-free DADA.
        solver: ``"fast"`` (default): the continuous formulation integrated with the
            growing-step RKC method, within about 2e-4 relative L2 of the reference;
            ``"exact"``: the reference, i.e. learning-free the discrete iteration, with a
            checkpoint the solver the model was trained with (its discrete iteration, or
            its ODE scheme) over the model's whole horizon, 5-10x slower. Learning-free
            also accepts ``"ode"`` (= ``"fast"``) and ``"discrete"`` (= ``"exact"``).
        num_iter: learning-free only: iterations, or horizon ``step * num_iter`` for the
            ODE (8000 by default). A checkpoint brings its own horizon.
        step: learning-free only: ``lambda`` of the iteration (0.24).
        kappa: learning-free only: Perona-Malik parameter of the coefficients (0.03).
        depth_scale: divisor of the depth channel that the coefficients see beside the
            guide. ``None`` (default): learning-free, half the median of each frame's
            valid source, so the result does not depend on the unit the depth is
            stored in (mm, m, a DEM's feet; docs/design.md section 1); with a
            checkpoint, its training scale (1122.7 for the shipped models, trained on
            millimetres: pass ``1.1227`` for metres, ``112.27`` for centimetres). A
            number fixes it (the benchmarks' dataset protocol: 1122.7 for Middlebury).
        source_noise: how far to trust the source. ``None`` (default): exactly, every
            ``scale x scale`` block mean of the output equals the source (the paper's
            adjustment). A number: the standard deviation of the source's noise, in its
            units; the output's block means may then depart from a noisy source where
            the guide shows one smooth surface (a data-fidelity term instead of the
            hard adjustment, docs/design.md section 4b). ``"auto"``: the noise is
            estimated from the source (a local, robust estimate; grows with depth for
            time-of-flight-like noise). ``0`` is the exact consistency.
        max_fill: how far, in source pixels, depth may be filled into regions without
            measurements. ``None`` (default): everywhere. A number ``d >= 0``: output
            pixels whose source pixel lies more than ``d`` source pixels from the
            nearest valid one come back as NaN (``0``: only where the source measured).
        callback: called with the number of finished iterations (progress bars).

    Returns:
        High-resolution depth in the units of ``source``: an (H, W) numpy array
        for numpy input, a (B, 1, H, W) tensor for tensor input.

    Example:
        >>> from skimage.data import stereo_motorcycle
        >>> guide, _, disparity = stereo_motorcycle()
        >>> # depth = node_dada.upsample(guide[:496, :736], low_res_depth, scale=8)
    """
    if solver not in _SOLVERS:
        raise InputValueError(f"solver: expected one of {_SOLVERS}, got {solver!r}")
    if checkpoint is not None:
        _check_model_options(solver, num_iter=num_iter, step=step, kappa=kappa)
    source_noise = check_source_noise(source_noise)
    if max_fill is not None:
        options = dict(mask_lr=mask_lr, checkpoint=checkpoint, solver=solver,
                       num_iter=num_iter, step=step, kappa=kappa, depth_scale=depth_scale,
                       source_noise=source_noise, callback=callback)
        return _keep_holes(guide, source, scale, _check_max_fill(max_fill), options)
    guide_t, numpy_in = _guide_to_tensor(guide)
    source_t = _source_to_tensor(source)
    check_finite("guide", guide_t)
    scale = _scale_of(scale, guide_t, source_t)
    if isinstance(scale, float):
        result = _upsample_fractional(
            guide_t, source_t, scale, mask_lr=mask_lr, checkpoint=checkpoint, solver=solver,
            num_iter=num_iter, step=step, kappa=kappa, depth_scale=depth_scale,
            source_noise=source_noise, callback=callback)
        return _as_output(result, source, source_t, numpy_in)
    _check_pair_with_hint(guide_t, source_t, scale)
    mask = _mask_from(source_t, mask_lr)
    if not mask.any():
        raise InputValueError(
            "source: expected at least one valid pixel (finite and non-zero), got none"
        )
    model = None
    if checkpoint is not None:
        from node_dada.models.inference import cached_model

        model = cached_model(checkpoint)
        trained = getattr(model, "training_scale", None)
        if trained is not None and trained != scale:
            warnings.warn(
                f"checkpoint: {checkpoint!r} was trained for x{trained}, used at x{scale}: "
                "its edge sensitivities were learned for another scale, expect a weaker "
                f"result than from a model of this scale (shipped: "
                f"{', '.join(_shipped_scale_names())})", stacklevel=2)
        guide_t = _match_guide_channels(guide_t, model.hparams.guide_channels)
        if depth_scale is None:
            depth_scale = model.hparams.depth_scale
            _warn_if_other_unit(source_t, mask, depth_scale, checkpoint)
    if depth_scale is not None:
        depth_scale = float(depth_scale)
        if not depth_scale > 0:
            raise InputValueError(f"depth_scale: expected a positive number, got {depth_scale}")
    work_dtype = torch.float32 if guide_t.dtype != torch.float64 else torch.float64
    device = guide_t.device
    guide_n = normalize_guide(guide_t.to(work_dtype))
    del guide_t  # large frames: one full-resolution guide at a time
    mask = mask.to(device)
    divisor = unit_free_scale(source_t, mask) if depth_scale is None else depth_scale
    if isinstance(divisor, torch.Tensor):
        divisor = divisor.to(device=device, dtype=work_dtype)
    scaled = torch.where(mask, source_t, torch.zeros_like(source_t)).to(
        device=device, dtype=work_dtype
    ) / divisor
    if not torch.isfinite(scaled[mask]).all():
        largest = float(source_t[mask].abs().max())
        raise InputValueError(
            f"source: values up to {largest:.3g} overflow {work_dtype} once divided by "
            f"the depth scale {float(torch.as_tensor(divisor).min()):g}; pass depth in a "
            "smaller unit or a matching depth_scale"
        )
    with torch.no_grad():
        fidelity = _fidelity(source_noise, scaled, mask, divisor, guide_n)
        depth0 = initial_estimate(scaled, mask, scale)
        release_free_memory()  # the interpolation's temporaries (large frames: ~GB)
        if model is not None:
            source_s, depth0, shift = shift_positive(scaled, depth0, mask)
            model = model.to(device=device, dtype=work_dtype)
            cv, ch = model.coefficients(guide_n, depth0, tile=model.inference_tile)
            del guide_n  # the diffusion needs only the coefficients
            release_free_memory()
            result, _ = model.diffuse(depth0, cv, ch, source_s, mask, shift, solver=solver,
                                      fidelity=fidelity)
            if callback is not None:
                callback(model.hparams.lead_in + model.hparams.train_iter)
        else:
            result = _learning_free(
                guide_n, scaled, mask, depth0, solver=_LEARNING_FREE_SOLVER[solver],
                kappa=DEFAULT_KAPPA if kappa is None else kappa,
                num_iter=INFERENCE_PRE_ITER if num_iter is None else num_iter,
                step=DEFAULT_STEP if step is None else step, callback=callback,
                fidelity=fidelity)
    return _as_output(result * divisor, source, source_t, numpy_in)


def _check_max_fill(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not (math.isfinite(float(value)) and float(value) >= 0):
        raise InputValueError(
            f"max_fill: expected None (fill every hole) or a distance >= 0 in source pixels, "
            f"got {value!r}")
    return float(value)


def _keep_holes(guide, source, scale, max_fill: float, options: dict[str, Any]):
    """``upsample`` with the output set to NaN farther than ``max_fill`` source pixels
    from the nearest valid source pixel."""
    from scipy.ndimage import distance_transform_edt

    result = upsample(guide, source, scale=scale, **options)
    source_t = _source_to_tensor(source)
    mask = _mask_from(source_t, options["mask_lr"]).cpu().numpy()[:, 0]
    out = result if isinstance(result, np.ndarray) else result.clone()
    big_h, big_w = out.shape[-2:]
    rows = np.minimum(np.arange(big_h) * mask.shape[-2] // big_h, mask.shape[-2] - 1)
    cols = np.minimum(np.arange(big_w) * mask.shape[-1] // big_w, mask.shape[-1] - 1)
    for index, valid in enumerate(mask):
        far = distance_transform_edt(~valid) > max_fill
        hole = far[np.ix_(rows, cols)]
        if isinstance(out, np.ndarray):
            out[hole] = np.nan
        else:
            out[index, 0][torch.from_numpy(hole).to(out.device)] = float("nan")
    return out


def _as_output(result: torch.Tensor, source: Any, source_t: torch.Tensor, numpy_in: bool):
    if numpy_in:
        out_dtype = source.dtype if np.issubdtype(source.dtype, np.floating) else np.float64
        return result[0, 0].cpu().numpy().astype(out_dtype)
    return result.to(source_t.dtype)


def _check_pair_with_hint(guide: torch.Tensor, source: torch.Tensor, scale: int) -> None:
    """``check_pair``, its message ending with the scale the shapes do have."""
    try:
        check_pair("guide", guide, "source", source, scale)
    except ShapeError as error:
        if guide.shape[0] != source.shape[0]:
            raise
        try:
            ratio = source_ratio(tuple(guide.shape[-2:]), tuple(source.shape[-2:]))
        except ShapeError:  # no one ratio: nothing to suggest
            raise error from None
        raise ShapeError(f"{error}; the guide is {ratio:.4g} x the source: scale="
                         f"{round(ratio) if ratio == round(ratio) else 'None'}?") from None


def _scale_of(scale: Any, guide: torch.Tensor, source: torch.Tensor) -> int | float:
    """The integer scale, or the (float) ratio when the guide is not an integer multiple
    of the source."""
    if source.shape[-2] > guide.shape[-2] or source.shape[-1] > guide.shape[-1]:
        raise ShapeError(
            f"source: expected a size at most that of the guide {tuple(guide.shape[-2:])}, "
            f"got {tuple(source.shape[-2:])}; pass (guide, source) in that order")
    if scale is None:
        ratio = source_ratio(tuple(guide.shape[-2:]), tuple(source.shape[-2:]))
        if tuple(guide.shape[-2:]) == tuple(source.shape[-2:]):
            raise ShapeError(
                f"source: the source has the guide's size {tuple(guide.shape[-2:])}; pass the "
                "low-resolution depth (or scale=1 to run at equal sizes anyway)")
        whole = round(ratio)
        exact = (source.shape[-2] * whole, source.shape[-1] * whole) == tuple(guide.shape[-2:])
        return whole if exact else ratio
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"scale: expected a positive number or None, got {scale!r}")
    if float(scale).is_integer():
        return check_scale(int(scale))
    ratio = float(scale)
    if not (math.isfinite(ratio) and ratio > 1):
        raise InputValueError(f"scale: expected a number > 1 (or None), got {scale!r}")
    expected = (source.shape[-2] * ratio, source.shape[-1] * ratio)
    if any(abs(have - want) >= 1 for have, want in zip(guide.shape[-2:], expected, strict=True)):
        raise ShapeError(
            f"guide: expected a size of about {expected[0]:.1f} x {expected[1]:.1f} (source "
            f"{tuple(source.shape[-2:])} x scale {ratio:g}), got {tuple(guide.shape[-2:])}; "
            "pass scale=None to read the factor from the shapes")
    return ratio


def _upsample_fractional(guide, source, ratio, *, mask_lr, source_noise, **options):
    """A non-integer ratio: the nearest integer-scale grid, resampled back to the guide,
    then the exact consistency on the real footprints (unless the source is noisy)."""
    mask = _mask_from(source, mask_lr)
    whole = integer_grid(ratio)
    size = (source.shape[-2] * whole, source.shape[-1] * whole)
    work_guide = resample(guide.float() if guide.dtype != torch.float64 else guide, size)
    depth = upsample(work_guide.clamp(0.0, 1.0), source, scale=whole, mask_lr=mask,
                     source_noise=source_noise, **options)
    depth = resample(depth.to(work_guide.dtype), tuple(guide.shape[-2:]))
    if source_noise is None:
        filled = torch.where(mask, source, torch.zeros_like(source)).to(depth)
        depth = footprint_adjust(depth, filled, mask.to(depth.device))
    return depth

def _check_model_options(solver: str, **learning_free: Any) -> None:
    """A checkpoint runs with its own coefficients and horizon: refuse the learning-free
    settings instead of ignoring them."""
    if solver not in ("fast", "exact"):
        raise InputValueError(
            f"solver: with a checkpoint, expected 'fast' (RKC on the learned coefficients) "
            f"or 'exact' (the model's training solver), got {solver!r}")
    given = [name for name, value in learning_free.items() if value is not None]
    if given:
        raise InputValueError(
            f"{', '.join(given)}: learning-free settings; a checkpoint brings its own "
            "coefficients and horizon, so leave them out (or drop the checkpoint)")


def _match_guide_channels(guide: torch.Tensor, expected: int) -> torch.Tensor:
    """A trained model's guide: RGBA -> RGB (alpha dropped), gray -> RGB (repeated), each
    with a warning; other mismatches are refused (the model knows no such guide)."""
    have = guide.shape[1]
    if have == expected:
        return guide
    if expected == 3 and have == 4:
        warnings.warn("guide: 4 channels for a model trained on RGB; dropping the 4th "
                      "(alpha) channel", stacklevel=3)
        return guide[:, :3]
    if expected == 3 and have == 1:
        warnings.warn("guide: a grayscale guide for a model trained on RGB; repeating it "
                      "into 3 channels (a model trained on grayscale guides would do better)",
                      stacklevel=3)
        return guide.expand(-1, 3, -1, -1)
    raise ShapeError(
        f"guide: the checkpoint was trained on {expected}-channel guides, got {have} "
        "channels; pass a guide with that many channels or use a model trained on yours"
    )


#: The learning-free depth channel is the depth divided by this fraction of the
#: frame's median: about 1 to 1.5 for Middlebury's scenes in mm at the dataset scale
#: 1122.7, whose learning-free results it reproduces to 0.1 % on the validation split.
UNIT_FREE_FRACTION = 0.5
#: Trained models: a source whose median, divided by the model's ``depth_scale``, lies
#: outside this range is probably in another unit than the training data (a warning).
_TRAINING_RANGE = (0.05, 50.0)


def _shipped_scale_names() -> list[str]:
    from node_dada.models.registry import read_aliases

    return sorted(read_aliases(), key=lambda name: (len(name), name)) or ["none"]


def unit_free_scale(source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1, 1): ``UNIT_FREE_FRACTION`` x the median of each frame's valid
    ``|source|`` (1 for a frame whose median is 0), the learning-free default of
    ``depth_scale``. Multiplying the source by any factor multiplies it by the same
    factor, so the result does not depend on the unit."""
    scales = []
    for frame, keep in zip(source, mask, strict=True):
        values = frame[keep].abs()
        median = float(values.median()) if values.numel() else 0.0
        ok = median > 0 and math.isfinite(median)
        scales.append(UNIT_FREE_FRACTION * median if ok else 1.0)
    return torch.tensor(scales, dtype=torch.float64).view(-1, 1, 1, 1)


def _warn_if_other_unit(source: torch.Tensor, mask: torch.Tensor, depth_scale: float,
                        checkpoint: object) -> None:
    values = source[mask].abs()
    if not values.numel():
        return
    ratio = float(values.median()) / float(depth_scale)
    low, high = _TRAINING_RANGE
    if not low <= ratio <= high:
        warnings.warn(
            f"source: its median ({float(values.median()):.4g}) is {ratio:.3g} x the "
            f"depth_scale {depth_scale:g} of checkpoint {checkpoint!r} (its training data "
            f"lies between {low:g} and {high:g} x): the depth is probably in another unit "
            "than the model was trained on (millimetres for the shipped models); pass "
            "depth_scale (1.1227 for metres, 112.27 for centimetres)", stacklevel=3)


def _fidelity(source_noise, scaled, mask, depth_scale, guide):
    """Per-block weights of the relaxed consistency, or None for the exact one."""
    if source_noise is None or source_noise == 0:
        return None
    if source_noise == "auto":
        sigma = estimate_source_noise(scaled, mask, guide)
    else:
        sigma = source_noise / depth_scale
    return fidelity_weights(sigma, scaled, mask)


def _learning_free(guide_n, source, mask, depth0, *, solver, kappa, num_iter, step, callback,
                   fidelity=None):
    if solver == "discrete":
        return learning_free_dada(guide_n, source, mask, depth0, kappa=kappa, num_iter=num_iter,
                                  step=step, callback=callback, fidelity=fidelity)
    result, _ = learning_free_ode(guide_n, source, mask, depth0, t_end=step * num_iter,
                                  kappa=kappa, fidelity=fidelity)
    if callback is not None:
        callback(num_iter)
    return result
