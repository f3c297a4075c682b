"""Bad input to every entry point: a catalogue of named cases.

Each case builds one bad input (array, file, folder or command line) and feeds it
to one entry point: the library (``node_dada.upsample``), ``node-dada predict`` on
files, ``node-dada fit``, ``node-dada benchmark`` or a dataset loader. Library and
loader cases must end in a ``NodeDadaError`` (or a documented warning) whose
message matches; command-line cases must end with exit code 2 and ONE line on
stderr (``node-dada...: error: ...``), no traceback. The outcome of every case is
recorded (``record_property``) for ``results/reliability.md``
(``benchmarks/reliability.py``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch

import node_dada
from node_dada.cli import main as cli_main
from node_dada.commands.benchmark import main as benchmark_main
from node_dada.data import DIMLScenes, FolderScenes, GuidedDepthDataset, MiddleburyScenes
from node_dada.data.io import read_image, write_pfm
from node_dada.data.motorcycle import load_motorcycle
from node_dada.data.nyuv2 import NYUv2Scenes
from node_dada.errors import (
    DataError,
    InputTypeError,
    InputValueError,
    ShapeError,
)

# --- the inputs ---------------------------------------------------------------------


@dataclass(frozen=True)
class Space:
    """A folder of good files that the cases corrupt copies of."""

    root: Path
    guide: np.ndarray  # (64, 64, 3) uint8, real Motorcycle crop
    source: np.ndarray  # (8, 8) float mm, its x8 block mean

    def path(self, name: str) -> Path:
        return self.root / name

    def good_guide(self) -> Path:
        return self.path("guide.png")

    def good_source(self) -> Path:
        return self.path("source.png")

    def write(self, name: str, data: bytes) -> Path:
        path = self.path(name)
        path.write_bytes(data)
        return path

    def truncated(self, name: str, like: Path, keep: float = 0.5) -> Path:
        data = like.read_bytes()
        return self.write(name, data[: int(len(data) * keep)])


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Space:
    root = tmp_path_factory.mktemp("bad")
    guide, depth = load_motorcycle()
    g = np.ascontiguousarray(guide[160:224, 384:448])
    d = depth[160:224, 384:448]
    source = np.nan_to_num(np.nanmean(d.reshape(8, 8, 8, 8), axis=(1, 3)))
    cv2.imwrite(str(root / "guide.png"), g[..., ::-1])
    cv2.imwrite(str(root / "source.png"), source.round().astype(np.uint16))
    # a folder dataset of one full-size pair (training, fit) ...
    for split in ("train", "val", "test"):
        (root / "pairs" / split / "guide").mkdir(parents=True)
        (root / "pairs" / split / "depth").mkdir(parents=True)
        cv2.imwrite(str(root / "pairs" / split / "guide" / "a.png"), g[..., ::-1])
        cv2.imwrite(str(root / "pairs" / split / "depth" / "a.png"),
                    np.nan_to_num(d).round().astype(np.uint16))
    return Space(root, g, source)


def fit_argv(space: Space, *extra: str, root: Path | None = None) -> list[str]:
    return [
        "fit", "--model.extractor", "light", "--model.lead_in", "0", "--model.train_iter", "2",
        "--data.class_path", "node_dada.data.FolderDataModule",
        "--data.init_args.root", str(root or space.path("pairs")),
        "--data.init_args.scale", "8", "--data.init_args.crop_size", "64",
        "--data.init_args.batch_size", "1", "--trainer.max_steps", "1",
        "--trainer.accelerator", "cpu", "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.num_sanity_val_steps", "0",
        "--trainer.default_root_dir", str(space.path("runs")),
        "--checkpoint.dirpath", str(space.path("runs/ckpt")), *extra,
    ]


def predict_argv(guide: Path, source: Path, *extra: str, scale: str = "8") -> list[str]:
    return ["predict", "--guide", str(guide), "--source", str(source), "--scale", scale,
            "--solver", "exact", *extra]


def png16(space: Space, name: str, array: np.ndarray) -> Path:
    path = space.path(name)
    cv2.imwrite(str(path), array)
    return path


def pfm(space: Space, name: str, array: np.ndarray) -> Path:
    path = space.path(name)
    write_pfm(path, array.astype(np.float32))
    return path


def npy(space: Space, name: str, array: np.ndarray) -> Path:
    path = space.path(name)
    np.save(path, array, allow_pickle=True)
    return path


def npy_header(shape: tuple[int, ...]) -> bytes:
    """A valid NPY 1.0 header for float64 data of ``shape`` (no data)."""
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        stream, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return stream.getvalue()


def tiff(space: Space, name: str, array: np.ndarray) -> Path:
    path = space.path(name)
    cv2.imwrite(str(path), array)
    return path


def hdf5(space: Space, name: str, *, keys: tuple[str, ...] = ("images", "depths")) -> Path:
    path = space.path(name)
    with h5py.File(path, "w") as handle:
        if "images" in keys:
            handle["images"] = np.zeros((4, 3, 64, 48), np.uint8)
        if "depths" in keys:
            handle["depths"] = np.ones((4, 64, 48), np.float32)
    return path


class _RunsCode:
    """Unpickling this object would create a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_checkpoint(space: Space) -> Path:
    path = space.path("evil.ckpt")
    torch.save({"state_dict": {}, "hyper_parameters": _RunsCode(str(space.path("pwned")))}, path)
    return path


def middlebury(space: Space, name: str, *, dmin: str | None = "200",
               disp: bytes | None = None) -> Path:
    """A Middlebury 2005 layout with one training scene (Art) of real pixels."""
    root = space.path(name)
    scene = root / "2005" / "Art"
    scene.mkdir(parents=True)
    for view in (1, 5):
        cv2.imwrite(str(scene / f"view{view}.png"), space.guide[..., ::-1])
        cv2.imwrite(str(scene / f"disp{view}.png"), np.full((64, 64), 60, np.uint8))
    if disp is not None:
        (scene / "disp1.png").write_bytes(disp)
    if dmin is not None:
        (scene / "dmin.txt").write_text(dmin)
    return root


def diml(space: Space, name: str, images: np.ndarray, depths: np.ndarray,
         truncate: bool = False) -> Path:
    root = space.path(name)
    (root / "npy").mkdir(parents=True)
    np.save(root / "npy" / "images_test_HR.npy", images)
    np.save(root / "npy" / "depth_test_HR.npy", depths)
    if truncate:
        depth_file = root / "npy" / "depth_test_HR.npy"
        depth_file.write_bytes(depth_file.read_bytes()[:200])
    return root


def folder_pair(space: Space, name: str, guide: np.ndarray, depth: np.ndarray) -> Path:
    root = space.path(name)
    (root / "guide").mkdir(parents=True)
    (root / "depth").mkdir(parents=True)
    cv2.imwrite(str(root / "guide" / "x.png"), guide)
    cv2.imwrite(str(root / "depth" / "x.png"), depth)
    return root


def _first_train_sample(scenes) -> object:
    return GuidedDepthDataset(scenes, mode="train", scale=8, crop_size=64, max_retries=4)[0]


# --- the catalogue ------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """``run(space)`` feeds one bad input to ``entry``; it must end as ``expect``.

    ``expect`` is an exception class (library/loader), ``UserWarning`` (a documented
    warning) or ``"exit 2"`` (command line: ``run`` returns the argv).
    """

    entry: str
    name: str
    run: Callable[[Space], object]
    expect: type | str
    phrase: str


def up(guide, source, **kwargs) -> Callable[[Space], object]:
    def run(space: Space) -> object:
        g = guide(space) if callable(guide) else guide
        s = source(space) if callable(source) else source
        quick = {} if "checkpoint" in kwargs else {"num_iter": 20}  # a model brings its own
        return node_dada.upsample(g, s, **{"scale": 8, **quick, **kwargs})
    return run


G = lambda space: space.guide  # noqa: E731  (the good guide)
S = lambda space: space.source  # noqa: E731  (the good source)
E = "exit 2"

CASES = [
    # library: node_dada.upsample --------------------------------------------------------
    Case("upsample", "guide of rank 4 (numpy)", up(np.zeros((1, 64, 64, 3), np.uint8), S), ShapeError, "guide: expected an \\(H, W, C\\)"),
    Case("upsample", "guide as a list", up([[0, 1]], S), InputTypeError, "guide: expected a numpy array"),
    Case("upsample", "bool guide", up(np.zeros((64, 64, 3), bool), S), InputTypeError, "guide: expected dtype uint8, uint16 or float, got bool"),
    Case("upsample", "float guide in 0-255", up(lambda s: s.guide.astype(np.float32), S), InputValueError, "guide: expected float values in 0-1"),
    Case("upsample", "NaN in the guide", up(lambda s: np.where(np.eye(64)[..., None] > 0, np.nan, s.guide / 255.0), S), InputValueError, "guide: expected finite values"),
    Case("upsample", "tensor guide in 0-255", up(lambda s: torch.from_numpy(s.guide.transpose(2, 0, 1)[None].astype(np.float32)), lambda s: torch.from_numpy(s.source[None, None])), InputValueError, "guide: expected values in 0-1"),
    Case("upsample", "int64 tensor guide", up(torch.zeros(1, 3, 64, 64, dtype=torch.int64), lambda s: torch.ones(1, 1, 8, 8)), InputTypeError, "guide: expected dtype float32 or float64"),
    Case("upsample", "source of rank 3", up(G, np.ones((8, 8, 1))), ShapeError, "source: expected an \\(h, w\\) array"),
    Case("upsample", "string source", up(G, np.full((8, 8), "1")), InputTypeError, "source: expected a numeric array"),
    Case("upsample", "complex source", up(G, np.ones((8, 8), complex)), InputTypeError, "source: expected a numeric array"),
    Case("upsample", "empty source", up(G, np.ones((0, 0))), ShapeError, "source: expected a non-empty"),
    Case("upsample", "scale mismatch (source 10x10 at x8)", up(G, np.ones((10, 10))), ShapeError, "guide: expected spatial size \\(80, 80\\)"),
    Case("upsample", "fractional scale 2.5 that the shapes do not have", up(G, S, scale=2.5), ShapeError, "source \\(8, 8\\) x scale 2.5\\), got \\(64, 64\\)"),
    Case("upsample", "scale 0", up(G, S, scale=0), InputValueError, "scale: expected a positive integer"),
    Case("upsample", "tensor batch mismatch", up(torch.rand(2, 3, 64, 64), torch.ones(1, 1, 8, 8)), ShapeError, "source: expected batch size 2"),
    Case("upsample", "source with 2 channels", up(torch.rand(1, 3, 64, 64), torch.ones(1, 2, 8, 8)), ShapeError, "source: expected 1 channel"),
    Case("upsample", "all-NaN source", up(G, np.full((8, 8), np.nan)), InputValueError, "at least one valid pixel"),
    Case("upsample", "all-zero source", up(G, np.zeros((8, 8))), InputValueError, "at least one valid pixel"),
    Case("upsample", "all-inf source", up(G, np.full((8, 8), np.inf)), InputValueError, "at least one valid pixel"),
    Case("upsample", "negative depth", up(G, lambda s: s.source - 5000), InputValueError, "source: expected positive depth"),
    Case("upsample", "depth that overflows float32 (1e300)", up(G, np.full((8, 8), 1e300)), InputValueError, "source: values up to 1e\\+300 overflow"),
    Case("upsample", "all-false mask", up(G, S, mask_lr=np.zeros((8, 8), bool)), InputValueError, "at least one valid pixel"),
    Case("upsample", "mask of the wrong shape", up(G, S, mask_lr=np.ones((4, 4), bool)), ShapeError, "mask_lr: expected shape \\(1, 1, 8, 8\\)"),
    Case("upsample", "negative depth_scale", up(G, S, depth_scale=-1.0), InputValueError, "depth_scale: expected a positive number"),
    Case("upsample", "unknown solver", up(G, S, solver="magic"), InputValueError, "solver: expected one of"),
    Case("upsample", "missing checkpoint", up(G, S, checkpoint="/nonexistent/model.pt"), DataError, "neither a shipped model name"),
    Case("upsample", "checkpoint whose unpickling runs code", lambda s: node_dada.upsample(s.guide, s.source, scale=8, checkpoint=str(evil_checkpoint(s))), DataError, "could run code|beyond tensors|not loaded"),
    Case("upsample", "16-bit guide holding 8-bit values", up(lambda s: s.guide.astype(np.uint16), S), UserWarning, "looks like 8-bit data stored as 16 bits"),
    Case("upsample", "depth values <= 0.1 (metres at scale 1)", up(G, lambda s: s.source / 1e5, depth_scale=1.0), UserWarning, "shifted by \\+0.1"),
    Case("upsample", "1x1 source at x8", up(lambda s: s.guide[:8, :8], np.array([[1500.0]])), "ok", "a constant 8 x 8 map"),
    Case("upsample", "huge aspect: 8 x 4096 guide, 1 x 512 source", up(lambda s: np.tile(s.guide[:8], (1, 64, 1)), lambda s: np.tile(s.source[:1], (1, 64))), "ok", "finite, source-consistent"),
    # node-dada predict on files ----------------------------------------------------------
    Case("predict", "missing guide file", lambda s: predict_argv(s.path("nope.png"), s.good_source()), E, "guide: expected a file at .*nope.png, found nothing"),
    Case("predict", "truncated guide PNG", lambda s: predict_argv(s.truncated("half.png", s.good_guide()), s.good_source()), E, "truncated or corrupt"),
    Case("predict", "garbage bytes named .png", lambda s: predict_argv(s.write("garbage.png", os.urandom(3000)), s.good_source()), E, "expected a PNG image .* truncated or corrupt"),
    Case("predict", "empty source file", lambda s: predict_argv(s.good_guide(), s.write("empty.png", b"")), E, "is empty \\(0 bytes\\)"),
    Case("predict", "truncated source PFM", lambda s: predict_argv(s.good_guide(), s.truncated("half.pfm", pfm(s, "full.pfm", s.source))), E, "the file is truncated"),
    Case("predict", "PFM header claiming 100000 x 100000 (no OOM)", lambda s: predict_argv(s.good_guide(), s.write("huge.pfm", b"Pf\n100000 100000\n-1\n" + bytes(64))), E, "more than the limit"),
    Case("predict", "PFM with a malformed header", lambda s: predict_argv(s.good_guide(), s.write("bad.pfm", b"Pf\nwide tall\n-1\n" + bytes(64))), E, "malformed PFM header"),
    Case("predict", "truncated source NPY", lambda s: predict_argv(s.good_guide(), s.truncated("half.npy", npy(s, "full.npy", s.source), 0.6)), E, "the file is truncated"),
    Case("predict", "NPY header claiming a huge shape (no OOM)", lambda s: predict_argv(s.good_guide(), s.write("huge.npy", npy_header((1000000, 1000000)) + bytes(64))), E, "declares shape \\(1000000, 1000000\\) .* the file is truncated"),
    Case("predict", "NPY holding pickled objects", lambda s: predict_argv(s.good_guide(), npy(s, "objects.npy", np.array([{"a": 1}] * 4, dtype=object))), E, "holds Python objects"),
    Case("predict", "truncated TIFF source", lambda s: predict_argv(s.good_guide(), s.truncated("half.tif", tiff(s, "full.tif", s.source.astype(np.float32)), 0.4)), E, "could not be decoded|truncated or corrupt"),
    Case("predict", "unsupported suffix .txt", lambda s: predict_argv(s.good_guide(), s.write("depth.txt", b"1 2 3")), E, "has suffix '.txt'"),
    Case("predict", "RGB image as the source depth", lambda s: predict_argv(s.good_guide(), s.good_guide(), scale="1"), E, "expected a single-channel depth map"),
    Case("predict", "scale mismatch (x4 for an x8 pair)", lambda s: predict_argv(s.good_guide(), s.good_source(), scale="4"), E, "expected spatial size \\(32, 32\\)"),
    Case("predict", "all-invalid source (all zeros)", lambda s: predict_argv(s.good_guide(), png16(s, "zeros.png", np.zeros((8, 8), np.uint16))), E, "at least one valid pixel"),
    Case("predict", "negative depth in a PFM", lambda s: predict_argv(s.good_guide(), pfm(s, "negative.pfm", -s.source)), E, "expected positive depth"),
    Case("predict", "--scale is not a number", lambda s: predict_argv(s.good_guide(), s.good_source(), scale="eight"), E, "argument --scale: expected a number >= 1, a fraction such as 8/3 or 'auto', got 'eight'"),
    Case("predict", "--scale below 1", lambda s: predict_argv(s.good_guide(), s.good_source(), scale="1/2"), E, "argument --scale: expected a number >= 1"),
    Case("predict", "--out in a folder that does not exist", lambda s: predict_argv(s.good_guide(), s.good_source(), "--out", str(s.path("no/such/dir/out.png"))), E, "--out: the folder .* does not exist"),
    Case("predict", "--checkpoint whose unpickling runs code", lambda s: predict_argv(s.good_guide(), s.good_source(), "--checkpoint", str(evil_checkpoint(s))), E, "could run code|beyond tensors|not loaded"),
    # node-dada fit ------------------------------------------------------------------------
    Case("fit", "unknown config key", lambda s: fit_argv(s, "--model.no_such_key", "1"), E, "unrecognized arguments: --model.no_such_key"),
    Case("fit", "value of the wrong type", lambda s: fit_argv(s, "--model.lr", "fast"), E, "Parser key \"model.lr\""),
    Case("fit", "unknown solver", lambda s: fit_argv(s, "--model.solver", "magic"), E, "solver: expected 'discrete' or 'ode'"),
    Case("fit", "unknown DataModule class", lambda s: fit_argv(s, "--data.class_path", "node_dada.data.NoSuchData"), E, "Problem with given class_path 'node_dada.data.NoSuchData'"),
    Case("fit", "missing config file", lambda s: fit_argv(s, "--config", str(s.path("nope.yaml"))), E, "File does not exist"),
    Case("fit", "malformed YAML config", lambda s: fit_argv(s, "--config", str(s.write("bad.yaml", b"model: [unclosed\n  lr: 1"))), E, "Problems parsing config"),
    Case("fit", "negative max_steps", lambda s: fit_argv(s, "--trainer.max_steps", "-5"), E, "`max_steps` must be a non-negative integer"),
    Case("fit", "missing dataset folder", lambda s: fit_argv(s, root=s.path("missing")), E, "expected the folder .*missing/guide, found nothing"),
    Case("fit", "empty dataset folder", lambda s: fit_argv(s, root=(s.path("empty/guide").mkdir(parents=True), s.path("empty/depth").mkdir(), s.path("empty"))[2]), E, "found no guide/depth pair"),
    Case("fit", "crop size not a multiple of the scale", lambda s: fit_argv(s, "--data.init_args.crop_size", "60"), E, "crop_size: expected a positive multiple of scale 8"),
    Case("fit", "crop larger than the images", lambda s: fit_argv(s, "--data.init_args.crop_size", "128"), E, "crop_size: 128 exceeds scene"),
    Case("fit", "error inside a DataLoader worker (all-invalid depth)", lambda s: fit_argv(s, "--data.init_args.num_workers", "1", root=folder_pair(s, "w-holes", s.guide, np.zeros((64, 64), np.uint16))), E, "error: scene x: no 64 x 64 training crop"),
    Case("fit", "--ckpt_path that does not exist", lambda s: fit_argv(s, "--ckpt_path", str(s.path("none.ckpt"))), E, "--ckpt_path: expected a checkpoint file"),
    Case("fit", "--ckpt_path whose unpickling runs code", lambda s: fit_argv(s, "--ckpt_path", str(evil_checkpoint(s))), E, "could run code|beyond tensors|not loaded"),
    # node-dada benchmark ----------------------------------------------------------------
    Case("benchmark", "unknown method", lambda s: ["benchmark", "--dataset", "motorcycle", "--methods", "magic", "--out", str(s.path("bench"))], E, "magic"),
    Case("benchmark", "scale 0", lambda s: ["benchmark", "--dataset", "motorcycle", "--scales", "0"], E, "expected a positive integer, got '0'"),
    Case("benchmark", "unknown dataset", lambda s: ["benchmark", "--dataset", "kitti"], E, "invalid choice: 'kitti'"),
    Case("benchmark", "missing Middlebury root", lambda s: ["benchmark", "--dataset", "middlebury", "--root", str(s.path("nowhere"))], E, "--root: no folder at"),
    Case("benchmark", "crop size not a multiple of the scale", lambda s: ["benchmark", "--dataset", "motorcycle", "--scales", "8", "--crop-size", "60", "--methods", "bicubic", "--out", str(s.path("bench"))], E, "crop_size: expected a positive multiple of scale 8"),
    # dataset loaders -----------------------------------------------------------------------
    Case("loader", "Middlebury: missing root", lambda s: MiddleburyScenes(s.path("no-middlebury")), DataError, "expected a dataset folder at .*found nothing"),
    Case("loader", "Middlebury: empty root", lambda s: MiddleburyScenes((s.path("empty-mb").mkdir(), s.path("empty-mb"))[1], split="train"), DataError, "found no scene of split 'train'"),
    Case("loader", "Middlebury: scene without dmin.txt", lambda s: MiddleburyScenes(middlebury(s, "mb-nodmin", dmin=None), split="train"), DataError, "has no dmin.txt"),
    Case("loader", "Middlebury: dmin.txt that is not a number", lambda s: MiddleburyScenes(middlebury(s, "mb-baddmin", dmin="two hundred"), split="train"), DataError, "expected a single number"),
    Case("loader", "Middlebury: corrupt disparity PNG", lambda s: MiddleburyScenes(middlebury(s, "mb-corrupt", disp=b"\x89PNG\r\n\x1a\n" + os.urandom(500)), split="train").load(0), DataError, "disparity: expected a PNG image .* truncated or corrupt"),
    Case("loader", "NYUv2: missing .mat file", lambda s: NYUv2Scenes(s.path("nyu.mat"), split="all"), DataError, "expected nyu_depth_v2_labeled.mat at"),
    Case("loader", "NYUv2: not an HDF5 file", lambda s: NYUv2Scenes(s.write("garbage.mat", os.urandom(4096)), split="all"), DataError, "is not an HDF5 file"),
    Case("loader", "NYUv2: truncated HDF5 file", lambda s: NYUv2Scenes(s.truncated("nyu-half.mat", hdf5(s, "nyu-full.mat")), split="all").load(0), DataError, "truncated or corrupt"),
    Case("loader", "NYUv2: HDF5 without 'depths'", lambda s: NYUv2Scenes(hdf5(s, "nyu-nodepth.mat", keys=("images",)), split="all"), DataError, "has no dataset 'depths'"),
    Case("loader", "NYUv2: split file that is not JSON", lambda s: NYUv2Scenes(hdf5(s, "nyu-ok.mat"), split="train", split_file=s.write("split.json", b"{train: [1,")), DataError, "is not valid JSON"),
    Case("loader", "NYUv2: split indices beyond the file", lambda s: NYUv2Scenes(hdf5(s, "nyu-ok2.mat"), split="test", split_file=s.write("split2.json", json.dumps({"train": [0], "val": [1], "test": [99]}).encode())), DataError, "indices outside 0..3"),
    Case("loader", "DIML: missing npy folder", lambda s: DIMLScenes((s.path("diml-empty").mkdir(), s.path("diml-empty"))[1], split="test"), DataError, "DIML: expected .*images_test_HR.npy, found nothing"),
    Case("loader", "DIML: truncated depth npy", lambda s: DIMLScenes(diml(s, "diml-trunc", np.zeros((2, 3, 16, 16), np.uint8), np.ones((2, 16, 16), np.uint16), truncate=True), split="test"), DataError, "the file is truncated"),
    Case("loader", "DIML: float images instead of uint8", lambda s: DIMLScenes(diml(s, "diml-float", np.zeros((2, 3, 16, 16), np.float32), np.ones((2, 16, 16), np.uint16)), split="test"), DataError, "expected uint8 \\(N, 3, H, W\\)"),
    Case("loader", "folder: guide and depth of different sizes", lambda s: FolderScenes(folder_pair(s, "f-size", s.guide, np.ones((64, 48), np.uint16))).load(0), DataError, "is neither the guide's size"),
    Case("loader", "folder: RGB image as depth", lambda s: FolderScenes(folder_pair(s, "f-rgb", s.guide, s.guide)).load(0), DataError, "expected a single-channel depth map"),
    Case("loader", "folder: files without a partner", lambda s: FolderScenes((folder_pair(s, "f-extra", s.guide, np.ones((64, 64), np.uint16)), cv2.imwrite(str(s.path("f-extra/guide/lonely.png")), s.guide))[0]), UserWarning, "have no partner and are ignored"),
    Case("loader", "folder: all-invalid depth for training", lambda s: _first_train_sample(FolderScenes(folder_pair(s, "f-holes", s.guide, np.zeros((64, 64), np.uint16)))), InputValueError, "no 64 x 64 training crop"),
]


def _ids(cases: list[Case]) -> list[str]:
    return [f"{c.entry}: {c.name}" for c in cases]


def test_the_catalogue_is_large_and_covers_every_entry_point(record_property):
    entries = {c.entry for c in CASES}
    assert entries == {"upsample", "predict", "fit", "benchmark", "loader"}
    assert len({(c.entry, c.name) for c in CASES}) == len(CASES)
    assert len(CASES) >= 40
    record_property("bad_cases", json.dumps({e: sum(c.entry == e for c in CASES)
                                             for e in sorted(entries)}))


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()[:300]


@contextlib.contextmanager
def lightning_logs_to_this_stderr() -> Iterator[None]:
    """Lightning's log handlers keep the stderr that was current when Lightning was
    imported (an earlier test's, closed by now); point them at the one of now, as a
    real shell's single stderr would be."""
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "lightning"]
    handlers = [h for name in names for h in logging.getLogger(name).handlers
                if type(h) is logging.StreamHandler]
    streams = [h.stream for h in handlers]
    for handler in handlers:
        handler.stream = sys.stderr  # not setStream(): it flushes the old, closed stream
    try:
        yield
    finally:
        for handler, stream in zip(handlers, streams, strict=True):
            handler.stream = stream


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_bad_input_ends_well(case: Case, space: Space, capfd, record_property):
    start = time.perf_counter()
    if case.expect == E:
        capfd.readouterr()
        argv = case.run(space)
        try:
            with lightning_logs_to_this_stderr():
                code = benchmark_main(argv[1:]) if argv[0] == "benchmark" else cli_main(argv)
        except SystemExit as exit_:  # configuration errors leave as SystemExit(2)
            code = exit_.code
        err = capfd.readouterr().err
        lines = err.strip().splitlines()
        assert code == 2, err[-2000:]
        assert "Traceback" not in err, err[-3000:]
        assert lines and re.match(r"node-dada( \w+)?: error: ", lines[-1]), err[-2000:]
        assert re.search(case.phrase, lines[-1]), lines[-1]
        assert not any("error" in line.lower() for line in lines[:-1]), err[-2000:]
        outcome = f"exit 2: {lines[-1]}"
    elif case.expect == "ok":
        result = case.run(space)
        assert np.isfinite(result).all()
        outcome = f"handled: {case.phrase} ({result.shape[0]} x {result.shape[1]})"
    elif isinstance(case.expect, type) and issubclass(case.expect, Warning):
        with pytest.warns(case.expect, match=case.phrase) as caught:
            case.run(space)
        message = next(str(w.message) for w in caught if re.search(case.phrase, str(w.message)))
        outcome = f"warning: {_one_line(message)}"
    else:
        with pytest.raises(case.expect, match=case.phrase) as info:
            case.run(space)
        outcome = f"{type(info.value).__name__}: {_one_line(str(info.value))}"
    assert not space.path("pwned").exists()  # no checkpoint ever ran code
    record_property("entry", case.entry)
    record_property("outcome", outcome)
    record_property("seconds", round(time.perf_counter() - start, 3))


def test_huge_aspect_and_1x1_results_are_source_consistent(space: Space):
    guide = np.tile(space.guide[:8], (1, 64, 1))
    source = np.tile(space.source[:1], (1, 64))
    out = node_dada.upsample(guide, source, scale=8, num_iter=20)
    np.testing.assert_allclose(out.reshape(1, 8, 512, 8).mean(axis=(1, 3)), source, rtol=1e-4)
    one = node_dada.upsample(space.guide[:8, :8], np.array([[1500.0]]), scale=8, num_iter=20)
    np.testing.assert_allclose(one, 1500.0, rtol=1e-5)


def test_reader_errors_are_oserrors_too(space: Space):
    with pytest.raises(OSError):
        read_image(space.path("absent.png"))
