"""``node-dada sweep configs/sweeps/<name>.yaml``: the options and the command of
:mod:`node_dada.sweep` (an ablation grid as one command)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from node_dada import sweep
from node_dada.errors import InputValueError, NodeDadaError
from node_dada.sweep import DEFAULT_OUT, first_line, load_spec, read_cells, run_sweep

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting."""

    def error(self, message: str):  # noqa: D102
        raise InputValueError(f"sweep: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="node-dada sweep", description=sweep.__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="configs/sweeps/<name>.yaml")
    parser.add_argument("--out", type=Path, default=None,
                        help="results folder (default: runs/sweeps/<name>; the committed tables "
                             "are made with --out results/<name>)")
    parser.add_argument("--rerun-failed", action="store_true",
                        help="run failed or diverged cells again")
    parser.add_argument("--max-cells", type=int, default=None,
                        help="stop after this many new cells (resume later)")
    parser.add_argument("--list", action="store_true", help="list the cells and their state")
    parser.add_argument("--replot", action="store_true",
                        help="run no cell; rewrite the summary and plots from cells.csv")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``node-dada sweep SPEC [--out DIR] [--rerun-failed] [--max-cells N] [--list]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if any(a in ("-h", "--help") for a in argv):
            _parser().print_help(sys.stdout)
            return 0
        args = _parser().parse_args(argv)
        spec = load_spec(args.spec)
        out_dir = args.out or DEFAULT_OUT / spec.name
        if args.list:
            done = {r["cell"]: r["status"] for r in read_cells(out_dir / "cells.csv")}
            for cell in spec.cells():
                sys.stdout.write(f"{done.get(cell.id, 'todo'):9s} {cell.label}\n")
            return 0
        command = "node-dada sweep " + shlex.join(
            [a for a in argv if a not in ("--replot", "--no-progress")])
        report = run_sweep(spec, out_dir, command=command, rerun_failed=args.rerun_failed,
                           max_cells=args.max_cells, progress=not args.no_progress,
                           replot=args.replot)
    except NodeDadaError as error:
        sys.stderr.write(f"node-dada sweep: error: {first_line(error)}\n")
        return 2
    tally = ", ".join(f"{n} {s}" for s, n in report.statuses.items())
    if report.interrupted:
        sys.stderr.write(f"node-dada sweep: interrupted after {report.ran} new cell(s); "
                         f"{tally}; rerun the same command to resume\n")
        return 130
    sys.stderr.write(f"node-dada sweep: {report.ran} cell(s) run, {report.already} already "
                     f"done ({tally}); results in {out_dir}\n")
    return 0
