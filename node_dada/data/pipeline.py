"""The one sample pipeline every dataset shares (docs/design.md section 6).

A dataset yields decoded :class:`Scene` records (guide image + depth in a
physical unit, NaN = invalid). :func:`make_sample` turns a (cropped, augmented)
scene into a :class:`Sample`: normalised guide, depth divided by the dataset's
scale (positive, not centred), the NaN-aware degradation to ``source``, the
masks and the initial estimate ``I0``. :func:`collate_samples` stacks samples
into a :class:`Batch` that Lightning moves between devices by itself.

Augmentation (training only): random horizontal flip, rotation up to 15
degrees with invalid fill, random crop; evaluation uses deterministic,
non-overlapping grid crops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import torch

from node_dada.diffusion import degrade, initial_estimate, normalize_guide
from node_dada.errors import InputValueError, ShapeError

__all__ = [
    "Batch",
    "Sample",
    "Scene",
    "SceneSource",
    "collate_samples",
    "crop_to_multiple",
    "grid_crops",
    "make_sample",
    "random_flip",
    "random_rotate",
    "scene_subset",
    "valid_fractions",
]


@dataclass(frozen=True)
class Scene:
    """One decoded image pair, before cropping.

    Exactly one of ``depth`` (high resolution, the usual case: the pipeline
    degrades it) and ``source`` (a real low-resolution measurement, e.g. a
    user's sensor frame; no ground truth) is set.

    Attributes:
        name: identifier, e.g. ``"2006/Bowling1/view1"``.
        guide: (H, W, C) float32 in 0-1.
        depth: (H, W) float32 in the dataset's unit (mm, or px for disparity), NaN = invalid.
        source: (h, w) float32 low-resolution depth, NaN = invalid.
    """

    name: str
    guide: np.ndarray
    depth: np.ndarray | None = None
    source: np.ndarray | None = None

    def __post_init__(self) -> None:
        if (self.depth is None) == (self.source is None):
            raise InputValueError(f"scene {self.name}: expected exactly one of depth and source")
        if self.guide.ndim != 3:
            raise ShapeError(
                f"scene {self.name}: guide: expected (H, W, C), got {self.guide.shape}"
            )
        if self.depth is not None and self.depth.shape != self.guide.shape[:2]:
            raise ShapeError(
                f"scene {self.name}: depth: expected the guide's size {self.guide.shape[:2]}, "
                f"got {self.depth.shape}"
            )


class SceneSource(Protocol):
    """What a dataset loader provides to :class:`~node_dada.data.dataset.GuidedDepthDataset`."""

    #: Divisor that brings the scene's depth unit to the working range (1122.7 for mm, ...).
    depth_scale: float
    #: Unit of ``Scene.depth``: ``"mm"`` or ``"px"`` (disparity).
    unit: str

    def __len__(self) -> int: ...

    def scene_name(self, index: int) -> str: ...

    def shape(self, index: int) -> tuple[int, int]:
        """(H, W) of the guide of scene ``index``, cheap (headers only)."""
        ...

    def load(self, index: int) -> Scene: ...


class _SceneSubset:
    """The scenes ``indices`` of ``scenes``, a :class:`SceneSource` itself."""

    def __init__(self, scenes: SceneSource, indices: Sequence[int]) -> None:
        self.scenes = scenes
        self.indices = list(indices)
        self.depth_scale = scenes.depth_scale
        self.unit = scenes.unit

    def __len__(self) -> int:
        return len(self.indices)

    def scene_name(self, index: int) -> str:
        return self.scenes.scene_name(self.indices[index])

    def shape(self, index: int) -> tuple[int, int]:
        return self.scenes.shape(self.indices[index])

    def load(self, index: int) -> Scene:
        return self.scenes.load(self.indices[index])


def scene_subset(scenes: SceneSource, count: int, *, seed: int = 0) -> SceneSource:
    """``count`` scenes of ``scenes``, a fixed random choice (a data-scaling study's
    smaller training sets).

    The views of one scene (names ending in ``/view<N>``) count as one scene and are
    kept or left out together. The choice is nested: with the same ``seed``, the
    scenes kept for a smaller ``count`` are among those kept for a larger one.
    """
    groups: dict[str, list[int]] = {}
    for index in range(len(scenes)):
        name = scenes.scene_name(index)
        stem, _, view = name.rpartition("/view")
        groups.setdefault(stem if stem and view.isdigit() else name, []).append(index)
    if not 1 <= count <= len(groups):
        raise InputValueError(
            f"train_scenes: expected 1 to {len(groups)} (the scenes of this split, the views "
            f"of a scene counted once), got {count}"
        )
    order = np.random.default_rng(seed).permutation(len(groups))
    keys = list(groups)
    chosen = sorted(index for rank in order[:count] for index in groups[keys[rank]])
    return _SceneSubset(scenes, chosen)


@dataclass(frozen=True)
class Sample:
    """One training/evaluation example (docs/design.md section 1), unbatched.

    Attributes:
        guide: (C, H, W) float32, normalised (ImageNet mean/std for RGB).
        source: (1, h, w) float32 scaled depth, 0 where invalid.
        mask_lr: (1, h, w) bool, true where ``source`` is valid.
        depth0: (1, H, W) float32 initial estimate ``I0`` (scaled).
        target: (1, H, W) float32 scaled ground truth, 0 where invalid.
        mask_hr: (1, H, W) bool, true where ``target`` is valid (all false when
            the scene has no ground truth).
        depth_scale: divisor applied to the physical depth: ``physical = scaled * depth_scale``.
        scale: integer upsampling factor, ``H = scale * h``.
        name: scene name plus crop position.
        unit: physical unit after multiplying by ``depth_scale`` (``"mm"`` or ``"px"``).
    """

    guide: torch.Tensor
    source: torch.Tensor
    mask_lr: torch.Tensor
    depth0: torch.Tensor
    target: torch.Tensor
    mask_hr: torch.Tensor
    depth_scale: float
    scale: int
    name: str
    unit: str = "mm"


_TENSOR_FIELDS = ("guide", "source", "mask_lr", "depth0", "target", "mask_hr")


@dataclass(frozen=True)
class Batch:
    """A batch of :class:`Sample` records: the same fields with a leading batch dimension.

    Tensors: guide (B, C, H, W), source (B, 1, h, w), mask_lr (B, 1, h, w) bool,
    depth0 (B, 1, H, W), target (B, 1, H, W), mask_hr (B, 1, H, W) bool.
    ``depth_scale``, ``scale`` and ``unit`` are shared by the whole batch;
    ``name`` holds one name per sample.

    ``.to(device)`` returns a moved copy, so Lightning's automatic batch
    transfer works. Lightning infers the batch size from ``guide`` but warns
    about the non-tensor fields; pass ``batch_size=len(batch)`` to ``self.log``.
    """

    guide: torch.Tensor
    source: torch.Tensor
    mask_lr: torch.Tensor
    depth0: torch.Tensor
    target: torch.Tensor
    mask_hr: torch.Tensor
    depth_scale: float
    scale: int
    name: tuple[str, ...]
    unit: str = "mm"

    def __len__(self) -> int:
        return int(self.guide.shape[0])

    def _map(self, function: object) -> Batch:
        moved = {key: function(getattr(self, key)) for key in _TENSOR_FIELDS}  # type: ignore[operator]
        return dataclasses.replace(self, **moved)

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> Batch:
        """Copy of the batch with every tensor on ``device`` (dtypes unchanged)."""
        return self._map(lambda tensor: tensor.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """Copy with pinned tensors (used by ``DataLoader(pin_memory=True)``)."""
        return self._map(lambda tensor: tensor.pin_memory())

    def physical(self, scaled: torch.Tensor) -> torch.Tensor:
        """Scaled depth (e.g. a prediction) -> physical unit (``self.unit``)."""
        return scaled * self.depth_scale


def collate_samples(samples: Sequence[Sample]) -> Batch:
    """Stack samples into a :class:`Batch` (the DataLoader ``collate_fn``).

    All samples must share size, ``scale``, ``depth_scale`` and ``unit``.
    """
    if not samples:
        raise InputValueError("samples: expected at least one sample, got none")
    first = samples[0]
    for sample in samples[1:]:
        if (sample.scale, sample.depth_scale, sample.unit) != (
            first.scale, first.depth_scale, first.unit
        ):
            raise InputValueError(
                f"samples: expected one scale/depth_scale/unit per batch, got "
                f"{(first.scale, first.depth_scale, first.unit)} ({first.name}) and "
                f"{(sample.scale, sample.depth_scale, sample.unit)} ({sample.name})"
            )
        if sample.guide.shape != first.guide.shape:
            raise ShapeError(
                f"samples: expected one size per batch, got guide {tuple(first.guide.shape)} "
                f"({first.name}) and {tuple(sample.guide.shape)} ({sample.name}); use a crop "
                "size or batch_size=1 for whole images"
            )
    stacked = {key: torch.stack([getattr(s, key) for s in samples]) for key in _TENSOR_FIELDS}
    return Batch(
        **stacked,
        depth_scale=first.depth_scale,
        scale=first.scale,
        name=tuple(s.name for s in samples),
        unit=first.unit,
    )


def make_sample(
    guide: np.ndarray,
    depth: np.ndarray | None,
    *,
    scale: int,
    depth_scale: float,
    name: str,
    unit: str = "mm",
    source: np.ndarray | None = None,
) -> Sample:
    """Build a :class:`Sample` from a cropped guide and depth.

    Args:
        guide: (H, W, C) float32 in 0-1.
        depth: (H, W) physical depth, NaN = invalid; ``H``, ``W`` divisible by ``scale``.
            ``None`` when ``source`` is given.
        scale: upsampling factor.
        depth_scale: divisor of the physical unit (dataset constant).
        source: (H / scale, W / scale) measured low-resolution depth, NaN = invalid;
            used instead of degrading ``depth`` (then the target is empty).
    """
    height, width = guide.shape[:2]
    if height % scale or width % scale:
        raise ShapeError(
            f"{name}: guide: expected a size divisible by scale {scale}, got {(height, width)}"
        )
    guide_t = torch.from_numpy(np.ascontiguousarray(guide.transpose(2, 0, 1), np.float32))
    guide_n = normalize_guide(guide_t[None])[0]
    if depth is not None:
        depth_t = torch.from_numpy(np.ascontiguousarray(depth, np.float32))[None, None]
        depth_t = depth_t / np.float32(depth_scale)
        source_t, mask_lr = degrade(depth_t, scale)
        mask_hr = torch.isfinite(depth_t)
        target = torch.where(mask_hr, depth_t, torch.zeros_like(depth_t))
    else:
        if source is None or source.shape != (height // scale, width // scale):
            got = None if source is None else source.shape
            raise ShapeError(
                f"{name}: source: expected shape {(height // scale, width // scale)} "
                f"(guide {(height, width)} / scale {scale}), got {got}"
            )
        raw = torch.from_numpy(np.ascontiguousarray(source, np.float32))[None, None]
        raw = raw / np.float32(depth_scale)
        mask_lr = torch.isfinite(raw) & (raw > 0)
        source_t = torch.where(mask_lr, raw, torch.zeros_like(raw))
        target = torch.zeros((1, 1, height, width), dtype=torch.float32)
        mask_hr = torch.zeros_like(target, dtype=torch.bool)
    if mask_lr.any():
        depth0 = initial_estimate(source_t, mask_lr, scale)
    else:  # nothing to interpolate: an all-invalid crop keeps a zero estimate
        depth0 = torch.zeros((1, 1, height, width), dtype=torch.float32)
    return Sample(
        guide=guide_n,
        source=source_t[0],
        mask_lr=mask_lr[0],
        depth0=depth0[0].float(),
        target=target[0],
        mask_hr=mask_hr[0],
        depth_scale=float(depth_scale),
        scale=int(scale),
        name=name,
        unit=unit,
    )


def random_flip(
    guide: np.ndarray, depth: np.ndarray, rng: np.random.Generator, *, probability: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Flip (H, W, C) guide and (H, W) depth left-right with ``probability``."""
    if rng.random() < probability:
        return guide[:, ::-1], depth[:, ::-1]
    return guide, depth


def random_rotate(
    guide: np.ndarray, depth: np.ndarray, rng: np.random.Generator, *, max_angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate about the image centre by an angle drawn uniformly from
    ``[-max_angle, max_angle]`` degrees, keeping the size.

    The guide is interpolated bilinearly with black fill; the depth bilinearly
    with NaN propagation (a pixel next to an invalid one stays invalid, so no
    value is mixed with a hole) and NaN outside the rotated image.
    """
    if max_angle <= 0:
        return guide, depth
    angle = float(rng.uniform(-max_angle, max_angle))
    height, width = depth.shape
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), angle, 1.0)
    size = (width, height)
    guide_r = cv2.warpAffine(
        np.ascontiguousarray(guide), matrix, size, flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )
    if guide_r.ndim == 2:  # OpenCV drops a trailing channel axis of size 1
        guide_r = guide_r[..., None]
    # Replicate the border for the interpolation itself (a constant NaN border
    # would also poison the last row/column), then blank what came from outside.
    depth_r = cv2.warpAffine(
        np.ascontiguousarray(depth, np.float32), matrix, size, flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    inside = cv2.warpAffine(
        np.ones((height, width), np.uint8), matrix, size, flags=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )
    depth_r[inside == 0] = np.nan
    return guide_r, depth_r


def valid_fractions(depth: np.ndarray, scale: int) -> tuple[float, float]:
    """Fractions of valid LR blocks (a block with any valid pixel, as in
    :func:`~node_dada.diffusion.degrade`) and of valid HR pixels of an (H, W) crop."""
    valid = np.isfinite(depth)
    height, width = valid.shape
    blocks = valid.reshape(height // scale, scale, width // scale, scale).any(axis=(1, 3))
    return float(blocks.mean()), float(valid.mean())


def grid_crops(shape: tuple[int, int], crop_size: int) -> list[tuple[int, int]]:
    """Top-left corners of the non-overlapping ``crop_size`` crops of an (H, W)
    image, row by row from (0, 0) (the reference evaluation protocol)."""
    rows, cols = shape[0] // crop_size, shape[1] // crop_size
    return [(i * crop_size, j * crop_size) for i in range(rows) for j in range(cols)]


def crop_to_multiple(shape: tuple[int, int], scale: int) -> tuple[int, int]:
    """Largest (H, W) not above ``shape`` that ``scale`` divides (crop from the top-left)."""
    return shape[0] - shape[0] % scale, shape[1] - shape[1] % scale
