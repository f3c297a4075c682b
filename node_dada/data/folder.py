"""Users' own guide/depth pairs (docs/design.md sections 6 and 8).

Default layout: ``<root>/guide/<name>.<ext>`` and ``<root>/depth/<name>.<ext>``,
paired by name. Folder names and name suffixes are options, so sensor layouts
such as ``color/00000.jpg`` + ``depth/00000.png`` or ``X_color.png`` +
``X_depth.png`` in one folder work too; explicit pairs can be given instead.

Depth files: PNG (16-bit by default, in mm), PFM, TIFF, NPY. Raw values become
millimetres by ``depth_encoding`` and ``depth_unit_mm``; ``invalid_value`` (0 by
default), NaN and inf mark holes. A depth map smaller than its guide is a real
low-resolution measurement: it is the ``source`` (predict only, no ground truth).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from node_dada.data.io import IMAGE_SUFFIXES, guide_to_float, read_image, read_npy, read_pfm
from node_dada.data.middlebury import MIDDLEBURY_DEPTH_SCALE_MM
from node_dada.data.nyuv2 import kinect_raw_to_mm
from node_dada.data.pipeline import Scene
from node_dada.errors import DataError, InputValueError

__all__ = ["DepthEncoding", "FolderScenes", "decode_depth"]

DepthEncoding = Literal["linear", "kinect_raw", "sun_rgbd"]
_ENCODINGS = ("linear", "kinect_raw", "sun_rgbd")


def decode_depth(
    raw: np.ndarray,
    *,
    depth_unit_mm: float = 1.0,
    depth_encoding: DepthEncoding = "linear",
    invalid_value: float | None = 0.0,
    swap_bytes: bool = False,
) -> np.ndarray:
    """Raw depth file values -> (H, W) float32 millimetres, NaN = invalid.

    Args:
        raw: (H, W) array as read from the file.
        depth_unit_mm: millimetres per raw unit for ``"linear"`` (1 for mm PNGs,
            1000 for metres, 0.2 for TUM's 1/5000 m).
        depth_encoding: ``"linear"``; ``"kinect_raw"`` (NYU raw Kinect values,
            ``m = 351.3 / (1092.5 - raw)``, 2047 = invalid); ``"sun_rgbd"``
            (SUN RGB-D PNGs: mm with the 16 bits rotated right by 3).
        invalid_value: raw value that marks a hole (``None``: only NaN/inf).
        swap_bytes: swap the bytes of 16-bit values first (files written
            little-endian where the format says big-endian, e.g. NYU's raw .pgm).
    """
    if raw.ndim != 2:
        raise DataError(f"depth: expected a single-channel depth map, got shape {raw.shape}")
    if depth_encoding not in _ENCODINGS:
        raise InputValueError(f"depth_encoding: expected one of {_ENCODINGS}, got "
                              f"{depth_encoding!r}")
    if swap_bytes:
        if raw.dtype.itemsize != 2:
            raise InputValueError(f"swap_bytes: needs 16-bit depth, got dtype {raw.dtype}")
        raw = raw.byteswap()
    if depth_encoding == "kinect_raw":
        return kinect_raw_to_mm(raw)
    if depth_encoding == "sun_rgbd":
        if raw.dtype != np.uint16:
            raise DataError(f"depth: sun_rgbd encoding expects uint16 PNGs, got {raw.dtype}")
        raw = ((raw >> 3) | (raw << 13)).astype(np.uint16)
    values = raw.astype(np.float64)
    invalid = ~np.isfinite(values)
    if invalid_value is not None:
        invalid |= values == invalid_value
    depth = np.where(invalid, np.nan, values * depth_unit_mm)
    return depth.astype(np.float32)


def _listing(folder: Path, suffix: str) -> dict[str, Path]:
    files = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.name.startswith("."):
            continue
        if suffix and not path.stem.endswith(suffix):
            continue
        files[path.stem.removesuffix(suffix) if suffix else path.stem] = path
    return files


def _size(path: Path) -> tuple[int, int]:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return tuple(read_npy(path, mmap=True).shape[:2])
    if suffix == ".pfm":
        return read_pfm(path).shape[:2]
    try:
        with Image.open(path) as image:
            return image.size[1], image.size[0]
    except (OSError, SyntaxError):
        return read_image(path).shape[:2]


class FolderScenes:
    """Guide/depth pairs from a folder (or an explicit list of pairs).

    Args:
        root: the folder; ignored when ``pairs`` is given.
        guide_dir, depth_dir: sub-folders of ``root`` holding guides and depth maps
            (``"."`` for ``root`` itself).
        guide_suffix, depth_suffix: name endings stripped before pairing, e.g.
            ``"_color"`` and ``"_depth"`` for ``X_color.png`` + ``X_depth.png``.
        pairs: explicit ``(guide_path, depth_path)`` pairs instead of a folder.
        depth_unit_mm, depth_encoding, invalid_value, swap_bytes: see :func:`decode_depth`.
        depth_scale: divisor of the depth in mm (default 1122.7, the Middlebury scale).
    """

    unit = "mm"

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        guide_dir: str = "guide",
        depth_dir: str = "depth",
        guide_suffix: str = "",
        depth_suffix: str = "",
        pairs: Sequence[tuple[str | Path, str | Path]] | None = None,
        depth_unit_mm: float = 1.0,
        depth_encoding: DepthEncoding = "linear",
        invalid_value: float | None = 0.0,
        swap_bytes: bool = False,
        depth_scale: float = MIDDLEBURY_DEPTH_SCALE_MM,
    ) -> None:
        if depth_encoding not in _ENCODINGS:
            raise InputValueError(f"depth_encoding: expected one of {_ENCODINGS}, got "
                                  f"{depth_encoding!r}")
        if not depth_unit_mm > 0:
            raise InputValueError(f"depth_unit_mm: expected a positive number, got "
                                  f"{depth_unit_mm}")
        self.decode = {
            "depth_unit_mm": float(depth_unit_mm),
            "depth_encoding": depth_encoding,
            "invalid_value": invalid_value,
            "swap_bytes": swap_bytes,
        }
        self.depth_scale = float(depth_scale)
        if pairs is not None:
            self._pairs = [(Path(g), Path(d)) for g, d in pairs]
            for guide, depth in self._pairs:
                for path in (guide, depth):
                    if not path.is_file():
                        raise DataError(f"pairs: expected a file at {path}, found nothing")
            self._names = [g.stem for g, _ in self._pairs]
        else:
            if root is None:
                raise InputValueError("root: expected a folder (or pairs=[...]), got None")
            self._names, self._pairs = self._discover(
                Path(root).expanduser(), guide_dir, depth_dir, guide_suffix, depth_suffix
            )
        if not self._pairs:
            raise DataError("pairs: expected at least one guide/depth pair, got none")
        self._shapes: dict[int, tuple[int, int]] = {}

    @staticmethod
    def _discover(
        root: Path, guide_dir: str, depth_dir: str, guide_suffix: str, depth_suffix: str
    ) -> tuple[list[str], list[tuple[Path, Path]]]:
        layout = (
            f"  <root>/{guide_dir}/<name>{guide_suffix}.png|jpg|...\n"
            f"  <root>/{depth_dir}/<name>{depth_suffix}.png|pfm|tiff|npy\n"
            "  (set guide_dir/depth_dir/guide_suffix/depth_suffix to match your files)"
        )
        guide_folder, depth_folder = root / guide_dir, root / depth_dir
        for folder in (guide_folder, depth_folder):
            if not folder.is_dir():
                raise DataError(
                    f"folder dataset: expected the folder {folder}, found nothing.\n"
                    f"Expected layout:\n{layout}"
                )
        if guide_folder.resolve() == depth_folder.resolve() and guide_suffix == depth_suffix:
            raise InputValueError(
                "guide_suffix/depth_suffix: guides and depth maps share a folder, so they need "
                "different name suffixes (e.g. '_color' and '_depth')"
            )
        guides = _listing(guide_folder, guide_suffix)
        depths = _listing(depth_folder, depth_suffix)
        if depth_suffix and guide_folder.resolve() == depth_folder.resolve():
            guides = {k: v for k, v in guides.items() if not v.stem.endswith(depth_suffix)}
        names = sorted(set(guides) & set(depths))
        unmatched = sorted(set(guides) ^ set(depths))
        if not names:
            raise DataError(
                f"folder dataset: found no guide/depth pair under {root} (guides: "
                f"{len(guides)}, depth maps: {len(depths)}).\nExpected layout:\n{layout}"
            )
        if unmatched:
            warnings.warn(
                f"folder dataset: {len(unmatched)} file(s) under {root} have no partner and "
                f"are ignored: {', '.join(unmatched[:5])}", stacklevel=3,
            )
        return names, [(guides[n], depths[n]) for n in names]

    def __len__(self) -> int:
        return len(self._pairs)

    def scene_name(self, index: int) -> str:
        return self._names[index]

    def shape(self, index: int) -> tuple[int, int]:
        if index not in self._shapes:
            self._shapes[index] = _size(self._pairs[index][0])
        return self._shapes[index]

    def load(self, index: int) -> Scene:
        guide_path, depth_path = self._pairs[index]
        name = self._names[index]
        guide = guide_to_float(read_image(guide_path, what=f"{name} guide"), what=f"{name} guide")
        raw = read_image(depth_path, what=f"{name} depth")
        if raw.ndim != 2:
            raise DataError(
                f"{name} depth: expected a single-channel depth map in {depth_path}, got shape "
                f"{raw.shape}; save depth as a 16-bit grey PNG, PFM, TIFF or (H, W) NPY"
            )
        depth = decode_depth(raw, **self.decode)
        if depth.shape == guide.shape[:2]:
            return Scene(name, guide, depth=depth)
        if depth.shape[0] < guide.shape[0] and depth.shape[1] < guide.shape[1]:
            return Scene(name, guide, source=depth)
        raise DataError(
            f"{name}: depth {depth.shape} is neither the guide's size {guide.shape[:2]} nor "
            "smaller (a low-resolution measurement); the files do not belong together"
        )
