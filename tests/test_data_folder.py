"""Generic folder of guide/depth pairs and raw depth decoding."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from node_dada.data import FolderScenes, GuidedDepthDataset, decode_depth
from node_dada.data.io import write_pfm
from node_dada.data.middlebury import MIDDLEBURY_DEPTH_SCALE_MM
from node_dada.errors import DataError, InputValueError, ShapeError

H, W = 32, 48


def _pair(folder_guide, folder_depth, name, *, depth=None, seed=0, depth_size=(H, W)):
    rng = np.random.default_rng(seed)
    folder_guide.mkdir(parents=True, exist_ok=True)
    folder_depth.mkdir(parents=True, exist_ok=True)
    guide = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    if depth is None:
        depth = rng.integers(400, 5000, depth_size, dtype=np.uint16)
        depth[0, :4] = 0
    assert cv2.imwrite(str(folder_guide / f"{name}.png"), guide[..., ::-1])
    assert cv2.imwrite(str(folder_depth / f"{name}.png"), depth)
    return guide, depth


def test_decode_linear_units_and_invalid():
    raw = np.array([[0, 1000], [5000, 65535]], np.uint16)
    np.testing.assert_array_equal(
        decode_depth(raw), [[np.nan, 1000.0], [5000.0, 65535.0]]
    )
    tum = decode_depth(raw, depth_unit_mm=0.2)  # TUM: 5000 per metre
    assert tum[1, 0] == pytest.approx(1000.0)
    metres = decode_depth(np.array([[np.nan, 1.5, np.inf]], np.float32), depth_unit_mm=1000.0,
                          invalid_value=None)
    np.testing.assert_array_equal(metres, [[np.nan, 1500.0, np.nan]])


def test_decode_kinect_sun_and_byte_swap():
    little_endian_973 = np.array([[973]], np.uint16).byteswap()  # as a big-endian reader sees it
    depth = decode_depth(little_endian_973, depth_encoding="kinect_raw", swap_bytes=True)
    assert depth[0, 0] == pytest.approx(351300.0 / (1092.5 - 973.0), rel=1e-6)
    # SUN RGB-D stores mm rotated left by 3 bits: 2723 mm -> (2723 << 3) | (2723 >> 13)
    stored = np.array([[(2723 << 3) & 0xFFFF | (2723 >> 13), 0]], np.uint16)
    np.testing.assert_array_equal(
        decode_depth(stored, depth_encoding="sun_rgbd"), [[2723.0, np.nan]]
    )
    with pytest.raises(InputValueError, match="16-bit"):
        decode_depth(np.ones((2, 2), np.float32), swap_bytes=True)
    with pytest.raises(InputValueError, match="depth_encoding"):
        decode_depth(np.ones((2, 2), np.uint16), depth_encoding="log")
    with pytest.raises(DataError, match="single-channel"):
        decode_depth(np.ones((2, 2, 3), np.uint16))


def test_guide_depth_folders(tmp_path):
    made = {n: _pair(tmp_path / "guide", tmp_path / "depth", n, seed=i)
            for i, n in enumerate(["b", "a"])}
    scenes = FolderScenes(tmp_path)
    assert [scenes.scene_name(i) for i in range(len(scenes))] == ["a", "b"]
    assert scenes.shape(0) == (H, W) and scenes.depth_scale == MIDDLEBURY_DEPTH_SCALE_MM
    scene = scenes.load(0)
    guide, depth = made["a"]
    np.testing.assert_allclose(scene.guide, guide / 255.0, atol=1e-6)
    np.testing.assert_array_equal(scene.depth, np.where(depth > 0, depth, np.nan))


def test_same_folder_with_suffixes_and_unmatched(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    guide = np.zeros((H, W, 3), np.uint8)
    depth = np.full((H, W), 1500, np.uint16)
    for name in ("X", "Y"):
        assert cv2.imwrite(str(folder / f"{name}_color.png"), guide)
        assert cv2.imwrite(str(folder / f"{name}_depth.png"), depth)
    assert cv2.imwrite(str(folder / "Z_color.png"), guide)
    with pytest.warns(UserWarning, match="1 file"):
        scenes = FolderScenes(folder, guide_dir=".", depth_dir=".", guide_suffix="_color",
                              depth_suffix="_depth")
    assert len(scenes) == 2 and scenes.scene_name(1) == "Y"
    with pytest.raises(InputValueError, match="suffix"):
        FolderScenes(folder, guide_dir=".", depth_dir=".")


def test_other_depth_formats(tmp_path):
    guide = np.zeros((H, W, 3), np.uint8)
    depth_m = np.full((H, W), 2.5, np.float32)
    depth_m[3, 3] = np.nan
    (tmp_path / "g").mkdir()
    (tmp_path / "d").mkdir()
    for name in ("p", "n", "t"):
        assert cv2.imwrite(str(tmp_path / "g" / f"{name}.png"), guide)
    write_pfm(tmp_path / "d" / "p.pfm", depth_m)
    np.save(tmp_path / "d" / "n.npy", depth_m)
    assert cv2.imwrite(str(tmp_path / "d" / "t.tiff"), depth_m)
    scenes = FolderScenes(tmp_path, guide_dir="g", depth_dir="d", depth_unit_mm=1000.0,
                          invalid_value=None)
    for index in range(3):
        depth = scenes.load(index).depth
        assert np.isnan(depth[3, 3]) and np.nanmax(depth) == pytest.approx(2500.0)


def test_low_resolution_depth_is_a_source_for_predict(tmp_path):
    _pair(tmp_path / "guide", tmp_path / "depth", "lr", depth_size=(H // 4, W // 4))
    scenes = FolderScenes(tmp_path)
    assert scenes.load(0).source.shape == (H // 4, W // 4)
    sample = GuidedDepthDataset(scenes, mode="predict", scale=4)[0]
    assert sample.guide.shape == (3, H, W) and sample.source.shape == (1, H // 4, W // 4)
    assert not sample.mask_hr.any() and sample.mask_lr.float().mean() < 1.0
    assert sample.depth0.shape == (1, H, W) and np.isfinite(sample.depth0.numpy()).all()
    with pytest.raises(ShapeError, match="not scale 8"):
        GuidedDepthDataset(scenes, mode="predict", scale=8)[0]
    with pytest.raises(InputValueError, match="only be predicted"):
        GuidedDepthDataset(scenes, mode="eval", scale=4, crop_size=8)[0]


def test_errors(tmp_path):
    with pytest.raises(DataError, match="Expected layout"):
        FolderScenes(tmp_path)
    (tmp_path / "guide").mkdir()
    (tmp_path / "depth").mkdir()
    with pytest.raises(DataError, match="no guide/depth pair"):
        FolderScenes(tmp_path)
    _pair(tmp_path / "guide", tmp_path / "depth", "c", depth=np.zeros((H, W, 3), np.uint8))
    with pytest.raises(DataError, match="single-channel"):
        FolderScenes(tmp_path).load(0)
    _pair(tmp_path / "guide", tmp_path / "depth", "c", depth_size=(H + 4, W))
    with pytest.raises(DataError, match="do not belong together"):
        FolderScenes(tmp_path).load(0)
    with pytest.raises(DataError, match="found nothing"):
        FolderScenes(pairs=[(tmp_path / "x.png", tmp_path / "y.png")])
    with pytest.raises(InputValueError, match="depth_unit_mm"):
        FolderScenes(tmp_path, depth_unit_mm=0)


def test_folder_datamodule_split_folders(tmp_path):
    from node_dada.data import FolderDataModule

    for split, count in (("train", 2), ("val", 1), ("test", 1)):
        for index in range(count):
            _pair(tmp_path / split / "guide", tmp_path / split / "depth", f"{split}{index}",
                  seed=index)
    data = FolderDataModule(tmp_path, scale=4, crop_size=16, batch_size=2)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch.guide.shape == (2, 3, 16, 16)
    assert len(data.datasets["val:eval"]) == (H // 16) * (W // 16)
    data.setup("predict")
    assert next(iter(data.predict_dataloader())).name == ("test0",)
