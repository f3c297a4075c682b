"""``node-dada data list|download|sample``: the options and the command of
:mod:`node_dada.data.download` (the datasets, downloaded into the layout their loaders
read) and :mod:`node_dada.data.sample` (real files to try the commands on)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from node_dada.commands.args import OneLineParser, UsageError, report_error
from node_dada.data import download as download_module
from node_dada.data.download import (
    CATALOGUE,
    DOWNLOADS_FOLDER,
    describe,
    fetch_dataset,
    format_catalogue,
)
from node_dada.errors import NodeDadaError

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "node-dada data") -> argparse.ArgumentParser:
    """The ``node-dada data`` parser (``list``, ``download`` and ``sample``)."""
    parser = OneLineParser(prog=prog, description=download_module.__doc__.splitlines()[0])
    actions = parser.add_subparsers(dest="action", metavar="{list,download,sample}",
                                    required=True)
    actions.add_parser("list", help="one line per dataset: what, size, layout, loader",
                       description="One line per dataset: what, size, layout, loader.")
    download = actions.add_parser(
        "download", help="download, verify and unpack one dataset",
        description="Download, verify and unpack one dataset into the layout its loader reads.")
    download.add_argument("name", metavar="NAME", help=f"one of: {', '.join(CATALOGUE)}")
    download.add_argument("--root", type=Path, required=True,
                          help="the data folder (archives go to ROOT/downloads)")
    download.add_argument("--force", action="store_true",
                          help="download every file again and replace unpacked folders")
    download.add_argument("--no-progress", action="store_true", help="no progress bar")
    sample = actions.add_parser(
        "sample", help="write a real frame and a folder of pairs to try the commands on",
        description="Write the embedded Motorcycle scene (real, no download) as a user's "
                    "files: ROOT/frame/{guide.png,depth_x8.png,depth_gt.png} and "
                    "ROOT/pairs/{train,val,test}/{guide,depth}/ (node_dada.data.sample).")
    sample.add_argument("--root", type=Path, required=True, help="the folder to write into")
    sample.add_argument("--overwrite", action="store_true",
                        help="replace a sample written there before")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``node-dada data list|download|sample``; a failure ends with one line and code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = "node-dada data"
    try:
        args = build_parser(prog).parse_args(argv)
        if args.action == "list":
            sys.stdout.write(format_catalogue())
            return 0
        if args.action == "sample":
            from node_dada.data.sample import write_sample

            written = write_sample(args.root, overwrite=args.overwrite)
            sys.stdout.write(f"{len(written)} files under {args.root}: frame/ (guide.png, "
                             "depth_x8.png, depth_gt.png) and pairs/{train,val,test}/\n")
            return 0
        prog = f"node-dada data download {args.name}"
        root = args.root
        report = fetch_dataset(args.name, root, force=args.force,
                               progress=not args.no_progress)
    except (UsageError, NodeDadaError, OSError) as error:  # OSError: disk full, permissions
        return report_error(prog, error)
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted; rerun the same command to resume\n")
        return 130
    sys.stdout.write(describe(report, downloads=Path(root) / DOWNLOADS_FOLDER))
    return 0
