"""``make gpu-check`` (benchmarks/gpu_check.py) runs end to end on the CPU with
--dry-run, so the prepared GPU command never rots."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_writes_every_table(tmp_path):
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    speed = list(csv.DictReader(open(tmp_path / "speed.csv")))
    assert {row["method"] for row in speed} == {
        "learning-free fast", "learning-free exact", "middlebury-x8 fast", "middlebury-x8 exact"}
    assert all(row["finite"] == "True" for row in speed)
    assert all(float(row["rel_l2_vs_cpu"]) < 1e-3 for row in speed)
    fit = list(csv.DictReader(open(tmp_path / "fit.csv")))
    assert [row["mode"] for row in fit] == ["discrete / unrolled", "ode / checkpointed",
                                            "ode / adjoint"]
    assert all(row["finite_loss"] == "True" for row in fit)
    text = (tmp_path / "README.md").read_text()
    assert "CPU (dry run)" in text and "--dry-run" in text


def test_gpu_check_without_a_gpu_says_what_to_do():
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the refusal is for machines without one")
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--out", "/nonexistent"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2 and "--dry-run" in done.stderr
