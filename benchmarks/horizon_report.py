"""The horizon study's answer: a plot and a summary of ``results/horizon/cells.csv``.

The sweep (``node-dada sweep configs/sweeps/horizon.yaml --out results/horizon``)
trains every cell for the same CPU budget and writes its table; this script reads
that table (nothing is rerun) and writes ``horizon.png`` (test MAE, time per training
step and peak step memory against the number of iterations the gradient passes
through, one line per gradient mode) and ``summary.md`` (the same numbers, ranked,
with the command in its header).

Run from the repository root::

    python benchmarks/horizon_report.py --table results/horizon/cells.csv \
        --reference results/horizon/learning_free/middlebury.csv --out results/horizon
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from node_dada.evaluation.report import read_table

#: how each cell is named in the plot and the summary: (solver, grad_mode) -> words
MODES = {
    ("discrete", "unrolled"): "discrete, unrolled",
    ("ode", "adjoint"): "ODE, stable adjoint",
    ("ode", "checkpointed"): "ODE, checkpointed",
}


def read(table: Path) -> list[dict[str, str]]:
    with table.open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["status"] == "ok"]


def reference_mae(table: Path) -> float:
    """Learning-free DADA's test MAE from a benchmark table (``--methods dada``)."""
    rows = [row for row in read_table(table)[1] if row["method"] == "dada"]
    if len(rows) != 1:
        raise ValueError(f"{table}: expected one 'dada' row, found {len(rows)}")
    return float(rows[0]["mae_cm"])


def horizon(row: dict[str, str]) -> int:
    """Iterations with gradient: ``train_iter``, the whole inference horizon included."""
    return int(row["train_iter"])


def label(row: dict[str, str]) -> str:
    mode = MODES.get((row["solver"], row["grad_mode"]), f"{row['solver']} {row['grad_mode']}")
    lead = "" if int(row["lead_in"]) else ", whole horizon"
    return f"{mode}{lead}"


def plot(rows: list[dict[str, str]], reference: float, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    panels = (("test_mae_cm", "test MAE after the budget (cm)"),
              ("s_per_step", "wall time per training step (s)"),
              ("step_peak_mib", "peak memory of a training step (MiB)"))
    for (solver, mode), name in MODES.items():
        cells = sorted((r for r in rows if (r["solver"], r["grad_mode"]) == (solver, mode)),
                       key=horizon)
        if not cells:
            continue
        for axis, (column, title) in zip(axes, panels, strict=True):
            axis.plot([horizon(r) for r in cells], [float(r[column]) for r in cells],
                      marker="o", label=name)
            axis.set(xscale="log", xlabel="iterations with gradient", ylabel=title)
    axes[0].axhline(reference, color="black", linestyle="--", linewidth=1,
                    label="learning-free DADA (every cell's start)")
    for axis, (column, _) in zip(axes, panels, strict=True):
        if column != "test_mae_cm":
            axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle("Same data, seed and CPU budget per cell; the last points of the ODE "
                    "lines carry the gradient through the whole 9024-iteration horizon",
                    fontsize=9)
    figure.tight_layout()
    path = out / "horizon.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def summary(rows: list[dict[str, str]], reference: float, command: str) -> list[str]:
    ranked = sorted(rows, key=lambda r: float(r["test_mae_cm"]))
    lines = [
        "# Horizon study: how far back should the gradient reach?",
        "",
        f"Written by `{command}` from the sweep's table (`cells.csv`, produced by "
        "`node-dada sweep configs/sweeps/horizon.yaml --out results/horizon`; its "
        "`README.md` has the setup, `training_curves.png` the loss curves). Every cell: "
        "the shipped x8 recipe, seed 0, the same crops in the same order, 10 minutes of "
        "CPU time on one thread; test MAE on the 128 x 128 grid crops of the test split "
        "after each cell's inference horizon (`lead_in + train_iter` iterations: 8128, "
        "9024 or 12096). Every cell starts from learning-free DADA (the predicted gains "
        f"start at 0), which scores {reference:.4f} cm on the same crops "
        "(`learning_free/`, 9024 iterations, command in its header). Ranked by test MAE.",
        "",
        "| cell | iterations with gradient | optimiser steps | s / step | peak MiB / step "
        "| test MAE (cm) | vs learning-free |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in ranked:
        lines.append(f"| {label(row)} | {horizon(row)} | {row['steps']} | "
                     f"{float(row['s_per_step']):.2f} | {float(row['step_peak_mib']):.0f} | "
                     f"{float(row['test_mae_cm']):.4f} | "
                     f"{float(row['test_mae_cm']) / reference - 1:+.1%} |")
    best, worst = ranked[0], ranked[-1]
    lines += [
        "",
        f"Best: {label(best)} through {horizon(best)} iterations, "
        f"{float(best['test_mae_cm']):.4f} cm; worst: {label(worst)} through "
        f"{horizon(worst)}, {float(worst['test_mae_cm']):.4f} cm "
        f"({float(worst['test_mae_cm']) / float(best['test_mae_cm']) - 1:+.1%}).",
    ]
    whole = [r for r in ranked if not int(r["lead_in"])]
    unrolled = [r for r in rows if r["grad_mode"] == "unrolled"]
    if whole:
        top = whole[0]
        lines.append(
            f"The best whole-horizon cell ({label(top)}, {float(top['test_mae_cm']):.4f} cm) "
            f"is {float(top['test_mae_cm']) / float(best['test_mae_cm']) - 1:+.1%} against "
            f"the best cell: in the same budget it made {top['steps']} optimiser steps "
            f"against {best['steps']}.")
    if whole and unrolled:
        deepest = max(unrolled, key=horizon)
        lines.append(
            f"Memory: the whole-horizon gradient needs "
            f"{float(whole[0]['step_peak_mib']):.0f} MiB per step; unrolling "
            f"{horizon(deepest)} iterations needed {float(deepest['step_peak_mib']):.0f} MiB.")
    lines += ["", "![horizon](horizon.png)"]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=Path("results/horizon/cells.csv"),
                        help="the sweep's cells.csv")
    parser.add_argument("--reference", type=Path,
                        default=Path("results/horizon/learning_free/middlebury.csv"),
                        help="benchmark table with learning-free DADA on the same crops")
    parser.add_argument("--out", type=Path, default=Path("runs/horizon"),
                        help="folder for horizon.png and summary.md")
    args = parser.parse_args(argv)
    rows = read(args.table)
    if not rows:
        parser.error(f"--table: no finished cell in {args.table}; run the sweep first")
    try:
        reference = reference_mae(args.reference)
    except (OSError, KeyError, ValueError) as error:
        parser.error(f"--reference: {error}")
    args.out.mkdir(parents=True, exist_ok=True)
    plot(rows, reference, args.out)
    command = "python benchmarks/horizon_report.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    text = "\n".join(summary(rows, reference, command)) + "\n"
    (args.out / "summary.md").write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
