"""Tests of the benchmark command (node_dada.benchmark), the validation search
(node_dada.tuning) and the continuous learning-free baseline ``dada_ode``.

Real runs are tiny: the embedded Motorcycle scene, one scale, one small crop,
a few DADA iterations. Middlebury checks use the shared data and skip without it.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pytest
import torch

from node_dada import benchmark, tuning
from node_dada.baselines import BASELINES, TUNED_PARAMS, get_baseline
from node_dada.commands.benchmark import main as benchmark_main
from node_dada.commands.tuning import main as tuning_main
from node_dada.data.motorcycle import load_motorcycle
from node_dada.diffusion import SolveInfo, block_mean, degrade, normalize_guide
from node_dada.errors import DataError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MIDDLEBURY = SHARED_DATA / benchmark.DEFAULT_MIDDLEBURY_ROOT
needs_middlebury = pytest.mark.skipif(
    not MIDDLEBURY.is_dir(), reason=f"shared Middlebury data not found at {MIDDLEBURY}"
)
TUNING_RECORD = Path(__file__).resolve().parent.parent / "results" / "tuning" / "middlebury_val.csv"


def read_table(path: Path) -> tuple[str, list[dict[str, str]]]:
    lines = path.read_text().splitlines()
    return lines[0], list(csv.DictReader(lines[1:]))


# --- the command on a tiny run ----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], int]:
    out = tmp_path_factory.mktemp("benchmark")
    argv = [
        "--dataset", "motorcycle", "--scales", "8",
        "--methods", "bicubic", "guided_filter", "dada", "dada_ode",
        "--limit", "1", "--crop-size", "64", "--dada-iters", "20",
        "--out", str(out), "--no-progress",
    ]
    return out, argv, benchmark_main(argv)


def test_tiny_run_writes_csv_md_and_figure_with_the_command(
    tiny_run: tuple[Path, list[str], int],
) -> None:
    out, argv, code = tiny_run
    assert code == 0
    command = "node-dada benchmark " + " ".join(argv)
    header, rows = read_table(out / "motorcycle.csv")
    assert header == f"# command: {command}"
    assert f"Produced by `{command}`" in (out / "motorcycle.md").read_text()
    assert (out / "motorcycle_x8.png").stat().st_size > 0
    assert [row["method"] for row in rows] == ["bicubic", "guided_filter", "dada", "dada_ode"]
    for row in rows:
        assert (row["dataset"], row["split"], row["scale"], row["crop_size"]) == (
            "motorcycle", "test", "8", "64",
        )
        assert (row["crops"], row["aggregation"]) == ("1", "pixel")
        assert 0 < int(row["valid_pixels"]) <= 64 * 64
        assert math.isclose(float(row["megapixels"]), 64 * 64 / 1e6, rel_tol=1e-6)
        assert float(row["s_per_mpix"]) > 0


def test_tiny_run_numbers_are_sane(tiny_run: tuple[Path, list[str], int]) -> None:
    out, _, _ = tiny_run
    _, rows = read_table(out / "motorcycle.csv")
    mae = {row["method"]: float(row["mae_cm"]) for row in rows}
    for row in rows:
        mae_cm, mse, rmse = (float(row[k]) for k in ("mae_cm", "mse_cm2", "rmse_cm"))
        assert 0.05 < mae_cm < 50.0  # centimetres on a scene 1-5 m away
        assert math.isclose(rmse, math.sqrt(mse), rel_tol=1e-4)
        assert rmse >= mae_cm
    # The continuous solve tracks the discrete iteration over the same horizon
    # (0.24 x 20); both refine the bicubic estimate they start from.
    assert abs(mae["dada"] - mae["dada_ode"]) < 0.05 * mae["bicubic"]
    assert mae["dada"] < mae["bicubic"]
    dada, dada_ode = (next(r for r in rows if r["method"] == m) for m in ("dada", "dada_ode"))
    assert dada["nfe"] == "20" and int(dada_ode["nfe"]) > 0
    assert "rkc" in dada_ode["solver"] and "T = 4.8" in dada_ode["solver"]


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["--dataset", "motorcycle", "--methods", "bicubc"], "expected one of .*bicubic"),
        (["--dataset", "nyu"], "invalid choice: 'nyu'"),
        (["--dataset", "middlebury", "--root", "{tmp}/missing"], "no folder at"),
        (["--dataset", "motorcycle", "--root", "{tmp}"], "takes no root"),
        (["--dataset", "motorcycle", "--scales", "0"], "expected a positive integer"),
        (["--dataset", "motorcycle", "--scales", "3"], "multiple of scale 3"),
        (["--dataset", "motorcycle", "--checkpoint", "model.ckpt"], "expected NAME=PATH"),
        (["--dataset", "motorcycle", "--checkpoint", "ours={tmp}/model.ckpt"], "neither a shipped model"),
        (["--dataset", "motorcycle", "--checkpoint", "ours=middlebury-x8@1"], "a scale >= 2"),
        (["--methods", "bicubic"], "required: --dataset"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], phrase: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert benchmark_main([*argv, "--out", str(out), "--no-progress"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("node-dada benchmark: error: ")
    assert re.search(phrase, lines[0]), lines[0]
    assert captured.out == ""
    assert not out.exists()


def test_a_checkpoint_with_a_scale_runs_only_at_that_scale(tmp_path: Path) -> None:
    argv = ["--dataset", "motorcycle", "--scales", "4", "8", "--methods", "bicubic",
            "--checkpoint", "x8=middlebury-x8@8", "--limit", "1", "--crop-size", "64",
            "--figure-crops", "0", "--out", str(tmp_path), "--no-progress"]
    assert benchmark_main(argv) == 0
    _, rows = read_table(tmp_path / "motorcycle.csv")
    assert [(row["method"], row["scale"]) for row in rows] == [
        ("bicubic", "4"), ("bicubic", "8"), ("x8", "8")]
    assert "| x8 |  |" in (tmp_path / "motorcycle.md").read_text()  # no x4 cell


def test_per_image_errors_match_a_one_crop_run_and_compare_with_dada(tmp_path: Path) -> None:
    argv = ["--dataset", "motorcycle", "--scales", "4", "--methods", "bicubic", "dada",
            "--dada-iters", "20", "--limit", "2", "--crop-size", "64", "--figure-crops", "0",
            "--no-progress", "--per-image"]
    assert benchmark_main([*argv, "--out", str(tmp_path / "two")]) == 0
    command, rows = read_table(tmp_path / "two" / "motorcycle_per_crop.csv")
    assert "--per-image" in command
    assert [row["method"] for row in rows] == ["bicubic", "dada"] * 2
    # the first crop alone: its per-crop MAE is the pooled MAE of a one-crop run
    assert benchmark_main([*argv[:-1], "--limit", "1", "--out", str(tmp_path / "one")]) == 0
    _, pooled = read_table(tmp_path / "one" / "motorcycle.csv")
    for row, one in zip(rows[:2], pooled, strict=True):
        assert float(row["mae_cm"]) == pytest.approx(float(one["mae_cm"]), rel=1e-4)
    text = (tmp_path / "two" / "motorcycle.md").read_text()
    first = float(rows[0]["mae_cm"]) / float(rows[1]["mae_cm"]) - 1
    assert "## MAE (cm) per crop" in text and f"{100 * first:+.1f} %" in text


def test_trained_checkpoint_joins_as_a_method(tmp_path: Path) -> None:
    from node_dada.models import DADAModule, export_model

    path = tmp_path / "model.pt"
    export_model(DADAModule(extractor="light", lead_in=20, train_iter=4), path)
    method = benchmark.checkpoint_method("ours", path)
    guide = torch.rand(1, 3, 32, 32)
    source = torch.rand(1, 1, 4, 4) * 1000 + 1000
    out = method(guide, source, scale=8)
    assert out.shape == (1, 1, 32, 32)
    torch.testing.assert_close(torch.nn.functional.avg_pool2d(out, 8), source, rtol=1e-4,
                               atol=1e-2)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(b"not a torch file")
    with pytest.raises(DataError):
        benchmark.checkpoint_method("evil", evil)


# --- data plumbing ----------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_raw_guide_undoes_the_pipeline_normalisation(channels: int) -> None:
    guide = torch.rand(2, channels, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(benchmark.raw_guide(normalize_guide(guide)), guide)


def test_motorcycle_crops_carry_millimetres_and_raw_guides() -> None:
    scenes = benchmark.load_scenes("motorcycle")
    crop = next(benchmark.iter_crops(scenes, scale=8, crop_size=64))
    guide, depth = load_motorcycle()
    expected_guide = torch.from_numpy(guide[:64, :64].copy()).permute(2, 0, 1)[None] / 255
    torch.testing.assert_close(crop.guide, expected_guide.float(), atol=1e-6, rtol=0)
    target = torch.from_numpy(depth[:64, :64].copy())[None, None]
    torch.testing.assert_close(crop.target, target, equal_nan=True)
    source, mask = degrade(target, 8)
    assert torch.equal(crop.mask_lr, mask)
    torch.testing.assert_close(crop.source[mask], source[mask], rtol=1e-6, atol=0)


@needs_middlebury
def test_middlebury_splits_hold_only_scenes_with_metric_depth() -> None:
    test = benchmark.load_scenes("middlebury", split="test")
    val = benchmark.load_scenes("middlebury", split="val")
    test_names = {test.scene_name(i).split("/")[0] for i in range(len(test))}
    val_names = {val.scene_name(i).split("/")[0] for i in range(len(val))}
    assert test_names == {"Bowling1", "Reindeer"}  # Bowling2 has no dmin.txt
    assert val_names == {"Moebius"}  # Lampshade1/2 have none either
    assert benchmark.count_crops(test, scale=8, crop_size=256) == 4  # one crop per view


# --- dada_ode ---------------------------------------------------------------------------


def test_dada_ode_is_registered_shaped_and_source_consistent() -> None:
    assert BASELINES["dada_ode"] is get_baseline("dada_ode")
    guide, depth = load_motorcycle()
    guide_t = torch.from_numpy(guide[200:264, 300:364].copy()).permute(2, 0, 1)[None] / 255
    depth_t = torch.from_numpy(depth[200:264, 300:364].copy())[None, None]
    source, mask = degrade(depth_t, 8)
    before = source.clone()
    infos: list[SolveInfo] = []
    out = get_baseline("dada_ode")(
        guide_t.float(), source, scale=8, mask_lr=mask, t_end=24.0, on_info=infos.append
    )
    assert out.shape == (1, 1, 64, 64) and out.dtype == source.dtype
    assert torch.isfinite(out).all()
    torch.testing.assert_close(block_mean(out, 8)[mask], source[mask], rtol=1e-5, atol=0)
    assert torch.equal(source, before)
    assert infos[0].method == "rkc" and infos[0].nfe_forward > 0


# --- the validation search --------------------------------------------------------------


def test_grid_points_are_absolute_deduplicated_and_bounded() -> None:
    points = tuning.grid_points("guided_filter", 4)
    radii = sorted({p["radius"] for p in points})
    assert radii == [1, 2, 4]  # 0.125 x 4 and 0.25 x 4 both round to 1
    assert len(points) == len({tuple(p.items()) for p in points})
    wide = tuning.grid_points("joint_bilateral", 64)
    assert max(p["sigma_space"] for p in wide) <= tuning.MAX_BILATERAL_SIGMA_SPACE


def test_tuned_params_come_from_the_recorded_search() -> None:
    """TUNED_PARAMS are grid points, and where the search record is present they
    are exactly its chosen rows."""
    for method, per_scale in TUNED_PARAMS.items():
        for scale, params in per_scale.items():
            assert params in tuning.grid_points(method, scale), (method, scale)
    if not TUNING_RECORD.is_file():
        pytest.skip(f"no search record at {TUNING_RECORD}")
    header, rows = read_table(TUNING_RECORD)
    assert header.startswith("# command: ")
    assert {row["split"] for row in rows} == {"val"}
    chosen = {
        (row["method"], int(row["scale"])): row["params"] for row in rows if row["chosen"] == "1"
    }
    expected = {
        (method, scale): " ".join(f"{k}={v:g}" for k, v in params.items())
        for method, per_scale in TUNED_PARAMS.items()
        for scale, params in per_scale.items()
    }
    assert chosen == expected


@needs_middlebury
def test_tuning_command_records_every_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--scales", "32", "--methods", "guided_filter", "--crop-size", "256",
            "--out", str(tmp_path), "--no-progress"]
    assert tuning_main(argv) == 0
    header, rows = read_table(tmp_path / "middlebury_val.csv")
    assert header == "# command: python -m node_dada.tuning " + " ".join(argv)
    assert [row["method"] for row in rows].count("guided_filter") == len(
        tuning.grid_points("guided_filter", 32)
    )
    assert sum(row["chosen"] == "1" for row in rows) == 1
    assert "TUNED_PARAMS" in (tmp_path / "middlebury_val.md").read_text()
    capsys.readouterr()
    assert tuning_main(["--methods", "median"]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1
