"""DIML: npy loader and the converter from the raw folder layout."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from node_dada.commands.diml_convert import main as convert_main
from node_dada.data import DIMLScenes, convert_diml_raw
from node_dada.data.diml import DIML_BASE_SIZE, DIML_DEPTH_SCALE_MM
from node_dada.errors import DataError

H, W = 24, 40


def write_npy_split(root, split, count, *, seed=0, size=(H, W)):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 3, *size), dtype=np.uint8)
    depths = rng.integers(500, 9000, (count, *size), dtype=np.uint16)
    depths[:, 0, 0] = 0  # hole
    (root / "npy").mkdir(parents=True, exist_ok=True)
    np.save(root / "npy" / f"images_{split}_HR.npy", images)
    np.save(root / "npy" / f"depth_{split}_HR.npy", depths)
    return images, depths


def test_npy_loader_units_and_shapes(tmp_path):
    images, depths = write_npy_split(tmp_path, "test", 3)
    scenes = DIMLScenes(tmp_path, split="test", resize=False)
    assert len(scenes) == 3 and scenes.shape(0) == (H, W)
    assert scenes.depth_scale == DIML_DEPTH_SCALE_MM and scenes.unit == "mm"
    scene = scenes.load(2)
    np.testing.assert_allclose(scene.guide, images[2].transpose(1, 2, 0) / 255.0, atol=1e-6)
    assert np.isnan(scene.depth[0, 0])
    np.testing.assert_array_equal(scene.depth[1:], depths[2, 1:].astype(np.float32))
    assert DIMLScenes(tmp_path / "npy", split="test", resize=False).shape(1) == (H, W)


def test_resize_to_base_size(tmp_path):
    write_npy_split(tmp_path, "val", 1, size=(75, 134))
    scenes = DIMLScenes(tmp_path, split="val")
    assert scenes.shape(0) == DIML_BASE_SIZE
    scene = scenes.load(0)
    assert scene.guide.shape == (*DIML_BASE_SIZE, 3) and scene.depth.shape == DIML_BASE_SIZE
    assert np.isnan(scene.depth[:5, :5]).any() and np.nanmin(scene.depth) >= 500


def test_missing_and_malformed(tmp_path):
    with pytest.raises(DataError) as info:
        DIMLScenes(tmp_path / "DIML", split="train")
    assert "dimlrgbd.github.io" in str(info.value) and "diml_convert" in str(info.value)
    write_npy_split(tmp_path, "train", 2)
    with pytest.raises(DataError, match="images_test_HR.npy"):
        DIMLScenes(tmp_path, split="test")
    np.save(tmp_path / "npy" / "depth_train_HR.npy", np.zeros((3, H, W), np.uint16))
    with pytest.raises(DataError, match="images' frames"):
        DIMLScenes(tmp_path, split="train")
    path = tmp_path / "npy" / "images_train_HR.npy"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated"):
        DIMLScenes(tmp_path, split="train")


def make_raw(root, scenes, *, split="train", seed=0):
    """Raw DIML layout: <root>/<split>/HR/<scene>/color/<stem>_c.png + depth_filled."""
    rng = np.random.default_rng(seed)
    frames = {}
    for scene, count in scenes.items():
        color_dir = root / split / "HR" / scene / "color"
        depth_dir = root / split / "HR" / scene / "depth_filled"
        color_dir.mkdir(parents=True)
        depth_dir.mkdir(parents=True)
        for index in range(count):
            stem = f"in_{scene}_{index:03d}"
            color = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            depth = rng.integers(300, 60000, (H, W), dtype=np.uint16)
            assert cv2.imwrite(str(color_dir / f"{stem}_c.png"), color[..., ::-1])
            assert cv2.imwrite(str(depth_dir / f"{stem}_depth_filled.png"), depth)
            frames[stem] = (color, depth)
    return frames


def test_converter_splits_and_contents(tmp_path):
    raw = tmp_path / "raw"
    train = make_raw(raw, {"160225": 5, "160226": 10})
    test = make_raw(raw, {"170101": 2}, split="test", seed=1)
    counts = convert_diml_raw(raw, tmp_path / "out")
    # last 10 % of each train scene is val: int(5 * 0.9) = 4 and int(10 * 0.9) = 9 stay train
    assert counts == {"train": 13, "val": 2, "test": 2}
    val = DIMLScenes(tmp_path / "out", split="val", resize=False)
    color, depth = train["in_160225_004"]
    np.testing.assert_allclose(val.load(0).guide, color / 255.0, atol=1e-6)
    np.testing.assert_array_equal(val.load(0).depth, depth.astype(np.float32))
    color, depth = train["in_160226_009"]
    np.testing.assert_array_equal(val.load(1).depth, depth.astype(np.float32))
    images = np.load(tmp_path / "out" / "npy" / "images_test_HR.npy")
    assert images.shape == (2, 3, H, W) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[1].transpose(1, 2, 0), test["in_170101_001"][0])
    assert not list((tmp_path / "out" / "npy").glob("*.partial"))


def test_converter_errors_leave_no_partial_files(tmp_path):
    raw = tmp_path / "raw"
    make_raw(raw, {"a": 3})
    (raw / "train" / "HR" / "a" / "depth_filled" / "in_a_001_depth_filled.png").unlink()
    with pytest.raises(DataError, match="has no depth map"):
        convert_diml_raw(raw, splits=("train",))
    make_raw(raw, {"b": 3}, seed=3)
    bad = raw / "train" / "HR" / "b" / "depth_filled" / "in_b_001_depth_filled.png"
    assert cv2.imwrite(str(bad), np.zeros((H, W + 1), np.uint16))
    (raw / "train" / "HR" / "a").rename(tmp_path / "a_removed")
    with pytest.raises(DataError, match="16-bit single-channel PNG"):
        convert_diml_raw(raw, splits=("train",))
    assert not list((raw / "npy").glob("*"))


def test_converter_command(tmp_path, capsys):
    raw = tmp_path / "raw"
    make_raw(raw, {"s": 3})
    make_raw(raw, {"t": 1}, split="test")
    assert convert_main([str(raw), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "npy" / "depth_val_HR.npy").is_file()
    assert convert_main([str(tmp_path / "nowhere")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: DIML raw") and "Traceback" not in error
