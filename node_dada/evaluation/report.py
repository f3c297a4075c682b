"""Every table the project writes, and the benchmark's outputs.

The two primitives, :func:`write_table` (CSV, first line ``# command: ...``,
written atomically) and :func:`markdown_table`, are what the benchmark, the demo,
the sweeps, the tuning search and the model card write their tables with. On top
of them, the benchmark's outputs: ``<dataset>.csv``, the per-crop errors,
``<dataset>.md`` and one figure per scale."""

from __future__ import annotations

import csv
import os
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from node_dada.evaluation.methods import ESTIMATE
from node_dada.evaluation.runner import BenchmarkRow, CropError, FigureCrop

__all__ = [
    "DATASET_TITLES",
    "crop_pivot",
    "mae_pivot",
    "markdown_table",
    "read_table",
    "save_figure",
    "write_crop_errors",
    "write_csv",
    "write_markdown",
    "write_table",
]

DATASET_TITLES = {
    "middlebury": "Middlebury 2005/2006, third size, scenes with metric depth (dmin.txt)",
    "motorcycle": "Middlebury 2014 Motorcycle, quarter size (embedded in scikit-image)",
    "nyuv2": "NYU Depth v2, labeled set (640 x 480 Kinect frames, filled depth)",
    "rgbdd": "RGB-D-D (512 x 384 Helios time-of-flight depth, evaluation only)",
}


def write_table(path: Path, columns: Sequence[str], rows: Iterable[Sequence[object]], *,
                command: str | None = None) -> None:
    """CSV with a header line (``columns``) and ``rows`` (values as they should read),
    preceded by ``# command: <command>`` when given (:func:`read_table` reads it).
    Written to a side file and moved into place, so an interrupted run never leaves a
    half-written table."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="") as handle:
        if command is not None:
            handle.write(f"# command: {command}\n")
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    os.replace(partial, path)


def read_table(path: Path) -> tuple[str, list[dict[str, str]]]:
    """A table :func:`write_table` wrote: its ``# command:`` line ("" when it has
    none) and its rows."""
    lines = path.read_text().splitlines()
    command = lines[0].removeprefix("# command: ") if lines[0].startswith("#") else ""
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    return command, rows


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]],
                   align: str) -> list[str]:
    """A Markdown table as lines: ``align`` has one letter per column, ``l`` (left)
    or ``r`` (right); cells are written as given (format them first)."""
    if len(align) != len(header) or set(align) - {"l", "r"}:
        raise ValueError(f"align: expected {len(header)} letters l or r, got {align!r}")
    lines = ["| " + " | ".join(map(str, header)) + " |",
             "|" + "".join("---:|" if a == "r" else "---|" for a in align)]
    for row in rows:
        cells = list(map(str, row))
        if len(cells) != len(header):
            raise ValueError(f"row {cells}: expected {len(header)} cells")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_csv(rows: Sequence[BenchmarkRow], path: Path, command: str) -> None:
    """The table as CSV, its first line ``# command: <command>``."""
    write_table(path, BenchmarkRow.columns(), (row.as_csv() for row in rows), command=command)


def write_crop_errors(errors: Sequence[CropError], path: Path, command: str) -> None:
    """Per-crop errors as CSV, its first line ``# command: <command>``."""
    write_table(path, ["scale", "crop", "method", "mae_cm", "valid_pixels"],
                ([e.scale, e.crop, e.method, f"{e.mae_cm:.6g}", e.valid_pixels]
                 for e in errors), command=command)


def crop_pivot(errors: Sequence[CropError], reference: str = "dada") -> list[str]:
    """Markdown: MAE per crop and method, and each method's change against
    ``reference`` (learning-free DADA) on that crop."""
    methods = list(dict.fromkeys(e.method for e in errors))
    others = [m for m in methods if m != reference] if reference in methods else []
    keys = list(dict.fromkeys((e.scale, e.crop) for e in errors))
    mae = {(e.scale, e.crop, e.method): e.mae_cm for e in errors}
    header = ["scale", "image", *methods, *(f"{m} vs {reference}" for m in others)]
    rows = []
    for scale, crop in keys:
        cells = [f"{mae[scale, crop, m]:.4f}" if (scale, crop, m) in mae else "-"
                 for m in methods]
        for m in others:
            base, value = mae.get((scale, crop, reference)), mae.get((scale, crop, m))
            cells.append("-" if base is None or value is None
                         else f"{100.0 * (value - base) / base:+.1f} %")
        rows.append([f"x{scale}", crop, *cells])
    return markdown_table(header, rows, "rl" + "r" * (len(header) - 2))


def mae_pivot(rows: Sequence[BenchmarkRow]) -> list[str]:
    """Markdown table: one line per method, MAE (cm) per scale, best per scale in bold."""
    scales = sorted({row.scale for row in rows})
    methods = list(dict.fromkeys(row.method for row in rows))
    value = {(row.method, row.scale): row.mae_cm for row in rows}
    best = {s: min(v for (m, sc), v in value.items() if sc == s) for s in scales}
    table = []
    for method in methods:
        cells = []
        for scale in scales:
            mae = value.get((method, scale))
            if mae is None:
                cells.append("")
            elif mae == best[scale]:
                cells.append(f"**{mae:.2f}**")
            else:
                cells.append(f"{mae:.2f}")
        table.append([method, *cells])
    return markdown_table(["method", *(f"x{s}" for s in scales)], table, "l" + "r" * len(scales))


def write_markdown(
    rows: Sequence[BenchmarkRow],
    path: Path,
    *,
    command: str,
    dataset: str,
    scene_names: Sequence[str],
    figures: Sequence[str],
    load: tuple[float, float] | None = None,
    per_crop: Sequence[CropError] = (),
) -> str:
    """The table as Markdown with the command, the protocol and the figures
    (and the per-crop errors, when given).

    ``load``: the machine's 1-minute load average at the start and end of the
    run, reported next to the timings (which other work on the machine inflates).
    """
    first = rows[0]
    size = first.crop_size
    crops = "whole images" if size == "full" else f"{size} x {size}"
    aggregation = (
        "exact per-pixel aggregates over the valid pixels of all crops"
        if first.aggregation == "pixel"
        else "means of the per-crop means (the reference protocol)"
    )
    lines = [
        f"# Benchmark: {DATASET_TITLES.get(dataset, dataset)}",
        "",
        f"Produced by `{command}`; regenerate it with that command from the repository root.",
        "",
        f"Split `{first.split}`: {', '.join(scene_names)}. Deterministic, non-overlapping "
        f"{crops} grid crops from the top-left (the data pipeline's evaluation mode); the "
        "low-resolution source is the NaN-aware block mean of the ground truth. Errors in cm are "
        f"{aggregation}. Time per megapixel (of output) is wall time on "
        f"{torch.get_num_threads()} CPU thread(s), and includes the bicubic estimate for the "
        "methods that refine it (every method but nearest, bilinear and bicubic). The "
        "OpenCV filters use `node_dada.baselines.default_params` (the values tuned on the "
        "validation split where available, see results/tuning/).",
    ]
    if load is not None:
        lines += [
            "",
            f"The machine's 1-minute load average was {load[0]:.1f} at the start of the run and "
            f"{load[1]:.1f} at its end, on {os.cpu_count()} logical CPU(s): above that count "
            "other work shared the cores and the times are inflated accordingly.",
        ]
    lines += [
        "",
        "## MAE (cm), best per scale in bold",
        "",
        *mae_pivot(rows),
        "",
        *_below_bicubic(rows),
        "## All metrics",
        "",
        *markdown_table(
            ["scale", "method", "MAE (cm)", "MSE (cm^2)", "RMSE (cm)", "s / MP", "NFE", "crops",
             "valid px", "parameters / solver"],
            ([f"x{row.scale}", row.method, f"{row.mae_cm:.2f}", f"{row.mse_cm2:.2f}",
              f"{row.rmse_cm:.2f}", f"{row.s_per_mpix:.2f}", row.nfe or "-", row.crops,
              row.valid_pixels, row.solver or row.params or "-"] for row in rows),
            "rlrrrrrrrl"),
    ]
    if per_crop:
        what = "image" if size == "full" else "crop"
        lines += ["", f"## MAE (cm) per {what}", "",
                  f"Change against learning-free DADA (`dada`) on the same {what}; negative "
                  f"is better. All values: `{path.stem}_per_{what}.csv`.", "",
                  *crop_pivot(per_crop)]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{name}]({name})" for name in figures]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def _below_bicubic(rows: Sequence[BenchmarkRow]) -> list[str]:
    """One sentence per learning-free DADA variant: the scales where its MAE is
    below bicubic's."""
    mae = {(row.method, row.scale): row.mae_cm for row in rows}
    scales = sorted({row.scale for row in rows if (ESTIMATE, row.scale) in mae})
    lines = []
    for method in ("dada", "dada_ode"):
        compared = [s for s in scales if (method, s) in mae]
        if not compared:
            continue
        better = [s for s in compared if mae[(method, s)] < mae[(ESTIMATE, s)]]
        verdict = "every scale" if better == compared else (
            "x" + ", x".join(map(str, better)) if better else "no scale"
        )
        ratios = ", ".join(f"x{s}: {mae[(method, s)] / mae[(ESTIMATE, s)]:.2f}" for s in compared)
        lines.append(
            f"`{method}` MAE is below bicubic's at {verdict} (ratio to bicubic {ratios})."
        )
    return [*lines, ""] if lines else []


def save_figure(crops: Sequence[FigureCrop], path: Path, *, title: str) -> None:
    """Guide, ground truth and every method's prediction for each crop (one row
    per crop, one colour scale per row: the truth's 1st-99th percentiles)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(crops[0].predictions)
    columns = 2 + len(methods)
    fig, axes = plt.subplots(
        len(crops), columns, figsize=(1.8 * columns + 0.6, 2.3 * len(crops) + 0.4),
        squeeze=False, layout="constrained",
    )
    for axes_row, crop in zip(axes, crops, strict=True):
        finite = crop.target[np.isfinite(crop.target)]
        vmin, vmax = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
        style = {"cmap": "viridis_r", "vmin": vmin, "vmax": vmax}
        axes_row[0].imshow(np.clip(crop.guide, 0, 1).squeeze())
        axes_row[0].set_title(textwrap.fill(crop.name, 26), fontsize=7)
        axes_row[1].imshow(np.ma.masked_invalid(crop.target), **style)
        axes_row[1].set_title("ground truth\n(white = unknown)", fontsize=7)
        shown = None
        for axis, method in zip(axes_row[2:], methods, strict=True):
            shown = axis.imshow(crop.predictions[method], **style)
            errors = crop.errors.get(method)
            label = f"{method}\nMAE {errors.mae_cm:.2f} cm" if errors else method
            axis.set_title(label, fontsize=7)
        for axis in axes_row:
            axis.axis("off")
        if shown is not None:
            colourbar = fig.colorbar(shown, ax=list(axes_row), shrink=0.9, pad=0.005)
            colourbar.set_label("depth (mm)", fontsize=7)
            colourbar.ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=80)
    plt.close(fig)
