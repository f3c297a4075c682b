"""``node-dada release`` and ``python -m node_dada.models.release``: the options and the
command of :mod:`node_dada.models.release` (ship a trained model inside the package)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from node_dada.errors import DataError
from node_dada.models import release as release_module
from node_dada.models.release import release

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Ship ``--checkpoint`` as ``--name``; a refused checkpoint ends with exit code 2."""
    parser = argparse.ArgumentParser(description=release_module.__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="a Lightning checkpoint written by node-dada fit")
    parser.add_argument("--name", required=True, help="the shipped model's name")
    parser.add_argument("--config", default=None, help="the config that trained it")
    parser.add_argument("--alias", default=None, help="a second name for the same model")
    parser.add_argument("--hardware", default=None, help="what trained it, in words")
    args = parser.parse_args(argv)
    try:
        target = release(args.checkpoint, args.name, config=args.config, alias=args.alias,
                         hardware=args.hardware)
    except DataError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    sys.stdout.write(f"{target} ({target.stat().st_size / 1e6:.1f} MB)\n")
    return 0
