"""``node-dada demo`` and ``python -m node_dada.demo`` (what ``make demo`` runs): the
options and the command of :mod:`node_dada.demo`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from tqdm import tqdm

from node_dada import demo
from node_dada.demo import (
    DEFAULT_SCALES,
    TRAINED_MODEL,
    DemoRow,
    run_scale,
    run_trained,
    save_figure,
    trained_model_available,
    write_tables,
)
from node_dada.diffusion import INFERENCE_PRE_ITER
from node_dada.evaluation.crops import iter_crops, load_scenes

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the demo: its table and one picture per scale under ``--out``."""
    parser = argparse.ArgumentParser(description=demo.__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"),
                        help="folder for the table and figures (default: runs/demo)")
    parser.add_argument("--scales", type=int, nargs="+", default=list(DEFAULT_SCALES))
    parser.add_argument("--num-iter", type=int, default=INFERENCE_PRE_ITER)
    args = parser.parse_args(argv)
    command = "python -m node_dada.demo " + shlex.join(sys.argv[1:] if argv is None else argv)
    args.out.mkdir(parents=True, exist_ok=True)
    scenes = load_scenes("motorcycle")
    rows: list[DemoRow] = []
    with tqdm(total=args.num_iter * len(args.scales), desc="learning-free DADA", unit="it") as bar:
        for scale in args.scales:
            bar.set_postfix_str(f"x{scale}")
            crop = next(iter_crops(scenes, scale=scale, crop_size=None))
            scale_rows, maps = run_scale(crop, scale, args.num_iter, bar)
            rows += scale_rows
            if scale == 8 and trained_model_available():
                row, maps["trained"] = run_trained(crop, scale)
                scale_rows.append(row)
                rows.append(row)
            save_figure(maps, scale, scale_rows, args.out / f"motorcycle_x{scale}.png")
    text = write_tables(rows, args.out, command, args.num_iter)
    sys.stdout.write("\n" + text + f"\nWritten to {args.out}/\n")
    if not trained_model_available():
        sys.stdout.write(
            f"No trained model ({TRAINED_MODEL!r}) is shipped with this version, so the table "
            "has learning-free rows only. Train one with: node-dada fit --config "
            "configs/middlebury_x8_ode_adjoint.yaml\n"
        )
    return 0
