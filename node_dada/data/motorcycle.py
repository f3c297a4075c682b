"""The Middlebury 2014 Motorcycle scene that scikit-image ships (quarter size,
500 x 741): real data, no download. The demo and smoke-test scene.
"""

from __future__ import annotations

import numpy as np

from node_dada.data.io import guide_to_float
from node_dada.data.middlebury import MIDDLEBURY_DEPTH_SCALE_MM
from node_dada.data.pipeline import Scene

__all__ = [
    "MIDDLEBURY_DEPTH_SCALE_MM",
    "MOTORCYCLE_FOCAL_PX",
    "MOTORCYCLE_BASELINE_MM",
    "MOTORCYCLE_DOFFS_PX",
    "MotorcycleScenes",
    "load_motorcycle",
]

# Calibration of Motorcycle (Middlebury 2014 calib.txt, divided by 4 for the
# quarter-size images scikit-image ships).
MOTORCYCLE_FOCAL_PX = 994.978
MOTORCYCLE_BASELINE_MM = 193.001
MOTORCYCLE_DOFFS_PX = 31.086


def load_motorcycle() -> tuple[np.ndarray, np.ndarray]:
    """Return ``(guide, depth_mm)``: the left view (500, 741, 3) uint8 and its depth
    in millimetres (500, 741) float32, NaN where the disparity is unknown.

    ``depth = f * baseline / (disparity + doffs)``.
    """
    from skimage.data import stereo_motorcycle

    guide, _, disparity = stereo_motorcycle()
    disparity = disparity.astype(np.float64)
    valid = np.isfinite(disparity)
    depth = np.full(disparity.shape, np.nan)
    depth[valid] = (
        MOTORCYCLE_FOCAL_PX * MOTORCYCLE_BASELINE_MM / (disparity[valid] + MOTORCYCLE_DOFFS_PX)
    )
    return guide, depth.astype(np.float32)


class MotorcycleScenes:
    """The embedded Motorcycle scene as a one-scene dataset (mm, Middlebury scale).

    Every split is this one scene: it is for smoke tests and demos, not for
    benchmark numbers.
    """

    unit = "mm"
    depth_scale = MIDDLEBURY_DEPTH_SCALE_MM
    _NAME = "Motorcycle (scikit-image, quarter size)"
    _SHAPE = (500, 741)

    def __len__(self) -> int:
        return 1

    def scene_name(self, index: int) -> str:
        return self._NAME

    def shape(self, index: int) -> tuple[int, int]:
        return self._SHAPE

    def load(self, index: int) -> Scene:
        guide, depth = load_motorcycle()
        return Scene(self._NAME, guide_to_float(guide), depth=depth)
