"""LightningDataModules, one per dataset (docs/design.md sections 6 and 8).

Every option is a keyword with a type hint, so LightningCLI/YAML sets them::

    data:
      class_path: node_dada.data.MiddleburyDataModule
      init_args: {root: middlebury0506/ThirdSize, scale: 8, crop_size: 256, batch_size: 8}

A relative ``root`` that does not exist under the working directory is read from
the data root, ``$NODE_DADA_DATA`` or ``./data`` (:mod:`node_dada.data.root`), where
``node-dada data download`` puts each dataset.

Stages: ``fit`` (train with augmentation + val grid crops), ``validate``,
``test`` (grid crops), ``predict`` (whole images of ``predict_split``, cropped to
a multiple of the scale; batch size 1 since sizes differ). Batches are
:class:`~node_dada.data.pipeline.Batch` records.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import lightning as L
from torch.utils.data import DataLoader

from node_dada.data.dataset import (
    DEFAULT_CROP_SIZE,
    MAX_CROP_RETRIES,
    MAX_ROTATION_DEG,
    MIN_VALID_HR,
    MIN_VALID_LR,
    GuidedDepthDataset,
    Mode,
)
from node_dada.data.diml import DIML_DEPTH_SCALE_MM, DIMLScenes
from node_dada.data.folder import DepthEncoding, FolderScenes
from node_dada.data.middlebury import MIDDLEBURY_DEPTH_SCALE_MM, MiddleburyScenes
from node_dada.data.motorcycle import MotorcycleScenes
from node_dada.data.noise import parse_sensor_noise
from node_dada.data.nyuv2 import NYUV2_DEPTH_SCALE_MM, NYUv2Scenes
from node_dada.data.pipeline import Batch, SceneSource, collate_samples, scene_subset
from node_dada.errors import InputValueError

__all__ = [
    "DIMLDataModule",
    "FolderDataModule",
    "GuidedDepthDataModule",
    "MiddleburyDataModule",
    "MotorcycleDataModule",
    "NYUv2DataModule",
]

Split = Literal["train", "val", "test"]


class GuidedDepthDataModule(L.LightningDataModule):
    """Shared machinery; subclasses say where scenes come from (:meth:`scenes`).

    Args:
        scale: upsampling factor (4, 8, 16, ...).
        crop_size: side of training and evaluation crops; a multiple of ``scale``.
            ``None`` evaluates whole images (use ``eval_batch_size=1``).
        eval_crop_size: side of the val/test grid crops when it should differ from
            the training crops: ``"same"`` (default: ``crop_size``), a multiple of
            ``scale``, or ``None`` for whole images (use ``eval_batch_size=1``), which
            keeps validation comparable between runs that train on other crop sizes.
        batch_size: training batch size.
        eval_batch_size: val/test batch size (default: ``batch_size``).
        num_workers: DataLoader worker processes (they compute the initial
            estimates in parallel; persistent, so per-worker caches survive epochs).
        cache: keep decoded scenes in memory (per worker).
        guide_channels: convert guides to this many channels (``None``: as stored).
        horizontal_flip, max_rotation: training augmentation.
        min_valid_lr, min_valid_hr, max_retries: training crop acceptance.
        train_repeats: training items per scene and epoch.
        predict_split: split whose whole images ``predict`` yields.
        pin_memory: pin batches (GPU training).
        source_noise: sensor-like noise on the source of every split
            (``node_dada.data.noise`` spec, e.g. ``"tof:0.01+dropout:0.05"``).
        train_scenes: train on this many of the training scenes only (``None``: all),
            a fixed random choice drawn with ``train_scenes_seed`` (the views of a
            scene stay together; smaller choices are nested in larger ones; see
            :func:`~node_dada.data.pipeline.scene_subset`). Validation and test keep
            their whole splits.
    """

    def __init__(
        self,
        *,
        scale: int = 8,
        crop_size: int | None = DEFAULT_CROP_SIZE,
        eval_crop_size: int | Literal["same"] | None = "same",
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        cache: bool = True,
        guide_channels: int | None = None,
        horizontal_flip: bool = True,
        max_rotation: float = MAX_ROTATION_DEG,
        min_valid_lr: float = MIN_VALID_LR,
        min_valid_hr: float = MIN_VALID_HR,
        max_retries: int = MAX_CROP_RETRIES,
        train_repeats: int = 1,
        predict_split: Split = "test",
        pin_memory: bool = False,
        source_noise: str | None = None,
        train_scenes: int | None = None,
        train_scenes_seed: int = 0,
    ) -> None:
        super().__init__()
        # the arguments of this class and of the subclass whose __init__ called it
        self.save_hyperparameters()
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise InputValueError(
                f"batch_size/eval_batch_size: expected >= 1, got {batch_size}/{eval_batch_size}"
            )
        if num_workers < 0:
            raise InputValueError(f"num_workers: expected >= 0, got {num_workers}")
        if isinstance(eval_crop_size, str) and eval_crop_size != "same":
            raise InputValueError(
                f"eval_crop_size: expected 'same', a crop side or None (whole images), got "
                f"{eval_crop_size!r}"
            )
        self.scale = scale
        self.crop_size = crop_size
        self.eval_crop_size = crop_size if eval_crop_size == "same" else eval_crop_size
        self.batch_size = batch_size
        self.eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
        self.num_workers = num_workers
        self.cache = cache
        self.guide_channels = guide_channels
        self.augment = {
            "horizontal_flip": horizontal_flip,
            "max_rotation": max_rotation,
            "min_valid_lr": min_valid_lr,
            "min_valid_hr": min_valid_hr,
            "max_retries": max_retries,
            "repeats": train_repeats,
        }
        self.predict_split = predict_split
        self.pin_memory = pin_memory
        self.source_noise = parse_sensor_noise(source_noise)
        self.train_scenes = train_scenes
        self.train_scenes_seed = train_scenes_seed
        self.datasets: dict[str, GuidedDepthDataset] = {}

    def scenes(self, split: Split) -> SceneSource:
        """The loader of ``split`` (implemented by each dataset's module)."""
        raise NotImplementedError

    def dataset(self, split: Split, mode: Mode) -> GuidedDepthDataset:
        """The dataset of ``split`` in ``mode`` (built once, then reused)."""
        key = f"{split}:{mode}"
        if key not in self.datasets:
            extra = self.augment if mode == "train" else {}
            crop_size = self.crop_size if mode == "train" else self.eval_crop_size
            scenes = self.scenes(split)
            if split == "train" and self.train_scenes is not None:
                scenes = scene_subset(scenes, self.train_scenes, seed=self.train_scenes_seed)
            self.datasets[key] = GuidedDepthDataset(
                scenes, mode=mode, scale=self.scale, crop_size=crop_size,
                cache=self.cache, guide_channels=self.guide_channels,
                source_noise=self.source_noise, **extra,
            )
        return self.datasets[key]

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            self.dataset("train", "train")
            self.dataset("val", "eval")
        if stage == "validate":
            self.dataset("val", "eval")
        if stage in ("test", None):
            self.dataset("test", "eval")
        if stage == "predict":
            self.dataset(self.predict_split, "predict")

    def _loader(self, dataset: GuidedDepthDataset, batch_size: int, *, shuffle: bool) -> (
        DataLoader[Batch]
    ):
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
            collate_fn=collate_samples, pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader[Batch]:
        return self._loader(self.dataset("train", "train"), self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader[Batch]:
        return self._loader(self.dataset("val", "eval"), self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader[Batch]:
        return self._loader(self.dataset("test", "eval"), self.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader[Batch]:
        return self._loader(self.dataset(self.predict_split, "predict"), 1, shuffle=False)


class MiddleburyDataModule(GuidedDepthDataModule):
    """Middlebury 2005/2006/2014 (see :class:`~node_dada.data.middlebury.MiddleburyScenes`).

    Args:
        root: parent of ``2005/ 2006/ 2014/``, a MiddEval3 tree, a flat folder of
            scenes, or a list of those read together.
        years: year folders to use.
        target: ``"depth"`` (mm) or ``"disparity"`` (px; no ``dmin.txt`` needed).
        missing_dmin: ``"error"``, ``"skip"`` or ``"assume"`` (an assumed offset,
            ``assumed_dmin``) for 2005/2006 scenes without ``dmin.txt``.
        assumed_dmin: offset of ``missing_dmin="assume"`` (None: median of the
            training scenes' ``dmin.txt``).
        views: ``"both"`` (reference protocol) or ``"left"``.
        depth_scale: override the divisor (default 1122.7 mm or 45.2 px).
        middeval3_size: ``"Q"``, ``"H"`` or ``"F"`` when a MiddEval3 root holds several.
        Other arguments: see :class:`GuidedDepthDataModule`.
    """

    def __init__(
        self,
        root: str | Path | list[str],
        *,
        years: tuple[str, ...] = ("2005", "2006", "2014"),
        target: Literal["depth", "disparity"] = "depth",
        missing_dmin: Literal["error", "skip", "assume"] = "error",
        views: Literal["both", "left"] = "both",
        depth_scale: float | None = None,
        middeval3_size: Literal["Q", "H", "F"] | None = None,
        assumed_dmin: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.root = root
        self.options = {
            "years": tuple(years), "target": target, "missing_dmin": missing_dmin,
            "views": views, "depth_scale": depth_scale, "middeval3_size": middeval3_size,
            "assumed_dmin": assumed_dmin,
        }

    def scenes(self, split: Split) -> SceneSource:
        return MiddleburyScenes(self.root, split=split, **self.options)


class NYUv2DataModule(GuidedDepthDataModule):
    """NYU Depth v2 labeled set (see :class:`~node_dada.data.nyuv2.NYUv2Scenes`).

    Args:
        root: ``nyu_depth_v2_labeled.mat`` or its folder.
        split_file: JSON with ``train/val/test`` frame indices; ``None`` (default)
            uses the community 849/300/300 split shipped with the package
            (``node_dada/data/splits/nyuv2_split_idc.json``).
        depth_scale: divisor of the depth in mm.
        Other arguments: see :class:`GuidedDepthDataModule`.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        split_file: str | Path | None = None,
        depth_scale: float = NYUV2_DEPTH_SCALE_MM,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.root = root
        self.split_file = split_file
        self.depth_scale = depth_scale

    def scenes(self, split: Split) -> SceneSource:
        return NYUv2Scenes(
            self.root, split=split, split_file=self.split_file, depth_scale=self.depth_scale
        )


class DIMLDataModule(GuidedDepthDataModule):
    """DIML/CVL indoor HR set from npy files (see :class:`~node_dada.data.diml.DIMLScenes`).

    Args:
        root: folder holding ``npy/`` (make it with ``python -m node_dada.data.diml_convert``).
        resize: bring frames to 756 x 1344.
        Other arguments: see :class:`GuidedDepthDataModule`.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        resize: bool = True,
        depth_scale: float = DIML_DEPTH_SCALE_MM,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.root = root
        self.resize = resize
        self.depth_scale = depth_scale

    def scenes(self, split: Split) -> SceneSource:
        return DIMLScenes(self.root, split=split, resize=self.resize, depth_scale=self.depth_scale)


class MotorcycleDataModule(GuidedDepthDataModule):
    """The embedded Motorcycle scene for every stage: smoke tests and demos, no download."""

    def __init__(
        self,
        *,
        batch_size: int = 1,
        **options: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **options)

    def scenes(self, split: Split) -> SceneSource:
        return MotorcycleScenes()


class FolderDataModule(GuidedDepthDataModule):
    """Users' own guide/depth pairs (see :class:`~node_dada.data.folder.FolderScenes`).

    Each stage reads ``<root>/<split>/`` when that folder exists, else ``<root>``
    itself (e.g. predict or test on one folder of pairs).

    Args:
        root: the folder.
        guide_dir, depth_dir, guide_suffix, depth_suffix: how files are found and paired.
        depth_unit_mm: millimetres per raw depth unit (1: 16-bit PNG in mm).
        depth_encoding: ``"linear"``, ``"kinect_raw"`` or ``"sun_rgbd"``.
        invalid_value: raw value of holes (0 by default).
        swap_bytes: 16-bit files stored with the wrong byte order.
        depth_scale: divisor of the depth in mm (default 1122.7).
        Other arguments: see :class:`GuidedDepthDataModule`.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        guide_dir: str = "guide",
        depth_dir: str = "depth",
        guide_suffix: str = "",
        depth_suffix: str = "",
        depth_unit_mm: float = 1.0,
        depth_encoding: DepthEncoding = "linear",
        invalid_value: float | None = 0.0,
        swap_bytes: bool = False,
        depth_scale: float = MIDDLEBURY_DEPTH_SCALE_MM,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.root = Path(root)
        self.options = {
            "guide_dir": guide_dir, "depth_dir": depth_dir, "guide_suffix": guide_suffix,
            "depth_suffix": depth_suffix, "depth_unit_mm": depth_unit_mm,
            "depth_encoding": depth_encoding, "invalid_value": invalid_value,
            "swap_bytes": swap_bytes, "depth_scale": depth_scale,
        }

    def scenes(self, split: Split) -> SceneSource:
        folder = self.root / split
        if split in ("val", "test") and not folder.is_dir() and not (
                self.root / "train").is_dir():
            warnings.warn(
                f"FolderDataModule: {self.root} has no {split}/ folder, so the {split} "
                f"metrics are computed on the same pairs as training, not on held-out "
                f"ones; put held-out pairs in {folder}/ (and the training pairs in "
                f"{self.root / 'train'}/)", stacklevel=2)
        return FolderScenes(folder if folder.is_dir() else self.root, **self.options)
