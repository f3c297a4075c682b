"""Parameter search for the OpenCV guided filters on the Middlebury VALIDATION
split: a small grid per method, per scale, scored by validation MAE.

    python -m node_dada.tuning --scales 4 8 16 32 --out results/tuning

Only validation scenes with metric depth are used (those with ``dmin.txt``; in
the third-size 2005/2006 data that is Moebius, both views); test scenes are never
seen. Each filter is applied to the masked bicubic estimate, computed once per
image, with every grid point; the setting with the lowest exact per-pixel MAE
wins. Writes ``<out>/middlebury_val.csv`` (every tried setting, first line
``# command: ...``) and ``<out>/middlebury_val.md`` (the chosen values, the
grid, and the ``TUNED_PARAMS`` literal to paste into
``node_dada/baselines/opencv_filters.py``).

Window sizes are searched per unit of scale (``radius = r * scale``), colour
tolerances in guide units (0-1), as in :data:`node_dada.baselines.DEFAULT_PARAMS`.
The command line (its options and ``main``) is :mod:`node_dada.commands.tuning`.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from pprint import pformat

import torch
from tqdm import tqdm

from node_dada.baselines import get_baseline
from node_dada.evaluation.crops import Crop, iter_crops, load_scenes
from node_dada.evaluation.report import markdown_table, write_table
from node_dada.metrics import DepthErrorAccumulator

__all__ = ["GRIDS", "MAX_BILATERAL_SIGMA_SPACE", "TrialRow", "grid_points", "search"]

#: The searched values, per method: ``<name>_per_scale`` entries are multiplied by
#: the scale. A few values per parameter around the filters' published settings
#: and the hand-set fallbacks of DEFAULT_PARAMS, widened where a first pass chose
#: a value on the edge of the grid (guided filter radius, smoother lambda, median
#: sigma); the largest windows (2 x scale), never chosen, were dropped to keep the
#: search to a few minutes on 2 cores.
GRIDS: dict[str, dict[str, tuple[float, ...]]] = {
    "guided_filter": {
        "radius_per_scale": (0.125, 0.25, 0.5, 1.0),
        "eps": (1e-4, 1e-3, 1e-2, 1e-1),
    },
    "joint_bilateral": {
        "sigma_space_per_scale": (0.25, 0.5, 1.0),
        "sigma_color": (0.01, 0.03, 0.1),
    },
    "fast_global_smoother": {
        "lambda_": (1.0, 10.0, 100.0, 1000.0, 10000.0),
        "sigma_color": (0.003, 0.01, 0.03, 0.1),
    },
    "weighted_median": {
        "radius_per_scale": (0.5, 1.0, 2.0),
        "sigma": (0.01, 0.03, 0.1, 0.3),
    },
}
#: OpenCV's joint bilateral filter is brute force over a window of about
#: ``3 * sigma_space``: settings above this many HR pixels are skipped (sigma 64
#: takes ~13 s per third-size image, against 5 s at 32, on this project's machine).
MAX_BILATERAL_SIGMA_SPACE = 32.0
# Parameters that OpenCV takes as integers.
_INTEGER = {"radius"}


def grid_points(method: str, scale: int) -> list[dict[str, float]]:
    """Absolute parameter settings of ``method``'s grid at ``scale`` (duplicates,
    e.g. radii rounded to the same integer, and skipped settings left out)."""
    grid = GRIDS[method]
    points: list[dict[str, float]] = []
    for values in itertools.product(*grid.values()):
        point: dict[str, float] = {}
        for key, value in zip(grid, values, strict=True):
            name = key.removesuffix("_per_scale")
            value = value * scale if key.endswith("_per_scale") else value
            point[name] = max(1, round(value)) if name in _INTEGER else float(value)
        if method == "joint_bilateral" and point["sigma_space"] > MAX_BILATERAL_SIGMA_SPACE:
            continue
        if point not in points:
            points.append(point)
    return points


@dataclass
class TrialRow:
    """One tried setting: validation errors over every image of the split."""

    scale: int
    method: str
    params: dict[str, float]
    mae_cm: float
    rmse_cm: float
    seconds: float
    chosen: bool = False

    def params_text(self) -> str:
        return " ".join(f"{key}={value:g}" for key, value in self.params.items())


def _score(
    method: str, params: dict[str, float], crops: Sequence[Crop], estimates: Sequence[torch.Tensor],
    scale: int,
) -> tuple[float, float, float]:
    function = get_baseline(method)
    accumulator = DepthErrorAccumulator()
    start = time.perf_counter()
    for crop, estimate in zip(crops, estimates, strict=True):
        prediction = function(
            crop.guide, crop.source, scale=scale, mask_lr=crop.mask_lr, depth0=estimate, **params
        )
        accumulator.update(prediction, crop.target)
    errors = accumulator.compute()
    return errors.mae_cm, errors.rmse_cm, time.perf_counter() - start


def search(
    *,
    root: Path | None,
    scales: Sequence[int],
    methods: Sequence[str],
    crop_size: int | None,
    progress: bool = True,
) -> tuple[list[TrialRow], list[str]]:
    """Score every grid point of ``methods`` at each scale on the validation split.

    Returns the rows (bicubic first at each scale, as the reference; the best
    setting of each method marked ``chosen``) and the names of the images used.
    """
    scenes = load_scenes("middlebury", root=root, split="val")
    names = [scenes.scene_name(i) for i in range(len(scenes))]
    total = sum(len(grid_points(m, s)) for m in methods for s in scales)
    rows: list[TrialRow] = []
    with tqdm(total=total, desc="tuning on val", unit="setting", disable=not progress,
              file=sys.stderr) as bar:
        for scale in scales:
            crops = list(iter_crops(scenes, scale=scale, crop_size=crop_size))
            bicubic = get_baseline("bicubic")
            start = time.perf_counter()
            estimates = [
                bicubic(crop.guide, crop.source, scale=scale, mask_lr=crop.mask_lr)
                for crop in crops
            ]
            estimate_s = time.perf_counter() - start
            accumulator = DepthErrorAccumulator()
            for crop, estimate in zip(crops, estimates, strict=True):
                accumulator.update(estimate, crop.target)
            reference = accumulator.compute()
            rows.append(TrialRow(scale, "bicubic", {}, reference.mae_cm, reference.rmse_cm,
                                 estimate_s))
            for method in methods:
                trials = []
                for params in grid_points(method, scale):
                    bar.set_postfix_str(f"x{scale} {method}")
                    mae, rmse, seconds = _score(method, params, crops, estimates, scale)
                    trials.append(TrialRow(scale, method, params, mae, rmse, seconds))
                    bar.update(1)
                min(trials, key=lambda row: row.mae_cm).chosen = True
                rows += trials
    return rows, names


def tuned_params(rows: Sequence[TrialRow]) -> dict[str, dict[int, dict[str, float]]]:
    """The chosen settings as ``{method: {scale: params}}`` (the TUNED_PARAMS layout)."""
    chosen: dict[str, dict[int, dict[str, float]]] = {}
    for row in rows:
        if row.chosen:
            chosen.setdefault(row.method, {})[row.scale] = dict(row.params)
    return chosen


def write_outputs(
    rows: Sequence[TrialRow],
    out: Path,
    *,
    command: str,
    images: Sequence[str],
    crop_size: int | None,
) -> str:
    """``middlebury_val.csv`` (every trial) and ``middlebury_val.md`` (the choice)."""
    out.mkdir(parents=True, exist_ok=True)
    size = "full" if crop_size is None else str(crop_size)
    write_table(
        out / "middlebury_val.csv",
        ["split", "crop_size", "scale", "method", "params", "mae_cm", "rmse_cm", "seconds",
         "chosen"],
        (["val", size, row.scale, row.method, row.params_text(), f"{row.mae_cm:.6g}",
          f"{row.rmse_cm:.6g}", f"{row.seconds:.4g}", int(row.chosen)] for row in rows),
        command=command)
    reference = {row.scale: row.mae_cm for row in rows if row.method == "bicubic"}
    crops = "whole images (cropped to a multiple of the scale)" if crop_size is None else (
        f"{crop_size} x {crop_size} grid crops"
    )
    lines = [
        "# Filter parameters tuned on the Middlebury validation split",
        "",
        f"Produced by `{command}`; every tried setting is in `middlebury_val.csv`.",
        "",
        f"Validation images with metric depth: {', '.join(images)} ({crops}); the source is "
        "the NaN-aware block mean of the ground truth, each filter is applied to the masked "
        "bicubic estimate, and the setting with the lowest exact per-pixel MAE is kept. No "
        "test scene is used.",
        "",
        "Grid (`<name>_per_scale` values are multiplied by the scale; radii rounded to an "
        "integer >= 1; duplicates tried once):",
        "",
    ]
    for method, grid in GRIDS.items():
        parts = [f"`{key}` {{{', '.join(f'{v:g}' for v in values)}}}" for key, values in
                 grid.items()]
        lines.append(f"- {method}: {' x '.join(parts)}")
    lines += [
        f"- joint_bilateral settings with sigma_space > {MAX_BILATERAL_SIGMA_SPACE:g} px are "
        "skipped (OpenCV's brute-force window makes them cost seconds per image).",
        "",
        "## Chosen values",
        "",
    ]
    tried: dict[tuple[int, str], int] = {}
    for row in rows:
        tried[(row.scale, row.method)] = tried.get((row.scale, row.method), 0) + 1
    lines += markdown_table(
        ["scale", "method", "parameters", "val MAE (cm)", "bicubic val MAE (cm)",
         "settings tried"],
        ([f"x{row.scale}", row.method, row.params_text(), f"{row.mae_cm:.3f}",
          f"{reference[row.scale]:.3f}", tried[(row.scale, row.method)]]
         for row in rows if row.chosen),
        "rllrrr")
    lines += [
        "",
        "As `TUNED_PARAMS` (node_dada/baselines/opencv_filters.py):",
        "",
        "```python",
        pformat(tuned_params(rows), sort_dicts=False, width=96),
        "```",
    ]
    text = "\n".join(lines) + "\n"
    (out / "middlebury_val.md").write_text(text)
    return text


if __name__ == "__main__":
    from node_dada.commands.tuning import main

    raise SystemExit(main())
