"""The committed horizon study (results/horizon) is complete and its summary is what
benchmarks/horizon_report.py writes from the committed table (training is not rerun
here: each cell costs 10 CPU-minutes)."""

from __future__ import annotations

import re
from pathlib import Path

from scripts import finished_sweep_rows, load_benchmark

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "horizon"


def report_module():
    return load_benchmark('horizon_report')


def test_every_cell_of_the_spec_finished():
    rows = finished_sweep_rows(ROOT / "configs" / "sweeps" / "horizon.yaml",
                               RESULTS / "cells.csv", budget_s=600)
    for row in rows.values():
        assert float(row["step_peak_mib"]) > 0


def test_the_summary_is_what_the_report_writes(tmp_path):
    report = report_module()
    committed = (RESULTS / "summary.md").read_text()
    command = re.search(r"Written by `([^`]*)`", committed).group(1)
    rows = report.read(RESULTS / "cells.csv")
    reference = report.reference_mae(RESULTS / "learning_free" / "middlebury.csv")
    assert "\n".join(report.summary(rows, reference, command)) + "\n" == committed
    assert (RESULTS / "horizon.png").stat().st_size > 20_000


def test_the_readme_quotes_the_summary():
    summary = (RESULTS / "summary.md").read_text()
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Discrete vs ODE: the horizon study"):]
    section = section[: section.index("\n## ")]
    quoted = re.findall(r"\b\d\.\d{4}\b", section)
    assert quoted, "the README's horizon section quotes no test MAE"
    for value in quoted:
        assert value in summary, value


def test_the_reference_is_learning_free_dada_on_the_same_crops():
    """The reference row was produced on the test split's 128 x 128 crops at x8, as the
    cells were tested, with the horizon of the whole-horizon cells."""
    table = RESULTS / "learning_free" / "middlebury.csv"
    command = table.read_text().splitlines()[0]
    for needed in ("--scales 8", "--crop-size 128", "--methods dada", "--dada-iters 9024"):
        assert needed in command, needed
