"""RGB-D-D (He et al., CVPR 2021) as guided depth super-resolution data, for evaluation.

Each pair is an RGB image and the high-resolution depth of the Lucid Helios
time-of-flight camera, both 512 x 384: ``<id>_RGB.jpg`` (8-bit colour) and
``<id>_HR_gt.png`` (16-bit, millimetres, 0 = no measurement). The test split
holds 405 pairs (297 portraits, 68 plants, 40 models).

Layouts (``root``)::

    flat, as DCTNet redistributes the test set (RawDatasets/RGBDD) and as the shared
    data folder holds it (SOURCES.md there, entry "rgbdd"):
    <root>/test/RGB/<id>_RGB.jpg
    <root>/test/Depth/<id>_HR_gt.png
    # or root = that test folder itself: <root>/RGB/..., <root>/Depth/...

    the official release, as the public loaders read it:
    <root>/{models,plants,portraits}/<category>_{train,test}/<id>/<id>_RGB.jpg
                                                                   <id>_HR_gt.png
                                                                   <id>_LR_fill_depth.png

The official layout is the one the RGB-D-D loaders of SUFT (ShiWuxuan/MM2022-SUFT),
SGNet (yanzq95/SGNet) and DORNet (yanzq95/DORNet) read, each in
``data/rgbdd_dataloader.py``; the release's own description of its layout is an
image in lingzhi96/RGB-D-D-Dataset and was not checked against the files. The
``lights`` category of the release (the harder test scenes) is not part of the
405-pair test split and is not read. ``<id>_LR_fill_depth.png`` (the phone's
192 x 144 time-of-flight depth, ratio 8/3 to the guide) is not read either: a
:class:`~node_dada.data.pipeline.Scene` holds the ground truth and the pipeline
degrades it; ``benchmarks/sensors.py --part real`` evaluates the real low-resolution
depth.

Depth comes back in mm (NaN where the PNG holds 0), the guide as RGB in 0-1. The
scenes are for evaluation: the methods this set is known for were trained on
other data, and the shared copy is never used for training or tuning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from node_dada.data.io import guide_to_float, read_image, require_dir
from node_dada.data.middlebury import MIDDLEBURY_DEPTH_SCALE_MM
from node_dada.data.pipeline import Scene
from node_dada.errors import DataError, InputValueError

__all__ = [
    "RGBDD_CATEGORIES",
    "RGBDD_DEPTH_SCALE_MM",
    "RGBDD_DOWNLOAD",
    "RGBDD_TEST_PAIRS",
    "RGBDDScenes",
]

#: Depth divisor, mm: the Middlebury scale, so that learning-free DADA and the shipped
#: models (trained at that scale) see RGB-D-D depth in the range they were made for.
RGBDD_DEPTH_SCALE_MM = MIDDLEBURY_DEPTH_SCALE_MM
#: Categories of the official release that make up the train and test splits.
RGBDD_CATEGORIES = ("models", "plants", "portraits")
#: Pairs of the test split (297 portraits, 68 plants, 40 models: the release's README).
RGBDD_TEST_PAIRS = 405
RGBDD_DOWNLOAD = (
    "https://github.com/lingzhi96/RGB-D-D-Dataset (the release, after its agreement); the "
    "test split alone is in https://github.com/Zhaozixiang1228/GDSR-DCTNet, "
    "RawDatasets/RGBDD"
)
_GUIDE_SUFFIX = "_RGB.jpg"
_DEPTH_SUFFIX = "_HR_gt.png"
_LAYOUT = (
    "  flat: <root>/test/RGB/<id>_RGB.jpg and <root>/test/Depth/<id>_HR_gt.png\n"
    "        (or root = the test folder: <root>/RGB/..., <root>/Depth/...)\n"
    "  official release: <root>/{models,plants,portraits}/<category>_test/<id>/"
    "<id>_RGB.jpg, <id>_HR_gt.png"
)

Split = Literal["train", "test"]


@dataclass(frozen=True)
class _Pair:
    name: str
    guide: Path
    depth: Path


def _listing(folder: Path) -> str:
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    return shown or "nothing"


def _flat_pairs(folder: Path, split: str) -> list[_Pair]:
    """The pairs of a flat ``RGB/`` + ``Depth/`` folder, matched by id."""
    guide_dir, depth_dir = folder / "RGB", folder / "Depth"
    for sub in (guide_dir, depth_dir):
        if not sub.is_dir():
            raise DataError(
                f"RGB-D-D: expected the folders RGB/ and Depth/ in {folder}, found no {sub.name}/ "
                f"(found {_listing(folder)}).\nExpected layout:\n{_LAYOUT}\n"
                f"Download: {RGBDD_DOWNLOAD}"
            )
    depths = {p.name.removesuffix(_DEPTH_SUFFIX): p for p in depth_dir.glob(f"*{_DEPTH_SUFFIX}")
              if not p.name.startswith(".")}
    guides = {p.name.removesuffix(_GUIDE_SUFFIX): p for p in guide_dir.glob(f"*{_GUIDE_SUFFIX}")
              if not p.name.startswith(".")}
    if not depths:
        raise DataError(
            f"RGB-D-D: expected <id>{_DEPTH_SUFFIX} files in {depth_dir}, found "
            f"{_listing(depth_dir)}.\nExpected layout:\n{_LAYOUT}\nDownload: {RGBDD_DOWNLOAD}"
        )
    without_guide = sorted(set(depths) - set(guides))
    if without_guide:
        raise DataError(
            f"RGB-D-D: {guide_dir} lacks the guide of {len(without_guide)} depth map(s): "
            f"{', '.join(i + _GUIDE_SUFFIX for i in without_guide[:5])}; copy the missing "
            "images again or remove their depth maps"
        )
    without_depth = sorted(set(guides) - set(depths))
    if without_depth:
        raise DataError(
            f"RGB-D-D: {depth_dir} lacks the depth of {len(without_depth)} image(s): "
            f"{', '.join(i + _DEPTH_SUFFIX for i in without_depth[:5])}; copy the missing "
            "depth maps again or remove their images"
        )
    return [_Pair(f"rgbdd/{split}/{key}", guides[key], depths[key]) for key in sorted(depths)]


def _official_pairs(root: Path, split: str) -> list[_Pair]:
    """The pairs of the official release: one folder per pair, per category."""
    pairs: list[_Pair] = []
    found = []
    for category in RGBDD_CATEGORIES:
        parent = root / category / f"{category}_{split}"
        if not parent.is_dir():
            continue
        found.append(category)
        for folder in sorted(p for p in parent.iterdir() if p.is_dir()
                             and not p.name.startswith((".", "_"))):
            guide = folder / f"{folder.name}{_GUIDE_SUFFIX}"
            depth = folder / f"{folder.name}{_DEPTH_SUFFIX}"
            missing = [p.name for p in (guide, depth) if not p.is_file()]
            if missing:
                raise DataError(
                    f"RGB-D-D: the pair folder {folder} lacks {', '.join(missing)} (found "
                    f"{_listing(folder)}); each <id> folder holds <id>{_GUIDE_SUFFIX} and "
                    f"<id>{_DEPTH_SUFFIX}: copy the folder again.\nDownload: {RGBDD_DOWNLOAD}"
                )
            pairs.append(_Pair(f"rgbdd/{split}/{category}/{folder.name}", guide, depth))
    if not found:
        raise DataError(
            f"RGB-D-D: {root} holds category folders but none has a {split} split "
            f"(expected {', '.join(f'{c}/{c}_{split}' for c in RGBDD_CATEGORIES)}).\n"
            f"Expected layout:\n{_LAYOUT}\nDownload: {RGBDD_DOWNLOAD}"
        )
    if not pairs:
        raise DataError(
            f"RGB-D-D: found no pair folder under "
            f"{', '.join(f'{root}/{c}/{c}_{split}' for c in found)}.\n"
            f"Expected layout:\n{_LAYOUT}\nDownload: {RGBDD_DOWNLOAD}"
        )
    return pairs


class RGBDDScenes:
    """The RGB-D-D pairs of one split, in mm (a :class:`~node_dada.data.pipeline.SceneSource`).

    Args:
        root: the flat folder (holding ``test/`` or itself holding ``RGB/`` and
            ``Depth/``) or the official release (holding ``models/``, ``plants/``,
            ``portraits/``); see the module docstring.
        split: ``"test"`` (the 405 pairs of the published evaluations) or
            ``"train"`` (the official release's train split, or ``<root>/train`` in
            the flat layout).
        depth_scale: divisor of the depth (default 1122.7, the Middlebury scale in mm).

    Example::

        scenes = RGBDDScenes("rgbdd")  # ./rgbdd, else under the data root
        scene = scenes.load(0)  # guide (384, 512, 3) in 0-1, depth (384, 512) mm
    """

    unit = "mm"

    def __init__(
        self,
        root: str | Path,
        *,
        split: Split = "test",
        depth_scale: float = RGBDD_DEPTH_SCALE_MM,
    ) -> None:
        if split not in ("train", "test"):
            raise InputValueError(f"split: expected 'train' or 'test', got {split!r}")
        root = require_dir(root, what="RGB-D-D", layout=_LAYOUT, download=RGBDD_DOWNLOAD)
        self.root = root
        self.split = split
        self.depth_scale = float(depth_scale)
        if (root / "RGB").is_dir() or (root / "Depth").is_dir():
            self.layout = "flat"
            self._pairs = _flat_pairs(root, split)
        elif (root / split).is_dir():
            self.layout = "flat"
            self._pairs = _flat_pairs(root / split, split)
        elif any((root / category).is_dir() for category in RGBDD_CATEGORIES):
            self.layout = "official"
            self._pairs = _official_pairs(root, split)
        else:
            raise DataError(
                f"RGB-D-D: {root} holds neither {split}/RGB and {split}/Depth nor the "
                f"category folders {', '.join(RGBDD_CATEGORIES)} (found {_listing(root)}).\n"
                f"Expected layout:\n{_LAYOUT}\nDownload: {RGBDD_DOWNLOAD}"
            )
        self._shapes: dict[int, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._pairs)

    def scene_name(self, index: int) -> str:
        return self._pairs[index].name

    def shape(self, index: int) -> tuple[int, int]:
        if index not in self._shapes:
            path = self._pairs[index].guide
            try:
                with Image.open(path) as image:
                    width, height = image.size
            except (OSError, SyntaxError) as error:
                raise DataError(
                    f"RGB-D-D: expected a JPEG image at {path}, could not read it ({error}); "
                    "copy the file again"
                ) from None
            self._shapes[index] = (height, width)
        return self._shapes[index]

    def load(self, index: int) -> Scene:
        pair = self._pairs[index]
        what = f"RGB-D-D {pair.name}"
        guide = read_image(pair.guide, what=f"{what} guide")  # RGB order (read_image)
        if guide.ndim != 3 or guide.shape[2] != 3:
            raise DataError(
                f"{what}: expected a colour image (H, W, 3) in {pair.guide}, got shape "
                f"{guide.shape}; copy the file again"
            )
        raw = read_image(pair.depth, what=f"{what} depth")
        if raw.ndim != 2 or raw.dtype.kind not in "ui":
            raise DataError(
                f"{what}: expected a single-channel 16-bit depth PNG (mm) in {pair.depth}, got "
                f"{raw.dtype} of shape {raw.shape}; copy the file again"
            )
        if raw.shape != guide.shape[:2]:
            raise DataError(
                f"{what}: guide size {guide.shape[:2]} differs from depth size {raw.shape}; "
                f"{pair.guide.name} and {pair.depth.name} do not belong together, copy them again"
            )
        depth = np.where(raw > 0, raw.astype(np.float32), np.float32(np.nan))
        return Scene(pair.name, guide_to_float(guide, what=f"{what} guide"), depth=depth)
