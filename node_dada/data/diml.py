"""DIML/CVL indoor RGB-D as guided depth super-resolution data (docs/design.md section 6).

Layout read here (written by :func:`convert_diml_raw` from the raw download)::

    <root>/npy/images_{split}_HR.npy   uint8  (N, 3, H, W)
    <root>/npy/depth_{split}_HR.npy    uint16 (N, H, W), millimetres, 0 = invalid

Frames are resized to 756 x 1344 (the reference size) when stored otherwise.

Raw layout (the download) that :func:`convert_diml_raw` reads::

    <raw>/{train,test}/HR/<scene>/color/<stem>_c.png
    <raw>/{train,test}/HR/<scene>/depth_filled/<stem>_depth_filled.png

The last 10 % of each train scene (in file-name order) become the val split.
``python -m node_dada.data.diml_convert <raw> [--out DIR]`` runs it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from node_dada.data.io import read_image, read_npy, require_dir
from node_dada.data.pipeline import Scene
from node_dada.errors import DataError, InputValueError

__all__ = [
    "DIML_BASE_SIZE",
    "DIML_DEPTH_SCALE_MM",
    "DIML_DOWNLOAD",
    "DIML_VAL_FRACTION",
    "DIMLScenes",
    "convert_diml_raw",
]

#: Depth divisor of the DIML benchmark, mm (the reference's depth standard deviation).
DIML_DEPTH_SCALE_MM = 1154.29
#: (H, W) every DIML frame is brought to (the reference size of the HR set).
DIML_BASE_SIZE = (756, 1344)
#: Fraction at the end of each raw train scene that forms the val split.
DIML_VAL_FRACTION = 0.1
DIML_DOWNLOAD = "https://dimlrgbd.github.io/ (indoor data, HR: train/HR and test/HR)"
_LAYOUT = (
    "  <root>/npy/images_{split}_HR.npy uint8 (N, 3, H, W)\n"
    "  <root>/npy/depth_{split}_HR.npy uint16 (N, H, W), mm\n"
    "  (make them from the raw download with: python -m node_dada.data.diml_convert <raw>)"
)
_RAW_LAYOUT = (
    "  <raw>/{train,test}/HR/<scene>/color/<stem>_c.png\n"
    "  <raw>/{train,test}/HR/<scene>/depth_filled/<stem>_depth_filled.png"
)
_log = logging.getLogger(__name__)


def _resize_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    # Bilinear as the reference; NaN propagates, so no value is blended with a hole.
    return cv2.resize(depth, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


class DIMLScenes:
    """DIML frames of one split from the npy files (mm).

    Args:
        root: folder that holds ``npy/`` (or the ``npy`` folder itself).
        split: ``"train"``, ``"val"`` or ``"test"``.
        resize: bring frames to 756 x 1344 when they are stored at another size.
    """

    unit = "mm"

    def __init__(
        self,
        root: str | Path,
        *,
        split: Literal["train", "val", "test"] = "train",
        resolution: str = "HR",
        resize: bool = True,
        depth_scale: float = DIML_DEPTH_SCALE_MM,
    ) -> None:
        if split not in ("train", "val", "test"):
            raise InputValueError(f"split: expected train, val or test, got {split!r}")
        root = require_dir(root, what="DIML", layout=_LAYOUT, download=DIML_DOWNLOAD)
        folder = root if root.name == "npy" else root / "npy"
        image_path = folder / f"images_{split}_{resolution}.npy"
        depth_path = folder / f"depth_{split}_{resolution}.npy"
        for path in (image_path, depth_path):
            if not path.is_file():
                raise DataError(
                    f"DIML: expected {path}, found nothing.\nExpected layout:\n{_LAYOUT}\n"
                    f"Download: {DIML_DOWNLOAD}"
                )
        self.images = read_npy(image_path, mmap=True, what="DIML images")
        self.depths = read_npy(depth_path, mmap=True, what="DIML depth")
        if self.images.ndim != 4 or self.images.shape[1] != 3 or self.images.dtype != np.uint8:
            raise DataError(
                f"DIML: {image_path}: expected uint8 (N, 3, H, W), got {self.images.dtype} "
                f"{self.images.shape}"
            )
        expected = (self.images.shape[0], *self.images.shape[2:])
        if self.depths.shape != expected or self.depths.dtype.kind not in "uif":
            raise DataError(
                f"DIML: {depth_path}: expected numeric (N, H, W) = {expected} (the images' "
                f"frames), got {self.depths.dtype} {self.depths.shape}"
            )
        self.split = split
        self.resize = resize
        self.depth_scale = float(depth_scale)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def scene_name(self, index: int) -> str:
        return f"diml/{self.split}/{index:05d}"

    def shape(self, index: int) -> tuple[int, int]:
        return DIML_BASE_SIZE if self.resize else tuple(self.images.shape[2:])

    def load(self, index: int) -> Scene:
        guide = np.ascontiguousarray(self.images[index].transpose(1, 2, 0)).astype(np.float32)
        guide /= np.float32(255.0)
        raw = np.asarray(self.depths[index], dtype=np.float32)
        depth = np.where(np.isfinite(raw) & (raw > 0), raw, np.nan).astype(np.float32)
        if self.resize and depth.shape != DIML_BASE_SIZE:
            size = (DIML_BASE_SIZE[1], DIML_BASE_SIZE[0])
            guide = np.clip(cv2.resize(guide, size, interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
            depth = _resize_depth(depth, DIML_BASE_SIZE)
        return Scene(self.scene_name(index), guide, depth=depth)


def _raw_pairs(raw_root: Path, split: str, resolution: str, val_fraction: float) -> list[
    tuple[Path, Path]
]:
    source_split = "train" if split == "val" else split
    base = raw_root / source_split / resolution
    if not base.is_dir():
        raise DataError(
            f"DIML raw: expected the folder {base}, found nothing.\nExpected layout:\n"
            f"{_RAW_LAYOUT}\nDownload: {DIML_DOWNLOAD}"
        )
    pairs = []
    scenes = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    for scene in scenes:
        colors = sorted(
            p for p in (scene / "color").glob("*.png") if not p.name.startswith(".")
        )
        boundary = int(len(colors) * (1.0 - val_fraction))
        if split == "train":
            colors = colors[:boundary]
        elif split == "val":
            colors = colors[boundary:]
        for color in colors:
            stem = color.stem.removesuffix("_c")
            depth = scene / "depth_filled" / f"{stem}_depth_filled.png"
            if not depth.is_file():
                raise DataError(
                    f"DIML raw: {color} has no depth map {depth}.\nExpected layout:\n"
                    f"{_RAW_LAYOUT}"
                )
            pairs.append((color, depth))
    if not pairs:
        raise DataError(
            f"DIML raw: found no color/*.png under {base}.\nExpected layout:\n{_RAW_LAYOUT}\n"
            f"Download: {DIML_DOWNLOAD}"
        )
    return pairs


def convert_diml_raw(
    raw_root: str | Path,
    out_root: str | Path | None = None,
    *,
    resolution: str = "HR",
    val_fraction: float = DIML_VAL_FRACTION,
    splits: tuple[str, ...] = ("train", "val", "test"),
) -> dict[str, int]:
    """Convert the raw DIML download to the npy layout :class:`DIMLScenes` reads.

    Files are streamed into memory-mapped arrays (no split is held in memory)
    and renamed into place only when complete.

    Args:
        raw_root: folder with ``train/`` and ``test/`` (see the module docstring).
        out_root: where ``npy/`` is written; default ``raw_root``.
        val_fraction: last fraction of each train scene that becomes val.

    Returns:
        Number of frames written per split.
    """
    raw_root = require_dir(raw_root, what="DIML raw", layout=_RAW_LAYOUT, download=DIML_DOWNLOAD)
    if not 0.0 <= val_fraction < 1.0:
        raise InputValueError(f"val_fraction: expected a value in [0, 1), got {val_fraction}")
    out_dir = Path(out_root if out_root is not None else raw_root).expanduser() / "npy"
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in splits:
        pairs = _raw_pairs(raw_root, split, resolution, val_fraction)
        first = read_image(pairs[0][0], what="DIML color")
        if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
            raise DataError(f"DIML raw: {pairs[0][0]}: expected an 8-bit RGB PNG, got "
                            f"{first.dtype} {first.shape}")
        height, width = first.shape[:2]
        targets = {
            name: out_dir / f"{name}_{split}_{resolution}.npy" for name in ("images", "depth")
        }
        partial = {name: path.with_suffix(".npy.partial") for name, path in targets.items()}
        images = np.lib.format.open_memmap(
            partial["images"], mode="w+", dtype=np.uint8, shape=(len(pairs), 3, height, width)
        )
        depths = np.lib.format.open_memmap(
            partial["depth"], mode="w+", dtype=np.uint16, shape=(len(pairs), height, width)
        )
        try:
            for index, (color_path, depth_path) in enumerate(pairs):
                color = read_image(color_path, what="DIML color")
                depth = read_image(depth_path, what="DIML depth")
                if color.shape != (height, width, 3) or color.dtype != np.uint8:
                    raise DataError(
                        f"DIML raw: {color_path}: expected uint8 {(height, width, 3)} like "
                        f"{pairs[0][0].name}, got {color.dtype} {color.shape}"
                    )
                if depth.shape != (height, width) or depth.dtype not in (np.uint8, np.uint16):
                    raise DataError(
                        f"DIML raw: {depth_path}: expected a 16-bit single-channel PNG of size "
                        f"{(height, width)}, got {depth.dtype} {depth.shape}"
                    )
                images[index] = color.transpose(2, 0, 1)
                depths[index] = depth
                if (index + 1) % 500 == 0:
                    _log.info("DIML %s: %d / %d frames", split, index + 1, len(pairs))
            images.flush()
            depths.flush()
        except BaseException:
            del images, depths
            for path in partial.values():
                path.unlink(missing_ok=True)
            raise
        del images, depths
        for name in targets:
            os.replace(partial[name], targets[name])
        _log.info("DIML %s: wrote %d frames to %s", split, len(pairs), out_dir)
        counts[split] = len(pairs)
    return counts
