"""``python -m node_dada.data.diml_convert``: the options and the command that convert
the raw DIML download to the npy files the DIML loader reads
(:func:`node_dada.data.diml.convert_diml_raw`)."""

from __future__ import annotations

import argparse
import logging
import sys

from node_dada.data.diml import DIML_VAL_FRACTION, convert_diml_raw
from node_dada.errors import NodeDadaError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the converter; returns the exit status (2 on a :class:`NodeDadaError`)."""
    parser = argparse.ArgumentParser(
        prog="python -m node_dada.data.diml_convert",
        description="Convert the raw DIML layout (<raw>/{train,test}/HR/<scene>/color, "
        "depth_filled) to <out>/npy/{images,depth}_{train,val,test}_HR.npy.",
    )
    parser.add_argument("raw_root", help="folder that holds train/ and test/")
    parser.add_argument("--out", default=None, help="where npy/ is written (default: raw_root)")
    parser.add_argument("--resolution", default="HR")
    parser.add_argument(
        "--val-fraction", type=float, default=DIML_VAL_FRACTION,
        help="last fraction of each train scene used as val (default 0.1)",
    )
    parser.add_argument(
        "--splits", nargs="+", default=["train", "val", "test"], choices=["train", "val", "test"]
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        counts = convert_diml_raw(
            args.raw_root, args.out, resolution=args.resolution,
            val_fraction=args.val_fraction, splits=tuple(args.splits),
        )
    except NodeDadaError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    logging.getLogger(__name__).info(
        "done: %s", ", ".join(f"{split} {count}" for split, count in counts.items())
    )
    return 0
