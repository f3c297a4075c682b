"""Tests of the RGB-D-D loader (node_dada.data.rgbdd), the benchmark's ``rgbdd`` dataset
and ``benchmarks/rgbdd_published.py``.

Both layouts are built as tiny trees in tmp_path (JPEG guides and 16-bit PNG depth
written with OpenCV); the checks on the real test set skip without the shared data.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
from scripts import load_benchmark

from node_dada import benchmark
from node_dada.commands.benchmark import main as benchmark_main
from node_dada.data.rgbdd import RGBDD_DEPTH_SCALE_MM, RGBDDScenes
from node_dada.errors import DataError, InputValueError

ROOT = Path(__file__).resolve().parents[1]
RGBDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "rgbdd"
needs_rgbdd = pytest.mark.skipif(
    not RGBDD.is_dir(),
    reason=f"RGB-D-D not found at {RGBDD} (shared/data/SOURCES.md, entry rgbdd)",
)
HEIGHT, WIDTH = 24, 32
BLOCK = 8  # solid colour blocks survive JPEG compression


def make_pair(offset: int) -> tuple[np.ndarray, np.ndarray]:
    """An RGB uint8 guide (red block top-left, blue block bottom-right) and uint16 mm
    depth growing to the right (``1000 + offset + 10 * column``), 0 at two corners."""
    guide = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    guide[:BLOCK, :BLOCK] = (255, 0, 0)
    guide[-BLOCK:, -BLOCK:] = (0, 0, 255)
    depth = np.tile(1000 + offset + 10 * np.arange(WIDTH, dtype=np.uint16), (HEIGHT, 1))
    depth[0, 0] = 0
    depth[-1, -1] = 0
    return guide, depth


def write_pair(guide_path: Path, depth_path: Path, offset: int) -> None:
    guide, depth = make_pair(offset)
    guide_path.parent.mkdir(parents=True, exist_ok=True)
    depth_path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(guide_path), guide[..., ::-1])  # OpenCV writes BGR
    assert cv2.imwrite(str(depth_path), depth)


def make_flat(root: Path, ids: tuple[str, ...] = ("b2", "a1")) -> Path:
    for offset, key in enumerate(ids):
        write_pair(root / "test" / "RGB" / f"{key}_RGB.jpg",
                   root / "test" / "Depth" / f"{key}_HR_gt.png", 100 * offset)
    return root


def make_official(root: Path) -> Path:
    layout = {("portraits", "test"): ("p1", "p2"), ("plants", "test"): ("q1",),
              ("models", "test"): ("m1",), ("models", "train"): ("t1",)}
    for offset, ((category, split), ids) in enumerate(layout.items()):
        for key in ids:
            folder = root / category / f"{category}_{split}" / key
            write_pair(folder / f"{key}_RGB.jpg", folder / f"{key}_HR_gt.png", 100 * offset)
            small = np.full((HEIGHT // 4, WIDTH // 4), 1500, np.uint16)
            assert cv2.imwrite(str(folder / f"{key}_LR_fill_depth.png"), small)
    return root


# --- the loader on synthetic trees ---------------------------------------------------


def test_flat_layout_from_the_dataset_folder_or_its_test_folder(tmp_path: Path) -> None:
    root = make_flat(tmp_path / "rgbdd")
    for folder in (root, root / "test"):
        scenes = RGBDDScenes(folder)
        assert scenes.layout == "flat"
        assert len(scenes) == 2
        assert [scenes.scene_name(i) for i in range(2)] == ["rgbdd/test/a1", "rgbdd/test/b2"]
        assert scenes.shape(0) == (HEIGHT, WIDTH)
        assert scenes.unit == "mm"
        assert scenes.depth_scale == RGBDD_DEPTH_SCALE_MM == 1122.7


def test_load_keeps_orientation_units_and_rgb_order_and_marks_zero_invalid(
    tmp_path: Path,
) -> None:
    scene = RGBDDScenes(make_flat(tmp_path)).load(1)  # b2: offset 0
    _, written = make_pair(0)
    assert scene.name == "rgbdd/test/b2"
    assert scene.guide.shape == (HEIGHT, WIDTH, 3) and scene.guide.dtype == np.float32
    assert 0.0 <= scene.guide.min() and scene.guide.max() <= 1.0
    top_left = scene.guide[:BLOCK - 2, :BLOCK - 2].mean(axis=(0, 1))
    bottom_right = scene.guide[-BLOCK + 2:, -BLOCK + 2:].mean(axis=(0, 1))
    assert top_left[0] > 0.9 and top_left[2] < 0.1  # red stays in channel 0 (RGB)
    assert bottom_right[2] > 0.9 and bottom_right[0] < 0.1
    assert scene.depth.shape == (HEIGHT, WIDTH) and scene.depth.dtype == np.float32
    assert np.isnan(scene.depth[0, 0]) and np.isnan(scene.depth[-1, -1])
    assert np.isnan(scene.depth).sum() == 2
    valid = written > 0
    np.testing.assert_array_equal(scene.depth[valid], written[valid].astype(np.float32))
    assert scene.depth[5, 1] == 1010.0  # mm as stored: 1000 + 10 * column


def test_official_layout_reads_each_category_and_split(tmp_path: Path) -> None:
    root = make_official(tmp_path)
    test = RGBDDScenes(root)
    assert test.layout == "official"
    assert [test.scene_name(i) for i in range(len(test))] == [
        "rgbdd/test/models/m1", "rgbdd/test/plants/q1",
        "rgbdd/test/portraits/p1", "rgbdd/test/portraits/p2",
    ]
    scene = test.load(0)
    assert scene.depth.shape == (HEIGHT, WIDTH) and np.isnan(scene.depth[0, 0])
    assert scene.depth[3, 2] == 1000 + 200 + 20  # models_test was written with offset 200
    train = RGBDDScenes(root, split="train")
    assert [train.scene_name(i) for i in range(len(train))] == ["rgbdd/train/models/t1"]


def test_a_missing_guide_names_the_folder_and_the_file(tmp_path: Path) -> None:
    root = make_flat(tmp_path)
    (root / "test" / "RGB" / "a1_RGB.jpg").unlink()
    with pytest.raises(DataError, match=r"RGB.* lacks the guide .*a1_RGB\.jpg"):
        RGBDDScenes(root)


def test_a_missing_depth_map_names_the_folder_and_the_file(tmp_path: Path) -> None:
    root = make_flat(tmp_path)
    (root / "test" / "Depth" / "b2_HR_gt.png").unlink()
    with pytest.raises(DataError, match=r"Depth.* lacks the depth .*b2_HR_gt\.png"):
        RGBDDScenes(root)


def test_an_official_pair_folder_without_its_depth_is_refused(tmp_path: Path) -> None:
    root = make_official(tmp_path)
    folder = root / "plants" / "plants_test" / "q1"
    (folder / "q1_HR_gt.png").unlink()
    with pytest.raises(DataError, match=r"plants_test.q1 lacks q1_HR_gt\.png"):
        RGBDDScenes(root)


@pytest.mark.parametrize("case", ["nothing", "empty", "no_depth_folder", "no_split"])
def test_folders_without_the_expected_files_are_refused(tmp_path: Path, case: str) -> None:
    root = tmp_path / "rgbdd"
    if case == "empty":
        root.mkdir()
    elif case == "no_depth_folder":
        (root / "test" / "RGB").mkdir(parents=True)
    elif case == "no_split":
        (root / "models" / "models_train").mkdir(parents=True)
    with pytest.raises(DataError, match="Expected layout|expected a dataset folder"):
        RGBDDScenes(root)


def test_guide_and_depth_of_different_sizes_are_refused(tmp_path: Path) -> None:
    root = make_flat(tmp_path)
    small = np.full((HEIGHT // 2, WIDTH // 2), 1000, np.uint16)
    cv2.imwrite(str(root / "test" / "Depth" / "a1_HR_gt.png"), small)
    with pytest.raises(DataError, match="differs from depth size"):
        RGBDDScenes(root).load(0)


def test_an_unknown_split_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputValueError, match="expected 'train' or 'test'"):
        RGBDDScenes(make_flat(tmp_path), split="val")


# --- the benchmark's rgbdd dataset ---------------------------------------------------------


def test_benchmark_needs_exactly_one_rgbdd_root(tmp_path: Path) -> None:
    root = make_flat(tmp_path)
    assert "rgbdd" in benchmark.DATASETS
    assert isinstance(benchmark.load_scenes("rgbdd", root=root), RGBDDScenes)
    with pytest.raises(InputValueError, match="rgbdd expects one folder, got nothing"):
        benchmark.load_scenes("rgbdd")
    with pytest.raises(InputValueError, match="got 2 paths"):
        benchmark.load_scenes("rgbdd", root=[root, root])
    with pytest.raises(InputValueError, match="--split-file"):
        benchmark.load_scenes("rgbdd", root=root, split_file=tmp_path / "split.json")


def test_benchmark_crops_of_synthetic_pairs_are_block_means_in_mm(tmp_path: Path) -> None:
    scenes = benchmark.load_scenes("rgbdd", root=make_flat(tmp_path))
    crop = next(benchmark.iter_crops(scenes, scale=4, crop_size=None))
    assert crop.target.shape == (1, 1, HEIGHT, WIDTH)
    assert crop.source.shape == (1, 1, HEIGHT // 4, WIDTH // 4)
    assert crop.name.startswith("rgbdd/test/a1")  # written with offset 100
    # columns 4..7 of depth 1100 + 10 * column average to 1155 mm (no invalid pixel there)
    assert float(crop.source[0, 0, 1, 1]) == pytest.approx(1155.0, abs=1e-2)


# --- the real test set (shared data) ---------------------------------------------------------


@needs_rgbdd
def test_the_real_test_set_has_405_pairs_in_mm() -> None:
    scenes = RGBDDScenes(RGBDD)
    assert len(scenes) == 405
    scene = scenes.load(0)
    assert scene.name == "rgbdd/test/20200509112638"
    assert scene.guide.shape == (384, 512, 3)
    assert scene.depth.shape == (384, 512)
    assert 0.0 <= scene.guide.min() and scene.guide.max() <= 1.0
    assert 500.0 < np.nanmin(scene.depth) < np.nanmax(scene.depth) < 4000.0  # mm (Helios)


@needs_rgbdd
def test_benchmark_command_runs_on_the_real_test_set(tmp_path: Path) -> None:
    code = benchmark_main([
        "--dataset", "rgbdd", "--root", str(RGBDD), "--limit", "1", "--scales", "8",
        "--methods", "bicubic", "dada", "--dada-iters", "500", "--crop-size", "0",
        "--out", str(tmp_path), "--no-progress",
    ])
    assert code == 0
    lines = (tmp_path / "rgbdd.csv").read_text().splitlines()
    assert lines[0].startswith("# command:")
    rows = list(csv.DictReader(lines[1:]))
    assert {row["method"] for row in rows} == {"bicubic", "dada"}
    assert all(math.isfinite(float(row["rmse_cm"])) for row in rows)


def published_script() -> ModuleType:
    return load_benchmark('rgbdd_published')


def test_published_errors_leave_out_invalid_pixels_and_the_border() -> None:
    script = published_script()
    truth = np.full((10, 10), 1000.0, np.float32)
    truth[5, 5] = 0.0  # invalid: its huge error must not count
    prediction = np.full_like(truth, 1010.0)  # 1 cm everywhere inside
    prediction[0, :] = 5000.0  # wrong on the top row, which a border of 1 drops
    rmse, mae, pixels = script.image_errors(prediction, truth, border=1)
    assert (rmse, mae, pixels) == (pytest.approx(1.0), pytest.approx(1.0), 63)


@needs_rgbdd
def test_published_protocol_script_writes_finite_per_image_rmse(tmp_path: Path) -> None:
    code = published_script().main(
        ["--root", str(RGBDD), "--limit", "2", "--scales", "8", "--out", str(tmp_path)])
    assert code == 0
    lines = (tmp_path / "rgbdd_published.csv").read_text().splitlines()
    assert lines[0].startswith("# python benchmarks/rgbdd_published.py --root")
    rows = list(csv.DictReader(lines[1:]))
    bicubic = [float(row["rmse_cm"]) for row in rows if row["method"] == "bicubic"]
    assert len(bicubic) == 2 and all(math.isfinite(value) and value > 0 for value in bicubic)
    assert "Produced by `python benchmarks/rgbdd_published.py" in (
        tmp_path / "README.md").read_text()
