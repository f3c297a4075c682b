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
