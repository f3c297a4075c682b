"""The committed results/rgbdd table reproduces with its command (the first image)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "rgbdd" / "rgbdd_published.csv"
SHARED = ROOT.parent / "shared" / "data" / "rgbdd"


def rows(path: Path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


def test_the_committed_table_covers_every_pair_and_scale():
    table = rows(RESULTS)
    assert len({r["scene"] for r in table}) == 405
    for scale in ("4", "8", "16"):
        methods = {r["method"] for r in table if r["scale"] == scale}
        assert {"bicubic", "dada", f"middlebury-x{scale}"} <= methods


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/rgbdd")
def test_the_first_image_reproduces(tmp_path):
    done = subprocess.run(
        [sys.executable, "benchmarks/rgbdd_published.py", "--root", str(SHARED), "--limit", "1",
         "--scales", "8", "--threads", "1", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    fresh = {(r["scene"], r["method"]): float(r["rmse_cm"]) for r in rows(
        tmp_path / "rgbdd_published.csv")}
    committed = {(r["scene"], r["method"]): float(r["rmse_cm"]) for r in rows(RESULTS)
                 if r["scale"] == "8"}
    assert fresh
    for key, value in fresh.items():
        assert value == pytest.approx(committed[key], rel=1e-3), key


PROJECT = ROOT / "results" / "rgbdd" / "rgbdd.csv"
PROJECT_PER_IMAGE = ROOT / "results" / "rgbdd" / "rgbdd_per_image.csv"


def test_the_project_protocol_table_covers_every_pair_scale_and_method():
    """Block-mean sources, errors pooled over the valid pixels: every method on
    all 405 pairs at x4, x8 and x16, each image also on its own."""
    header = PROJECT.read_text().splitlines()[0]
    assert header.startswith("# command: python -m node_dada.benchmark --dataset rgbdd")
    pooled = rows(PROJECT)
    per_image = rows(PROJECT_PER_IMAGE)
    for scale in ("4", "8", "16"):
        methods = {r["method"] for r in pooled if r["scale"] == scale}
        assert {"bicubic", "weighted_median", "dada_ode", f"middlebury-x{scale}"} <= methods
        for method in methods:
            images = {r["crop"] for r in per_image if r["scale"] == scale
                      and r["method"] == method}
            assert len(images) == 405, (scale, method)


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/rgbdd")
def test_the_project_protocol_first_image_reproduces(tmp_path):
    from node_dada.commands.benchmark import main as benchmark_main

    argv = ["--dataset", "rgbdd", "--root", str(SHARED), "--scales", "8", "--crop-size", "0",
            "--methods", "bicubic", "dada_ode", "--checkpoint", "middlebury-x8=middlebury-x8@8",
            "--model-solver", "fast", "--limit", "1", "--per-image", "--threads", "1",
            "--no-progress", "--figure-crops", "0", "--out", str(tmp_path)]
    assert benchmark_main(argv) == 0
    fresh = {(r["crop"], r["method"]): float(r["mae_cm"])
             for r in rows(tmp_path / "rgbdd_per_image.csv")}
    committed = {(r["crop"], r["method"]): float(r["mae_cm"]) for r in rows(PROJECT_PER_IMAGE)
                 if r["scale"] == "8"}
    assert len(fresh) == 3
    for key, value in fresh.items():
        assert value == pytest.approx(committed[key], rel=1e-3), key
