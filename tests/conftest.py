from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from node_dada.data.root import DATA_ENV

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# The project's data folder is the data root of every test that reads a dataset by
# its relative name (configs, the benchmark's default); without it those tests skip
# and nothing is read from a data root a user may have set.
if SHARED_DATA.is_dir():
    os.environ[DATA_ENV] = str(SHARED_DATA)
else:
    os.environ.pop(DATA_ENV, None)

# Small tensors dominate the suite: one intra-op thread avoids paying for thread
# wake-ups (tens of ms per parallel region on a busy 2-core machine).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


#: Real Motorcycle crops used as a user's folder of pairs by the fit/resume tests.
PAIR_CROP = 64
PAIR_CORNERS = {"train": [(256, 608), (160, 544)], "val": [(160, 384)], "test": [(288, 96)]}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """Real Motorcycle crops as a user's folder of guide/depth pairs (16-bit mm PNG)."""
    from node_dada.data.motorcycle import load_motorcycle

    root = tmp_path_factory.mktemp("pairs")
    guide, depth = load_motorcycle()
    for split, corners in PAIR_CORNERS.items():
        (root / split / "guide").mkdir(parents=True)
        (root / split / "depth").mkdir(parents=True)
        for index, (top, left) in enumerate(corners):
            crop = (slice(top, top + PAIR_CROP), slice(left, left + PAIR_CROP))
            d = np.nan_to_num(depth[crop]).round().astype(np.uint16)
            cv2.imwrite(str(root / split / "guide" / f"{index}.png"), guide[crop][..., ::-1])
            cv2.imwrite(str(root / split / "depth" / f"{index}.png"), d)
    return root
