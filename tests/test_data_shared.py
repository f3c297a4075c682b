"""Real data in ../shared/data (see its SOURCES.md); skipped when the folder is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from node_dada.data import FolderScenes, GuidedDepthDataset, MiddleburyScenes
from node_dada.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
THIRD_SIZE = SHARED / "middlebury0506" / "ThirdSize"
pytestmark = pytest.mark.skipif(
    not THIRD_SIZE.is_dir(), reason=f"shared real data not found at {SHARED}"
)

# From SOURCES.md: the 12 third-size scenes that have dmin.txt.
WITH_DMIN = {
    "Aloe": 270, "Art": 200, "Baby1": 300, "Books": 200, "Bowling1": 290, "Cloth1": 290,
    "Dolls": 200, "Flowerpots": 251, "Laundry": 230, "Moebius": 200, "Reindeer": 230,
    "Rocks1": 274,
}


def test_all_27_scenes_load_in_disparity_mode():
    scenes = MiddleburyScenes(THIRD_SIZE, split="all", target="disparity", views="left")
    assert len(scenes) == 27
    for index in range(len(scenes)):
        scene = scenes.load(index)
        height, width = scenes.shape(index)
        assert scene.guide.shape == (height, width, 3) and height == 370
        valid = np.isfinite(scene.depth)
        assert 0.5 < valid.mean() < 1.0
        assert 1 <= np.nanmin(scene.depth) and np.nanmax(scene.depth) <= 255


def test_metric_depth_of_the_12_scenes_with_dmin():
    with pytest.warns(UserWarning, match="left out 15 scene"):
        scenes = MiddleburyScenes(THIRD_SIZE, split="all", missing_dmin="skip", views="both")
    names = sorted({scenes.scene_name(i).split("/")[0] for i in range(len(scenes))})
    assert names == sorted(WITH_DMIN)
    rng = np.random.default_rng(0)
    for index in range(0, len(scenes), 2):  # view 1 of each scene
        name = scenes.scene_name(index).split("/")[0]
        depth = scenes.load(index).depth
        # Decoded independently with PIL: 8-bit disparity = full-size value, 0 = unknown.
        disparity = np.asarray(Image.open(THIRD_SIZE / name / "disp1.png"), dtype=np.float64)
        rows, cols = np.nonzero(disparity > 0)
        for k in rng.choice(len(rows), 5, replace=False):
            i, j = rows[k], cols[k]
            expected = 3740.0 * 160.0 / (disparity[i, j] + WITH_DMIN[name])
            assert depth[i, j] == pytest.approx(expected, rel=1e-6), (name, i, j)
        assert np.array_equal(np.isnan(depth), disparity == 0)


def test_depth_mode_refuses_scenes_without_dmin():
    with pytest.raises(DataError, match="Bowling2 has no dmin.txt"):
        MiddleburyScenes(THIRD_SIZE, split="test")


def test_eval_crops_of_the_test_split():
    scenes = MiddleburyScenes(THIRD_SIZE, split="test", target="disparity")
    dataset = GuidedDepthDataset(scenes, mode="eval", scale=8, crop_size=256)
    assert len(dataset) == 6  # Reindeer, Bowling1, Bowling2 x 2 views x one 256 crop
    sample = dataset[0]
    assert sample.guide.shape == (3, 256, 256) and sample.source.shape == (1, 32, 32)
    assert sample.unit == "px" and 0.9 < sample.mask_hr.float().mean()


def _raw_pgm_little_endian(path):
    """Parse the NYU .pgm by hand: its header says 16-bit, the data are little-endian."""
    data = path.read_bytes()
    magic, width, height, maxval = data.split(maxsplit=4)[:4]
    assert (magic, int(maxval)) == (b"P5", 65535)
    width, height = int(width), int(height)
    return np.frombuffer(data[-width * height * 2:], "<u2").reshape(height, width)


def test_nyu_raw_frame_through_the_generic_path():
    folder = SHARED / "nyu_depth_v2_sample" / "open3d"
    scenes = FolderScenes(
        pairs=[(folder / "NYU_color.ppm", folder / "NYU_depth.pgm")],
        depth_encoding="kinect_raw", swap_bytes=True,
    )
    scene = scenes.load(0)
    assert scene.guide.shape == (480, 640, 3) and scene.depth.shape == (480, 640)
    raw = _raw_pgm_little_endian(folder / "NYU_depth.pgm").astype(np.float64)
    valid = raw < 2047
    assert np.array_equal(np.isfinite(scene.depth), valid)
    np.testing.assert_allclose(
        scene.depth[valid], 1000.0 * 351.3 / (1092.5 - raw[valid]), rtol=1e-6
    )
    assert 400 < np.nanmedian(scene.depth) < 6000  # an indoor room, in mm
    sample = GuidedDepthDataset(scenes, mode="eval", scale=8, crop_size=256)[1]
    assert sample.target.shape == (1, 256, 256)


@pytest.mark.parametrize(
    ("name", "options"),
    [("SUN", {"depth_encoding": "sun_rgbd"}), ("TUM", {"depth_unit_mm": 0.2})],
)
def test_sensor_frames_through_the_generic_path(name, options):
    folder = SHARED / "other_rgbd_samples" / "open3d"
    suffix = ".jpg" if name == "SUN" else ".png"
    scenes = FolderScenes(
        pairs=[(folder / f"{name}_color{suffix}", folder / f"{name}_depth.png")], **options
    )
    scene = scenes.load(0)
    assert scene.guide.shape == (480, 640, 3)
    valid = np.isfinite(scene.depth)
    assert 0.5 < valid.mean() < 0.95  # sensor frames have holes
    assert 500 < np.nanmedian(scene.depth) < 5000


def test_redwood_folder_layout():
    root = SHARED / "other_rgbd_samples" / "open3d_redwood"
    scenes = FolderScenes(root, guide_dir="color", depth_dir="depth")
    assert len(scenes) == 5 and scenes.scene_name(0) == "00000"
    depth = scenes.load(0).depth
    raw = np.asarray(Image.open(root / "depth" / "00000.png")).astype(np.float64)
    np.testing.assert_array_equal(depth, np.where(raw > 0, raw, np.nan).astype(np.float32))
    sample = GuidedDepthDataset(scenes, mode="predict", scale=8)[0]
    assert sample.guide.shape == (3, 480, 640) and sample.mask_hr.float().mean() > 0.5
