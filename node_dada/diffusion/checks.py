"""Argument validation shared by the maths functions and the layers above them.

Public: a new function that takes tensors (a baseline, a solver, a loader) checks
them with these, so every message names the argument, what was expected and what
came, and says what to do (docs/contributing.md). Each check raises the package's
typed errors (``InputTypeError``, ``ShapeError``, ``InputValueError``) and returns
nothing, except :func:`check_scale` / :func:`infer_scale` (the scale as an int) and
:func:`check_mask` (the mask as a bool tensor).
"""

from __future__ import annotations

import torch

from node_dada.errors import InputTypeError, InputValueError, ShapeError

__all__ = [
    "check_finite",
    "check_mask",
    "check_pair",
    "check_same_shape",
    "check_scale",
    "check_tensor",
    "infer_scale",
]

_FLOAT_DTYPES = (torch.float32, torch.float64)


def check_tensor(name: str, value: object, *, ndim: int = 4, channels: int | None = None) -> None:
    """Raise unless ``value`` is a float32/float64 tensor of rank ``ndim``."""
    if not isinstance(value, torch.Tensor):
        raise InputTypeError(
            f"{name}: expected a torch.Tensor, got {type(value).__name__}; "
            "convert with torch.as_tensor(...).float()"
        )
    if value.dtype not in _FLOAT_DTYPES:
        raise InputTypeError(
            f"{name}: expected dtype float32 or float64, got {value.dtype}; "
            "cast with .float() (integer depth must be converted to a physical unit first)"
        )
    if value.ndim != ndim:
        raise ShapeError(
            f"{name}: expected a {ndim}-D tensor (B, C, H, W), got shape {tuple(value.shape)}"
        )
    if channels is not None and value.shape[1] != channels:
        raise ShapeError(
            f"{name}: expected {channels} channel(s) (dim 1), got shape {tuple(value.shape)}"
        )
    if value.numel() == 0:
        raise ShapeError(f"{name}: expected a non-empty tensor, got shape {tuple(value.shape)}")


def check_scale(scale: object) -> int:
    """Return ``scale`` as an int, raising unless it is a positive integer."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise InputTypeError(f"scale: expected a positive integer, got {scale!r}")
    if isinstance(scale, float):
        if not scale.is_integer():
            raise InputValueError(
                f"scale: expected an integer upsampling factor, got {scale}; "
                "resample the guide so that its size is an integer multiple of the source"
            )
        scale = int(scale)
    if scale < 1:
        raise InputValueError(f"scale: expected a positive integer, got {scale}")
    return scale


def infer_scale(hr_shape: tuple[int, int], lr_shape: tuple[int, int], name: str) -> int:
    """Integer factor between an HR and an LR (H, W), raising if there is none."""
    (big_h, big_w), (h, w) = hr_shape, lr_shape
    if big_h % h or big_w % w or big_h // h != big_w // w:
        raise ShapeError(
            f"{name}: expected a size that divides the high-resolution size {hr_shape} by the "
            f"same integer in both directions, got {lr_shape}"
        )
    return big_h // h


def check_pair(hr_name: str, hr: torch.Tensor, lr_name: str, lr: torch.Tensor, scale: int) -> None:
    """Raise unless the HR tensor is exactly ``scale`` times the LR tensor."""
    if hr.shape[0] != lr.shape[0]:
        raise ShapeError(
            f"{lr_name}: expected batch size {hr.shape[0]} (that of {hr_name}), "
            f"got shape {tuple(lr.shape)}"
        )
    expected = (lr.shape[-2] * scale, lr.shape[-1] * scale)
    if tuple(hr.shape[-2:]) != expected:
        raise ShapeError(
            f"{hr_name}: expected spatial size {expected} (= {lr_name} {tuple(lr.shape[-2:])} "
            f"x scale {scale}), got {tuple(hr.shape[-2:])}"
        )


def check_same_shape(name: str, value: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if value.shape != ref.shape:
        raise ShapeError(
            f"{name}: expected shape {tuple(ref.shape)} (that of {ref_name}), "
            f"got {tuple(value.shape)}"
        )


def check_finite(name: str, value: torch.Tensor) -> None:
    if not torch.isfinite(value).all():
        raise InputValueError(
            f"{name}: expected finite values, got NaN or inf; mark invalid depth in the mask "
            "instead, and fill or crop non-finite guide pixels"
        )


def check_mask(mask_lr: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Validate ``mask_lr`` against ``source`` and return it as a bool tensor."""
    if not isinstance(mask_lr, torch.Tensor):
        raise InputTypeError(f"mask_lr: expected a torch.Tensor, got {type(mask_lr).__name__}")
    if mask_lr.shape != source.shape:
        raise ShapeError(
            f"mask_lr: expected shape {tuple(source.shape)} (that of source), "
            f"got {tuple(mask_lr.shape)}"
        )
    mask = mask_lr if mask_lr.dtype == torch.bool else mask_lr > 0.5
    if not mask.any():
        raise InputValueError(
            "mask_lr: expected at least one valid source pixel, got an all-invalid mask; "
            "there is nothing to upsample"
        )
    return mask
