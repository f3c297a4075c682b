"""Committed sweep tables stay what their command writes: the cheap cells of
results/gradients are rerun and their exact columns (evaluation counts, steps,
gradient fidelity) compared with the committed rows."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from node_dada.commands.sweep import main as sweep_main

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "configs" / "sweeps" / "gradients.yaml"
TABLE = ROOT / "results" / "gradients" / "cells.csv"
SHARED = ROOT.parent / "shared" / "data" / "middlebury0506" / "ThirdSize"


def rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as handle:
        return {row["cell"]: row for row in csv.DictReader(handle)}


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"needs the Middlebury crops in {SHARED}")
def test_the_short_horizon_gradient_cells_reproduce(tmp_path):
    spec = yaml.safe_load(SPEC.read_text())
    spec["grid"] = [{"t_end": [2.4, 10], "grad_mode": ["unrolled", "checkpointed", "adjoint"]}]
    path = tmp_path / "gradients.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert sweep_main([str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    fresh, committed = rows(tmp_path / "out" / "cells.csv"), rows(TABLE)
    assert len(fresh) == 6
    for cell, row in fresh.items():
        old = committed[cell]
        for column in ("status", "nfe", "nfe_backward", "steps"):
            assert row[column] == old[column], (cell, column)
        for column in ("one_minus_cosine", "relative_error"):
            assert float(row[column]) == pytest.approx(float(old[column]), rel=1e-3, abs=1e-11)
