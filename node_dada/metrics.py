"""Depth errors in physical units (docs/design.md section 7).

Inputs are depth maps in millimetres; errors are reported in centimetres over
the valid high-resolution pixels.

Aggregation over a test set: ``"pixel"`` (default) is exact, every valid pixel
of the set weighs the same; ``"batch"`` is the reference protocol, the mean of
per-batch means (MAE and MSE; RMSE is the square root of the averaged MSE), so
numbers are comparable with published tables. :class:`ErrorSums` holds the running
sums of one evaluation in a float64 tensor (summed across processes as it is), and
gives either; :class:`DepthErrorAccumulator` (the benchmarks) and the LightningModule's
validation and test metrics both accumulate through it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from node_dada.errors import InputValueError, ShapeError

__all__ = [
    "Aggregation",
    "DepthErrorAccumulator",
    "ErrorSums",
    "DepthErrors",
    "aggregate_errors",
    "depth_errors",
]

Aggregation = Literal["pixel", "batch"]

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


def aggregate_errors(
    errors: Sequence[DepthErrors], *, aggregation: Aggregation = "pixel"
) -> DepthErrors:
    """Combine per-batch :class:`DepthErrors` into one.

    Args:
        errors: one entry per batch (from :func:`depth_errors`).
        aggregation: ``"pixel"``: exact per-pixel aggregate (each batch weighted
            by its valid-pixel ``count``); ``"batch"``: the reference protocol,
            unweighted mean of the batch MAEs and MSEs, RMSE = sqrt(mean MSE).

    The returned ``count`` is the total number of valid pixels.
    """
    if aggregation not in ("pixel", "batch"):
        raise InputValueError(f"aggregation: expected 'pixel' or 'batch', got {aggregation!r}")
    if not errors:
        raise InputValueError("errors: expected at least one batch, got none")
    counts = np.array([e.count for e in errors], dtype=np.float64)
    mae = np.array([e.mae_cm for e in errors])
    mse = np.array([e.mse_cm2 for e in errors])
    if aggregation == "pixel":
        weights = counts / counts.sum()
    else:
        weights = np.full(len(errors), 1.0 / len(errors))
    mse_total = float(weights @ mse)
    return DepthErrors(float(weights @ mae), mse_total, math.sqrt(mse_total), int(counts.sum()))


class ErrorSums:
    """Running sums of an evaluation: ``[sum |d|, sum d^2, pixels, sum of batch MAEs,
    sum of batch MSEs, batches]`` in float64 (``d``: the error in the reported unit).

    ``tensor`` can be summed across processes (``all_reduce``) as it is; build the
    total back with ``ErrorSums(tensor=...)``.
    """

    def __init__(self, *, tensor: torch.Tensor | None = None,
                 device: torch.device | str | None = None) -> None:
        self.tensor = (torch.zeros(6, dtype=torch.float64, device=device) if tensor is None
                       else tensor.to(torch.float64))

    def add(self, prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, *,
            factor: float = 1.0) -> bool:
        """Add one batch: the errors ``(prediction - target) * factor`` where ``valid``
        holds; False (nothing added) when no pixel is valid."""
        diff = (prediction - target)[valid].double() * factor
        if diff.numel() == 0:
            return False
        absolute, squared = diff.abs(), diff**2
        self.tensor += torch.stack([absolute.sum(), squared.sum(),
                                    diff.new_tensor(float(diff.numel())), absolute.mean(),
                                    squared.mean(), diff.new_tensor(1.0)]).to(self.tensor)
        return True

    @property
    def batches(self) -> int:
        return int(self.tensor[5])

    def errors(self, aggregation: Aggregation = "pixel") -> DepthErrors:
        """MAE, MSE and RMSE over every batch added (see the module docstring)."""
        if aggregation not in ("pixel", "batch"):
            raise InputValueError(
                f"aggregation: expected 'pixel' or 'batch', got {aggregation!r}")
        if self.batches == 0:
            raise InputValueError("ErrorSums: no batch with valid pixels was added")
        total = self.tensor.detach().cpu()
        if aggregation == "pixel":
            mae, mse = total[0] / total[2], total[1] / total[2]
        else:
            mae, mse = total[3] / total[5], total[4] / total[5]
        return DepthErrors(float(mae), float(mse), math.sqrt(float(mse)), int(total[2]))


class DepthErrorAccumulator:
    """Collects per-batch errors over an evaluation epoch.

    Example:
        >>> accumulator = DepthErrorAccumulator()
        >>> for prediction_mm, target_mm, valid in batches:  # doctest: +SKIP
        ...     accumulator.update(prediction_mm, target_mm, valid)
        >>> accumulator.compute()  # exact  # doctest: +SKIP
        >>> accumulator.compute(aggregation="batch")  # reference protocol  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.sums = ErrorSums()

    def update(
        self,
        prediction_mm: np.ndarray | torch.Tensor,
        target_mm: np.ndarray | torch.Tensor,
        valid: np.ndarray | torch.Tensor | None = None,
    ) -> DepthErrors | None:
        """Add one batch (same arguments as :func:`depth_errors`); returns its errors.

        A batch without any valid pixel is skipped (returns ``None``): it has no
        error to average (the reference protocol would record NaN).
        """
        target = torch.from_numpy(_as_numpy("target_mm", target_mm))
        keep = torch.isfinite(target)
        if valid is not None:
            keep &= torch.from_numpy(_as_numpy("valid", valid).astype(bool))
        if not bool(keep.any()):
            return None
        errors = depth_errors(prediction_mm, target_mm, valid)
        self.sums.add(torch.from_numpy(_as_numpy("prediction_mm", prediction_mm)), target,
                      keep, factor=1.0 / _MM_PER_CM)
        return errors

    @property
    def batches(self) -> int:
        """Batches with valid pixels added so far."""
        return self.sums.batches

    def compute(self, *, aggregation: Aggregation = "pixel") -> DepthErrors:
        """Errors over every batch so far (``"pixel"``: exact; ``"batch"``: the mean of
        the per-batch means)."""
        if not self.batches:
            raise InputValueError("DepthErrorAccumulator: no batch with valid pixels was added")
        return self.sums.errors(aggregation)

    def reset(self) -> None:
        self.sums = ErrorSums()

    def __len__(self) -> int:
        return self.batches
