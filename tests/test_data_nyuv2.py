"""NYUv2 labeled-set loader on a tiny HDF5 .mat with the real keys and axis order."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from node_dada.data import GuidedDepthDataset, NYUv2Scenes, kinect_raw_to_mm
from node_dada.data.nyuv2 import NYUV2_DEPTH_SCALE_MM, read_nyuv2_split
from node_dada.errors import DataError

N, H, W = 6, 24, 32  # frames are H x W = 24 x 32 (the real set: 480 x 640)


def _frames():
    """Guides (N, H, W, 3) uint8 and depths (N, H, W) metres, as they should come out."""
    rng = np.random.default_rng(0)
    guides = rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8)
    depths = rng.uniform(0.7, 9.5, (N, H, W))
    depths[:, 0, :3] = 0.0  # holes
    return guides, depths


def write_mat(path, guides, depths):
    """MATLAB v7.3 stores column-major, so h5py sees images (N, 3, W, H), depths (N, W, H)."""
    with h5py.File(path, "w") as handle:
        handle.create_dataset("images", data=guides.transpose(0, 3, 2, 1))
        handle.create_dataset("depths", data=depths.transpose(0, 2, 1).astype(np.float32))
        handle.create_dataset("labels", data=np.zeros((N, W, H), np.uint16))


@pytest.fixture()
def nyu(tmp_path):
    guides, depths = _frames()
    write_mat(tmp_path / "nyu_depth_v2_labeled.mat", guides, depths)
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": [0, 1, 2], "val": [3], "test": [5, 4]}))
    return tmp_path, split, guides, depths


def test_axis_order_units_and_split(nyu):
    root, split, guides, depths = nyu
    scenes = NYUv2Scenes(root, split="test", split_file=split)
    assert len(scenes) == 2 and scenes.scene_name(0) == "nyuv2/0005"
    assert scenes.shape(0) == (H, W) and scenes.unit == "mm"
    assert scenes.depth_scale == NYUV2_DEPTH_SCALE_MM
    scene = scenes.load(0)  # frame 5
    assert scene.guide.shape == (H, W, 3)
    np.testing.assert_allclose(scene.guide, guides[5] / 255.0, atol=1e-6)
    expected = np.where(depths[5] > 0, depths[5].astype(np.float32) * 1000.0, np.nan)
    np.testing.assert_allclose(scene.depth, expected, rtol=1e-6)
    assert np.isnan(scene.depth[0, :3]).all() and np.isfinite(scene.depth[1:]).all()


def test_mat_path_or_folder_and_all_split(nyu):
    root, split, _, _ = nyu
    assert len(NYUv2Scenes(root / "nyu_depth_v2_labeled.mat", split="all")) == N
    assert len(NYUv2Scenes(root, split="train", split_file=split)) == 3
    # no split_file: the packaged community split, whose indices go beyond these 6 frames
    with pytest.raises(DataError, match="outside 0..5.*split_file"):
        NYUv2Scenes(root, split="train")


def test_samples_and_pickling(nyu):
    import pickle

    root, split, _, depths = nyu
    scenes = NYUv2Scenes(root, split="val", split_file=split)
    scenes.load(0)  # opens the file in this process
    clone = pickle.loads(pickle.dumps(scenes))  # what DataLoader workers receive
    np.testing.assert_array_equal(clone.load(0).depth, scenes.load(0).depth)
    dataset = GuidedDepthDataset(scenes, mode="eval", scale=4, crop_size=16)
    assert len(dataset) == 2  # (24 // 16) * (32 // 16)
    sample = dataset[1]
    np.testing.assert_allclose(
        sample.target[0].numpy(),
        depths[3][:16, 16:32].astype(np.float32) * 1000.0 / NYUV2_DEPTH_SCALE_MM,
        rtol=1e-5,
    )


def test_split_file_errors(nyu, tmp_path):
    root, _, _, _ = nyu
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": [0], "val": [1], "test": [N]}))
    with pytest.raises(DataError, match="outside"):
        NYUv2Scenes(root, split="test", split_file=bad)
    bad.write_text(json.dumps({"train": [0]}))
    with pytest.raises(DataError, match="train/val/test"):
        read_nyuv2_split(bad)
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        read_nyuv2_split(bad)
    with pytest.raises(DataError, match="nyuv2_split_idc.json"):
        read_nyuv2_split(tmp_path / "missing.json")


def test_missing_wrong_kind_truncated_and_malformed(tmp_path):
    with pytest.raises(DataError) as info:
        NYUv2Scenes(tmp_path, split="all")
    assert "nyu_depth_v2.html" in str(info.value) and "(N, 3, W, H)" in str(info.value)
    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    mat.write_bytes(b"MATLAB 5.0 MAT-file" + b"\0" * 200)
    with pytest.raises(DataError, match="not an HDF5 file"):
        NYUv2Scenes(mat, split="all")
    guides, depths = _frames()
    write_mat(mat, guides, depths)
    data = mat.read_bytes()
    mat.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        NYUv2Scenes(mat, split="all")
    with h5py.File(mat, "w") as handle:
        handle.create_dataset("images", data=guides.transpose(0, 3, 2, 1))
    with pytest.raises(DataError, match="'depths'"):
        NYUv2Scenes(mat, split="all")
    with h5py.File(mat, "w") as handle:  # H and W swapped: the depths do not match
        handle.create_dataset("images", data=guides.transpose(0, 3, 2, 1))
        handle.create_dataset("depths", data=depths.astype(np.float32))
    with pytest.raises(DataError, match=r"expected float \(N, W, H\)"):
        NYUv2Scenes(mat, split="all")


def test_kinect_raw_to_mm_hand_computed():
    raw = np.array([0, 973, 1092, 2047, 1500], np.uint16)
    depth = kinect_raw_to_mm(raw)
    # 351.3 / (1092.5 - 973) = 2.93975 m; 351.3 / 0.5 = 702.6 m; 2047 invalid; 1500 beyond range
    np.testing.assert_allclose(depth[:3], [351300 / 1092.5, 351300 / 119.5, 702600.0], rtol=1e-6)
    assert np.isnan(depth[3:]).all()
