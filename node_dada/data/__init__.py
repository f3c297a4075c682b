"""Datasets, file I/O and the sample pipeline (docs/design.md section 6).

Loaders (one per dataset) yield decoded scenes; :class:`GuidedDepthDataset`
turns them into :class:`Sample` records; :func:`collate_samples` batches them
into a :class:`Batch`. The LightningDataModules (``MiddleburyDataModule``,
``NYUv2DataModule``, ``DIMLDataModule``, ``MotorcycleDataModule``,
``FolderDataModule``) are imported on first use, so that ``import
node_dada.data`` does not pull in Lightning.
"""

from __future__ import annotations

from typing import Any

from node_dada.data.dataset import GuidedDepthDataset
from node_dada.data.diml import DIML_DEPTH_SCALE_MM, DIMLScenes, convert_diml_raw
from node_dada.data.folder import FolderScenes, decode_depth
from node_dada.data.io import read_image, read_npy, read_pfm, write_pfm
from node_dada.data.middlebury import (
    MIDDLEBURY_DEPTH_SCALE_MM,
    MIDDLEBURY_DISPARITY_SCALE_PX,
    MiddleburyScenes,
)
from node_dada.data.motorcycle import MotorcycleScenes, load_motorcycle
from node_dada.data.nyuv2 import NYUV2_DEPTH_SCALE_MM, NYUv2Scenes, kinect_raw_to_mm
from node_dada.data.pipeline import Batch, Sample, Scene, collate_samples, make_sample
from node_dada.data.rgbdd import RGBDDScenes

_DATAMODULES = (
    "DIMLDataModule",
    "FolderDataModule",
    "GuidedDepthDataModule",
    "MiddleburyDataModule",
    "MotorcycleDataModule",
    "NYUv2DataModule",
)

__all__ = [
    "DIML_DEPTH_SCALE_MM",
    "MIDDLEBURY_DEPTH_SCALE_MM",
    "MIDDLEBURY_DISPARITY_SCALE_PX",
    "NYUV2_DEPTH_SCALE_MM",
    "Batch",
    "DIMLScenes",
    "FolderScenes",
    "GuidedDepthDataset",
    "MiddleburyScenes",
    "RGBDDScenes",
    "MotorcycleScenes",
    "NYUv2Scenes",
    "Sample",
    "Scene",
    "collate_samples",
    "convert_diml_raw",
    "decode_depth",
    "kinect_raw_to_mm",
    "load_motorcycle",
    "make_sample",
    "read_image",
    "read_npy",
    "read_pfm",
    "write_pfm",
    *_DATAMODULES,
]


def __getattr__(name: str) -> Any:
    if name in _DATAMODULES:
        from node_dada.data import datamodules

        return getattr(datamodules, name)
    raise AttributeError(f"module 'node_dada.data' has no attribute {name!r}")
