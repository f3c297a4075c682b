"""``node-dada benchmark`` and ``python -m node_dada.benchmark``: the options of the
benchmark (:mod:`node_dada.evaluation`, every method on the same deterministic test
crops) and the command that writes its tables and figures."""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from pathlib import Path

import torch

from node_dada.baselines import BASELINES
from node_dada.baselines.dada import ODE_STEP_GROWTH, ODE_STEP_SIZE
from node_dada.commands.args import (
    OneLineParser,
    UsageError,
    growth_float,
    non_negative_int,
    positive_float,
    positive_int,
    report_error,
)
from node_dada.data.nyuv2 import NYUV2_FILE_NAME
from node_dada.diffusion import INFERENCE_PRE_ITER
from node_dada.errors import InputValueError, NodeDadaError
from node_dada.evaluation import (
    DATASET_TITLES,
    DATASETS,
    DEFAULT_CROP_SIZE,
    DEFAULT_FIGURE_CROPS,
    DEFAULT_METHODS,
    DEFAULT_SCALES,
    CropError,
    load_scenes,
    method_specs,
    run_benchmark,
    save_figure,
    write_crop_errors,
    write_csv,
    write_markdown,
)

__all__ = ["build_parser", "main"]


def _checkpoint_arg(text: str) -> tuple[str, Path, int | None]:
    """``NAME=PATH``, or ``NAME=PATH@SCALE`` for a model evaluated at its one scale."""
    name, sep, path = text.partition("=")
    head, at, tail = path.rpartition("@")
    scale = None
    if at and tail.isdigit() and head:
        path, scale = head, int(tail)
        if scale < 2:
            raise argparse.ArgumentTypeError(f"expected a scale >= 2 after '@', got {text!r}")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH or NAME=PATH@SCALE, got {text!r}")
    return name, Path(path), scale


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return None


def build_parser(prog: str = "node-dada benchmark") -> argparse.ArgumentParser:
    """The options of ``node-dada benchmark`` (``prog``: the command as it is invoked)."""
    parser = OneLineParser(
        prog=prog,
        description="Every method on the same deterministic test crops: MAE/MSE/RMSE (cm), "
        "time per megapixel; writes <out>/<dataset>.csv, .md and figures.",
    )
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument(
        "--root", type=Path, nargs="+", default=None,
        help="Middlebury folder(s), read together (default: middlebury0506/ThirdSize under "
        "the data root, $NODE_DADA_DATA or ./data; add middlebury2014 for MiddEval3); a "
        "relative path is read from the working directory, else from the data root; for "
        f"nyuv2 (required) {NYUV2_FILE_NAME} or its folder; for rgbdd (required) one RGB-D-D "
        "folder, e.g. rgbdd; not used by motorcycle",
    )
    parser.add_argument("--split", default="test", choices=("test", "val", "train"),
                        help="Middlebury, NYUv2 or RGB-D-D split (default test); motorcycle is "
                        "one scene")
    parser.add_argument(
        "--split-file", type=Path, default=None,
        help="nyuv2 only: a JSON file {\"train\": [...], \"val\": [...], \"test\": [...]} of "
        "0-based frame indices (default: the community 849/300/300 split shipped with the "
        "package, node_dada/data/splits/nyuv2_split_idc.json)",
    )
    parser.add_argument("--scales", type=positive_int, nargs="+", default=list(DEFAULT_SCALES))
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                        help=f"any of {', '.join(BASELINES)}")
    parser.add_argument("--crop-size", type=non_negative_int, default=DEFAULT_CROP_SIZE,
                        help="side of the evaluation crops; 0 = whole images")
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="evaluate only the first N crops per scale (quick checks)")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark"),
                        help="folder for the tables and figures (default: runs/benchmark; the "
                        "committed results/ tables are rewritten only when named here)")
    parser.add_argument("--aggregation", choices=("pixel", "batch"), default="pixel",
                        help="pixel: exact (default); batch: mean of per-crop means")
    parser.add_argument("--dada-iters", type=positive_int, default=INFERENCE_PRE_ITER,
                        help="discrete DADA iterations; dada_ode integrates to T = 0.24 x this")
    parser.add_argument("--ode-step", type=positive_float, default=ODE_STEP_SIZE,
                        help="dada_ode's first RKC step")
    parser.add_argument("--ode-step-growth", type=growth_float, default=ODE_STEP_GROWTH,
                        help="ratio of each dada_ode RKC step to the one before (1: uniform)")
    parser.add_argument("--figure-crops", type=non_negative_int, default=DEFAULT_FIGURE_CROPS,
                        help="crops per scale shown in the figures (0: no figure)")
    parser.add_argument(
        "--checkpoint", type=_checkpoint_arg, action="append", default=[],
        metavar="NAME=PATH[@SCALE]",
        help="a trained model (a file or a shipped name) to add to the table as method NAME; "
             "@SCALE evaluates it only at that scale",
    )
    parser.add_argument(
        "--model-solver", choices=("exact", "fast"), default="exact",
        help="how --checkpoint models integrate: exact (default: their training solver, "
             "as in training and `node-dada test`) or fast (RKC, upsample's default)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch CPU threads (default: torch's choice); recorded in the .md")
    parser.add_argument("--per-image", action="store_true",
                        help="also report each method's MAE on each crop (each image with "
                        "--crop-size 0): <out>/<dataset>_per_image.csv and a table in the .md")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; bad arguments end with one line on stderr and code 2."""
    invoked_as_module = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = "python -m node_dada.benchmark" if invoked_as_module else "node-dada benchmark"
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        specs = method_specs(
            args.methods,
            dada_iters=args.dada_iters,
            ode_step=args.ode_step,
            ode_step_growth=args.ode_step_growth,
            checkpoints=args.checkpoint,
            model_solver=args.model_solver,
        )
        scenes = load_scenes(args.dataset, root=args.root, split=args.split,
                             split_file=args.split_file)
        crop_size = args.crop_size or None
        split = "test" if args.dataset == "motorcycle" else args.split
        load_start = _load_average()
        per_crop: list[CropError] | None = [] if args.per_image else None
        rows, figures = run_benchmark(
            scenes,
            dataset=args.dataset,
            split=split,
            scales=args.scales,
            specs=specs,
            crop_size=crop_size,
            limit=args.limit,
            aggregation=args.aggregation,
            figure_crops=args.figure_crops,
            progress=not args.no_progress,
            per_crop=per_crop,
        )
        if not rows:
            raise InputValueError("the selected crops hold no valid pixel; nothing to report")
    except (UsageError, NodeDadaError) as error:
        return report_error(prog, error)
    command = f"{prog} {shlex.join(argv)}"
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / f"{args.dataset}.csv", command)
    what = "image" if crop_size is None else "crop"
    if per_crop is not None:
        write_crop_errors(per_crop, args.out / f"{args.dataset}_per_{what}.csv", command)
    figure_names = []
    for scale, crops in figures.items():
        if crops:
            name = f"{args.dataset}_x{scale}.png"
            save_figure(
                crops, args.out / name,
                title=f"{DATASET_TITLES[args.dataset]}: x{scale}, depth in mm",
            )
            figure_names.append(name)
    scene_names = [scenes.scene_name(i) for i in range(len(scenes))]
    text = write_markdown(
        rows,
        args.out / f"{args.dataset}.md",
        command=command,
        dataset=args.dataset,
        scene_names=scene_names,
        figures=figure_names,
        load=None if load_start is None else (load_start, _load_average() or math.nan),
        per_crop=per_crop or (),
    )
    sys.stdout.write("\n" + text + f"\nWritten to {args.out}/\n")
    return 0
