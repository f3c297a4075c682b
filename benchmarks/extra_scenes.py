"""Do the 12 third-size training scenes without ``dmin.txt`` help? The report.

Two fine-tunings of the shipped ``middlebury-x8-discrete``, the same seed, steps and
schedule, differ only in their training data:

- ``finetune``: the shipped data (``configs/experiments/middlebury_x8_finetune.yaml``);
- ``assumed_dmin``: the same plus the 12 training scenes without ``dmin.txt``, whose
  depth uses an assumed offset (``missing_dmin: assume``,
  ``configs/experiments/middlebury_x8_assumed_dmin.yaml``).

Run from the repository root, after the two fits::

    node-dada fit --config configs/experiments/middlebury_x8_finetune.yaml
    node-dada fit --config configs/experiments/middlebury_x8_assumed_dmin.yaml
    python benchmarks/extra_scenes.py --collect     # validation curves and test table
    python benchmarks/extra_scenes.py               # summary.md and val_curves.png

``--collect`` reads each run's validation curve from its TensorBoard events into
``results/extra_scenes/val_curves.csv`` and runs the project benchmark (whole test
images, x8, per image) on each run's best checkpoint next to learning-free DADA and
the parent model, into
``results/extra_scenes/test/`` (its command is in its header). The report itself
reads only those committed files.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from node_dada.evaluation.report import read_table, write_table

ARMS = {
    "finetune": "the shipped data (26 training views)",
    "assumed_dmin": "plus the 12 scenes without dmin.txt, assumed offset (50 views)",
}
RUNS = Path("runs/experiments")
PARENT = "middlebury-x8-discrete"
TAG = "val/mae_cm"
#: epoch-to-epoch noise of the validation curves of the shipped x8 trainings (cm)
NOISE_CM = 0.01


def best_checkpoint(run: Path) -> Path:
    found = sorted(run.glob("version_*/checkpoints/best-*.ckpt"))
    if not found:
        raise FileNotFoundError(f"{run}: no best-*.ckpt; run its fit first")
    return found[-1]


def collect(out: Path, root: list[str], command_line: str) -> None:
    """Write the runs' validation curves and run the test benchmark on their best
    checkpoints."""
    from node_dada.sweep import read_scalars

    rows = []
    command = [
        sys.executable, "-m", "node_dada.benchmark", "--dataset", "middlebury",
        "--root", *root, "--scales", "8", "--crop-size", "0", "--methods", "dada",
        "--checkpoint", f"{PARENT}={PARENT}@8",
    ]
    for arm in ARMS:
        run = RUNS / f"middlebury_x8_{arm}"
        versions = [read_scalars(folder) for folder in sorted(run.glob("version_*"))]
        if not any(TAG in scalars and "epoch" in scalars for scalars in versions):
            raise FileNotFoundError(f"{run}: no {TAG} scalars; run its fit first")
        for scalars in versions:  # a resumed run logs into more than one folder
            epoch_at = {step: int(value) for _, step, value in scalars.get("epoch", [])}
            rows += [[arm, epoch_at[step], f"{value:.6g}"]
                     for _, step, value in scalars.get(TAG, [])]
        command += ["--checkpoint", f"{arm}={best_checkpoint(run)}@8"]
    write_table(out / "val_curves.csv", ["arm", "epoch", "val_mae_cm"], rows,
                command=command_line)
    command += ["--per-image", "--threads", "1", "--no-progress", "--out", str(out / "test")]
    print(" ".join(command[1:]).replace(sys.executable, "python"), flush=True)
    subprocess.run(command, check=True)


def val_curves(out: Path) -> dict[str, list[tuple[int, float]]]:
    """arm -> [(epoch, validation MAE cm)], from ``val_curves.csv``."""
    path = out / "val_curves.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not there; run --collect")
    curves: dict[str, list[tuple[int, float]]] = {arm: [] for arm in ARMS}
    for row in read_table(path)[1]:
        curves[row["arm"]].append((int(row["epoch"]), float(row["val_mae_cm"])))
    return curves


def per_image(out: Path) -> tuple[list[str], dict[str, dict[str, float]]]:
    """Test images and method -> image -> MAE cm, from the benchmark's per-image table."""
    rows = read_table(out / "test" / "middlebury_per_image.csv")[1]
    images = list(dict.fromkeys(row["crop"] for row in rows))
    table: dict[str, dict[str, float]] = {}
    for row in rows:
        table.setdefault(row["method"], {})[row["crop"]] = float(row["mae_cm"])
    return images, table


def pooled(out: Path) -> dict[str, float]:
    rows = read_table(out / "test" / "middlebury.csv")[1]
    return {row["method"]: float(row["mae_cm"]) for row in rows}


def parent_validation() -> float:
    """The parent's validation MAE (cm), as its shipped file records it."""
    from node_dada.models.registry import resolve_checkpoint
    from node_dada.models.weights import load_checkpoint_safely

    content = load_checkpoint_safely(resolve_checkpoint(PARENT))
    return float(content["metadata"]["val_mae_cm"])


def plot(curves: dict[str, list[tuple[int, float]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.2))
    for arm, points in curves.items():
        axis.plot([e for e, _ in points], [v for _, v in points], marker="o", label=ARMS[arm])
    axis.set(xlabel="epoch of the fine-tuning (about 25 steps each)",
             ylabel="validation MAE (cm)",
             title="x8 fine-tuning of middlebury-x8-discrete: does more data help?")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "val_curves.png", dpi=110)
    plt.close(figure)


def summary(out: Path, command: str) -> list[str]:
    curves = val_curves(out)
    images, table = per_image(out)
    totals = pooled(out)
    best = {arm: min(points, key=lambda p: p[1]) for arm, points in curves.items()}
    lines = [
        "# Do the third-size training scenes without dmin.txt help?",
        "",
        f"Written by `{command}` from `val_curves.csv` (the fits' validation curves) and "
        "`test/` "
        "(whole test images, made by `python benchmarks/extra_scenes.py --collect`, "
        "command in its header). Both arms fine-tune the shipped "
        f"`{PARENT}` (validation {parent_validation():.4f} cm) for the same 60 epochs of "
        "about 25 steps (seed 0, lr 2.5e-4 x 0.7 every 15 epochs, batch 4 of 128 x 128 "
        "crops); only the training data differ. The 12 extra scenes have no `dmin.txt`, "
        "so their depth uses the median offset of the training scenes "
        "(`missing_dmin: assume`, 251): true edges, plausible but not measured depth. "
        "Validation (the 5 metric-depth validation images) is the same for both.",
        "",
        "## Validation (cm), every 3 epochs",
        "",
        "| arm | data | best | at epoch | last |",
        "|---|---|---:|---:|---:|",
    ]
    for arm, points in curves.items():
        epoch, value = best[arm]
        lines.append(f"| `{arm}` | {ARMS[arm]} | {value:.4f} | {epoch} | {points[-1][1]:.4f} |")
    lines += [
        "",
        "![validation curves](val_curves.png)",
        "",
        "## Test, whole images (MAE cm), best validation checkpoint of each arm",
        "",
        "| image | learning-free | " + " | ".join(f"`{m}`" for m in (PARENT, *ARMS)) + " |",
        "|---|---:|" + "---:|" * (1 + len(ARMS)),
    ]
    for image in images:
        free = table["dada"][image]
        cells = [f"{table[m][image]:.4f} ({table[m][image] / free - 1:+.1%})"
                 for m in (PARENT, *ARMS)]
        lines.append(f"| {image} | {free:.4f} | " + " | ".join(cells) + " |")
    free = totals["dada"]
    lines.append("| pooled | " + f"{free:.4f} | " + " | ".join(
        f"{totals[m]:.4f} ({totals[m] / free - 1:+.1%})" for m in (PARENT, *ARMS)) + " |")
    winner = min(ARMS, key=lambda arm: best[arm][1])
    other = next(arm for arm in ARMS if arm != winner)
    gap = best[other][1] - best[winner][1]
    adopted = winner == "assumed_dmin" and gap > NOISE_CM
    extra_better = [image for image in images
                    if table["assumed_dmin"][image] < table["finetune"][image]]
    lines += [
        "",
        f"On validation `{winner}` is best ({best[winner][1]:.4f} cm against "
        f"{best[other][1]:.4f}, {gap:.4f} cm apart). The rule: the "
        f"extra scenes are adopted if they lower the best validation MAE by more than the "
        f"epoch-to-epoch noise of these curves, {NOISE_CM} cm. "
        + ("They are adopted." if adopted else
           "They are not: the shipped recipes keep the scenes with measured depth "
           "(`missing_dmin: skip`).")
        + f" On the test images the extra scenes give the lower error on "
        f"{len(extra_better)} of {len(images)} ({', '.join(extra_better) or 'none'}).",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/extra_scenes.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/extra_scenes"))
    parser.add_argument("--collect", action="store_true",
                        help="read the runs' validation curves and run the test benchmark first")
    parser.add_argument("--root", nargs="+",
                        default=["../shared/data/middlebury0506/ThirdSize",
                                 "../shared/data/middlebury2014"],
                        help="Middlebury folders for the test benchmark of --collect")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.collect:
        collect(args.out, args.root, "python benchmarks/extra_scenes.py " + shlex.join(
            sys.argv[1:] if argv is None else argv))
    curves = val_curves(args.out)
    plot(curves, args.out)
    command = "python benchmarks/extra_scenes.py" + (
        f" --out {args.out}" if args.out != Path("results/extra_scenes") else "")
    text = "\n".join(summary(args.out, command)) + "\n"
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
