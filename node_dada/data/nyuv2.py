"""NYU Depth v2 (labeled set) as guided depth super-resolution data (docs/design.md section 6).

``nyu_depth_v2_labeled.mat`` is a MATLAB v7.3 file (HDF5) whose arrays h5py
sees transposed: ``images`` uint8 ``(N, 3, W, H)``, ``depths`` float metres
``(N, W, H)``. Frames are transposed to ``H x W`` and depth scaled x1000 to mm.
The split (849 train / 300 val / 300 test indices, keys ``train/val/test``) comes
from a JSON file: by default the community split shipped with the package
(:data:`NYUV2_SPLIT_FILE`, ``node_dada/data/splits/nyuv2_split_idc.json``, from the
DADA authors' repository; see ``SOURCES.md`` next to it), or one given by path.

Also here: the raw Kinect unit of the NYU raw frames (:func:`kinect_raw_to_mm`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from node_dada.data.io import MAX_IMAGE_PIXELS, guide_to_float
from node_dada.data.pipeline import Scene
from node_dada.data.root import describe_search, resolve_data_path
from node_dada.errors import DataError, InputValueError

__all__ = [
    "KINECT_RAW_INVALID",
    "NYUV2_DEPTH_SCALE_MM",
    "NYUV2_DOWNLOAD",
    "NYUV2_FILE_NAME",
    "NYUV2_LABELED_FRAMES",
    "NYUV2_SPLIT_FILE",
    "NYUv2Scenes",
    "kinect_raw_to_mm",
    "read_nyuv2_split",
]

#: Depth divisor of the NYUv2 benchmark, mm (the reference's depth standard deviation).
NYUV2_DEPTH_SCALE_MM = 1386.05
NYUV2_FILE_NAME = "nyu_depth_v2_labeled.mat"
#: Frames of the labeled set (what the indices of the community split point into).
NYUV2_LABELED_FRAMES = 1449
#: The community 849/300/300 split of the labeled set, shipped with the package.
NYUV2_SPLIT_FILE = Path(__file__).resolve().parent / "splits" / "nyuv2_split_idc.json"
NYUV2_DOWNLOAD = (
    "https://cs.nyu.edu/~fergus/datasets/nyu_depth_v2.html (labeled set: "
    "http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat, 2.8 GB)"
)
_SPLIT_HINT = (
    "a JSON file {\"train\": [...], \"val\": [...], \"test\": [...]} of 0-based frame "
    "indices; leave split_file unset for the community split shipped with the package "
    "(node_dada/data/splits/nyuv2_split_idc.json, from the DADA authors' repository)"
)
#: Raw Kinect value that marks a missing measurement in the NYU raw frames.
KINECT_RAW_INVALID = 2047
# Raw Kinect disparity -> metres: depth = 351.3 / (1092.5 - raw) (NYU toolbox,
# depth_rel2depth_abs), so mm = 351300 / (1092.5 - raw).
_KINECT_NUMERATOR_MM = 351.3 * 1000.0
_KINECT_OFFSET = 1092.5


def kinect_raw_to_mm(raw: np.ndarray) -> np.ndarray:
    """NYU raw Kinect values -> depth mm, NaN where invalid (2047 or beyond the model's range)."""
    raw = raw.astype(np.float64)
    denominator = _KINECT_OFFSET - raw
    valid = (raw < KINECT_RAW_INVALID) & (denominator > 0)
    depth = np.full(raw.shape, np.nan)
    depth[valid] = _KINECT_NUMERATOR_MM / denominator[valid]
    return depth.astype(np.float32)


def read_nyuv2_split(path: str | Path, *, frames: int | None = None) -> dict[str, list[int]]:
    """Read the split JSON (keys ``train``, ``val``, ``test``: lists of frame indices).

    ``frames``: number of frames in the ``.mat`` file, to check the indices against.

    Example::

        split = read_nyuv2_split(NYUV2_SPLIT_FILE)  # the packaged community split
        len(split["train"]), len(split["val"]), len(split["test"])  # (849, 300, 300)
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"NYUv2 split: expected {_SPLIT_HINT}; found nothing at {path}")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"NYUv2 split: {path} is not valid JSON ({error}); expected "
                        f"{_SPLIT_HINT}") from None
    if not isinstance(content, dict) or not {"train", "val", "test"} <= set(content):
        keys = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise DataError(f"NYUv2 split: expected keys train/val/test in {path}, got {keys}")
    split = {}
    for key in ("train", "val", "test"):
        values = content[key]
        if not isinstance(values, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in values
        ):
            raise DataError(f"NYUv2 split: {path}[{key!r}] must be a list of integers")
        bad = [v for v in values if v < 0 or (frames is not None and v >= frames)]
        if bad:
            raise DataError(
                f"NYUv2 split: {path}[{key!r}] has indices outside 0..{(frames or 0) - 1}: "
                f"{bad[:5]}; the split does not belong to this .mat file (the packaged "
                f"community split indexes the {NYUV2_LABELED_FRAMES} frames of the full "
                f"labeled set): pass a split_file of indices into this file"
            )
        split[key] = values
    return split


class NYUv2Scenes:
    """NYUv2 labeled frames of one split (mm).

    Args:
        path: ``nyu_depth_v2_labeled.mat`` or the folder that holds it (a relative path
            is also looked up under the data root, see :mod:`node_dada.data.root`).
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"`` (every frame).
        split_file: the split JSON; ``None`` (default) reads the community split shipped
            with the package (:data:`NYUV2_SPLIT_FILE`). Not read for ``split="all"``.
        depth_scale: divisor of the depth in mm (the benchmark's, by default).

    The HDF5 file is opened lazily in each process (DataLoader workers), never
    shared across a fork.

    Example::

        scenes = NYUv2Scenes("nyu_depth_v2", split="test")  # the packaged split
        scene = scenes.load(0)  # guide (480, 640, 3) in 0-1, depth (480, 640) in mm
    """

    unit = "mm"

    def __init__(
        self,
        path: str | Path,
        *,
        split: Literal["train", "val", "test", "all"] = "train",
        split_file: str | Path | None = None,
        depth_scale: float = NYUV2_DEPTH_SCALE_MM,
    ) -> None:
        if split not in ("train", "val", "test", "all"):
            raise InputValueError(f"split: expected train, val, test or all, got {split!r}")
        self._given = path
        path = resolve_data_path(path)
        if path.is_dir():
            path = path / NYUV2_FILE_NAME
        self.path = path
        self.depth_scale = float(depth_scale)
        self._handle: Any = None
        self._pid: int | None = None
        try:
            frames, self._size = self._validate()
        except DataError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as error:
            # h5py reports corrupt metadata as RuntimeError/KeyError (found by fuzzing)
            raise DataError(
                f"NYUv2: could not read the layout of {self.path} ({error}); the file is "
                f"truncated or corrupt, download it again from {NYUV2_DOWNLOAD}"
            ) from None
        finally:
            self._close()
        if split == "all":
            self._indices = list(range(frames))
        else:
            split_file = NYUV2_SPLIT_FILE if split_file is None else split_file
            self._indices = read_nyuv2_split(split_file, frames=frames)[split]
        self.split = split

    def _open(self) -> Any:
        import h5py

        if self._handle is None or self._pid != os.getpid():
            try:
                self._handle = h5py.File(self.path, "r")
            except OSError as error:
                raise DataError(
                    f"NYUv2: could not open {self.path} as HDF5 ({error}); the file is truncated "
                    f"or corrupt, download it again from {NYUV2_DOWNLOAD}"
                ) from None
            self._pid = os.getpid()
        return self._handle

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self._handle, self._pid = None, None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"], state["_pid"] = None, None
        return state

    def _validate(self) -> tuple[int, tuple[int, int]]:
        import h5py

        if not self.path.is_file():
            raise DataError(
                f"NYUv2: expected {NYUV2_FILE_NAME} at {self.path}, found nothing (looked "
                f"for {describe_search(self._given)}).\n"
                f"Expected layout: <root>/{NYUV2_FILE_NAME} (MATLAB v7.3 / HDF5 with datasets "
                f"'images' uint8 (N, 3, W, H) and 'depths' float metres (N, W, H))\n"
                f"Download: {NYUV2_DOWNLOAD}"
            )
        if not h5py.is_hdf5(self.path):
            raise DataError(
                f"NYUv2: {self.path} is not an HDF5 file; expected the MATLAB v7.3 "
                f"{NYUV2_FILE_NAME} (older .mat formats are not supported). Download: "
                f"{NYUV2_DOWNLOAD}"
            )
        handle = self._open()
        for key in ("images", "depths"):
            if key not in handle or not isinstance(handle[key], h5py.Dataset):
                raise DataError(
                    f"NYUv2: {self.path} has no dataset {key!r} (found {sorted(handle)}); "
                    "expected the labeled NYU Depth v2 file"
                )
        images, depths = handle["images"], handle["depths"]
        if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
            raise DataError(
                f"NYUv2: {self.path}['images']: expected uint8 (N, 3, W, H), got "
                f"{images.dtype} {images.shape}"
            )
        expected = (images.shape[0], images.shape[2], images.shape[3])
        if depths.shape != expected or depths.dtype.kind != "f":
            raise DataError(
                f"NYUv2: {self.path}['depths']: expected float (N, W, H) = {expected}, got "
                f"{depths.dtype} {depths.shape}"
            )
        width, height = images.shape[2], images.shape[3]
        if width * height > MAX_IMAGE_PIXELS:
            raise DataError(
                f"NYUv2: {self.path} declares {width} x {height} frames, more than "
                f"{MAX_IMAGE_PIXELS} pixels; the file is corrupt"
            )
        return int(images.shape[0]), (int(height), int(width))

    def __len__(self) -> int:
        return len(self._indices)

    def scene_name(self, index: int) -> str:
        return f"nyuv2/{self._indices[index]:04d}"

    def shape(self, index: int) -> tuple[int, int]:
        return self._size

    def load(self, index: int) -> Scene:
        frame = self._indices[index]
        handle = self._open()
        try:
            image = np.asarray(handle["images"][frame])  # (3, W, H)
            depth_m = np.asarray(handle["depths"][frame], dtype=np.float64)  # (W, H)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as error:
            raise DataError(
                f"NYUv2: could not read frame {frame} of {self.path} ({error}); the file is "
                f"truncated or corrupt, download it again from {NYUV2_DOWNLOAD}"
            ) from None
        guide = np.ascontiguousarray(image.transpose(2, 1, 0))  # (H, W, 3)
        depth_m = depth_m.T
        depth = np.where(np.isfinite(depth_m) & (depth_m > 0), depth_m * 1000.0, np.nan)
        return Scene(self.scene_name(index), guide_to_float(guide), depth=depth.astype(np.float32))
