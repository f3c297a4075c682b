"""Depth errors in physical units (DESIGN.md section 7).

Inputs are depth maps in millimetres; errors are reported in centimetres over
the valid high-resolution pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from node_dada.errors import InputValueError, ShapeError

__all__ = ["DepthErrors", "depth_errors"]

_MM_PER_CM = 10.0


@dataclass(frozen=True)
class DepthErrors:
    """Errors over ``count`` valid pixels: MAE (cm), MSE (cm^2), RMSE (cm)."""

    mae_cm: float
    mse_cm2: float
    rmse_cm: float
    count: int

    def as_dict(self) -> dict[str, float]:
        return {"mae_cm": self.mae_cm, "mse_cm2": self.mse_cm2, "rmse_cm": self.rmse_cm}


def _as_numpy(name: str, value: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        raise InputValueError(f"{name}: expected a numpy array or tensor, got {type(value)}")
    return value.astype(np.float64, copy=False)


def depth_errors(
    prediction_mm: np.ndarray | torch.Tensor,
    target_mm: np.ndarray | torch.Tensor,
    valid: np.ndarray | torch.Tensor | None = None,
) -> DepthErrors:
    """Exact per-pixel MAE/MSE/RMSE over pixels where ``valid`` holds and the target is finite.

    Args:
        prediction_mm: predicted depth in millimetres, any shape.
        target_mm: ground truth in millimetres, same shape; NaN/inf = invalid.
        valid: optional boolean mask of the same shape.
    """
    prediction = _as_numpy("prediction_mm", prediction_mm)
    target = _as_numpy("target_mm", target_mm)
    if prediction.shape != target.shape:
        raise ShapeError(
            f"prediction_mm: expected shape {target.shape} (that of target_mm), "
            f"got {prediction.shape}"
        )
    keep = np.isfinite(target)
    if valid is not None:
        keep &= _as_numpy("valid", valid).astype(bool)
    count = int(keep.sum())
    if count == 0:
        raise InputValueError("target_mm: expected at least one valid pixel, got none")
    diff_cm = (prediction[keep] - target[keep]) / _MM_PER_CM
    mse = float(np.mean(diff_cm**2))
    return DepthErrors(float(np.mean(np.abs(diff_cm))), mse, float(np.sqrt(mse)), count)
