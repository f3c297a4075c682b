"""``node-dada tuning`` and ``python -m node_dada.tuning``: the options and the command
of :mod:`node_dada.tuning` (the classic filters' parameters, searched on the Middlebury
validation split)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from node_dada import tuning
from node_dada.commands.args import (
    OneLineParser,
    UsageError,
    non_negative_int,
    positive_int,
    report_error,
)
from node_dada.errors import NodeDadaError
from node_dada.evaluation.crops import DEFAULT_SCALES
from node_dada.tuning import GRIDS, search, write_outputs

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the search; bad arguments end with one line on stderr and code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = "python -m node_dada.tuning"
    parser = OneLineParser(prog=prog, description=tuning.__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None,
                        help="Middlebury folder (default: middlebury0506/ThirdSize under the "
                             "data root, $NODE_DADA_DATA or ./data)")
    parser.add_argument("--scales", type=positive_int, nargs="+", default=list(DEFAULT_SCALES))
    parser.add_argument("--methods", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    parser.add_argument("--crop-size", type=non_negative_int, default=0,
                        help="side of the evaluation crops; 0 (default) = whole images")
    parser.add_argument("--out", type=Path, default=Path("runs/tuning"),
                        help="folder for the tuning tables (default: runs/tuning)")
    parser.add_argument("--no-progress", action="store_true")
    try:
        args = parser.parse_args(argv)
        crop_size = args.crop_size or None
        rows, images = search(root=args.root, scales=args.scales, methods=args.methods,
                              crop_size=crop_size, progress=not args.no_progress)
    except (UsageError, NodeDadaError) as error:
        return report_error(prog, error)
    command = f"{prog} {shlex.join(argv)}"
    text = write_outputs(rows, args.out, command=command, images=images, crop_size=crop_size)
    sys.stdout.write("\n" + text + f"\nWritten to {args.out}/\n")
    return 0
