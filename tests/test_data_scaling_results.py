"""The committed x16 data-scaling study (results/data_scaling) is complete and its
summary is what benchmarks/data_scaling_report.py writes from the committed tables
(training is not rerun here: each cell costs 15 CPU-minutes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from scripts import finished_sweep_rows, load_benchmark

from node_dada.evaluation.report import read_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "data_scaling"


def report_module():
    return load_benchmark("data_scaling_report")


def test_every_cell_of_the_spec_finished_on_its_budget():
    assert finished_sweep_rows(ROOT / "configs" / "sweeps" / "data_scaling.yaml",
                               RESULTS / "cells.csv", budget_s=900)


def test_the_per_image_table_tests_every_cell_on_whole_x16_images():
    report = report_module()
    table = RESULTS / "test" / "middlebury_per_image.csv"
    command = table.read_text().splitlines()[0]
    for needed in ("--scales 16", "--crop-size 0", "--methods dada", "--per-image"):
        assert needed in command, needed
    rows = report.read(RESULTS / "cells.csv")
    images = report.per_image(table)
    for row in rows:
        name = report.method(row)
        checkpoint = f"results/data_scaling/{row['run']}/ckpt/last.ckpt"
        assert f"--checkpoint {name}={checkpoint}@16" in command, name
        assert len(images[name]) == 6
    # the pooled MAE of a cell's own test (the sweep) and of the per-image benchmark agree
    pooled = {r["method"]: float(r["mae_cm"])
              for r in read_table(RESULTS / "test" / "middlebury.csv")[1]}
    for row in rows:
        assert pooled[report.method(row)] == pytest.approx(
            float(row["test_mae_cm"]), rel=2e-3)


def test_the_summary_is_what_the_report_writes():
    report = report_module()
    committed = (RESULTS / "summary.md").read_text()
    command = re.search(r"Written by `([^`]*)`", committed).group(1)
    rows = report.read(RESULTS / "cells.csv")
    images = report.per_image(RESULTS / "test" / "middlebury_per_image.csv")
    assert "\n".join(report.summary(rows, images, command)) + "\n" == committed
    assert (RESULTS / "data_scaling.png").stat().st_size > 20_000


def test_the_straight_line_extrapolation():
    report = report_module()
    # -5 % at 2 scenes, -10 % at 8: -2.5 points per doubling, -15 % at 32 scenes
    assert report.slope([2, 8], [-0.05, -0.10]) == pytest.approx(-0.025)
    assert report.scenes_for_target([2, 8], [-0.05, -0.10]) == pytest.approx(32)
    assert report.scenes_for_target([2, 8], [-0.05, -0.04]) is None


def _section(path: Path, start: str, end: str) -> str:
    text = path.read_text()
    text = text[text.index(start):]
    return text[: text.index(end)]


def test_the_readme_and_the_training_notes_quote_the_summary():
    summary = (RESULTS / "summary.md").read_text()
    for text in (_section(ROOT / "README.md", "**What would close the x16 gap?**", "\n\n"),
                 _section(ROOT / "docs" / "training.md",
                          "## What more data, capacity or context buy at x16", "\nSo the ")):
        quoted = re.findall(r"\b\d\.\d{4}\b", text)
        assert len(quoted) >= 3, text[:80]
        for value in quoted:
            assert value in summary, value
        for percent in re.findall(r"[-+]\d+\.\d %", text):
            assert percent in summary, percent
