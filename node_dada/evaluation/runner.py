"""The benchmark run: every method on the same crops at each scale.

Every method sees the same crops (:mod:`node_dada.evaluation.crops`); the masked
bicubic estimate is computed once per crop and handed to the methods that refine
it (``depth0``), and its time is added to theirs. Errors are exact per-pixel
aggregates over the valid pixels of all crops (:mod:`node_dada.metrics`), in
centimetres; ``aggregation="batch"`` gives the reference protocol's mean of
per-crop means instead.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from node_dada.baselines import get_baseline
from node_dada.data.pipeline import SceneSource
from node_dada.diffusion import SolveInfo
from node_dada.evaluation.crops import DEFAULT_CROP_SIZE, Crop, count_crops, iter_crops
from node_dada.evaluation.methods import ESTIMATE, MethodSpec, takes
from node_dada.metrics import Aggregation, DepthErrorAccumulator, DepthErrors

__all__ = [
    "DEFAULT_FIGURE_CROPS",
    "BenchmarkRow",
    "CropError",
    "FigureCrop",
    "run_benchmark",
]

_log = logging.getLogger(__name__)

DEFAULT_FIGURE_CROPS = 2


@dataclass(frozen=True)
class CropError:
    """One method's error on one crop (a whole image with ``--crop-size 0``)."""

    scale: int
    crop: str
    method: str
    mae_cm: float
    valid_pixels: int


@dataclass
class BenchmarkRow:
    """One line of the table: a method at a scale over all crops of the split."""

    dataset: str
    split: str
    scale: int
    crop_size: str
    method: str
    params: str
    solver: str
    nfe: str
    aggregation: str
    mae_cm: float
    mse_cm2: float
    rmse_cm: float
    seconds: float
    s_per_mpix: float
    crops: int
    megapixels: float
    valid_pixels: int

    @classmethod
    def columns(cls) -> list[str]:
        return list(cls.__dataclass_fields__)

    def as_csv(self) -> list[str]:
        values = []
        for key in self.columns():
            value = getattr(self, key)
            values.append(f"{value:.6g}" if isinstance(value, float) else str(value))
        return values


@dataclass
class FigureCrop:
    """What the comparison figure shows of one crop."""

    name: str
    guide: np.ndarray  # (H, W, C) 0-1
    target: np.ndarray  # (H, W) mm, NaN = invalid
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    errors: dict[str, DepthErrors] = field(default_factory=dict)


@dataclass
class _Tally:
    accumulator: DepthErrorAccumulator = field(default_factory=DepthErrorAccumulator)
    seconds: float = 0.0
    megapixels: float = 0.0
    crops: int = 0
    nfe: list[int] = field(default_factory=list)


def _spread(count: int, chosen: int) -> set[int]:
    """``chosen`` indices spread evenly over ``range(count)``, first and last included."""
    chosen = min(chosen, count)
    if chosen <= 0:
        return set()
    if chosen == 1:
        return {0}
    return {round(i * (count - 1) / (chosen - 1)) for i in range(chosen)}


def _run_method(
    spec: MethodSpec, crop: Crop, scale: int, estimate: torch.Tensor | None
) -> tuple[torch.Tensor, float, int | None]:
    infos: list[SolveInfo] = []
    kwargs = dict(spec.kwargs)
    if takes(spec.function, "on_info"):
        kwargs["on_info"] = infos.append
    if estimate is not None:
        kwargs["depth0"] = estimate
    start = time.perf_counter()
    prediction = spec.function(crop.guide, crop.source, scale=scale, mask_lr=crop.mask_lr, **kwargs)
    seconds = time.perf_counter() - start
    nfe = infos[-1].nfe_forward if infos else spec.kwargs.get("num_iter")
    return prediction, seconds, nfe


def run_benchmark(
    scenes: SceneSource,
    *,
    dataset: str,
    split: str,
    scales: Sequence[int],
    specs: Sequence[MethodSpec],
    crop_size: int | None = DEFAULT_CROP_SIZE,
    limit: int | None = None,
    aggregation: Aggregation = "pixel",
    figure_crops: int = DEFAULT_FIGURE_CROPS,
    progress: bool = True,
    per_crop: list[CropError] | None = None,
) -> tuple[list[BenchmarkRow], dict[int, list[FigureCrop]]]:
    """Evaluate every method of ``specs`` on the crops of ``scenes`` at each scale.

    Returns the table rows (scale-major, methods in the given order) and, per
    scale, ``figure_crops`` crops spread evenly over the set (first and last
    included) with every method's prediction. ``per_crop``, when given, receives
    each method's error on each crop.
    """
    names = [spec.name for spec in specs]
    counts = {s: count_crops(scenes, scale=s, crop_size=crop_size, limit=limit) for s in scales}
    rows: list[BenchmarkRow] = []
    figures: dict[int, list[FigureCrop]] = {}
    total = sum(counts[s] * sum(spec.runs_at(s) for spec in specs) for s in scales)
    with tqdm(total=total, desc=f"benchmark {dataset}", unit="run", disable=not progress,
              file=sys.stderr) as bar:
        for scale in scales:
            tallies = {name: _Tally() for name in names}
            shown: list[FigureCrop] = []
            on_figure = _spread(counts[scale], figure_crops)
            for index, crop in enumerate(
                iter_crops(scenes, scale=scale, crop_size=crop_size, limit=limit)
            ):
                if not torch.isfinite(crop.target).any() or not crop.mask_lr.any():
                    _log.info("crop %s has no valid pixel; left out", crop.name)
                    bar.update(len(specs))
                    continue
                estimate = None
                estimate_s = 0.0
                if any(spec.uses_estimate for spec in specs) or ESTIMATE in names:
                    bar.set_postfix_str(f"x{scale} {ESTIMATE}")
                    estimate, estimate_s, _ = _run_method(
                        MethodSpec(ESTIMATE, get_baseline(ESTIMATE)), crop, scale, None
                    )
                figure = None
                if index in on_figure:
                    figure = FigureCrop(
                        crop.name,
                        crop.guide[0].permute(1, 2, 0).numpy(),
                        crop.target[0, 0].numpy(),
                    )
                    shown.append(figure)
                for spec in specs:
                    if not spec.runs_at(scale):
                        continue
                    bar.set_postfix_str(f"x{scale} {spec.name}")
                    if spec.name == ESTIMATE and estimate is not None:
                        prediction, seconds, nfe = estimate, estimate_s, None
                    else:
                        prediction, seconds, nfe = _run_method(
                            spec, crop, scale, estimate if spec.uses_estimate else None
                        )
                        if spec.uses_estimate:
                            seconds += estimate_s
                    tally = tallies[spec.name]
                    errors = tally.accumulator.update(prediction, crop.target)
                    if per_crop is not None and errors is not None:
                        per_crop.append(CropError(scale, crop.name, spec.name, errors.mae_cm,
                                                  errors.count))
                    tally.seconds += seconds
                    tally.megapixels += crop.megapixels
                    tally.crops += 1
                    if nfe is not None:
                        tally.nfe.append(int(nfe))
                    if figure is not None:
                        figure.predictions[spec.name] = prediction[0, 0].detach().cpu().numpy()
                        if errors is not None:
                            figure.errors[spec.name] = errors
                    bar.update(1)
            figures[scale] = shown
            for spec in specs:
                tally = tallies[spec.name]
                if not tally.accumulator.batches:
                    continue
                errors = tally.accumulator.compute(aggregation=aggregation)
                nfe = str(round(float(np.mean(tally.nfe)))) if tally.nfe else ""
                rows.append(
                    BenchmarkRow(
                        dataset=dataset,
                        split=split,
                        scale=scale,
                        crop_size="full" if crop_size is None else str(crop_size),
                        method=spec.name,
                        params=spec.params(scale),
                        solver=spec.solver,
                        nfe=nfe,
                        aggregation=aggregation,
                        mae_cm=errors.mae_cm,
                        mse_cm2=errors.mse_cm2,
                        rmse_cm=errors.rmse_cm,
                        seconds=tally.seconds,
                        s_per_mpix=tally.seconds / tally.megapixels,
                        crops=tally.crops,
                        megapixels=tally.megapixels,
                        valid_pixels=errors.count,
                    )
                )
    return rows, figures
