"""Middlebury 2005/2006/2014 loaders on miniature trees built in tmp_path."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
import torch

from node_dada.data import Batch, GuidedDepthDataset, MiddleburyScenes
from node_dada.data.middlebury import (
    MIDDLEBURY_DEPTH_SCALE_MM,
    MIDDLEBURY_DISPARITY_SCALE_PX,
    disparity_to_depth_2005_2006,
    middlebury_split,
    read_calibration,
)
from node_dada.errors import DataError, InputValueError

H, W = 40, 54
CALIB = {"f": 3997.684, "baseline": 193.001, "doffs": 131.111}


def _write_rgb(path, rgb):
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


def make_0506_scene(folder, *, dmin=200, seed=0):
    """Scene with views 1 and 5; disparity 60..179 with a few zeros (unknown)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    scene = {}
    for view in (1, 5):
        guide = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        disparity = rng.integers(60, 180, (H, W), dtype=np.uint8)
        disparity[rng.random((H, W)) < 0.03] = 0
        _write_rgb(folder / f"view{view}.png", guide)
        assert cv2.imwrite(str(folder / f"disp{view}.png"), disparity)
        scene[view] = (guide, disparity)
    if dmin is not None:
        (folder / "dmin.txt").write_text(f"{dmin}\n")
    return scene


def make_2014_scene(folder, *, seed=0):
    """Scene with im0/im1, disp0/disp1.pfm (inf = unknown) and calib.txt."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    scene = {}
    for view in (0, 1):
        guide = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        disparity = rng.uniform(50.0, 250.0, (H, W)).astype(np.float32)
        disparity[rng.random((H, W)) < 0.03] = np.inf
        _write_rgb(folder / f"im{view}.png", guide)
        assert cv2.imwrite(str(folder / f"disp{view}.pfm"), disparity)  # OpenCV's own writer
        scene[view] = (guide, disparity)
    (folder / "calib.txt").write_text(
        f"cam0=[{CALIB['f']} 0 1176.728; 0 {CALIB['f']} 1011.728; 0 0 1]\n"
        f"cam1=[{CALIB['f']} 0 1307.839; 0 {CALIB['f']} 1011.728; 0 0 1]\n"
        f"doffs={CALIB['doffs']}\nbaseline={CALIB['baseline']}\nwidth={W}\nheight={H}\n"
        "ndisp=280\nisint=0\nvmin=23\nvmax=245\n"
    )
    return scene


@pytest.fixture()
def tree(tmp_path):
    """<root>/2005, 2006, 2014 with scenes from every split."""
    root = tmp_path / "Middlebury"
    scenes = {
        "2005/Reindeer": make_0506_scene(root / "2005" / "Reindeer", dmin=230, seed=1),
        "2005/Art": make_0506_scene(root / "2005" / "Art", dmin=200, seed=2),
        "2006/Bowling2": make_0506_scene(root / "2006" / "Bowling2", dmin=None, seed=3),
        "2006/Lampshade1": make_0506_scene(root / "2006" / "Lampshade1", dmin=None, seed=4),
        "2006/Aloe": make_0506_scene(root / "2006" / "Aloe", dmin=270, seed=5),
        "2014/Adirondack-perfect": make_2014_scene(root / "2014" / "Adirondack-perfect", seed=6),
        "2014/Jadeplant-perfect": make_2014_scene(root / "2014" / "Jadeplant-perfect", seed=7),
        "2014/Jadeplant-imperfect": make_2014_scene(root / "2014" / "Jadeplant-imperfect", seed=8),
        "2014/Shelves-perfect": make_2014_scene(root / "2014" / "Shelves-perfect", seed=9),
    }
    return root, scenes


def _names(scenes):
    return [scenes.scene_name(i) for i in range(len(scenes))]


def test_split_rule():
    assert middlebury_split("Adirondack-perfect") == "test"
    assert middlebury_split("Shelves-perfect") == "val"
    assert middlebury_split("Bowling2") == "test"
    assert middlebury_split("Lampshade1") == "val"
    assert middlebury_split("Jadeplant-perfect") == "train"


def test_depth_2005_2006_formula_hand_computed():
    disparity = np.array([[0, 100], [40, 255]], np.uint8)
    depth = disparity_to_depth_2005_2006(disparity, 200.0)
    assert np.isnan(depth[0, 0])
    # 3740 * 160 = 598400; / (100 + 200) = 1994.666..., / 240 = 2493.33..., / 455 = 1315.16...
    np.testing.assert_allclose(depth[0, 1], 598400 / 300, rtol=1e-6)
    np.testing.assert_allclose(depth[1, 0], 2493.3333, rtol=1e-6)
    np.testing.assert_allclose(depth[1, 1], 1315.1648, rtol=1e-6)


def test_train_split_depth_values(tree):
    root, made = tree
    scenes = MiddleburyScenes(root, split="train")
    assert _names(scenes) == [
        "2005/Art/view1", "2005/Art/view5", "2006/Aloe/view1", "2006/Aloe/view5",
        "2014/Jadeplant-perfect/view0", "2014/Jadeplant-perfect/view1",
    ]
    assert scenes.unit == "mm" and scenes.depth_scale == MIDDLEBURY_DEPTH_SCALE_MM
    art5 = scenes.load(1)
    guide, disparity = made["2005/Art"][5]
    assert art5.guide.shape == (H, W, 3) and art5.guide.dtype == np.float32
    np.testing.assert_allclose(art5.guide, guide / 255.0, atol=1e-6)
    for i, j in [(0, 0), (5, 7), (H - 1, W - 1)]:
        if disparity[i, j] == 0:
            assert np.isnan(art5.depth[i, j])
        else:
            expected = 3740.0 * 160.0 / (float(disparity[i, j]) + 200.0)
            assert art5.depth[i, j] == pytest.approx(expected, rel=1e-6)
    assert np.array_equal(np.isnan(art5.depth), disparity == 0)


def test_2014_depth_from_pfm_and_calib(tree):
    root, made = tree
    scenes = MiddleburyScenes(root, split="test", years=("2014",))
    assert _names(scenes) == ["2014/Adirondack-perfect/view0", "2014/Adirondack-perfect/view1"]
    scene = scenes.load(1)
    _, disparity = made["2014/Adirondack-perfect"][1]
    invalid = ~np.isfinite(disparity)
    assert invalid.any()
    assert np.array_equal(np.isnan(scene.depth), invalid)
    i, j = np.argwhere(~invalid)[3]
    expected = CALIB["f"] * CALIB["baseline"] / (float(disparity[i, j]) + CALIB["doffs"])
    assert scene.depth[i, j] == pytest.approx(expected, rel=1e-5)
    # top row of the image is the top row of the depth (PFM stores rows bottom-up)
    np.testing.assert_allclose(
        scene.depth[0][~invalid[0]],
        CALIB["f"] * CALIB["baseline"] / (disparity[0][~invalid[0]] + CALIB["doffs"]),
        rtol=1e-5,
    )


def test_imperfect_skipped_and_val_split(tree):
    root, _ = tree
    with pytest.raises(DataError, match="Lampshade1 has no dmin.txt"):
        MiddleburyScenes(root, split="val")
    scenes = MiddleburyScenes(root, split="val", target="disparity", views="left")
    assert _names(scenes) == ["2006/Lampshade1/view1", "2014/Shelves-perfect/view0"]
    every = _names(MiddleburyScenes(root, split="all", target="disparity"))
    assert not any("imperfect" in name for name in every)
    assert len(every) == 2 * 8


def test_missing_dmin_error_skip_and_disparity_mode(tree):
    root, made = tree
    with pytest.raises(DataError) as info:
        MiddleburyScenes(root, split="test")
    message = str(info.value)
    assert "Bowling2" in message and "target='disparity'" in message
    assert "vision.middlebury.edu" in message
    with pytest.warns(UserWarning, match="Bowling2"):
        skipped = MiddleburyScenes(root, split="test", missing_dmin="skip")
    assert [n.split("/")[1] for n in _names(skipped)] == ["Reindeer"] * 2 + ["Adirondack-perfect"] * 2
    disparity_mode = MiddleburyScenes(root, split="test", target="disparity")
    assert disparity_mode.unit == "px"
    assert disparity_mode.depth_scale == MIDDLEBURY_DISPARITY_SCALE_PX
    index = _names(disparity_mode).index("2006/Bowling2/view1")
    scene = disparity_mode.load(index)
    _, disparity = made["2006/Bowling2"][1]
    np.testing.assert_array_equal(np.nan_to_num(scene.depth, nan=0.0), disparity)


def test_missing_dmin_assume_trains_on_the_median_training_offset(tree, tmp_path):
    root, _ = tree
    wood = make_0506_scene(root / "2006" / "Wood1", dmin=None, seed=11)
    with pytest.warns(UserWarning, match="assumed offset dmin=235.*Wood1"):
        scenes = MiddleburyScenes(root, split="train", missing_dmin="assume")
    # median of the training scenes' offsets (Art 200, Aloe 270); Reindeer's 230
    # (a test scene) does not count
    assert scenes.assumed_dmin == 235.0
    names = _names(scenes)
    assert "2006/Wood1/view1" in names and "2006/Wood1/view5" in names
    depth = scenes.load(names.index("2006/Wood1/view5")).depth
    expected = disparity_to_depth_2005_2006(wood[5][1], 235.0)
    np.testing.assert_array_equal(depth, expected)
    explicit = MiddleburyScenes(root, split="train", missing_dmin="assume", assumed_dmin=300)
    np.testing.assert_array_equal(
        explicit.load(names.index("2006/Wood1/view5")).depth,
        disparity_to_depth_2005_2006(wood[5][1], 300.0),
    )
    # an assumed depth is never scored: validation and test leave such scenes out
    with pytest.warns(UserWarning, match="left out 1 scene.*Lampshade1"):
        val = MiddleburyScenes(root, split="val", missing_dmin="assume")
    assert not any("Lampshade1" in name for name in _names(val))
    with pytest.raises(InputValueError, match="'assume'"):
        MiddleburyScenes(root, missing_dmin="guess")
    with pytest.raises(InputValueError, match="assumed_dmin.*200-300"):
        MiddleburyScenes(root, missing_dmin="assume", assumed_dmin=-5.0)
    lonely = tmp_path / "lonely"
    make_0506_scene(lonely / "Wood2", dmin=None, seed=12)
    with pytest.raises(DataError, match="pass assumed_dmin="):
        MiddleburyScenes(lonely, split="train", missing_dmin="assume")


def test_flat_layout(tmp_path):
    make_0506_scene(tmp_path / "Reindeer", dmin=230)
    make_0506_scene(tmp_path / "Moebius", dmin=200)
    (tmp_path / "notes").mkdir()
    with pytest.warns(UserWarning, match="ignored 1 folder"):
        scenes = MiddleburyScenes(tmp_path, split="test")
    assert _names(scenes) == ["Reindeer/view1", "Reindeer/view5"]
    assert scenes.shape(0) == (H, W)


def test_missing_root_and_empty_root(tmp_path):
    with pytest.raises(DataError) as info:
        MiddleburyScenes(tmp_path / "nowhere")
    message = str(info.value)
    assert "Expected layout" in message and "2014/<Scene>-perfect" in message
    assert "https://vision.middlebury.edu/stereo/data/" in message
    with pytest.raises(DataError, match="found no scene"):
        MiddleburyScenes(tmp_path)


def test_missing_file_and_corrupt_file(tmp_path):
    make_0506_scene(tmp_path / "2005" / "Art")
    (tmp_path / "2005" / "Art" / "disp5.png").unlink()
    with pytest.raises(DataError, match="lacks disp5.png"):
        MiddleburyScenes(tmp_path)
    (tmp_path / "2005" / "Art" / "disp5.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    scenes = MiddleburyScenes(tmp_path)
    scenes.load(0)
    with pytest.raises(DataError, match="disp5.png"):
        scenes.load(1)


def test_truncated_pfm_in_scene(tmp_path):
    folder = tmp_path / "2014" / "Motorcycle-perfect"
    make_2014_scene(folder)
    data = (folder / "disp0.pfm").read_bytes()
    (folder / "disp0.pfm").write_bytes(data[: len(data) // 2])
    scenes = MiddleburyScenes(tmp_path, split="test")
    with pytest.raises(DataError, match="truncated"):
        scenes.load(0)


def test_size_mismatch_raises(tmp_path):
    folder = tmp_path / "2006" / "Aloe"
    make_0506_scene(folder)
    assert cv2.imwrite(str(folder / "disp1.png"), np.ones((H, W - 2), np.uint8))
    with pytest.raises(DataError, match="do not belong together"):
        MiddleburyScenes(tmp_path).load(0)


def test_calibration_parsing(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text("cam0=[1758.23 0 953.34; 0 1758.23 552.29; 0 0 1]\ndoffs=0\nbaseline=97.99\n")
    calib = read_calibration(path)
    assert calib == {"f": 1758.23, "baseline": 97.99, "doffs": 0.0}
    path.write_text("cam0=[1758.23 0 953.34; 0 1758.23 552.29; 0 0 1]\n")
    with pytest.raises(DataError, match="baseline"):
        read_calibration(path)


def test_eval_grid_crops_and_samples(tree):
    root, made = tree
    scenes = MiddleburyScenes(root, split="train", years=("2005",))
    dataset = GuidedDepthDataset(scenes, mode="eval", scale=4, crop_size=16)
    # (40 // 16) * (54 // 16) = 2 * 3 crops per view, 2 views
    assert len(dataset) == 12
    sample = dataset[4]  # view1, crop row 1, col 1
    assert sample.name == "2005/Art/view1@16,16"
    assert sample.guide.shape == (3, 16, 16) and sample.source.shape == (1, 4, 4)
    _, disparity = made["2005/Art"][1]
    window = disparity[16:32, 16:32].astype(np.float64)
    expected = np.where(window > 0, 598400.0 / (window + 200.0) / MIDDLEBURY_DEPTH_SCALE_MM, 0)
    np.testing.assert_allclose(sample.target[0].numpy(), expected, rtol=1e-5)
    np.testing.assert_array_equal(sample.mask_hr[0].numpy(), window > 0)


def test_datamodule_all_stages(tree):
    from node_dada.data import MiddleburyDataModule

    root, _ = tree
    data = MiddleburyDataModule(
        root, target="disparity", scale=4, crop_size=16, batch_size=3, eval_batch_size=4
    )
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert isinstance(batch, Batch) and len(batch) == 3
    assert batch.guide.shape == (3, 3, 16, 16) and batch.source.shape == (3, 1, 4, 4)
    assert batch.mask_lr.dtype == torch.bool and batch.unit == "px"
    assert batch.mask_lr.float().mean() >= 0.9 - 1e-6
    val = list(data.val_dataloader())
    assert sum(len(b) for b in val) == 2 * 6 * 2  # 2 scenes x 6 crops x 2 views
    data.setup("test")
    assert sum(len(b) for b in data.test_dataloader()) == 3 * 6 * 2
    data.setup("predict")
    whole = next(iter(data.predict_dataloader()))
    assert whole.guide.shape == (1, 3, 40, 52)  # 54 cropped to a multiple of 4
    assert data.hparams["target"] == "disparity"


def test_datamodule_reports_missing_dmin_at_setup(tree):
    from node_dada.data import MiddleburyDataModule

    root, _ = tree
    data = MiddleburyDataModule(root, scale=4, crop_size=16)
    with pytest.raises(DataError, match="dmin"):
        data.setup("test")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        skipping = MiddleburyDataModule(root, scale=4, crop_size=16, missing_dmin="skip")
        skipping.setup("test")
    assert len(skipping.datasets["test:eval"]) == 4 * 6


def test_datamodule_options_parse_from_yaml_style_arguments(tree):
    from jsonargparse import ArgumentParser

    from node_dada.data import MiddleburyDataModule

    root, _ = tree
    parser = ArgumentParser()
    parser.add_class_arguments(MiddleburyDataModule, "data")
    config = parser.parse_args([
        "--data.root", str(root), "--data.target", "disparity", "--data.years", '["2014"]',
        "--data.scale", "4", "--data.crop_size", "16", "--data.num_workers", "0",
    ])
    data = MiddleburyDataModule(**config.data)
    data.setup("test")
    assert len(data.datasets["test:eval"]) == 2 * 6  # Adirondack, two views


def make_middeval3_scene(folder, *, seed=0):
    """MiddEval3 training scene: im0/im1, disp0GT.pfm (inf = unknown), calib.txt."""
    scene = make_2014_scene(folder, seed=seed)
    (folder / "disp0.pfm").rename(folder / "disp0GT.pfm")
    (folder / "disp1.pfm").unlink()
    cv2.imwrite(str(folder / "mask0nocc.png"), np.full((H, W), 255, np.uint8))
    return scene


@pytest.fixture()
def middeval3(tmp_path):
    """<root>/MiddEval3/trainingQ with a test scene, its E variant, a P variant and train scenes."""
    root = tmp_path / "downloads"
    base = root / "MiddEval3" / "trainingQ"
    made = {name: make_middeval3_scene(base / name, seed=seed) for seed, name in enumerate(
        ["Adirondack", "Motorcycle", "MotorcycleE", "Playtable", "PlaytableP", "Jadeplant",
         "PianoL"])}
    return root, made


def test_middeval3_split_rule_follows_the_base_scene():
    assert middlebury_split("MotorcycleE") == "test"
    assert middlebury_split("PlaytableP") == "val"
    assert middlebury_split("PianoL") == "train"
    assert middlebury_split("ShelvesE") == "val"
    assert middlebury_split("Cloth1") == "train"


def test_middeval3_layout_left_view_and_variants(middeval3):
    root, made = middeval3
    names = {split: _names(MiddleburyScenes(root, split=split)) for split in ("test", "val")}
    # E and L variants repeat their base scene's im0 and ground truth: left out; P is kept
    assert names["test"] == ["MiddEval3/trainingQ/Adirondack/view0",
                             "MiddEval3/trainingQ/Motorcycle/view0"]
    assert names["val"] == ["MiddEval3/trainingQ/Playtable/view0",
                            "MiddEval3/trainingQ/PlaytableP/view0"]
    train = MiddleburyScenes(root / "MiddEval3" / "trainingQ", split="train")
    assert _names(train) == ["Jadeplant/view0"]  # a training{Q,H,F} folder itself works too
    scene = MiddleburyScenes(root, split="test").load(0)
    guide, disparity = made["Adirondack"][0]
    np.testing.assert_allclose(scene.guide, guide / 255.0, atol=1e-6)
    invalid = ~np.isfinite(disparity)
    assert np.array_equal(np.isnan(scene.depth), invalid)
    i, j = np.argwhere(~invalid)[5]
    expected = CALIB["f"] * CALIB["baseline"] / (float(disparity[i, j]) + CALIB["doffs"])
    assert scene.depth[i, j] == pytest.approx(expected, rel=1e-5)


def test_middeval3_sizes_must_be_chosen_when_several(middeval3):
    root, _ = middeval3
    make_middeval3_scene(root / "MiddEval3" / "trainingH" / "Adirondack", seed=9)
    with pytest.raises(ValueError, match="several sizes.*middeval3_size"):
        MiddleburyScenes(root, split="test")
    half = MiddleburyScenes(root, split="test", middeval3_size="H")
    assert _names(half) == ["MiddEval3/trainingH/Adirondack/view0"]
    with pytest.raises(DataError, match="no trainingF folder.*MiddEval3-data-F.zip"):
        MiddleburyScenes(root, split="test", middeval3_size="F")
    with pytest.raises(ValueError, match="middeval3_size: expected one of"):
        MiddleburyScenes(root, split="test", middeval3_size="quarter")


def test_several_roots_are_read_together(tree, middeval3):
    root_0506, _ = tree
    root_eval3, _ = middeval3
    scenes = MiddleburyScenes([root_0506, root_eval3], split="test", missing_dmin="skip")
    assert _names(scenes) == [
        "2005/Reindeer/view1", "2005/Reindeer/view5", "2014/Adirondack-perfect/view0",
        "2014/Adirondack-perfect/view1", "MiddEval3/trainingQ/Adirondack/view0",
        "MiddEval3/trainingQ/Motorcycle/view0",
    ]
    with pytest.raises(ValueError, match="empty list"):
        MiddleburyScenes([], split="test")
