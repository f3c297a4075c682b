"""``node-dada data sample --root DIR``: real files to try every command on, offline.

The Middlebury 2014 Motorcycle scene that scikit-image ships (quarter size,
real stereo depth, in the package already) written the way a user's own data
looks on disk::

    DIR/frame/guide.png          the RGB image, 8-bit (496 x 736)
    DIR/frame/depth_x8.png       its depth at 1/8 resolution, 16-bit mm, 0 = no data
                                 (NaN-aware 8 x 8 block means of the ground truth)
    DIR/frame/depth_gt.png       the full-resolution ground truth, 16-bit mm, 0 = no data
    DIR/pairs/{train,val,test}/{guide,depth}/<n>.png
                                 disjoint parts of the scene (train: two 496 x 248
                                 strips on the left, val and test: the top and
                                 bottom 248 x 240 of the rest), full-resolution
                                 depth, the layout FolderDataModule reads

It is one scene: enough to see the commands work, not to train a useful model.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from node_dada.errors import DataError

__all__ = ["SAMPLE_SCALE", "write_sample"]

#: Ratio between the sample frame's guide and its low-resolution depth.
SAMPLE_SCALE = 8
# The parts of the 496 x 736 frame in pairs/: (split, rows, columns), disjoint.
_PARTS = (
    ("train", slice(0, 496), slice(0, 248)),
    ("train", slice(0, 496), slice(248, 496)),
    ("val", slice(0, 248), slice(496, 736)),
    ("test", slice(248, 496), slice(496, 736)),
)


def _mm_png(depth: np.ndarray) -> np.ndarray:
    """Depth in mm (NaN = no data) as a 16-bit PNG array (0 = no data)."""
    return np.where(np.isfinite(depth), np.round(depth), 0).clip(0, 65535).astype(np.uint16)


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = image[..., ::-1] if image.ndim == 3 else image  # OpenCV writes BGR
    if not cv2.imwrite(str(path), np.ascontiguousarray(pixels)):
        raise DataError(f"data sample: could not write {path}; check the folder is writable")


def write_sample(root: str | Path, *, overwrite: bool = False) -> list[Path]:
    """Write the sample frame and pairs under ``root``; returns the files written.

    Refuses (``DataError``) to replace an existing ``root/frame`` or ``root/pairs``
    unless ``overwrite``.
    """
    import torch

    from node_dada.data.motorcycle import load_motorcycle
    from node_dada.diffusion import degrade

    root = Path(root)
    taken = [root / name for name in ("frame", "pairs") if (root / name).exists()]
    if taken and not overwrite:
        raise DataError(f"data sample: {taken[0]} exists already; pass --overwrite to replace "
                        "the sample or choose another --root")
    guide, depth = load_motorcycle()
    s = SAMPLE_SCALE
    height, width = guide.shape[0] // s * s, guide.shape[1] // s * s
    guide, depth = guide[:height, :width], depth[:height, :width]
    low, _ = degrade(torch.from_numpy(np.ascontiguousarray(depth))[None, None], s)
    files = {
        root / "frame" / "guide.png": guide,
        root / "frame" / f"depth_x{s}.png": _mm_png(low[0, 0].numpy()),  # 0: no data
        root / "frame" / "depth_gt.png": _mm_png(depth),
    }
    counts: dict[str, int] = {}
    for split, rows, columns in _PARTS:
        n = counts[split] = counts.get(split, 0) + 1
        files[root / "pairs" / split / "guide" / f"{n:02d}.png"] = guide[rows, columns]
        files[root / "pairs" / split / "depth" / f"{n:02d}.png"] = _mm_png(depth[rows, columns])
    for path, image in files.items():
        _write(path, image)
    return list(files)
