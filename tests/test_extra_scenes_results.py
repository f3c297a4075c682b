"""The committed answer to "do the training scenes without dmin.txt help?"
(results/extra_scenes): the summary is what benchmarks/extra_scenes.py writes from
the committed validation curves and test table (the two fits are not rerun here: each
takes about 40 CPU-minutes), and the test table covers the whole test split."""

from __future__ import annotations

import shutil
from pathlib import Path

from scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "extra_scenes"


def report_module():
    return load_benchmark('extra_scenes')


def test_the_summary_is_what_the_report_writes(tmp_path):
    report = report_module()
    shutil.copytree(RESULTS / "test", tmp_path / "test")
    shutil.copy(RESULTS / "val_curves.csv", tmp_path / "val_curves.csv")
    assert report.main(["--out", str(tmp_path)]) == 0
    written = (tmp_path / "summary.md").read_text()
    committed = (RESULTS / "summary.md").read_text()
    assert written.replace(f" --out {tmp_path}", "") == committed
    assert (tmp_path / "val_curves.png").stat().st_size > 0


def test_both_arms_ran_their_whole_schedule_and_were_tested_on_every_image():
    report = report_module()
    curves = report.val_curves(RESULTS)
    for arm, points in curves.items():
        epochs = [epoch for epoch, _ in points]
        assert epochs == list(range(2, 60, 3)), (arm, epochs)  # every 3rd of 60 epochs
    images, table = report.per_image(RESULTS)
    assert len(images) == 6
    for method in ("dada", report.PARENT, *report.ARMS):
        assert set(table[method]) == set(images), method
    command = (RESULTS / "test" / "middlebury.csv").read_text().splitlines()[0]
    assert "--methods dada" in command and "--crop-size 0" in command
