"""The evaluation crops: the scenes of a dataset split and their deterministic crops
in the form every method takes.

Datasets: ``middlebury`` (``root`` folders), ``motorcycle`` (embedded),
``nyuv2`` (``root`` the labeled ``.mat`` or its folder; the split shipped with the
package unless ``split_file`` names another) and ``rgbdd`` (``root`` one RGB-D-D
folder, e.g. ``rgbdd`` under the data root; evaluation only, under this project's
protocol: block means of the ground truth as the source, errors pooled over the
valid pixels. The published protocol of that set, bicubic-resized inputs and RMSE
averaged per image, is ``benchmarks/rgbdd_published.py``).

For each scale a split goes through the data pipeline's evaluation mode
(:class:`~node_dada.data.GuidedDepthDataset` with ``mode="eval"``: non-overlapping
``crop_size`` grid crops from the top-left, no augmentation, the NaN-aware block
mean as degradation).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from node_dada.data import GuidedDepthDataset, MiddleburyScenes, MotorcycleScenes, NYUv2Scenes
from node_dada.data.nyuv2 import NYUV2_FILE_NAME
from node_dada.data.pipeline import Sample, SceneSource
from node_dada.data.rgbdd import RGBDDScenes
from node_dada.data.root import describe_search, resolve_data_path
from node_dada.diffusion import normalize_guide
from node_dada.errors import DataError, InputValueError

__all__ = [
    "DATASETS",
    "DEFAULT_CROP_SIZE",
    "DEFAULT_MIDDLEBURY_ROOT",
    "DEFAULT_SCALES",
    "Crop",
    "count_crops",
    "eval_samples",
    "iter_crops",
    "load_scenes",
    "raw_guide",
]

_log = logging.getLogger(__name__)

#: The third-size Middlebury 2005/2006 scenes, under the data root (node_dada.data.root;
#: ``node-dada data download middlebury2005 --root data`` puts them there).
DEFAULT_MIDDLEBURY_ROOT = Path("middlebury0506") / "ThirdSize"
DATASETS = ("middlebury", "motorcycle", "nyuv2", "rgbdd")
DEFAULT_SCALES = (4, 8, 16, 32)
DEFAULT_CROP_SIZE = 256


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
                split: str = "test", split_file: Path | None = None,
                views: Literal["both", "left"] = "both") -> SceneSource:
    """The scenes of ``split``: Middlebury scenes with metric depth (those without
    ``dmin.txt`` are left out, and logged) from one folder or several read together
    (e.g. the 2005/2006 ThirdSize folder and MiddEval3), the embedded Motorcycle
    scene, NYU Depth v2 labeled frames (``root``: ``nyu_depth_v2_labeled.mat`` or
    its folder; ``split_file``: the split JSON, by default the community split shipped
    with the package), or RGB-D-D pairs (``root``: one folder, see
    :class:`~node_dada.data.rgbdd.RGBDDScenes`). ``split_file`` is for ``nyuv2`` only;
    ``views`` (``"left"``: only each Middlebury scene's left view) for ``middlebury``."""
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
        scenes = MiddleburyScenes(roots, split=split, missing_dmin="skip", views=views)
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


def eval_samples(
    scenes: SceneSource, *, scale: int, crop_size: int | None,
    indices: Iterable[int] | None = None,
) -> Iterator[Sample]:
    """The data pipeline's evaluation samples of ``scenes`` at ``scale``
    (``crop_size=None``: whole images cropped to a multiple of the scale), every one
    of the grid in order or those at ``indices`` (0-based, below :func:`count_crops`).

    These are the pipeline's own samples (normalised guide, depth divided by
    ``depth_scale``, the masked bicubic ``depth0``), which :func:`iter_crops` turns
    into :class:`Crop`; a solver study that works in the pipeline's units takes them
    as they are.
    """
    dataset = GuidedDepthDataset(scenes, mode="eval", scale=scale, crop_size=crop_size)
    for index in range(len(dataset)) if indices is None else indices:
        yield dataset[index]


def iter_crops(
    scenes: SceneSource, *, scale: int, crop_size: int | None, limit: int | None = None
) -> Iterator[Crop]:
    """The evaluation crops of ``scenes`` at ``scale`` (``crop_size=None``: whole
    images cropped to a multiple of the scale), through the data pipeline."""
    _check_unit(scenes)
    count = count_crops(scenes, scale=scale, crop_size=crop_size, limit=limit)
    for sample in eval_samples(scenes, scale=scale, crop_size=crop_size, indices=range(count)):
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
