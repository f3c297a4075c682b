"""The x16 learning curves over training data, capacity and recipe: a plot and a
summary of ``results/data_scaling``.

The sweep (``node-dada sweep configs/sweeps/data_scaling.yaml --out results/data_scaling``)
trains the shipped x16 discrete recipe on 2, 4, 8 and all 17 training scenes (two random
draws), and on all of them with one change each (extractor, crops, learning rate), for
the same CPU budget, and tests each cell on whole test images (pooled). The benchmark
evaluates the cells' last checkpoints per test image, next to learning-free DADA::

    python -m node_dada.benchmark --dataset middlebury \\
        --root ../shared/data/middlebury0506/ThirdSize ../shared/data/middlebury2014 \\
        --scales 16 --crop-size 0 --methods dada \\
        --checkpoint scenes-2=results/data_scaling/runs/<cell>/ckpt/last.ckpt@16 ... \\
        --per-image --threads 1 --no-progress --figure-crops 0 \\
        --out results/data_scaling/test

This script reads both tables (nothing is rerun) and writes ``data_scaling.png`` (each
test image's change against learning-free DADA over the number of training scenes,
with the 15 % target) and ``summary.md`` (the numbers, the slope per doubling of the
data, the straight-line extrapolation to the target and the capacity and recipe
cells against the all-scenes cell, command in its header).

Run from the repository root::

    python benchmarks/data_scaling_report.py --table results/data_scaling/cells.csv \\
        --per-image results/data_scaling/test/middlebury_per_image.csv \\
        --out results/data_scaling
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import numpy as np

from node_dada.evaluation.report import read_table

#: the issue's target at x16: at least this much below learning-free DADA, every image
TARGET = -0.15
#: extrapolations beyond this many scenes are reported as "more than"
FAR = 1000
SCENES = "data.init_args.train_scenes"
SEED = "data.init_args.train_scenes_seed"


def scenes(row: dict[str, str]) -> int:
    return int(row[SCENES])


def seed(row: dict[str, str]) -> int:
    """The draw of a cell's scenes (the spec leaves it out for seed 0)."""
    return int(row.get(SEED) or 0)


def read(table: Path) -> list[dict[str, str]]:
    """The finished cells: the data cells (fewest training scenes first, then by draw),
    then the capacity and recipe cells in the table's order."""
    with table.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["status"] == "ok"]
    return sorted(data_cells(rows), key=lambda row: (scenes(row), seed(row))) \
        + other_cells(rows)


def data_cells(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The cells that choose their training scenes."""
    return [row for row in rows if row.get(SCENES)]


def other_cells(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The cells on all the scenes that change the network or the recipe instead."""
    return [row for row in rows if not row.get(SCENES)]


def per_image(table: Path) -> dict[str, dict[str, float]]:
    """``{method: {image: MAE cm}}`` of a benchmark's ``*_per_image.csv``."""
    out: dict[str, dict[str, float]] = {}
    for row in read_table(table)[1]:
        out.setdefault(row["method"], {})[row["crop"]] = float(row["mae_cm"])
    if "dada" not in out:
        raise ValueError(f"{table}: no learning-free 'dada' rows (run it with --methods dada)")
    return out


def method(row: dict[str, str]) -> str:
    """The benchmark's name of a cell's model: ``scenes-4``, ``scenes-4-seed1``, or the
    folder of a capacity or recipe cell (``extractor-resnet18``)."""
    if not row.get(SCENES):
        return Path(row["run"]).name
    return f"scenes-{scenes(row)}" + (f"-seed{seed(row)}" if seed(row) else "")


def changes(rows: list[dict[str, str]], images: dict[str, dict[str, float]]
            ) -> dict[str, list[float]]:
    """Each test image's relative change against learning-free DADA, one value per
    cell (in the order of ``rows``)."""
    reference = images["dada"]
    missing = [method(row) for row in rows if method(row) not in images]
    if missing:
        raise ValueError(f"the per-image table has no rows of {', '.join(missing)}")
    return {image: [images[method(row)][image] / mae - 1 for row in rows]
            for image, mae in reference.items()}


def slope(scenes: list[int], values: list[float]) -> float:
    """Least-squares change of ``values`` per doubling of ``scenes``."""
    return float(np.polyfit(np.log2(scenes), values, 1)[0])


def scenes_for_target(scenes: list[int], values: list[float]) -> float | None:
    """Training scenes at which the straight line in log2(scenes) through ``values``
    reaches ``TARGET`` (None when it does not fall)."""
    gradient, intercept = np.polyfit(np.log2(scenes), values, 1)
    if gradient >= 0:
        return None
    return float(2 ** ((TARGET - intercept) / gradient))


def plot(rows: list[dict[str, str]], change: dict[str, list[float]], out: Path) -> Path:
    """``rows``: the data cells, ``change`` their per-image changes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    counts = sorted({scenes(row) for row in rows})
    largest = max(counts)
    # one line per draw of the scenes; every draw ends at all the scenes
    draws = {draw: [i for i, row in enumerate(rows)
                    if seed(row) == draw or scenes(row) == largest]
             for draw in sorted({seed(row) for row in rows})}
    figure, axes = plt.subplots(1, 3, figsize=(16, 5.6),
                                gridspec_kw={"width_ratios": [1.6, 1, 1]})
    for number, (image, values) in enumerate(change.items()):
        for draw, cells in draws.items():
            axes[0].plot([scenes(rows[i]) for i in cells], [100 * values[i] for i in cells],
                         marker="o", color=f"C{number}", linestyle="-" if draw == 0 else "--",
                         label=image if draw == 0 else None)
    axes[0].axhline(100 * TARGET, color="black", linestyle="--", linewidth=1,
                    label="target (15 % below learning-free)")
    axes[0].axhline(0, color="grey", linewidth=0.8)
    axes[0].set(xscale="log", xlabel="training scenes (dashed: a second random draw)",
                ylabel="test MAE against learning-free DADA (%)",
                title="each test image, whole image, x16")
    panels = ((axes[1], "test_mae_cm", "pooled test MAE (cm)"),
              (axes[2], "train_loss_last", "training loss, last 10 steps (scaled depth)"))
    for axis, column, title in panels:
        for draw, cells in draws.items():
            axis.plot([scenes(rows[i]) for i in cells], [float(rows[i][column]) for i in cells],
                      marker="o", color="C0", linestyle="-" if draw == 0 else "--",
                      label=f"draw {draw}")
        axis.set(xscale="log", xlabel="training scenes", title=title)
        axis.legend(fontsize=7)
    for axis in axes:
        axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        axis.set_xticks(counts, [str(n) for n in counts])
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3)
    figure.suptitle("Same recipe, seed and CPU budget per cell; only the training scenes "
                    "differ (nested random choices)", fontsize=9)
    figure.tight_layout()
    path = out / "data_scaling.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _percent(value: float) -> str:
    return f"{100 * value:+.1f} %"


def _cell_rows(rows: list[dict[str, str]], change: dict[str, list[float]],
               first: list[str]) -> list[str]:
    return [f"| {head} | {row['steps']} | {float(row['s_per_step']):.2f} | "
            f"{float(row['train_loss_last']):.4f} | {float(row['test_mae_cm']):.4f} | "
            + " | ".join(_percent(change[n][index]) for n in change) + " |"
            for index, (head, row) in enumerate(zip(first, rows, strict=True))]


def summary(rows: list[dict[str, str]], images: dict[str, dict[str, float]],
            command: str) -> list[str]:
    data, others = data_cells(rows), other_cells(rows)
    change = changes(data, images)
    counts = [scenes(row) for row in data]
    names = list(change)
    header = ("| steps | s / step | training loss, last 10 | pooled test MAE (cm) | "
              + " | ".join(names) + " |")
    rule = "|---:|---:|---:|---:|---:|" + "---:|" * len(names)
    learning_free = ("| learning-free DADA | | | | | "
                     + " | ".join(f"{images['dada'][n]:.4f} cm" for n in names) + " |")
    lines = [
        "# Data, capacity and recipe at x16 on a fixed CPU budget",
        "",
        f"Written by `{command}` from the sweep's table (`cells.csv`, produced by "
        "`node-dada sweep configs/sweeps/data_scaling.yaml --out results/data_scaling`; "
        "its `README.md` has the setup, `training_curves.png` the loss curves) and the "
        "per-image table `test/` (command in its header). Every cell: the shipped x16 "
        "discrete recipe from learning-free DADA, seed 0, the same budget of 15 minutes "
        "of CPU time on one thread. Test: whole images, MAE in cm, each image's change "
        "against learning-free DADA on the same image (negative is better; the target is "
        "-15.0 % on every image).",
        "",
        "## Training scenes",
        "",
        "A nested random choice of the 17 training scenes, drawn twice (draw 0 and 1); "
        "everything else as the shipped recipe.",
        "",
        "| training scenes (draw) " + header,
        rule,
        learning_free,
        *_cell_rows(data, change, [f"{scenes(r)} ({seed(r)})" for r in data]),
        "",
        "Slope per doubling of the training scenes (least squares over all the cells, "
        "both draws, in points of the change against learning-free) and where a straight "
        "line in log2(scenes) would reach the target:",
        "",
        "| test image | change with all scenes | per doubling | scenes for -15 % |",
        "|---|---:|---:|---:|",
    ]
    for name in names:
        values = change[name]
        reach = scenes_for_target(counts, values)
        where = ("reached" if values[-1] <= TARGET else
                 "never (no fall)" if reach is None else
                 f"about {math.ceil(reach)}" if reach <= FAR else f"more than {FAR}")
        lines.append(f"| {name} | {_percent(values[-1])} | "
                     f"{100 * slope(counts, values):+.1f} | {where} |")
    lines += ["", "![data scaling](data_scaling.png)"]
    if others:
        every = [row for row in data if scenes(row) == max(counts)]
        lines += [
            "",
            "## Capacity and recipe",
            "",
            "All 17 scenes; one change each against the light extractor's cell above.",
            "",
            "| change " + header,
            rule,
            learning_free,
            *_cell_rows(every, changes(every, images), ["none (light extractor)"]),
            *_cell_rows(others, changes(others, images), [r["label"] for r in others]),
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=Path("results/data_scaling/cells.csv"),
                        help="the sweep's cells.csv")
    parser.add_argument("--per-image", type=Path,
                        default=Path("results/data_scaling/test/middlebury_per_image.csv"),
                        help="the benchmark's per-image table of the cells' checkpoints")
    parser.add_argument("--out", type=Path, default=Path("runs/data_scaling"),
                        help="folder for data_scaling.png and summary.md")
    args = parser.parse_args(argv)
    rows = read(args.table)
    if len(data_cells(rows)) < 2:
        parser.error(f"--table: {args.table} has {len(data_cells(rows))} finished data "
                     "cell(s); the curve needs two or more (run the sweep first)")
    data = data_cells(rows)
    try:
        images = per_image(args.per_image)
        changes(rows, images)  # every cell has its per-image rows
    except (OSError, KeyError, ValueError) as error:
        parser.error(f"--per-image: {error}")
    args.out.mkdir(parents=True, exist_ok=True)
    plot(data, changes(data, images), args.out)
    command = "python benchmarks/data_scaling_report.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    text = "\n".join(summary(rows, images, command)) + "\n"
    (args.out / "summary.md").write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
