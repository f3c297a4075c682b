"""``node-dada benchmark``: every method on the same deterministic test crops, in
one table (docs/design.md section 7).

    python -m node_dada.benchmark --dataset middlebury --scales 4 8 16 32 \\
        --methods bicubic guided_filter joint_bilateral fast_global_smoother \\
        weighted_median dada dada_ode

Datasets: ``middlebury`` (``--root`` folders), ``motorcycle`` (embedded),
``nyuv2`` (``--root`` the labeled ``.mat`` or its folder; the split shipped with the
package unless ``--split-file`` names another) and ``rgbdd`` (``--root`` one RGB-D-D
folder, e.g. ``rgbdd`` under the data root; evaluation only, under this project's
protocol: block means of the ground truth as the source, errors pooled over the
valid pixels. The published protocol of that set, bicubic-resized inputs and RMSE
averaged per image, is ``benchmarks/rgbdd_published.py``).

For each scale the test split goes through the data pipeline's evaluation mode
(:class:`~node_dada.data.GuidedDepthDataset` with ``mode="eval"``: non-overlapping
``crop_size`` grid crops from the top-left, no augmentation, the NaN-aware block
mean as degradation). Every method of :data:`node_dada.baselines.BASELINES`
sees the same crops; the masked bicubic estimate is computed once per crop and
handed to the methods that refine it (``depth0``), and its time is added to
theirs. Errors are exact per-pixel aggregates over the valid pixels of all
crops (:mod:`node_dada.metrics`), in centimetres; ``--aggregation batch`` gives
the reference protocol's mean of per-crop means instead.

Writes ``<out>/<dataset>.csv`` (first line ``# command: ...``),
``<out>/<dataset>.md`` and one figure per scale, ``<out>/<dataset>_x<scale>.png``.

Trained checkpoints: ``--checkpoint NAME=PATH`` is the hook through which a
trained model joins the table as method ``NAME``; see :func:`checkpoint_method`.
``NAME=PATH@SCALE`` evaluates it only at the scale it was trained for.

The command line (its options and ``main``) is :mod:`node_dada.commands.benchmark`.
"""

from __future__ import annotations

import csv
import inspect
import logging
import os
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from node_dada.baselines import BASELINES, default_params, get_baseline
from node_dada.baselines.dada import ODE_METHOD, ODE_STEP_GROWTH, ODE_STEP_SIZE
from node_dada.data import GuidedDepthDataset, MiddleburyScenes, MotorcycleScenes, NYUv2Scenes
from node_dada.data.nyuv2 import NYUV2_FILE_NAME
from node_dada.data.pipeline import SceneSource
from node_dada.data.rgbdd import RGBDDScenes
from node_dada.data.root import describe_search, resolve_data_path
from node_dada.diffusion import (
    DEFAULT_KAPPA,
    DEFAULT_STEP,
    INFERENCE_PRE_ITER,
    SolveInfo,
    normalize_guide,
)
from node_dada.errors import DataError, InputValueError
from node_dada.metrics import Aggregation, DepthErrorAccumulator, DepthErrors

__all__ = [
    "DATASETS",
    "DEFAULT_METHODS",
    "DEFAULT_MIDDLEBURY_ROOT",
    "DEFAULT_SCALES",
    "BenchmarkRow",
    "Crop",
    "MethodSpec",
    "checkpoint_method",
    "count_crops",
    "iter_crops",
    "load_scenes",
    "method_specs",
    "raw_guide",
    "run_benchmark",
    "CropError",
    "crop_pivot",
    "write_crop_errors",
]

_log = logging.getLogger(__name__)

#: The third-size Middlebury 2005/2006 scenes, under the data root (node_dada.data.root;
#: ``node-dada data download middlebury2005 --root data`` puts them there).
DEFAULT_MIDDLEBURY_ROOT = Path("middlebury0506") / "ThirdSize"
DATASETS = ("middlebury", "motorcycle", "nyuv2", "rgbdd")
DEFAULT_SCALES = (4, 8, 16, 32)
DEFAULT_METHODS = (
    "bicubic",
    "guided_filter",
    "joint_bilateral",
    "fast_global_smoother",
    "weighted_median",
    "dada",
    "dada_ode",
)
DEFAULT_CROP_SIZE = 256
DEFAULT_FIGURE_CROPS = 2
DATASET_TITLES = {
    "middlebury": "Middlebury 2005/2006, third size, scenes with metric depth (dmin.txt)",
    "motorcycle": "Middlebury 2014 Motorcycle, quarter size (embedded in scikit-image)",
    "nyuv2": "NYU Depth v2, labeled set (640 x 480 Kinect frames, filled depth)",
    "rgbdd": "RGB-D-D (512 x 384 Helios time-of-flight depth, evaluation only)",
}
# Methods whose signature takes a precomputed bicubic estimate (``depth0``).
_ESTIMATE = "bicubic"


# --- data -------------------------------------------------------------------------


@dataclass(frozen=True)
class Crop:
    """One evaluation crop in the form every baseline takes.

    Attributes:
        name: scene name and crop position.
        guide: (1, C, H, W) raw guide in 0-1 (what the baselines take).
        source: (1, 1, h, w) low-resolution depth in mm, 0 where invalid.
        mask_lr: (1, 1, h, w) bool validity of ``source``.
        target: (1, 1, H, W) ground truth in mm, NaN where invalid.
    """

    name: str
    guide: torch.Tensor
    source: torch.Tensor
    mask_lr: torch.Tensor
    target: torch.Tensor

    @property
    def megapixels(self) -> float:
        return self.target.shape[-2] * self.target.shape[-1] / 1e6


def raw_guide(guide: torch.Tensor) -> torch.Tensor:
    """Undo :func:`~node_dada.diffusion.normalize_guide` (a fixed per-channel affine
    map): the pipeline stores normalised guides, the baselines take raw 0-1 ones.

    The map is recovered from its values at 0 and 1, so it stays right for any
    channel count; the result is clipped to 0-1 (float round-off only).
    """
    shape = (1, guide.shape[1], 1, 1)
    offset = normalize_guide(guide.new_zeros(shape))
    gain = normalize_guide(guide.new_ones(shape)) - offset
    return ((guide - offset) / gain).clamp(0.0, 1.0)


def load_scenes(dataset: str, *, root: Path | Sequence[Path] | None = None,
                split: str = "test", split_file: Path | None = None) -> SceneSource:
    """The scenes of ``split``: Middlebury scenes with metric depth (those without
    ``dmin.txt`` are left out, and logged) from one folder or several read together
    (e.g. the 2005/2006 ThirdSize folder and MiddEval3), the embedded Motorcycle
    scene, NYU Depth v2 labeled frames (``root``: ``nyu_depth_v2_labeled.mat`` or
    its folder; ``split_file``: the split JSON, by default the community split shipped
    with the package), or RGB-D-D pairs (``root``: one folder, see
    :class:`~node_dada.data.rgbdd.RGBDDScenes`). ``split_file`` is for ``nyuv2`` only."""
    if split_file is not None and dataset != "nyuv2":
        raise InputValueError(
            f"--split-file: only the nyuv2 dataset reads a split file, got it with "
            f"--dataset {dataset}; leave --split-file out"
        )
    if dataset == "motorcycle":
        if root is not None:
            raise InputValueError(
                "--root: the motorcycle scene is embedded in scikit-image and takes no root; "
                "leave --root out"
            )
        return MotorcycleScenes()
    if dataset == "nyuv2":
        return _load_nyuv2(root, split=split, split_file=split_file)
    if dataset == "rgbdd":
        return _load_rgbdd(root, split=split)
    if dataset != "middlebury":
        raise InputValueError(f"--dataset: expected one of {', '.join(DATASETS)}, got {dataset!r}")
    roots = [DEFAULT_MIDDLEBURY_ROOT] if root is None else (
        [root] if isinstance(root, Path) else list(root))
    found = [resolve_data_path(folder) for folder in roots]
    for given, folder in zip(roots, found, strict=True):
        if not folder.is_dir():
            raise DataError(
                f"--root: no folder at {describe_search(given)}; point it to the Middlebury "
                "2005/2006 ThirdSize folder and/or a MiddEval3 tree (get them with `node-dada "
                "data download middlebury2005 --root data`, likewise middlebury2006 and "
                "middeval3-Q)"
            )
    roots = [folder.resolve() for folder in found]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scenes = MiddleburyScenes(roots, split=split, missing_dmin="skip")
    for warning in caught:
        _log.info("%s", warning.message)
    return scenes


def _load_nyuv2(root: Path | Sequence[Path] | None, *, split: str,
                split_file: Path | None) -> NYUv2Scenes:
    """The NYUv2 frames of ``split`` from one ``.mat`` file (or its folder)."""
    roots = [] if root is None else [root] if isinstance(root, Path) else list(root)
    if len(roots) != 1:
        got = "nothing" if not roots else f"{len(roots)} paths"
        raise InputValueError(
            f"--root: nyuv2 expects one path, {NYUV2_FILE_NAME} or its folder, got {got}; "
            f"download it with `node-dada data download nyuv2 --root DIR` and pass "
            f"--root DIR/nyu_depth_v2"
        )
    return NYUv2Scenes(roots[0], split=split, split_file=split_file)


def _load_rgbdd(root: Path | Sequence[Path] | None, *, split: str) -> RGBDDScenes:
    """The RGB-D-D pairs of ``split`` from one folder (flat or official layout)."""
    roots = [] if root is None else [root] if isinstance(root, Path) else list(root)
    if len(roots) != 1:
        got = "nothing" if not roots else f"{len(roots)} paths"
        raise InputValueError(
            f"--root: rgbdd expects one folder, got {got}; pass the folder of the RGB-D-D "
            "test set (holding test/RGB and test/Depth) or of the official release (see "
            "`node-dada data list`)"
        )
    if split not in ("test", "train"):
        raise InputValueError(
            f"--split: RGB-D-D has a test and a train split, got {split!r}; use --split test"
        )
    return RGBDDScenes(roots[0], split=split)


def _check_unit(scenes: SceneSource) -> None:
    if scenes.unit != "mm":
        raise InputValueError(
            f"scenes: the benchmark reports errors in cm and needs depth in mm, got unit "
            f"{scenes.unit!r}"
        )


def iter_crops(
    scenes: SceneSource, *, scale: int, crop_size: int | None, limit: int | None = None
) -> Iterator[Crop]:
    """The evaluation crops of ``scenes`` at ``scale`` (``crop_size=None``: whole
    images cropped to a multiple of the scale), through the data pipeline."""
    _check_unit(scenes)
    dataset = GuidedDepthDataset(scenes, mode="eval", scale=scale, crop_size=crop_size)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    for index in range(count):
        sample = dataset[index]
        physical = sample.target * sample.depth_scale
        target = torch.where(sample.mask_hr, physical, torch.full_like(physical, np.nan))
        yield Crop(
            name=sample.name,
            guide=raw_guide(sample.guide[None]),
            source=(sample.source * sample.depth_scale)[None],
            mask_lr=sample.mask_lr[None],
            target=target[None],
        )


def count_crops(
    scenes: SceneSource, *, scale: int, crop_size: int | None, limit: int | None = None
) -> int:
    """How many crops :func:`iter_crops` yields (no image is decoded)."""
    dataset = GuidedDepthDataset(scenes, mode="eval", scale=scale, crop_size=crop_size)
    return len(dataset) if limit is None else min(limit, len(dataset))


# --- methods ------------------------------------------------------------------------


def checkpoint_method(name: str, path: Path, solver: str = "exact"
                      ) -> Callable[..., torch.Tensor]:
    """A trained model as benchmark method ``name``, with the baselines' signature
    ``method(guide, source, *, scale, mask_lr=None, depth0=None) -> (B, 1, H, W)``
    (raw 0-1 guide, source and result in mm), run with ``solver`` (``"exact"``: its
    training solver; ``"fast"``: RKC, see ``node_dada.upsample``). The checkpoint is
    loaded once, weights-only, so a bad or untrusted file fails here with a clear error."""
    import node_dada
    from node_dada.models.inference import cached_model

    cached_model(path)  # fail early, before any crop; upsample reuses this load

    def method(guide: torch.Tensor, source: torch.Tensor, *, scale: int,
               mask_lr: torch.Tensor | None = None, depth0: torch.Tensor | None = None,
               ) -> torch.Tensor:
        return node_dada.upsample(guide, source, scale=scale, mask_lr=mask_lr,
                                  checkpoint=str(path), solver=solver)

    method.__name__ = name
    return method


def _takes(method: Callable[..., Any], parameter: str) -> bool:
    try:
        return parameter in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


@dataclass
class MethodSpec:
    """A method of the table: its callable, fixed keyword arguments and descriptions."""

    name: str
    function: Callable[..., torch.Tensor]
    kwargs: dict[str, Any] = field(default_factory=dict)
    solver: str = ""
    scales: tuple[int, ...] = ()  # the scales it runs at; empty: every scale

    def runs_at(self, scale: int) -> bool:
        return not self.scales or scale in self.scales

    @property
    def uses_estimate(self) -> bool:
        return self.name != _ESTIMATE and _takes(self.function, "depth0")

    def params(self, scale: int) -> str:
        """The parameters this method runs with at ``scale``, as ``key=value`` text."""
        try:
            values: dict[str, Any] = default_params(self.name, scale)
        except InputValueError:
            values = {}
        values.update({k: v for k, v in self.kwargs.items() if not callable(v)})
        return " ".join(f"{key}={_short(value)}" for key, value in values.items())


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def method_specs(
    methods: Sequence[str],
    *,
    dada_iters: int = INFERENCE_PRE_ITER,
    ode_step: float = ODE_STEP_SIZE,
    ode_step_growth: float = ODE_STEP_GROWTH,
    checkpoints: Sequence[tuple[str, Path, int | None]] = (),
    model_solver: str = "exact",
) -> list[MethodSpec]:
    """Look the methods up (unknown names raise) and fix DADA's settings.

    ``dada`` runs ``dada_iters`` discrete iterations; ``dada_ode`` integrates to
    the matching horizon ``T = 0.24 * dada_iters`` with RKC steps growing from
    ``ode_step`` by the factor ``ode_step_growth``; ``checkpoints`` run with
    ``model_solver``.
    """
    specs = []
    t_end = DEFAULT_STEP * dada_iters
    for name in methods:
        spec = MethodSpec(name, get_baseline(name))
        if name == "dada":
            spec.kwargs = {"num_iter": dada_iters}
            spec.solver = (
                f"discrete, {dada_iters} iterations, step {DEFAULT_STEP}, kappa {DEFAULT_KAPPA}"
            )
        elif name == "dada_ode":
            spec.kwargs = {"t_end": t_end, "method": ODE_METHOD, "step_size": ode_step,
                           "step_growth": ode_step_growth}
            steps = (f"steps {ode_step:g} x {ode_step_growth:g}^k" if ode_step_growth > 1
                     else f"step {ode_step:g}")
            spec.solver = f"{ODE_METHOD}, {steps}, T = {t_end:g}, kappa {DEFAULT_KAPPA}"
        specs.append(spec)
    for name, path, scale in checkpoints:
        if name in BASELINES or name in methods:
            raise InputValueError(
                f"--checkpoint {name}={path}: the name {name!r} is already a method; pick another"
            )
        specs.append(MethodSpec(name, checkpoint_method(name, path, model_solver),
                                solver="trained" if model_solver == "exact"
                                else "trained, fast (rkc)",
                                scales=() if scale is None else (scale,)))
    return specs


# --- evaluation ---------------------------------------------------------------------


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
    if _takes(spec.function, "on_info"):
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
                if any(spec.uses_estimate for spec in specs) or _ESTIMATE in names:
                    bar.set_postfix_str(f"x{scale} {_ESTIMATE}")
                    estimate, estimate_s, _ = _run_method(
                        MethodSpec(_ESTIMATE, get_baseline(_ESTIMATE)), crop, scale, None
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
                    if spec.name == _ESTIMATE and estimate is not None:
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


# --- outputs ------------------------------------------------------------------------


def write_csv(rows: Sequence[BenchmarkRow], path: Path, command: str) -> None:
    """The table as CSV, its first line ``# command: <command>``."""
    with path.open("w", newline="") as handle:
        handle.write(f"# command: {command}\n")
        writer = csv.writer(handle)
        writer.writerow(BenchmarkRow.columns())
        writer.writerows(row.as_csv() for row in rows)


def write_crop_errors(errors: Sequence[CropError], path: Path, command: str) -> None:
    """Per-crop errors as CSV, its first line ``# command: <command>``."""
    with path.open("w", newline="") as handle:
        handle.write(f"# command: {command}\n")
        writer = csv.writer(handle)
        writer.writerow(["scale", "crop", "method", "mae_cm", "valid_pixels"])
        for error in errors:
            writer.writerow([error.scale, error.crop, error.method, f"{error.mae_cm:.6g}",
                             error.valid_pixels])


def crop_pivot(errors: Sequence[CropError], reference: str = "dada") -> list[str]:
    """Markdown: MAE per crop and method, and each method's change against
    ``reference`` (learning-free DADA) on that crop."""
    methods = list(dict.fromkeys(e.method for e in errors))
    others = [m for m in methods if m != reference] if reference in methods else []
    keys = list(dict.fromkeys((e.scale, e.crop) for e in errors))
    mae = {(e.scale, e.crop, e.method): e.mae_cm for e in errors}
    header = "| scale | image | " + " | ".join(methods)
    header += "".join(f" | {m} vs {reference}" for m in others) + " |"
    lines = [header, "|---:|---|" + "---:|" * (len(methods) + len(others))]
    for scale, crop in keys:
        cells = [f"{mae[scale, crop, m]:.4f}" if (scale, crop, m) in mae else "-"
                 for m in methods]
        for m in others:
            base, value = mae.get((scale, crop, reference)), mae.get((scale, crop, m))
            cells.append("-" if base is None or value is None
                         else f"{100.0 * (value - base) / base:+.1f} %")
        lines.append(f"| x{scale} | {crop} | " + " | ".join(cells) + " |")
    return lines


def mae_pivot(rows: Sequence[BenchmarkRow]) -> list[str]:
    """Markdown table: one line per method, MAE (cm) per scale, best per scale in bold."""
    scales = sorted({row.scale for row in rows})
    methods = list(dict.fromkeys(row.method for row in rows))
    value = {(row.method, row.scale): row.mae_cm for row in rows}
    best = {s: min(v for (m, sc), v in value.items() if sc == s) for s in scales}
    lines = [
        "| method | " + " | ".join(f"x{s}" for s in scales) + " |",
        "|---|" + "---:|" * len(scales),
    ]
    for method in methods:
        cells = []
        for scale in scales:
            mae = value.get((method, scale))
            if mae is None:
                cells.append("")
            elif mae == best[scale]:
                cells.append(f"**{mae:.2f}**")
            else:
                cells.append(f"{mae:.2f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def write_markdown(
    rows: Sequence[BenchmarkRow],
    path: Path,
    *,
    command: str,
    dataset: str,
    scene_names: Sequence[str],
    figures: Sequence[str],
    load: tuple[float, float] | None = None,
    per_crop: Sequence[CropError] = (),
) -> str:
    """The table as Markdown with the command, the protocol and the figures
    (and the per-crop errors, when given).

    ``load``: the machine's 1-minute load average at the start and end of the
    run, reported next to the timings (which other work on the machine inflates).
    """
    first = rows[0]
    size = first.crop_size
    crops = "whole images" if size == "full" else f"{size} x {size}"
    aggregation = (
        "exact per-pixel aggregates over the valid pixels of all crops"
        if first.aggregation == "pixel"
        else "means of the per-crop means (the reference protocol)"
    )
    lines = [
        f"# Benchmark: {DATASET_TITLES.get(dataset, dataset)}",
        "",
        f"Produced by `{command}`; regenerate it with that command from the repository root.",
        "",
        f"Split `{first.split}`: {', '.join(scene_names)}. Deterministic, non-overlapping "
        f"{crops} grid crops from the top-left (the data pipeline's evaluation mode); the "
        "low-resolution source is the NaN-aware block mean of the ground truth. Errors in cm are "
        f"{aggregation}. Time per megapixel (of output) is wall time on "
        f"{torch.get_num_threads()} CPU thread(s), and includes the bicubic estimate for the "
        "methods that refine it (every method but nearest, bilinear and bicubic). The "
        "OpenCV filters use `node_dada.baselines.default_params` (the values tuned on the "
        "validation split where available, see results/tuning/).",
    ]
    if load is not None:
        lines += [
            "",
            f"The machine's 1-minute load average was {load[0]:.1f} at the start of the run and "
            f"{load[1]:.1f} at its end, on {os.cpu_count()} logical CPU(s): above that count "
            "other work shared the cores and the times are inflated accordingly.",
        ]
    lines += [
        "",
        "## MAE (cm), best per scale in bold",
        "",
        *mae_pivot(rows),
        "",
        *_below_bicubic(rows),
        "## All metrics",
        "",
        "| scale | method | MAE (cm) | MSE (cm^2) | RMSE (cm) | s / MP | NFE | crops | valid px "
        "| parameters / solver |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        detail = row.solver or row.params or "-"
        lines.append(
            f"| x{row.scale} | {row.method} | {row.mae_cm:.2f} | {row.mse_cm2:.2f} | "
            f"{row.rmse_cm:.2f} | {row.s_per_mpix:.2f} | {row.nfe or '-'} | {row.crops} | "
            f"{row.valid_pixels} | {detail} |"
        )
    if per_crop:
        what = "image" if size == "full" else "crop"
        lines += ["", f"## MAE (cm) per {what}", "",
                  f"Change against learning-free DADA (`dada`) on the same {what}; negative "
                  f"is better. All values: `{path.stem}_per_{what}.csv`.", "",
                  *crop_pivot(per_crop)]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{name}]({name})" for name in figures]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def _below_bicubic(rows: Sequence[BenchmarkRow]) -> list[str]:
    """One sentence per learning-free DADA variant: the scales where its MAE is
    below bicubic's."""
    mae = {(row.method, row.scale): row.mae_cm for row in rows}
    scales = sorted({row.scale for row in rows if (_ESTIMATE, row.scale) in mae})
    lines = []
    for method in ("dada", "dada_ode"):
        compared = [s for s in scales if (method, s) in mae]
        if not compared:
            continue
        better = [s for s in compared if mae[(method, s)] < mae[(_ESTIMATE, s)]]
        verdict = "every scale" if better == compared else (
            "x" + ", x".join(map(str, better)) if better else "no scale"
        )
        ratios = ", ".join(f"x{s}: {mae[(method, s)] / mae[(_ESTIMATE, s)]:.2f}" for s in compared)
        lines.append(
            f"`{method}` MAE is below bicubic's at {verdict} (ratio to bicubic {ratios})."
        )
    return [*lines, ""] if lines else []


def save_figure(crops: Sequence[FigureCrop], path: Path, *, title: str) -> None:
    """Guide, ground truth and every method's prediction for each crop (one row
    per crop, one colour scale per row: the truth's 1st-99th percentiles)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(crops[0].predictions)
    columns = 2 + len(methods)
    fig, axes = plt.subplots(
        len(crops), columns, figsize=(1.8 * columns + 0.6, 2.3 * len(crops) + 0.4),
        squeeze=False, layout="constrained",
    )
    for axes_row, crop in zip(axes, crops, strict=True):
        finite = crop.target[np.isfinite(crop.target)]
        vmin, vmax = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
        style = {"cmap": "viridis_r", "vmin": vmin, "vmax": vmax}
        axes_row[0].imshow(np.clip(crop.guide, 0, 1).squeeze())
        axes_row[0].set_title(textwrap.fill(crop.name, 26), fontsize=7)
        axes_row[1].imshow(np.ma.masked_invalid(crop.target), **style)
        axes_row[1].set_title("ground truth\n(white = unknown)", fontsize=7)
        shown = None
        for axis, method in zip(axes_row[2:], methods, strict=True):
            shown = axis.imshow(crop.predictions[method], **style)
            errors = crop.errors.get(method)
            label = f"{method}\nMAE {errors.mae_cm:.2f} cm" if errors else method
            axis.set_title(label, fontsize=7)
        for axis in axes_row:
            axis.axis("off")
        if shown is not None:
            colourbar = fig.colorbar(shown, ax=list(axes_row), shrink=0.9, pad=0.005)
            colourbar.set_label("depth (mm)", fontsize=7)
            colourbar.ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    from node_dada.commands.benchmark import main

    raise SystemExit(main())
