"""The torch ``Dataset`` every loader feeds: augmentation or grid crops, then
:func:`~node_dada.data.pipeline.make_sample` (docs/design.md section 6).

The initial estimate (scipy ``griddata``) is the slow part of a sample; it runs
here, per sample, so DataLoader workers parallelise it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from node_dada.data.io import convert_guide_channels
from node_dada.data.noise import degrade_sample, parse_sensor_noise
from node_dada.data.pipeline import (
    Sample,
    Scene,
    SceneSource,
    crop_to_multiple,
    grid_crops,
    make_sample,
    random_flip,
    random_rotate,
    valid_fractions,
)
from node_dada.diffusion.checks import check_scale
from node_dada.errors import InputValueError, ShapeError

__all__ = ["DEFAULT_CROP_SIZE", "MAX_ROTATION_DEG", "GuidedDepthDataset", "Mode"]

Mode = Literal["train", "eval", "predict"]
DEFAULT_CROP_SIZE = 256
#: Largest training rotation, degrees (docs/design.md section 6).
MAX_ROTATION_DEG = 15.0
#: Minimum valid fractions of a training crop, LR blocks and HR pixels (docs/design.md section 6).
MIN_VALID_LR, MIN_VALID_HR = 0.9, 0.8
#: Draws of a training crop before giving up on a scene with too many holes.
MAX_CROP_RETRIES = 32


class GuidedDepthDataset(Dataset[Sample]):
    """Samples from a :class:`~node_dada.data.pipeline.SceneSource`.

    Modes:
        - ``"train"``: one item per scene (times ``repeats``); random horizontal
          flip, rotation in ``[-max_rotation, max_rotation]`` degrees with invalid
          fill, random ``crop_size`` crop. Crops with fewer than ``min_valid_lr``
          valid LR blocks or ``min_valid_hr`` valid HR pixels are re-drawn (whole
          augmentation), at most ``max_retries`` times, then an error.
        - ``"eval"``: deterministic non-overlapping ``crop_size`` grid crops, no
          augmentation (``crop_size=None``: whole images as in ``"predict"``).
        - ``"predict"``: whole images, cropped from the top-left to a multiple of ``scale``.

    Randomness comes from torch's generator, which DataLoader seeds per worker
    and ``lightning.seed_everything`` makes reproducible.

    Args:
        scenes: the dataset loader.
        mode: see above.
        scale: upsampling factor; ``crop_size`` must be a multiple of it.
        crop_size: side of the square crops (pixels of the guide).
        cache: keep decoded scenes in memory (per worker process).
        guide_channels: convert the guide to this many channels (``None``: as stored).
        source_noise: a sensor-like degradation of the source (``node_dada.data.noise``
            spec, e.g. ``"tof:0.01+dropout:0.05"``), drawn afresh per training sample and
            seeded by the item in evaluation (the same noisy source every epoch).
    """

    def __init__(
        self,
        scenes: SceneSource,
        *,
        mode: Mode,
        scale: int,
        crop_size: int | None = DEFAULT_CROP_SIZE,
        cache: bool = True,
        guide_channels: int | None = None,
        horizontal_flip: bool = True,
        max_rotation: float = MAX_ROTATION_DEG,
        min_valid_lr: float = MIN_VALID_LR,
        min_valid_hr: float = MIN_VALID_HR,
        max_retries: int = MAX_CROP_RETRIES,
        repeats: int = 1,
        source_noise: str | None = None,
    ) -> None:
        if mode not in ("train", "eval", "predict"):
            raise InputValueError(f"mode: expected 'train', 'eval' or 'predict', got {mode!r}")
        self.scenes = scenes
        self.mode = mode
        self.scale = check_scale(scale)
        if mode == "predict":
            crop_size = None
        if mode == "train" and crop_size is None:
            raise InputValueError("crop_size: training needs a crop size, got None")
        if crop_size is not None:
            if crop_size <= 0 or crop_size % self.scale:
                raise InputValueError(
                    f"crop_size: expected a positive multiple of scale {self.scale}, got "
                    f"{crop_size}"
                )
        if max_retries < 1 or repeats < 1:
            raise InputValueError(
                f"max_retries and repeats: expected >= 1, got {max_retries} and {repeats}"
            )
        self.crop_size = crop_size
        self.cache = cache
        self.guide_channels = guide_channels
        self.horizontal_flip = horizontal_flip
        self.max_rotation = float(max_rotation)
        self.min_valid_lr = float(min_valid_lr)
        self.min_valid_hr = float(min_valid_hr)
        self.max_retries = int(max_retries)
        self.repeats = int(repeats)
        self.source_noise = parse_sensor_noise(source_noise)
        self._cache: dict[int, Scene] = {}
        self._items = self._index()

    def _index(self) -> list[tuple[int, int, int]]:
        """(scene, top, left) per item; top/left unused outside grid evaluation."""
        count = len(self.scenes)
        if count == 0:
            raise InputValueError("scenes: the dataset split holds no scene")
        if self.mode == "train":
            for index in range(count):
                height, width = self.scenes.shape(index)
                if height < self.crop_size or width < self.crop_size:
                    raise ShapeError(
                        f"crop_size: {self.crop_size} exceeds scene "
                        f"{self.scenes.scene_name(index)} of size {(height, width)}; "
                        "use a smaller crop_size"
                    )
            return [(index, 0, 0) for index in range(count)] * self.repeats
        if self.crop_size is None:
            return [(index, 0, 0) for index in range(count)]
        items = [
            (index, top, left)
            for index in range(count)
            for top, left in grid_crops(self.scenes.shape(index), self.crop_size)
        ]
        if not items:
            raise ShapeError(
                f"crop_size: {self.crop_size} exceeds every scene of the split; use a "
                "smaller crop_size or crop_size=None for whole images"
            )
        return items

    def __len__(self) -> int:
        return len(self._items)

    def scene(self, index: int) -> Scene:
        """The decoded scene ``index`` (cached when ``cache`` is true)."""
        scene = self._cache.get(index)
        if scene is None:
            scene = self.scenes.load(index)
            if self.guide_channels is not None:
                guide = convert_guide_channels(scene.guide, self.guide_channels)
                scene = Scene(scene.name, guide, depth=scene.depth, source=scene.source)
            if self.cache:
                self._cache[index] = scene
        return scene

    def __getitem__(self, item: int) -> Sample:
        sample = self._clean_item(item)
        if self.source_noise is None or not sample.mask_hr.any():
            return sample
        generator = None if self.mode == "train" else torch.Generator().manual_seed(item)
        return degrade_sample(sample, self.source_noise, generator)

    def _clean_item(self, item: int) -> Sample:
        index, top, left = self._items[item]
        scene = self.scene(index)
        kwargs = {
            "scale": self.scale,
            "depth_scale": self.scenes.depth_scale,
            "unit": self.scenes.unit,
        }
        if scene.depth is None:
            return self._from_source(scene, **kwargs)
        if self.mode == "train":
            return self._train_sample(scene, **kwargs)
        if self.crop_size is None:
            height, width = crop_to_multiple(scene.depth.shape, self.scale)
            return make_sample(
                scene.guide[:height, :width], scene.depth[:height, :width], name=scene.name,
                **kwargs,
            )
        size = self.crop_size
        window = (slice(top, top + size), slice(left, left + size))
        return make_sample(
            scene.guide[window], scene.depth[window], name=f"{scene.name}@{top},{left}", **kwargs
        )

    def _from_source(self, scene: Scene, **kwargs: object) -> Sample:
        if self.mode == "train" or self.crop_size is not None:
            raise InputValueError(
                f"scene {scene.name}: its depth is a low-resolution measurement without ground "
                "truth; it can only be predicted (mode='predict'), not trained or evaluated"
            )
        source = scene.source
        height, width = source.shape[0] * self.scale, source.shape[1] * self.scale
        guide_height, guide_width = scene.guide.shape[:2]
        # The guide may exceed scale x source by less than one LR pixel (cropped away).
        if not (
            height <= guide_height < height + self.scale
            and width <= guide_width < width + self.scale
        ):
            raise ShapeError(
                f"scene {scene.name}: guide {scene.guide.shape[:2]} is not scale "
                f"{self.scale} x the low-resolution depth {source.shape}; resample one of "
                "them or set the matching scale"
            )
        return make_sample(
            scene.guide[:height, :width], None, source=source, name=scene.name, **kwargs
        )

    def _train_sample(self, scene: Scene, **kwargs: object) -> Sample:
        seed = int(torch.randint(0, 2**62, (1,)).item())
        rng = np.random.default_rng(seed)
        size = self.crop_size
        best = (0.0, 0.0)
        for _ in range(self.max_retries):
            guide, depth = scene.guide, scene.depth
            if self.horizontal_flip:
                guide, depth = random_flip(guide, depth, rng)
            guide, depth = random_rotate(guide, depth, rng, max_angle=self.max_rotation)
            top = int(rng.integers(0, depth.shape[0] - size + 1))
            left = int(rng.integers(0, depth.shape[1] - size + 1))
            window = (slice(top, top + size), slice(left, left + size))
            crop = depth[window]
            lr, hr = valid_fractions(crop, self.scale)
            if lr >= self.min_valid_lr and hr >= self.min_valid_hr:
                return make_sample(guide[window], crop, name=scene.name, **kwargs)
            best = max(best, (lr, hr))
        raise InputValueError(
            f"scene {scene.name}: no {size} x {size} training crop with >= "
            f"{self.min_valid_lr:.0%} valid LR blocks and >= {self.min_valid_hr:.0%} valid HR "
            f"pixels in {self.max_retries} draws (best: {best[0]:.0%} / {best[1]:.0%}); lower "
            "min_valid_lr/min_valid_hr, use a smaller crop_size or leave the scene out"
        )
