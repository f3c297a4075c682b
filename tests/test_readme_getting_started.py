"""The README's "Getting started" commands, run as written (in a scratch folder that
sees the repository's configs), plus the sample data they start from."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from node_dada.cli import main
from node_dada.data import FolderScenes
from node_dada.data.io import read_image
from node_dada.data.sample import SAMPLE_SCALE, write_sample
from node_dada.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
SECTION = re.search(r"## Getting started\n(.*?)\n## ", (ROOT / "README.md").read_text(), re.S)
# Set-up and viewing lines that are not node-dada commands (make demo has its own test).
NOT_RUN = ("make ", "source ", "tensorboard ")


def commands() -> list[list[str]]:
    block = re.search(r"```bash\n(.*?)```", SECTION.group(1), re.S).group(1)
    lines = [line.split("#")[0].strip() for line in block.splitlines()]
    lines = [line for line in lines if line]
    skipped = [line for line in lines if line.startswith(NOT_RUN)]
    assert len(skipped) == 3, skipped
    return [shlex.split(line) for line in lines if not line.startswith(NOT_RUN)]


def test_the_getting_started_commands_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    steps = commands()
    assert [argv[:2] for argv in steps] == [
        ["node-dada", "data"], ["node-dada", "upsample"], ["node-dada", "upsample"],
        ["node-dada", "fit"], ["node-dada", "test"]]
    for argv in steps:
        assert main(argv[1:]) == 0, argv
    truth = read_image(tmp_path / "my_data" / "frame" / "depth_gt.png").astype(np.float64)
    valid = truth > 0
    errors = {}
    for name in ("up_free", "up_x8"):
        out = read_image(tmp_path / "my_data" / "frame" / f"{name}.png").astype(np.float64)
        assert out.shape == truth.shape
        errors[name] = np.abs(out - truth)[valid].mean()
    assert errors["up_x8"] < errors["up_free"]  # the shipped model helps on real data
    run = tmp_path / "runs" / "folder_x8_discrete" / "version_0"
    assert list(run.glob("events.out.tfevents.*"))  # what tensorboard --logdir runs shows
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 1


def test_the_sample_is_real_disjoint_and_not_overwritten_silently(tmp_path):
    written = write_sample(tmp_path)
    assert len(written) == 11
    low = read_image(tmp_path / "frame" / f"depth_x{SAMPLE_SCALE}.png")
    guide = read_image(tmp_path / "frame" / "guide.png")
    assert low.dtype == np.uint16 and guide.shape[:2] == (low.shape[0] * 8, low.shape[1] * 8)
    sizes = {split: len(FolderScenes(tmp_path / "pairs" / split))
             for split in ("train", "val", "test")}
    assert sizes == {"train": 2, "val": 1, "test": 1}
    with pytest.raises(DataError, match="--overwrite"):
        write_sample(tmp_path)
    assert len(write_sample(tmp_path, overwrite=True)) == 11


def test_a_folder_without_val_warns_that_validation_sees_the_training_pairs(tmp_path):
    from node_dada.data import FolderDataModule

    write_sample(tmp_path)
    flat = tmp_path / "pairs" / "train"
    module = FolderDataModule(flat, scale=8, crop_size=64)
    with pytest.warns(UserWarning, match="same pairs as training"):
        module.scenes("val")
    split = FolderDataModule(tmp_path / "pairs", scale=8, crop_size=64)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split.scenes("val")
