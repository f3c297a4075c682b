"""NYU Depth v2 on real frames, end to end: loader, DataModule, ``node-dada test`` and
the benchmark, on a ``.mat`` file with the labeled set's HDF5 layout that holds the 4
real labeled frames of the shared data folder (0, 1000, 1001, 1002; see its
SOURCES.md); and the community split shipped with the package.

The frames' RGB is the ``.mat``'s ``images`` re-saved as JPEG by the source
repository, so the guides written here differ slightly from the original file; the
depth (``<i>_depth.npy``, metres) is the ``.mat``'s filled ``depths`` unchanged.
Tests that need the frames skip when the shared data folder is absent.
"""

from __future__ import annotations

import csv
import json
import math
from fnmatch import fnmatch
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from node_dada.cli import main as cli_main
from node_dada.commands.benchmark import main as benchmark_main
from node_dada.data import NYUv2Scenes
from node_dada.data.datamodules import NYUv2DataModule
from node_dada.data.nyuv2 import NYUV2_DEPTH_SCALE_MM, NYUV2_SPLIT_FILE, read_nyuv2_split
from node_dada.errors import DataError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FRAMES_DIR = SHARED_DATA / "nyu_depth_v2_labeled_frames"
SHARED_SPLIT = SHARED_DATA / "splits" / "nyuv2_split_idc.json"
ROOT = Path(__file__).resolve().parents[1]
#: The labeled frames of the shared folder, in the order they are written to the .mat.
FRAME_IDS = (0, 1000, 1001, 1002)
#: The split of the 4-frame file: indices into it, not into the full set.
SPLIT = {"train": [0, 1], "val": [2], "test": [3]}
H, W = 480, 640
#: Frames and split sizes of the full labeled set (nyu_depth_v2_labeled.mat).
LABELED_FRAMES = 1449
SPLIT_SIZES = {"train": 849, "val": 300, "test": 300}
# MATLAB v7.3 files are HDF5 behind a 512-byte user block that starts with MATLAB's
# 128-byte header: 116 bytes of text, 8 of subsystem offset, version 0x0200, "IM".
_MATLAB_HEADER = (
    b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 "
    b"HDF5 schema 1.00 .".ljust(116, b" ") + bytes(8) + b"\x00\x02IM"
)

needs_frames = pytest.mark.skipif(
    not FRAMES_DIR.is_dir(),
    reason=f"the real NYUv2 labeled frames are absent ({FRAMES_DIR}; see shared/data/SOURCES.md)",
)


def write_labeled_mat(path: Path, guides: np.ndarray, depths_m: np.ndarray) -> None:
    """A file with the HDF5 layout of ``nyu_depth_v2_labeled.mat``.

    MATLAB v7.3 stores arrays column-major, so h5py sees them transposed: ``images``
    uint8 ``(N, 3, W, H)``, ``depths`` float32 metres ``(N, W, H)``, and the label maps
    ``labels`` / ``instances`` uint16 ``(N, W, H)``, each with its ``MATLAB_class``;
    the file starts with MATLAB's 512-byte user block (the HDF5 superblock follows).

    Args:
        guides: (N, H, W, 3) uint8 RGB.
        depths_m: (N, H, W) depth in metres.
    """
    count, height, width = depths_m.shape
    with h5py.File(path, "w", userblock_size=512) as handle:
        images = handle.create_dataset("images", data=guides.transpose(0, 3, 2, 1))
        images.attrs["MATLAB_class"] = np.bytes_("uint8")
        depths = handle.create_dataset(
            "depths", data=depths_m.transpose(0, 2, 1).astype(np.float32))
        depths.attrs["MATLAB_class"] = np.bytes_("single")
        for key in ("labels", "instances"):
            labels = handle.create_dataset(key, data=np.zeros((count, width, height), np.uint16))
            labels.attrs["MATLAB_class"] = np.bytes_("uint16")
    with path.open("r+b") as stream:
        stream.write(_MATLAB_HEADER)


@pytest.fixture(scope="module")
def real_frames() -> tuple[np.ndarray, np.ndarray]:
    """The 4 real frames: guides (4, 480, 640, 3) uint8 and depths (4, 480, 640) metres."""
    if not FRAMES_DIR.is_dir():
        pytest.skip(f"the real NYUv2 labeled frames are absent ({FRAMES_DIR})")
    guides = np.stack([np.asarray(Image.open(FRAMES_DIR / f"{i}_rgb.jpg").convert("RGB"))
                       for i in FRAME_IDS])
    depths = np.stack([np.load(FRAMES_DIR / f"{i}_depth.npy") for i in FRAME_IDS])
    assert guides.shape == (4, H, W, 3) and depths.shape == (4, H, W)
    return guides, depths


@pytest.fixture(scope="module")
def real_mat(tmp_path_factory, real_frames) -> tuple[Path, Path]:
    """The 4 real frames as ``nyu_depth_v2_labeled.mat``, and a split JSON over them."""
    folder = tmp_path_factory.mktemp("nyuv2_real")
    mat = folder / "nyu_depth_v2_labeled.mat"
    write_labeled_mat(mat, *real_frames)
    split = folder / "split.json"
    split.write_text(json.dumps(SPLIT))
    return mat, split


# --- (a) the loader -------------------------------------------------------------------


@needs_frames
def test_the_written_file_has_the_labeled_sets_layout(real_mat):
    mat, _ = real_mat
    assert h5py.is_hdf5(mat) and mat.read_bytes()[:10] == b"MATLAB 7.3"
    with h5py.File(mat, "r") as handle:
        assert handle["images"].shape == (4, 3, W, H) and handle["images"].dtype == np.uint8
        assert handle["depths"].shape == (4, W, H) and handle["depths"].dtype == np.float32


@needs_frames
def test_scenes_read_real_frames_upright_in_millimetres(real_mat, real_frames):
    mat, split = real_mat
    guides, depths = real_frames
    for name, indices in SPLIT.items():
        scenes = NYUv2Scenes(mat, split=name, split_file=split)
        assert len(scenes) == len(indices) and scenes.unit == "mm"
        for position, frame in enumerate(indices):
            assert scenes.scene_name(position) == f"nyuv2/{frame:04d}"
            assert scenes.shape(position) == (H, W)
            scene = scenes.load(position)
            assert scene.guide.shape == (H, W, 3) and scene.depth.shape == (H, W)
            # the .npy of the source repository is the .mat's depth read upright (480 x 640)
            np.testing.assert_allclose(scene.depth, depths[frame] * 1000.0, rtol=1e-6)
            np.testing.assert_allclose(scene.guide, guides[frame] / 255.0, atol=1e-6)
    # the folder works as root too; "all" is every frame, in file order
    everything = NYUv2Scenes(mat.parent, split="all")
    assert [everything.scene_name(i) for i in range(4)] == [f"nyuv2/{i:04d}" for i in range(4)]


@needs_frames
def test_real_depth_and_guide_edges_line_up(real_mat):
    """Orientation beyond shape: depth edges sit on image edges, which they do not
    once either map is mirrored (what a missed transpose or flip looks like)."""
    mat, split = real_mat
    scene = NYUv2Scenes(mat, split="train", split_file=split).load(1)  # frame 1000

    def edges(image: np.ndarray) -> np.ndarray:
        gy, gx = np.gradient(image.astype(np.float64))
        magnitude = np.hypot(gx, gy)[16:-16, 16:-16]  # leave out the labeled set's white frame
        return magnitude > np.percentile(magnitude, 90)

    guide_edges = edges(scene.guide.mean(axis=2))
    depth_edges = edges(scene.depth)

    def overlap(a: np.ndarray, b: np.ndarray) -> float:
        return float((a & b).sum() / b.sum())

    upright = overlap(guide_edges, depth_edges)
    assert upright > 0.2
    assert upright > 1.5 * overlap(guide_edges, depth_edges[::-1])
    assert upright > 1.5 * overlap(guide_edges, depth_edges[:, ::-1])


# --- (b) the DataModule ---------------------------------------------------------------


@needs_frames
def test_datamodule_yields_x8_batches_of_128_crops(real_mat):
    mat, split = real_mat
    module = NYUv2DataModule(mat, split_file=split, scale=8, crop_size=128, batch_size=2,
                             eval_batch_size=4)
    module.setup("fit")
    module.setup("test")
    train = next(iter(module.train_dataloader()))
    assert train.guide.shape == (2, 3, 128, 128)
    assert train.source.shape == train.mask_lr.shape == (2, 1, 16, 16)
    assert train.target.shape == train.depth0.shape == train.mask_hr.shape == (2, 1, 128, 128)
    assert train.scale == 8 and train.depth_scale == NYUV2_DEPTH_SCALE_MM
    assert all(name.startswith(("nyuv2/0000", "nyuv2/0001")) for name in train.name)
    # eval: non-overlapping 128 x 128 grid crops, (480 // 128) * (640 // 128) = 15 per frame
    for loader, frame in ((module.val_dataloader(), 2), (module.test_dataloader(), 3)):
        assert len(loader.dataset) == 15
        batch = next(iter(loader))
        assert batch.guide.shape == (4, 3, 128, 128) and batch.source.shape == (4, 1, 16, 16)
        assert all(name.startswith(f"nyuv2/{frame:04d}") for name in batch.name)
        assert batch.mask_hr.all()  # the labeled set's depth is filled
        depth_mm = batch.physical(batch.target)
        assert 500 < float(depth_mm.min()) and float(depth_mm.max()) < 10_000


# --- (c) node-dada test ---------------------------------------------------------------


@needs_frames
def test_cli_test_runs_learning_free_dada_on_real_frames(real_mat, tmp_path):
    mat, split = real_mat
    code = cli_main([
        "test",
        "--model.extractor", "none", "--model.lead_in", "200", "--model.train_iter", "0",
        "--model.depth_scale", str(NYUV2_DEPTH_SCALE_MM),
        "--data.class_path", "node_dada.data.NYUv2DataModule",
        "--data.init_args.root", str(mat), "--data.init_args.split_file", str(split),
        "--data.init_args.scale", "8", "--data.init_args.crop_size", "64",
        "--data.init_args.batch_size", "8",
        "--trainer.accelerator", "cpu", "--trainer.devices", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(tmp_path),
        "--trainer.logger.class_path", "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.init_args.save_dir", str(tmp_path),
        "--trainer.logger.init_args.name", "csv",
        "--checkpoint.dirpath", str(tmp_path / "ckpt"),
    ])
    assert code == 0
    metrics = sorted(tmp_path.glob("csv/version_*/metrics.csv"))
    assert metrics, f"no metrics.csv under {tmp_path / 'csv'}"
    rows = list(csv.DictReader(metrics[-1].read_text().splitlines()))
    values = [float(row["test/mae_cm"]) for row in rows if row.get("test/mae_cm")]
    assert len(values) == 1
    # x8 on indoor depth (0.7-6.7 m): a few cm, far from the depth itself (hundreds of cm)
    assert math.isfinite(values[0]) and 0 < values[0] < 20


# --- (d) the benchmark ----------------------------------------------------------------


@needs_frames
def test_benchmark_on_real_frames_dada_beats_bicubic(real_mat, tmp_path):
    mat, split = real_mat
    argv = ["--dataset", "nyuv2", "--root", str(mat), "--split-file", str(split),
            "--scales", "8", "--methods", "bicubic", "dada", "--crop-size", "0",
            "--dada-iters", "1000", "--out", str(tmp_path), "--no-progress"]
    assert benchmark_main(argv) == 0
    lines = (tmp_path / "nyuv2.csv").read_text().splitlines()
    assert lines[0] == "# command: node-dada benchmark " + " ".join(argv)
    rows = {row["method"]: row for row in csv.DictReader(lines[1:])}
    assert set(rows) == {"bicubic", "dada"}
    for row in rows.values():
        assert row["dataset"] == "nyuv2" and row["split"] == "test"
        assert row["crop_size"] == "full" and row["crops"] == "1"
        assert int(row["valid_pixels"]) == H * W
    bicubic, dada = float(rows["bicubic"]["mae_cm"]), float(rows["dada"]["mae_cm"])
    assert 0 < dada < bicubic < 50, (dada, bicubic)
    text = (tmp_path / "nyuv2.md").read_text()
    assert "NYU Depth v2" in text and "nyuv2/0003" in text
    assert (tmp_path / "nyuv2_x8.png").stat().st_size > 0


@needs_frames
def test_benchmark_nyuv2_needs_one_root_and_split_file_is_nyuv2_only(real_mat, tmp_path,
                                                                      capsys):
    mat, split = real_mat
    assert benchmark_main(["--dataset", "nyuv2", "--scales", "8", "--methods", "bicubic",
                           "--out", str(tmp_path), "--no-progress"]) == 2
    assert "--root: nyuv2 expects one path" in capsys.readouterr().err
    assert benchmark_main(["--dataset", "motorcycle", "--split-file", str(split), "--scales",
                           "8", "--methods", "bicubic", "--out", str(tmp_path),
                           "--no-progress"]) == 2
    assert "--split-file: only the nyuv2 dataset" in capsys.readouterr().err
    # without --split-file the packaged split applies: its indices are beyond these 4 frames
    assert benchmark_main(["--dataset", "nyuv2", "--root", str(mat), "--scales", "8",
                           "--methods", "bicubic", "--out", str(tmp_path),
                           "--no-progress"]) == 2
    assert "outside 0..3" in capsys.readouterr().err


# --- (e) the packaged split -----------------------------------------------------------


def test_packaged_split_has_the_community_sizes_and_is_disjoint():
    assert NYUV2_SPLIT_FILE.is_file()
    assert NYUV2_SPLIT_FILE == ROOT / "node_dada" / "data" / "splits" / "nyuv2_split_idc.json"
    split = read_nyuv2_split(NYUV2_SPLIT_FILE, frames=LABELED_FRAMES)
    assert {key: len(values) for key, values in split.items()} == SPLIT_SIZES
    sets = {key: set(values) for key, values in split.items()}
    assert all(len(sets[key]) == len(split[key]) for key in split)  # no repeats
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    assert sets["train"] | sets["val"] | sets["test"] == set(range(LABELED_FRAMES))
    # the shared frames are all train frames (shared/data/SOURCES.md)
    assert set(FRAME_IDS) <= sets["train"]


def test_packaged_split_is_package_data():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library "
                                  "from Python 3.11")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["node_dada"]
    relative = NYUV2_SPLIT_FILE.relative_to(ROOT / "node_dada").as_posix()
    assert any(fnmatch(relative, pattern) for pattern in patterns), patterns
    assert (NYUV2_SPLIT_FILE.parent / "SOURCES.md").is_file()


@pytest.mark.skipif(not SHARED_SPLIT.is_file(),
                    reason=f"the shared copy of the split is absent ({SHARED_SPLIT})")
def test_packaged_split_equals_the_shared_copy_byte_for_byte():
    assert NYUV2_SPLIT_FILE.read_bytes() == SHARED_SPLIT.read_bytes()


def test_scenes_and_datamodule_default_to_the_packaged_split(tmp_path):
    """A 1449-frame file of tiny frames: without split_file both read the packaged split."""
    rng = np.random.default_rng(0)
    guides = rng.integers(0, 256, (LABELED_FRAMES, 8, 8, 3), dtype=np.uint8)
    depths = rng.uniform(0.7, 9.5, (LABELED_FRAMES, 8, 8))
    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    write_labeled_mat(mat, guides, depths)
    split = json.loads(NYUV2_SPLIT_FILE.read_text())
    for name, size in SPLIT_SIZES.items():
        scenes = NYUv2Scenes(mat, split=name)
        assert len(scenes) == size
        assert scenes.scene_name(0) == f"nyuv2/{split[name][0]:04d}"
    module = NYUv2DataModule(tmp_path, scale=4, crop_size=8)
    assert module.split_file is None
    test = module.scenes("test")
    assert [test.scene_name(i) for i in range(3)] == [f"nyuv2/{i:04d}" for i in split["test"][:3]]
    # a given split file still wins
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"train": [7], "val": [8], "test": [9, 10]}))
    assert len(NYUv2DataModule(tmp_path, split_file=mine).scenes("test")) == 2
    assert len(NYUv2Scenes(mat, split="test", split_file=mine)) == 2


def test_packaged_split_on_a_smaller_file_says_to_pass_a_split_file(tmp_path):
    rng = np.random.default_rng(1)
    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    write_labeled_mat(mat, rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8),
                      rng.uniform(1.0, 5.0, (4, 8, 8)))
    with pytest.raises(DataError, match="outside 0..3") as info:
        NYUv2Scenes(mat, split="train")
    assert "split_file" in str(info.value) and "1449" in str(info.value)
