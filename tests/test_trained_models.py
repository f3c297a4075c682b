"""Shipped trained models: loaded by name (weights-only), small, and reproducing the
metrics committed in results/trained/ when their benchmark command is rerun."""

from __future__ import annotations

import shlex
from pathlib import Path

import cv2
import numpy as np
import pytest

from node_dada import benchmark
from node_dada.cli import main as cli_main
from node_dada.commands.benchmark import main as benchmark_main
from node_dada.models import NAMED_CHECKPOINTS, load_model
from node_dada.models.card import LABEL_PREFIX, read_table
from node_dada.models.inference import SHIPPED_MODELS
from node_dada.models.weights import load_checkpoint_safely

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "trained"
SHARED = ROOT.parent / "shared" / "data"
SHIPPED = list(SHIPPED_MODELS)


@pytest.mark.parametrize("scale", [4, 8, 16, 32])
def test_both_trainings_are_shipped_and_the_scale_name_is_the_best_validated(scale):
    """Both first-stage trainings of a scale are shipped, and the scale's name points to
    the lowest validation MAE among its models validated on clean sources (the pair
    and any second stage, ``-ft``)."""
    pair = [f"middlebury-x{scale}-{kind}" for kind in ("discrete", "ode")]
    assert set(pair) <= set(SHIPPED)
    candidates = [name for name in SHIPPED
                  if name.startswith(f"middlebury-x{scale}-") and not name.endswith("-noisy")]
    assert set(pair) <= set(candidates)
    scores = {}
    for name in candidates:
        content = load_checkpoint_safely(ROOT / "node_dada" / "weights" / f"{name}.pt")
        assert content["hyper_parameters"].get("assume_noise") is None, name
        scores[name] = content["metadata"]["val_mae_cm"]
    assert NAMED_CHECKPOINTS[f"middlebury-x{scale}"] == f"{min(scores, key=scores.get)}.pt"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_is_small_loads_by_name_and_says_how_it_was_made(name):
    path = ROOT / "node_dada" / "weights" / NAMED_CHECKPOINTS[name]
    assert path.stat().st_size < 5e6
    model = load_model(name)
    assert not model.training and model.hparams.extractor == "light"
    metadata = load_checkpoint_safely(path)["metadata"]
    assert (ROOT / metadata["config"]).is_file()
    assert metadata["global_step"] > 0 and metadata["val_mae_cm"] > 0


def test_predict_command_loads_the_shipped_model_by_name(tmp_path, capsys):
    rng = np.random.default_rng(0)
    guide = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    source = (1000 + 200 * rng.random((8, 8))).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "guide.png"), guide)
    cv2.imwrite(str(tmp_path / "depth.png"), source)
    code = cli_main(["predict", "--guide", str(tmp_path / "guide.png"), "--source",
                     str(tmp_path / "depth.png"), "--scale", "8", "--checkpoint", "middlebury-x8",
                     "--out", str(tmp_path / "out.npy")])
    assert code == 0
    depth = np.load(tmp_path / "out.npy")
    assert depth.shape == (64, 64) and np.isfinite(depth).all()
    # exactly consistent with the source: block means restored
    blocks = depth.reshape(8, 8, 8, 8).mean(axis=(1, 3))
    np.testing.assert_allclose(blocks, source, rtol=1e-4)


@pytest.mark.parametrize("table", [
    "middlebury", pytest.param("motorcycle", marks=pytest.mark.slow)])
def test_shipped_models_reproduce_the_committed_metrics(table, tmp_path):
    if table == "middlebury" and not (SHARED / "middlebury0506").is_dir():
        pytest.skip(f"shared Middlebury data not found at {SHARED}")
    command, committed = read_table(RESULTS / f"{table}.csv")
    argv = shlex.split(command)
    argv = argv[argv.index("node_dada.benchmark") + 1:]
    argv[argv.index("--out") + 1] = str(tmp_path)
    # only the shipped models' rows are compared: the cheapest method stands in for the rest
    first = argv.index("--methods") + 1
    end = next(i for i in range(first, len(argv) + 1) if i == len(argv) or argv[i][:2] == "--")
    argv[first:end] = ["bicubic"]
    assert benchmark_main([*argv, "--no-progress"]) == 0
    _, fresh = read_table(tmp_path / f"{table}.csv")
    fresh_mae = {(row["method"], row["scale"]): float(row["mae_cm"]) for row in fresh}
    learned = [row for row in committed if row["method"].removeprefix(LABEL_PREFIX) in SHIPPED]
    assert learned
    for row in learned:
        assert abs(fresh_mae[row["method"], row["scale"]] - float(row["mae_cm"])) <= 1e-4, row
    per_image = RESULTS / f"{table}_per_image.csv"
    if per_image.is_file():
        _, fresh_images = read_table(tmp_path / per_image.name)
        fresh_image_mae = {(r["method"], r["scale"], r["crop"]): float(r["mae_cm"])
                           for r in fresh_images}
        rows = [r for r in read_table(per_image)[1]
                if r["method"].removeprefix(LABEL_PREFIX) in SHIPPED]
        assert rows
        for row in rows:
            key = (row["method"], row["scale"], row["crop"])
            assert abs(fresh_image_mae[key] - float(row["mae_cm"])) <= 1e-4, row


def _image_gains(name: str) -> dict[tuple[str, str], float]:
    """Reduction of the MAE of shipped model ``name`` against learning-free DADA on each
    test image, from the committed per-image table."""
    command, rows = read_table(RESULTS / "middlebury_per_image.csv")
    assert "--methods bicubic dada" in command  # learning-free DADA is computed, not replaced
    own = {(r["scale"], r["crop"]): float(r["mae_cm"]) for r in rows
           if r["method"] == LABEL_PREFIX + name}
    free = {(r["scale"], r["crop"]): float(r["mae_cm"]) for r in rows if r["method"] == "dada"}
    assert own and set(own) <= set(free)
    return {key: 1.0 - own[key] / free[key] for key in own}


def test_per_image_table_holds_every_test_image_of_the_split():
    _, rows = read_table(RESULTS / "middlebury_per_image.csv")
    images = {r["crop"] for r in rows}
    for scene in ("Bowling1/view1", "Bowling1/view5", "Reindeer/view1", "Reindeer/view5",
                  "MiddEval3/trainingQ/Adirondack/view0",
                  "MiddEval3/trainingQ/Motorcycle/view0"):
        assert scene in images, scene


KAPPA_MAP_MODELS = [name for name in SHIPPED if load_checkpoint_safely(
    ROOT / "node_dada" / "weights" / NAMED_CHECKPOINTS[name])["hyper_parameters"].get(
        "kappa_map")]


#: shipped models known to lose to learning-free DADA on some test image
_BEHIND_SOMEWHERE = {
    "middlebury-x32-discrete": "0.5 % worse than learning-free DADA on Bowling1/view5 "
                               "(results/trained/middlebury.md)",
}


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=_BEHIND_SOMEWHERE[name]))
    if name in _BEHIND_SOMEWHERE else name for name in KAPPA_MAP_MODELS])
def test_kappa_map_models_beat_learning_free_on_every_test_image(name):
    gains = _image_gains(name)
    assert min(gains.values()) > 0, {k: round(v, 4) for k, v in gains.items()}


_NOT_YET = pytest.mark.xfail(strict=True, reason="target of the learned models not reached "
                             "yet at this scale: at least 15 % below learning-free DADA on "
                             "every test image at x16 and x32 (results/models.md "
                             "has the gains reached)")


@pytest.mark.parametrize("scale", [4, 8,
                                   pytest.param(16, marks=_NOT_YET),
                                   pytest.param(32, marks=_NOT_YET)])
def test_the_best_model_of_each_scale_reaches_the_target_on_every_image(scale):
    gains = _image_gains(NAMED_CHECKPOINTS[f"middlebury-x{scale}"].removesuffix(".pt"))
    assert min(gains.values()) >= (0.20 if scale <= 8 else 0.15), gains


def test_committed_model_card_is_what_the_card_command_writes():
    from node_dada.models.card import render_card

    committed = (ROOT / "results" / "models.md").read_text()
    assert render_card(Path("results/models.md"), Path("results/trained")) == committed


def test_training_wall_time_of_a_resumed_run_leaves_out_the_interruption(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from node_dada.models.release import training_wall_time

    assert training_wall_time(tmp_path) is None
    for start, end in [(1000.0, 1100.0), (5000.0, 5030.0)]:   # killed, resumed later
        writer = SummaryWriter(str(tmp_path / "version_0"), filename_suffix=f".{start}")
        writer.add_scalar("train/loss", 1.0, 0, walltime=start)
        writer.add_scalar("train/loss", 0.5, 1, walltime=end)
        writer.close()
    assert training_wall_time(tmp_path) == pytest.approx(130.0)


def test_a_resumed_run_is_timed_over_all_its_version_folders(tmp_path):
    from node_dada.models.release import run_folder

    checkpoint = tmp_path / "x8" / "version_1" / "checkpoints" / "best-119-0.9.ckpt"
    assert run_folder(checkpoint) == tmp_path / "x8"
    assert run_folder(tmp_path / "ckpt" / "last.ckpt") == tmp_path  # no version folders


SPEED = ROOT / "results" / "speed" / "trained"


@pytest.mark.skipif(not (SHARED / "middlebury0506" / "ThirdSize").is_dir(),
                    reason="needs ../shared/data/middlebury0506 (the Middlebury test scenes)")
def test_fast_solver_accuracy_rows_reproduce_with_their_command():
    """One committed row of results/speed/trained/accuracy_per_image.csv (the smallest
    test image, ``middlebury-x8-discrete``) recomputed as benchmarks/trained_speed.py computes it."""
    import csv

    import torch

    import node_dada

    rows = list(csv.DictReader(open(SPEED / "accuracy_per_image.csv")))
    row = next(r for r in rows if r["model"] == "middlebury-x8-discrete"
               and r["image"] == "Bowling1/view5")
    scenes = benchmark.load_scenes("middlebury", root=[
        SHARED / "middlebury0506" / "ThirdSize", SHARED / "middlebury2014"])
    crop = next(c for c in benchmark.iter_crops(scenes, scale=8, crop_size=None)
                if c.name == row["image"])
    valid = torch.isfinite(crop.target)
    maes = {}
    for solver in ("exact", "fast"):
        out = node_dada.upsample(crop.guide, crop.source, scale=8, mask_lr=crop.mask_lr,
                                 checkpoint=row["model"], solver=solver)
        maes[solver] = float((out - crop.target)[valid].abs().double().mean()) / 10.0
    assert maes["exact"] == pytest.approx(float(row["mae_exact_cm"]), rel=1e-4)
    assert maes["fast"] == pytest.approx(float(row["mae_fast_cm"]), rel=1e-4)
    assert abs(float(row["change_pct"])) < 0.5 and float(row["rel_l2"]) < 1e-3
