"""Datasets, file I/O and the sample pipeline (DESIGN.md section 6)."""

from node_dada.data.motorcycle import MIDDLEBURY_DEPTH_SCALE_MM, load_motorcycle

__all__ = ["MIDDLEBURY_DEPTH_SCALE_MM", "load_motorcycle"]
